"""Tasks of the curate flow's shard pass and run-wide decisions (dedup, CLIP filter)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.export import stage_batch
from mmpipe.report.previews import IMAGES_PER_RUN, IMAGES_PER_SHARD, image_previews
from mmpipe.sources import Shard, SourceSpec, plan_shards, read_shard
from mmpipe.stages.basic import BasicFilter, BasicFilterConfig
from mmpipe.stages.clip_filter import ClipFilter, ClipFilterConfig
from mmpipe.stages.decode import DecodeConfig, DecodeImages
from mmpipe.stages.dedup import Dedup, DedupConfig, mark_met_before
from tasks.record import record_batch
from warehouse import Warehouse
from warehouse.dedup_queries import (chunk_bounds, clip_filter_decisions, dedup_decisions, dedup_done, earlier_versions,
                                     keep_fraction_threshold, met_before)
from warehouse.report_queries import preview_count


def staging_dir(home: str, run_id: str) -> Path:
    """Where a run keeps its state between passes (removed when the run completes)."""
    return Path(home) / "staging" / run_id


def staged_path(home: str, run_id: str, index: int) -> Path:
    """Where a run keeps shard `index`'s surviving samples between passes."""
    return staging_dir(home, run_id) / f"shard-{index:06d}.tar"


def staged_ids_path(staged: str) -> str:
    """The (sample_id, ordinal) sidecar of a staged shard: the run-wide stages' candidates."""
    return str(Path(staged).with_suffix(".ids.parquet"))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def plan_source(spec: SourceSpec, home: str, run_id: str) -> list[Shard]:
    """Split the source into shards (tables stream once into parts under the run's staging folder)."""
    return plan_shards(spec, staging_dir(home, run_id) / "input")


@task(cache_policy=NO_CACHE)
def remove_staging(home: str, run_id: str) -> None:
    """A completed run cannot resume: its staged shards and table parts go."""
    import shutil

    shutil.rmtree(staging_dir(home, run_id), ignore_errors=True)


@task(cache_policy=NO_CACHE, task_run_name="prepare-shard-{shard.index}")
def prepare_shard(spec: SourceSpec, shard: Shard, run_id: str, home: str, name: str,
                  decode: DecodeConfig, basic: BasicFilterConfig, incremental: bool = False) -> dict:
    """Read, decode and basic-filter one shard; record everything; stage the survivors. Incremental:
    samples an earlier finished run of this source met are recorded as met again (an occurrence, and a
    `duplicate` saying where they were first met) and neither decoded nor staged."""
    out = staged_path(home, run_id, shard.index)
    if out.exists():
        return {"shard": shard.index, "skipped": True, "error": None}
    batch, error = read_shard(spec, shard, name)
    wh = Warehouse(home)
    known = met_before(wh, name, run_id, batch["sample_id"].to_pylist()) if incremental and batch.num_rows else {}
    batch = mark_met_before(batch, known)
    stages = [DecodeImages(decode), BasicFilter(basic)]
    for stage in stages:
        batch = stage(batch)
    fresh = batch.filter(pc.invert(pc.fill_null(pc.equal(batch["drop_stage"], Dedup.name), False)))
    # previews for the report, written in the same transaction as the shard's decisions
    previews = image_previews(fresh, run_id, min(IMAGES_PER_SHARD, IMAGES_PER_RUN - preview_count(wh, run_id)))
    written = record_batch(wh, batch, [*stages, Dedup()], run_id, f"prepare/{shard.index}",
                           extra={"thumbnails": previews})
    staged = stage_batch(batch, out)
    return {"shard": shard.index, "skipped": False, "error": error, "read": fresh.num_rows, "staged": staged,
            "seen_before": batch.num_rows - fresh.num_rows, **written}


@task(cache_policy=NO_CACHE)
def dedup_run(home: str, run_id: str, staged: list[str], config: DedupConfig, name: str | None = None) -> int:
    """Exact and near dedup over every survivor of the run, first seen kept, in SQL over the stored
    hashes; with `name`, also against the samples kept in earlier versions of that dataset.
    Decisions are committed per ordinal range. Returns how many were dropped."""
    wh, ids = Warehouse(home), [staged_ids_path(p) for p in staged]
    if dedup_done(wh, ids, run_id):
        return 0
    versions = earlier_versions(wh, name, run_id) if name else None
    dropped = 0
    for lo, hi in chunk_bounds(wh, ids):
        got = dedup_decisions(wh, ids, run_id, config.exact, config.hamming, lo, hi, versions, Dedup.version)
        wh.write("decisions", got, run_id)
        dropped += int(pc.sum(pc.invert(got["keep"])).as_py() or 0)
    return dropped


@task(cache_policy=NO_CACHE)
def clip_filter_run(home: str, run_id: str, staged: list[str], config: ClipFilterConfig,
                    model: str, pretrained: str) -> float | None:
    """Keep the run's survivors whose CLIP score passes (a top fraction: its threshold from the stored
    scores in SQL); decisions committed per ordinal range. Returns the threshold applied."""
    wh, ids = Warehouse(home), [staged_ids_path(p) for p in staged]
    if config.min_score is not None:
        threshold, rule = config.min_score, f"min_clip_score={config.min_score:g}"
    else:
        threshold = keep_fraction_threshold(wh, ids, run_id, model, pretrained, config.keep_fraction)
        rule = f"keep_fraction={config.keep_fraction:g}"
    for lo, hi in chunk_bounds(wh, ids):
        wh.write("decisions", clip_filter_decisions(wh, ids, run_id, model, pretrained, threshold, rule, lo, hi,
                                                    ClipFilter.version), run_id)
    return threshold
