"""Transcribe audio into audio-text pairs: decode, Whisper, quality filters, WER, export."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, unmapped

from flows.runners import gather, on_a_worker, per_shard, run_name, task_runner
from mmpipe.home import resolve_home
from mmpipe.models.whisper import DEFAULT_MODEL
from mmpipe.sources import SourceSpec
from mmpipe.stages.asr_quality import AsrQualityConfig
from mmpipe.stages.audio_decode import AudioDecodeConfig
from mmpipe.stages.dedup import DedupConfig
from mmpipe.stages.transcribe import TranscribeConfig
from tasks.audio import ensure_whisper, prepare_audio_shard, staged_audio_path, transcribe_staged_shard
from tasks.record import settle_samples
from tasks.curate import dedup_run, plan_source, remove_staging
from tasks.dataset import announce_dataset, choose_version, publish_dataset
from tasks.report import publish_outcomes, publish_wer_summary
from tasks.report_page import write_report_page
from tasks.runs import run_tallies_task, tracked_run


@flow(name="transcribe", task_runner=task_runner(), flow_run_name=run_name("transcribe"))
def transcribe_flow(source: str, name: str, home: str | None = None, kind: str | None = None,
                    url_col: str | None = None, text_col: str | None = None, split: str | None = None,
                    shard_size: int = 64, whisper_model: str = DEFAULT_MODEL, device: str | None = None,
                    compute_type: str | None = None, batch_size: int = 16, beam_size: int = 5,
                    task: str = "transcribe", language: str | None = None, vad: bool = True,
                    short_windows: bool = True, multilingual: bool = False,
                    min_duration_s: float = AudioDecodeConfig.min_duration_s,
                    max_duration_s: float = AudioDecodeConfig.max_duration_s,
                    no_speech_threshold: float = AsrQualityConfig.no_speech_threshold,
                    log_prob_threshold: float = AsrQualityConfig.log_prob_threshold,
                    compression_ratio_threshold: float = AsrQualityConfig.compression_ratio_threshold,
                    allowed_roots: list[str] | None = None, out: str | None = None) -> dict:
    """One resumable run from audio files to an audio-text WebDataset, every decision in the warehouse."""
    home = str(resolve_home(home))
    params = {k: v for k, v in locals().items() if k != "home"}
    config = TranscribeConfig(whisper_model, device, compute_type, batch_size, beam_size, task, language, vad,
                              short_windows=short_windows, multilingual=multilingual)
    resolved = on_a_worker(ensure_whisper, config)  # where the model will run
    spec = SourceSpec(source, kind=kind, media_col=url_col, text_col=text_col, split=split, shard_size=shard_size,
                      modality="audio", allowed_roots=tuple(allowed_roots or ()))
    with tracked_run(home, "transcribe", params) as run:
        run_id = run.run_id
        shards = plan_source(spec, home, run_id)
        version = choose_version(home, name, run_id)
        out_dir = Path(out) if out else Path(home) / "datasets" / name / version
        decode = AudioDecodeConfig(min_duration_s, max_duration_s)
        quality = AsrQualityConfig(no_speech_threshold, log_prob_threshold, compression_ratio_threshold)
        prepared = prepare_audio_shard.map(shard=shards, spec=unmapped(spec), run_id=unmapped(run_id),
                                           home=unmapped(home), name=unmapped(name), decode=unmapped(decode))
        prepared = gather(prepared, f"Reading shards, run {run_id}")
        for p, shard in zip(prepared, shards):
            if p.get("error"):
                run.warn("broken_shard", f"shard {shard.path}: {p['error']}", shard=shard.path)
        staged = [str(staged_audio_path(home, run_id, s.index)) for s in shards]
        settle_samples(home, run_id)
        dedup_run(home, run_id, staged, DedupConfig(exact=True, hamming=None))
        results = per_shard(transcribe_staged_shard, f"Transcribing, run {run_id}",
                            {"index": [s.index for s in shards], "staged": staged,
                             "part": [str(out_dir / "parts" / f"shard-{s.index:06d}.tar") for s in shards]},
                            home=home, run_id=run_id, decode=decode, config=config, quality=quality)
        sizes = {f"shard-{r['shard']:06d}.tar": r["kept"] for r in results}
        key = {"model": whisper_model, "compute_type": resolved["compute_type"], "options_key": resolved["options_key"]}
        filter_spec = {k: params[k] for k in ("whisper_model", "task", "language", "vad", "beam_size", "short_windows",
                                               "min_duration_s", "max_duration_s", "no_speech_threshold",
                                               "log_prob_threshold", "compression_ratio_threshold")}
        dataset = publish_dataset(home, run_id, name, version, str(out_dir), sizes, filter_spec, key, "audio")
        announce_dataset(home, run_id, dataset)
        wer = publish_wer_summary(home, run_id, name, key)
        counts = publish_outcomes(home, run_id, "transcribe", name)
        tallies = run_tallies_task(home, run_id)  # every attempt's, not only this one's
        remove_staging(home, run_id)
    report = write_report_page(home, f"{name}@{version}")
    return {"run_id": run_id, "home": home, "ingested": sum(counts.values()), "kept": counts.get("kept", 0),
            "new_samples": tallies["new_samples"], "outcomes": counts,
            "transcribed": sum(r["transcribed"] for r in results),
            "audio_s": sum(r["audio_s"] for r in results), "wer": wer, "dataset": dataset, "warnings": run.warnings,
            "report": report, **resolved}
