"""Curate image-text pairs: decode, basic filters, dedup, CLIP score and filter, export shards."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, unmapped

from flows.fanout import gather, on_a_worker, per_shard, read_shards
from flows.runners import run_name, task_runner
from mmpipe.curation import CurateRequest, RunOutcome, curation_result
from mmpipe.home import resolve_home, stored_path
from mmpipe.models.names import CLIP_MODEL as DEFAULT_MODEL, CLIP_PRETRAINED as DEFAULT_PRETRAINED
from tasks.clip import ensure_clip, plan_scoring, score_staged_shard
from tasks.curate import clip_filter_run, dedup_run, plan_source, prepare_shard, remove_staging, staged_path
from tasks.dataset import (announce_dataset, choose_version, count_kept, export_staged_shard, latest_version,
                           plan_export, publish_dataset)
from tasks.record import settle_samples
from tasks.report import publish_outcomes
from tasks.report_page import write_report_page
from tasks.runs import Run, run_tallies_task, tracked_run


@flow(name="curate", task_runner=task_runner(), flow_run_name=run_name("curate"))
def curate_flow(source: str, name: str, home: str | None = None, kind: str | None = None,
                url_col: str | None = None, caption_col: str | None = None, split: str | None = None,
                shard_size: int = 512, min_caption_words: int = 2, min_caption_chars: int = 5,
                min_side: int = 200, max_aspect_ratio: float = 3.0, max_pixels: int | None = None,
                exact_dedup: bool = True, dedup_hamming: int | None = 4,
                clip_model: str = DEFAULT_MODEL, clip_pretrained: str | None = DEFAULT_PRETRAINED,
                min_clip_score: float | None = None, keep_fraction: float | None = None,
                clip_batch_size: int = 128, clip_workers: int = 2, device: str | None = None,
                allowed_roots: list[str] | None = None, out: str | None = None, incremental: bool = False) -> dict:
    """One resumable run from a source to a curated WebDataset with every decision in the warehouse.

    incremental: only samples no earlier finished run of this source met are processed (a scheduled
    run over a source that gained files); their kept ones are added to the newest curated version as
    a new version, and when none is kept no version is made.
    """
    home = str(resolve_home(home))
    request = CurateRequest(source, name, kind, url_col, caption_col, split, shard_size, min_caption_words,
                            min_caption_chars, min_side, max_aspect_ratio, max_pixels, exact_dedup, dedup_hamming,
                            clip_model, clip_pretrained, min_clip_score, keep_fraction, clip_batch_size,
                            clip_workers, device, allowed_roots, out, incremental)
    spec, clip_config = request.source_spec(), request.clip_score()
    pretrained_key = stored_path(home, clip_pretrained)  # scores are keyed by it: home-relative, so a home can move
    if request.scoring:
        on_a_worker(ensure_clip, clip_config)
    with tracked_run(home, "curate", request.params()) as run:
        run_id = run.run_id
        shards = plan_source(spec, home, run_id)
        prepared = read_shards(prepare_shard, run, shards, f"Reading shards, run {run_id}", spec=spec,
                               run_id=run_id, home=home, name=name, decode=request.decode(), basic=request.basic(),
                               incremental=incremental)
        staged = [str(staged_path(home, run_id, s.index)) for s in shards]
        settle_samples(home, run_id)
        dedup_run(home, run_id, staged, request.dedup(), name)
        if request.scoring:
            skip = plan_scoring(home, run_id, clip_model, pretrained_key)
            per_shard(score_staged_shard, f"CLIP scoring, run {run_id}", {"path": staged}, home=home, skip=skip,
                      run_id=run_id, config=clip_config, pretrained=pretrained_key)
            clip_filter_run(home, run_id, staged, request.clip_filter(), clip_model, pretrained_key)
        kept_now = count_kept(home, run_id)
        base = latest_version(home, name, run_id) if incremental else None
        if base and not kept_now:  # nothing new kept: the kept set is unchanged, so is the dataset
            return curation_result(finish_curation(home, run, "curate", name), prepared, None, unchanged=base)
        version = choose_version(home, name, run_id)
        dataset = _export(home, run_id, request, version, staged, pretrained_key, base)
        outcome = finish_curation(home, run, "curate", name)
    report = write_report_page(home, f"{name}@{version}")
    return curation_result(outcome, prepared, dataset, report=report)


def _export(home: str, run_id: str, request: CurateRequest, version: str, staged: list[str], pretrained_key: str,
            base: dict | None) -> dict:
    """Write the kept samples as the version's shards, publish the version (on `base`, when incremental)
    and announce it."""
    out_dir = str(Path(request.out) if request.out else Path(home) / "datasets" / request.name / version)
    model = request.clip_model if request.scoring else None
    plan = plan_export(home, run_id, model, pretrained_key)
    sizes = dict(gather(export_staged_shard.map(staged=staged, home=unmapped(home), run_id=unmapped(run_id),
                                                out_dir=unmapped(out_dir), model=unmapped(model),
                                                pretrained=unmapped(pretrained_key), plan=unmapped(plan),
                                                max_pixels=unmapped(request.pixel_budget)), f"Exporting, run {run_id}"))
    clip_key = {"model": model, "pretrained": pretrained_key} if model else None
    dataset = publish_dataset(home, run_id, request.name, version, out_dir, sizes, request.filter_spec(pretrained_key),
                              clip_key, base=base, plan=plan)
    announce_dataset(home, run_id, dataset, clip_key)
    return dataset


def finish_curation(home: str, run: Run, flow_name: str, name: str) -> RunOutcome:
    """The run's counts by outcome published, its tallies (every attempt's, not only this one's), its
    staging removed."""
    counts = publish_outcomes(home, run.run_id, flow_name, name)
    tallies = run_tallies_task(home, run.run_id)
    remove_staging(home, run.run_id)
    return RunOutcome(run.run_id, home, counts, tallies, run.warnings)
