"""Tasks of the transcribe flow: decode, dedup, transcribe (nothing twice), filter, record and export a shard."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.export import count_samples, export_shard
from mmpipe.schema import SHARD_SPAN
from mmpipe.sources import Shard, SourceSpec, read_shard
from mmpipe.stages.asr_quality import AsrQuality, AsrQualityConfig
from mmpipe.stages.audio_decode import AudioDecodeConfig, DecodeAudio, clip_of
from mmpipe.stages.dedup import Dedup, DedupConfig
from mmpipe.stages.transcribe import TranscribeConfig, Transcriber, known_columns, transcript_rows
from tasks.record import record_batch
from warehouse import Warehouse
from warehouse.queries import earlier_content, transcripts_of


@task(cache_policy=NO_CACHE, tags=["gpu"])
def ensure_whisper(config: TranscribeConfig) -> dict:
    """Load the Whisper model up front so a missing model fails before any work; returns device info."""
    t = Transcriber(config)
    t.setup()
    return {"device": t.config.device, "compute_type": t.config.compute_type, "options_key": t.config.options_key()}


@task(cache_policy=NO_CACHE, tags=["gpu"], task_run_name="transcribe-shard-{shard.index}")
def transcribe_shard(spec: SourceSpec, shard: Shard, run_id: str, home: str, name: str, part: str,
                     decode: AudioDecodeConfig, config: TranscribeConfig, quality: AsrQualityConfig) -> dict:
    """Decode, drop copies of earlier clips, transcribe what no run has transcribed with these options,
    filter, record, export the kept clips this run meets here first."""
    if Path(part).exists():
        return {"shard": shard.index, "skipped": True, "kept": count_samples(part), "transcribed": 0, "audio_s": 0.0}
    wh = Warehouse(home)
    transcriber = Transcriber(config)
    cfg = transcriber.config
    batch, error = read_shard(spec, shard, name)
    decoder = DecodeAudio(decode)
    batch = decoder(batch)
    shas = [s for s in batch["content_sha256"].to_pylist() if s]
    prior = earlier_content(wh, run_id, shard.index * SHARD_SPAN, shas)
    dedup = Dedup(DedupConfig(exact=True, hamming=None), prior)
    batch = dedup(batch)
    known = transcripts_of(wh, cfg.model, cfg.compute_type, cfg.options_key(), batch["sample_id"].to_pylist())
    batch = transcriber(known_columns(batch, known))
    rows = transcript_rows(batch, known, cfg, run_id)
    quality_stage = AsrQuality(quality)
    batch = quality_stage(batch)
    transcripts = {"transcripts": pa.Table.from_pylist([{k: v for k, v in r.items() if k != "duration_s"}
                                                         for r in rows])} if rows else {}
    written = record_batch(wh, batch, [decoder, dedup, quality_stage], run_id, transcripts)
    exported, seen = [], set(prior.values())
    for i, (sid, keep) in enumerate(zip(batch["sample_id"].to_pylist(), batch["keep"].to_pylist())):
        if keep and sid not in seen:  # a clip met again is exported once, where the run met it first
            seen.add(sid)
            exported.append(_record(batch, i, cfg))
    export_shard(exported, part, "audio")
    return {"shard": shard.index, "skipped": False, "error": error, "read": batch.num_rows, "kept": len(exported),
            "transcribed": len(rows), "audio_s": sum(r["duration_s"] or 0 for r in rows), **written}


def _record(batch: pa.Table, i: int, cfg: TranscribeConfig) -> dict:
    row = {c: batch[c][i].as_py() for c in ("sample_id", "source_key", "uri", "duration_s", "sample_rate",
                                            "asr_language", "asr_text", "text")}
    return {"sample_id": row["sample_id"], "audio": clip_of(batch, i), "text": row["asr_text"],
            "reference": row["text"], "language": row["asr_language"], "key": row["source_key"],
            "url": row["uri"] if str(row["uri"] or "").startswith(("http://", "https://")) else None,
            "duration_s": row["duration_s"], "original_sample_rate": row["sample_rate"], "sample_rate": 16000,
            "whisper_model": cfg.model}
