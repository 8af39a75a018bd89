"""Curate image-text pairs: decode, basic filters, dedup, CLIP score and filter, export shards."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, unmapped

from flows.runners import gather, on_a_worker, per_shard, run_name, task_runner
from mmpipe.home import resolve_home, stored_path
from mmpipe.models.clip import DEFAULT_MODEL, DEFAULT_PRETRAINED
from mmpipe.schema import MAX_PIXELS
from mmpipe.sources import SourceSpec
from mmpipe.stages.basic import BasicFilterConfig
from mmpipe.stages.clip_filter import ClipFilterConfig
from mmpipe.stages.clip_score import ClipScoreConfig
from mmpipe.stages.decode import DecodeConfig
from mmpipe.stages.dedup import DedupConfig
from tasks.clip import ensure_clip, plan_scoring, score_staged_shard
from tasks.curate import clip_filter_run, dedup_run, plan_source, prepare_shard, remove_staging, staged_path
from tasks.record import settle_samples
from tasks.dataset import (announce_dataset, choose_version, count_kept, export_staged_shard, latest_version,
                           plan_export, publish_dataset)
from tasks.report import publish_outcomes
from tasks.report_page import write_report_page
from tasks.runs import run_tallies_task, tracked_run


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
    params = {k: v for k, v in locals().items() if k != "home"}
    scoring = clip_model.lower() != "none"
    if scoring and min_clip_score is None and keep_fraction is None:
        keep_fraction = 0.3  # DataComp's CLIP-score baseline keeps the top 30%
        params["keep_fraction"] = keep_fraction
    spec = SourceSpec(source, kind=kind, media_col=url_col, text_col=caption_col, split=split, shard_size=shard_size,
                      allowed_roots=tuple(allowed_roots or ()))
    pixel_budget = max(max_pixels or 0, MAX_PIXELS)  # decode what the basic filter then judges
    clip_config = ClipScoreConfig(clip_model, clip_pretrained, clip_batch_size, clip_workers, device, pixel_budget)
    pretrained_key = stored_path(home, clip_pretrained)  # scores are keyed by it: home-relative, so a home can move
    if scoring:
        on_a_worker(ensure_clip, clip_config)
    with tracked_run(home, "curate", params) as run:
        run_id = run.run_id
        shards = plan_source(spec, home, run_id)
        prepared = gather(prepare_shard.map(
            shard=shards, spec=unmapped(spec), run_id=unmapped(run_id), home=unmapped(home), name=unmapped(name),
            decode=unmapped(DecodeConfig(max_pixels=pixel_budget)),
            basic=unmapped(BasicFilterConfig(min_caption_words, min_caption_chars, min_side, max_aspect_ratio,
                                             max_pixels)), incremental=unmapped(incremental)),
            f"Reading shards, run {run_id}")
        for p, shard in zip(prepared, shards):
            if p.get("error"):
                run.warn("broken_shard", f"shard {shard.path}: {p['error']}", shard=shard.path)
        staged = [str(staged_path(home, run_id, s.index)) for s in shards]
        settle_samples(home, run_id)
        dedup_run(home, run_id, staged, DedupConfig(exact_dedup, dedup_hamming), name)
        if scoring:
            skip = plan_scoring(home, run_id, clip_model, pretrained_key)
            per_shard(score_staged_shard, f"CLIP scoring, run {run_id}", {"path": staged}, home=home, skip=skip,
                      run_id=run_id, config=clip_config, pretrained=pretrained_key)
            clip_filter_run(home, run_id, staged, ClipFilterConfig(min_clip_score, keep_fraction),
                            clip_model, pretrained_key)
        kept_now = count_kept(home, run_id)
        base = latest_version(home, name, run_id) if incremental else None
        if base and not kept_now:  # nothing new kept: the kept set is unchanged, so is the dataset
            counts = publish_outcomes(home, run_id, "curate", name)
            tallies = run_tallies_task(home, run_id)  # every attempt's, not only this one's
            remove_staging(home, run_id)
            return {"run_id": run_id, "home": home, "ingested": sum(counts.values()), "kept": 0,
                    "new_samples": tallies["new_samples"], "outcomes": counts,
                    "seen_before": sum(p.get("seen_before", 0) for p in prepared), "n_scored": tallies["n_scored"],
                    "warnings": run.warnings, "dataset": None, "unchanged": base}
        version = choose_version(home, name, run_id)
        out_dir = str(Path(out) if out else Path(home) / "datasets" / name / version)
        model = clip_model if scoring else None
        plan = plan_export(home, run_id, model, pretrained_key)
        sizes = dict(gather(export_staged_shard.map(staged=staged, home=unmapped(home), run_id=unmapped(run_id),
                                                    out_dir=unmapped(out_dir), model=unmapped(model),
                                                    pretrained=unmapped(pretrained_key), plan=unmapped(plan),
                                                    max_pixels=unmapped(pixel_budget)), f"Exporting, run {run_id}"))
        filter_spec = {k: params[k] for k in ("min_caption_words", "min_caption_chars", "min_side",
                                               "max_aspect_ratio", "max_pixels", "exact_dedup", "dedup_hamming",
                                               "clip_model", "clip_pretrained", "min_clip_score", "keep_fraction")}
        filter_spec["clip_pretrained"] = pretrained_key
        clip_key = {"model": model, "pretrained": pretrained_key} if model else None
        dataset = publish_dataset(home, run_id, name, version, out_dir, sizes, filter_spec, clip_key, base=base,
                                  plan=plan)
        announce_dataset(home, run_id, dataset, clip_key)
        counts = publish_outcomes(home, run_id, "curate", name)
        tallies = run_tallies_task(home, run_id)  # every attempt's, not only this one's
        remove_staging(home, run_id)
    report = write_report_page(home, f"{name}@{version}")
    return {"run_id": run_id, "home": home, "ingested": sum(counts.values()), "kept": counts.get("kept", 0),
            "new_samples": tallies["new_samples"], "outcomes": counts,
            "seen_before": sum(p.get("seen_before", 0) for p in prepared), "n_scored": tallies["n_scored"],
            "warnings": run.warnings, "dataset": dataset, "report": report}
