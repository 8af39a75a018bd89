"""The CLIP scoring task: scores a staged shard's survivors that no run has scored with this model."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.export import read_staged
from mmpipe.stages.clip_score import ClipScoreConfig, ClipScorer
from mmpipe.stages.dedup import Dedup
from warehouse import Warehouse
from warehouse.queries import dropped_ids, scored_ids

_scorers: dict[tuple, ClipScorer] = {}


def scorer_for(config: ClipScoreConfig) -> ClipScorer:
    """One scorer (one loaded model) per process and config."""
    key = (config.model_name, config.pretrained, config.batch_size, config.num_workers, config.device)
    if key not in _scorers:
        _scorers[key] = ClipScorer(config)
        _scorers[key].setup()
    return _scorers[key]


@task(cache_policy=NO_CACHE, tags=["gpu"], task_run_name="clip-score-{path}")
def score_staged_shard(home: str, run_id: str, path: str, config: ClipScoreConfig) -> int:
    """Score and store (scores + float16 embeddings); returns how many samples were scored now."""
    wh = Warehouse(home)
    samples = read_staged(Path(path))
    dups = dropped_ids(wh, run_id, Dedup.name)
    pretrained = config.pretrained or ""
    done = scored_ids(wh, config.model_name, pretrained, [s["sample_id"] for s in samples])
    todo = [s for s in samples if s["sample_id"] not in dups and s["sample_id"] not in done]
    if not todo:
        return 0
    got = scorer_for(config).score([s["sample_id"] for s in todo], [s["content"] for s in todo],
                                   [s.get("text", "") for s in todo])
    ids = list(got)
    n = len(ids)
    common = {"sample_id": ids, "model": [config.model_name] * n, "pretrained": [pretrained] * n,
              "run_id": [run_id] * n}
    dim = len(got[ids[0]][1]) // 2
    wh.write("clip_embeddings", pa.table({**common, "dim": [dim] * n,
                                          "image_embedding": pa.array([got[s][1] for s in ids], pa.binary()),
                                          "text_embedding": pa.array([got[s][2] for s in ids], pa.binary())}),
             run_id)
    wh.write("clip_scores", pa.table({**common, "score": [got[s][0] for s in ids]}), run_id)
    return n


@task(cache_policy=NO_CACHE, tags=["gpu"])
def ensure_clip(config: ClipScoreConfig) -> str:
    """Load the CLIP model up front (once per process) so missing weights fail before any work."""
    return scorer_for(config).bundle.device
