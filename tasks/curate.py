"""Tasks of the curate flow's shard pass and run-wide decisions (dedup, CLIP filter)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.export import stage_batch
from mmpipe.sources import Shard, SourceSpec, plan_shards, read_shard
from mmpipe.stages.basic import BasicFilter, BasicFilterConfig
from mmpipe.stages.clip_filter import ClipFilter, ClipFilterConfig
from mmpipe.stages.decode import DecodeConfig, DecodeImages
from mmpipe.stages.dedup import Dedup, DedupConfig
from tasks.record import record_batch, record_decisions
from warehouse import Warehouse
from warehouse.queries import clip_scores_of, content_keys, dropped_ids, stage_done


def staged_path(home: str, run_id: str, index: int) -> Path:
    """Where a run keeps shard `index`'s surviving samples between passes."""
    return Path(home) / "staging" / run_id / f"shard-{index:06d}.tar"


def staged_ids(path: Path) -> pa.Table:
    """sample_id and order of a staged shard (its .ids.parquet sidecar)."""
    return pq.read_table(path.with_suffix(".ids.parquet"))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def plan_source(spec: SourceSpec) -> list[Shard]:
    """Split the source into shards."""
    return plan_shards(spec)


@task(cache_policy=NO_CACHE, task_run_name="prepare-shard-{shard.index}")
def prepare_shard(spec: SourceSpec, shard: Shard, run_id: str, home: str, name: str,
                  decode: DecodeConfig, basic: BasicFilterConfig) -> dict:
    """Read, decode and basic-filter one shard; record everything; stage the survivors."""
    out = staged_path(home, run_id, shard.index)
    if out.exists():
        return {"shard": shard.index, "skipped": True, "error": None}
    batch, error = read_shard(spec, shard, name)
    stages = [DecodeImages(decode), BasicFilter(basic)]
    for stage in stages:
        batch = stage(batch)
    written = record_batch(Warehouse(home), batch, stages, run_id)
    survivors = batch.filter(pc.fill_null(batch["keep"], True))
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"sample_id": survivors["sample_id"],
                             "order": pa.array([shard.index * 1_000_000 + i for i in range(survivors.num_rows)],
                                               pa.int64())}), out.with_suffix(".ids.parquet"))
    stage_batch(batch, out, shard.index)
    return {"shard": shard.index, "skipped": False, "error": error, "read": batch.num_rows,
            "staged": survivors.num_rows, **written}


@task(cache_policy=NO_CACHE)
def dedup_run(home: str, run_id: str, staged: list[str], config: DedupConfig) -> int:
    """Exact and near dedup over every survivor of the run, first seen kept."""
    wh = Warehouse(home)
    ids = pa.concat_tables([staged_ids(Path(p)) for p in staged]) if staged else None
    if ids is None or ids.num_rows == 0 or stage_done(wh, run_id, Dedup.name) >= ids.num_rows:
        return 0
    keys = content_keys(wh, ids["sample_id"].to_pylist())
    batch = ids.join(keys, "sample_id").append_column("keep", pa.array([True] * ids.num_rows))
    batch = batch.append_column("drop_reason", pa.nulls(batch.num_rows, pa.string()))
    batch = batch.append_column("drop_stage", pa.nulls(batch.num_rows, pa.string()))
    stage = Dedup(config)
    out = stage(batch)
    record_decisions(wh, out, [stage], run_id)
    return stage.counts.get("duplicate_of", 0)


@task(cache_policy=NO_CACHE)
def clip_filter_run(home: str, run_id: str, staged: list[str], config: ClipFilterConfig,
                    model: str, pretrained: str) -> float | None:
    """Keep the run's survivors whose CLIP score passes; returns the threshold applied."""
    wh = Warehouse(home)
    ids = [s for p in staged for s in staged_ids(Path(p))["sample_id"].to_pylist()]
    dups = dropped_ids(wh, run_id, Dedup.name)
    ids = [s for s in ids if s not in dups]
    scores = clip_scores_of(wh, model, pretrained, ids)
    batch = pa.table({"sample_id": ids, "clip_score": pa.array([scores.get(s) for s in ids], pa.float64()),
                      "keep": [True] * len(ids), "drop_reason": pa.nulls(len(ids), pa.string()),
                      "drop_stage": pa.nulls(len(ids), pa.string())})
    stage = ClipFilter(config)
    out = stage(batch)
    record_decisions(wh, out, [stage], run_id)
    return stage.threshold

