"""The CLIP scoring task: scores a staged shard's survivors that no run has scored with this model."""

from __future__ import annotations

import hashlib
import multiprocessing
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.export import read_staged
from mmpipe.manifest import plan_rows, write_plan
from mmpipe.stages.clip_score import ClipScoreConfig, ClipScorer
from mmpipe.stages.dedup import Dedup
from warehouse import Warehouse
from warehouse.queries import dropped_ids, scored_ids, scoring_skips


@task(cache_policy=NO_CACHE)
def plan_scoring(home: str, run_id: str, model: str, pretrained: str) -> str:
    """The run's candidates that scoring skips (dedup dropped them, or this model scored them before),
    as one Parquet file in ordinal order under the run's staging folder; each shard reads its range."""
    path = Path(home) / "staging" / run_id / f"skip-{hashlib.sha1(f'{model}|{pretrained}'.encode()).hexdigest()[:12]}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_plan(scoring_skips(Warehouse(home), run_id, model, pretrained), path)  # anew: a resumed run scored more
    return str(path)


@task(cache_policy=NO_CACHE, tags=["gpu"], task_run_name="clip-score-{path}")
def score_staged_shard(home: str, run_id: str, path: str, config: ClipScoreConfig, pretrained: str,
                       skip: str | None = None) -> int:
    """Score and store (scores + float16 embeddings, keyed by model and `pretrained` as the warehouse
    names it); returns how many samples were scored now. `skip`: the run's plan_scoring file (without
    it, the shard asks the warehouse)."""
    if config.num_workers and multiprocessing.current_process().daemon:
        config = replace(config, num_workers=0)  # a Dask worker is a daemon: it cannot start loader processes
    wh = Warehouse(home)
    samples = read_staged(path)
    if skip is not None:
        dups, done = set(plan_rows(skip, int(Path(path).stem.split("-")[-1]))), set()
    else:
        dups = dropped_ids(wh, run_id, Dedup.name)
        done = scored_ids(wh, config.model_name, pretrained, [s["sample_id"] for s in samples])
    todo = [s for s in samples if s["sample_id"] not in dups and s["sample_id"] not in done]
    if not todo:
        return 0
    batch = pa.table({"sample_id": [s["sample_id"] for s in todo], "content": [s["content"] for s in todo],
                      "text": [s.get("text", "") for s in todo], "keep": [True] * len(todo)})
    scored = ClipScorer(config)(batch)
    scored = scored.filter(pc.is_valid(scored["clip_score"]))
    n = scored.num_rows
    common = {"sample_id": scored["sample_id"], "model": [config.model_name] * n, "pretrained": [pretrained] * n,
              "run_id": [run_id] * n}
    dim = len(scored["clip_image_embedding"][0].as_py()) // 2
    wh.write_many({"clip_embeddings": pa.table({**common, "dim": [dim] * n,
                                                "image_embedding": scored["clip_image_embedding"],
                                                "text_embedding": scored["clip_text_embedding"]}),
                   "clip_scores": pa.table({**common, "score": scored["clip_score"]})},
                  batch=f"{run_id}/clip/{Path(path).name}/{config.model_name}/{pretrained}")
    return n


@task(cache_policy=NO_CACHE, tags=["gpu"])
def ensure_clip(config: ClipScoreConfig) -> str:
    """Load the CLIP model up front (once per process) so missing weights fail before any work."""
    scorer = ClipScorer(config)
    scorer.setup()
    return scorer.bundle.device
