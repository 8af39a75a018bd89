"""Tasks of the curate flow's shard pass and run-wide decisions (dedup, CLIP filter)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.export import stage_batch, staged_ids
from mmpipe.report.previews import IMAGES_PER_RUN, IMAGES_PER_SHARD, image_previews
from mmpipe.sources import Shard, SourceSpec, plan_shards, read_shard
from mmpipe.stages.basic import BasicFilter, BasicFilterConfig
from mmpipe.stages.clip_filter import ClipFilter, ClipFilterConfig
from mmpipe.stages.decode import DecodeConfig, DecodeImages
from mmpipe.stages.dedup import Dedup, DedupConfig
from tasks.record import record_batch, record_decisions
from warehouse import Warehouse
from warehouse.queries import clip_scores_of, content_keys, dropped_ids, seen_before, stage_done
from warehouse.report_queries import preview_count


def staging_dir(home: str, run_id: str) -> Path:
    """Where a run keeps its state between passes (removed when the run completes)."""
    return Path(home) / "staging" / run_id


def staged_path(home: str, run_id: str, index: int) -> Path:
    """Where a run keeps shard `index`'s surviving samples between passes."""
    return staging_dir(home, run_id) / f"shard-{index:06d}.tar"


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def plan_source(spec: SourceSpec, home: str, run_id: str) -> list[Shard]:
    """Split the source into shards (tables stream once into parts under the run's staging folder)."""
    return plan_shards(spec, staging_dir(home, run_id) / "input")


@task(cache_policy=NO_CACHE)
def remove_staging(home: str, run_id: str) -> None:
    """A completed run cannot resume: its staged shards and table parts go."""
    import shutil

    shutil.rmtree(staging_dir(home, run_id), ignore_errors=True)


def run_candidates(staged: list[str]) -> pa.Table:
    """(sample_id, ordinal) of the run's staged samples, each sample once at its first ordinal."""
    if not staged:
        return pa.table({"sample_id": pa.array([], pa.string()), "ordinal": pa.array([], pa.int64())})
    ids = pa.concat_tables([staged_ids(p) for p in staged])
    return ids.group_by("sample_id").aggregate([("ordinal", "min")]).rename_columns(["sample_id", "ordinal"]) \
        .sort_by("ordinal")


@task(cache_policy=NO_CACHE, task_run_name="prepare-shard-{shard.index}")
def prepare_shard(spec: SourceSpec, shard: Shard, run_id: str, home: str, name: str,
                  decode: DecodeConfig, basic: BasicFilterConfig, incremental: bool = False) -> dict:
    """Read, decode and basic-filter one shard; record everything; stage the survivors. Incremental:
    samples an earlier finished run of this source met are left out (not decoded, recorded or staged)."""
    out = staged_path(home, run_id, shard.index)
    if out.exists():
        return {"shard": shard.index, "skipped": True, "error": None}
    batch, error = read_shard(spec, shard, name)
    seen = 0
    if incremental and batch.num_rows:
        known = seen_before(Warehouse(home), name, run_id, batch["sample_id"].to_pylist())
        if known:
            n = batch.num_rows
            batch = batch.filter(pc.invert(pc.is_in(batch["sample_id"], pa.array(sorted(known)))))
            seen = n - batch.num_rows
    stages = [DecodeImages(decode), BasicFilter(basic)]
    for stage in stages:
        batch = stage(batch)
    wh = Warehouse(home)
    # previews for the report, written in the same transaction as the shard's decisions
    previews = image_previews(batch, run_id, min(IMAGES_PER_SHARD, IMAGES_PER_RUN - preview_count(wh, run_id)))
    written = record_batch(wh, batch, stages, run_id, f"prepare/{shard.index}", extra={"thumbnails": previews})
    staged = stage_batch(batch, out)
    return {"shard": shard.index, "skipped": False, "error": error, "read": batch.num_rows, "staged": staged,
            "seen_before": seen, **written}


@task(cache_policy=NO_CACHE)
def dedup_run(home: str, run_id: str, staged: list[str], config: DedupConfig) -> int:
    """Exact and near dedup over every survivor of the run, first seen kept."""
    wh = Warehouse(home)
    ids = run_candidates(staged)
    if ids.num_rows == 0 or stage_done(wh, run_id, Dedup.name) >= ids.num_rows:
        return 0
    batch = _decidable(ids.join(content_keys(wh, ids["sample_id"].to_pylist()), "sample_id"))
    stage = Dedup(config)
    out = stage(batch)
    record_decisions(wh, out, [stage], run_id)
    return stage.counts.get("duplicate", 0) + stage.counts.get("near_duplicate", 0)


def _decidable(table: pa.Table) -> pa.Table:
    """A table of candidates with the columns a Filter annotates."""
    n = table.num_rows
    for col, arr in (("keep", pa.array([True] * n, pa.bool_())), ("drop_reason", pa.nulls(n, pa.string())),
                     ("drop_detail", pa.nulls(n, pa.string())), ("drop_stage", pa.nulls(n, pa.string()))):
        table = table.append_column(col, arr)
    return table


@task(cache_policy=NO_CACHE)
def clip_filter_run(home: str, run_id: str, staged: list[str], config: ClipFilterConfig,
                    model: str, pretrained: str) -> float | None:
    """Keep the run's survivors whose CLIP score passes; returns the threshold applied."""
    wh = Warehouse(home)
    dups = dropped_ids(wh, run_id, Dedup.name)
    ids = [s for s in run_candidates(staged)["sample_id"].to_pylist() if s not in dups]
    scores = clip_scores_of(wh, model, pretrained, ids)
    batch = _decidable(pa.table({"sample_id": pa.array(ids, pa.string()),
                                 "clip_score": pa.array([scores.get(s) for s in ids], pa.float64())}))
    stage = ClipFilter(config)
    out = stage(batch)
    record_decisions(wh, out, [stage], run_id)
    return stage.threshold

