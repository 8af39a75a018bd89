"""Transcribe audio into audio-text pairs: decode, Whisper, quality filters, WER, export."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.curate import finish_curation
from flows.fanout import on_a_worker, per_shard, read_shards
from flows.runners import run_name, task_runner
from mmpipe.curation import TranscribeRequest, transcription_result
from mmpipe.home import resolve_home
from mmpipe.models.whisper import DEFAULT_MODEL
from mmpipe.stages.asr_quality import AsrQualityConfig
from mmpipe.stages.audio_decode import AudioDecodeConfig
from mmpipe.stages.dedup import DedupConfig
from tasks.audio import ensure_whisper, prepare_audio_shard, staged_audio_path, transcribe_staged_shard
from tasks.curate import dedup_run, plan_source
from tasks.dataset import announce_dataset, choose_version, publish_dataset
from tasks.record import settle_samples
from tasks.report import publish_wer_summary
from tasks.report_page import write_report_page
from tasks.runs import tracked_run


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
    request = TranscribeRequest(source, name, kind, url_col, text_col, split, shard_size, whisper_model, device,
                                compute_type, batch_size, beam_size, task, language, vad, short_windows, multilingual,
                                min_duration_s, max_duration_s, no_speech_threshold, log_prob_threshold,
                                compression_ratio_threshold, allowed_roots, out)
    config, spec, decode = request.transcribe(), request.source_spec(), request.decode()
    resolved = on_a_worker(ensure_whisper, config)  # where the model will run
    with tracked_run(home, "transcribe", request.params()) as run:
        run_id = run.run_id
        shards = plan_source(spec, home, run_id)
        version = choose_version(home, name, run_id)
        out_dir = Path(out) if out else Path(home) / "datasets" / name / version
        read_shards(prepare_audio_shard, run, shards, f"Reading shards, run {run_id}", spec=spec, run_id=run_id,
                    home=home, name=name, decode=decode)
        staged = [str(staged_audio_path(home, run_id, s.index)) for s in shards]
        settle_samples(home, run_id)
        dedup_run(home, run_id, staged, DedupConfig(exact=True, hamming=None))
        results = per_shard(transcribe_staged_shard, f"Transcribing, run {run_id}",
                            {"index": [s.index for s in shards], "staged": staged,
                             "part": [str(out_dir / "parts" / f"shard-{s.index:06d}.tar") for s in shards]},
                            home=home, run_id=run_id, decode=decode, config=config, quality=request.quality())
        sizes = {f"shard-{r['shard']:06d}.tar": r["kept"] for r in results}
        key = {"model": whisper_model, "compute_type": resolved["compute_type"], "options_key": resolved["options_key"]}
        dataset = publish_dataset(home, run_id, name, version, str(out_dir), sizes, request.filter_spec(), key, "audio")
        announce_dataset(home, run_id, dataset)
        wer = publish_wer_summary(home, run_id, name, key)
        outcome = finish_curation(home, run, "transcribe", name)
    report = write_report_page(home, f"{name}@{version}")
    return transcription_result(outcome, results, wer, dataset, report, resolved)
