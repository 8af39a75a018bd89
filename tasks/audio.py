"""Tasks of the transcribe flow: decode, transcribe (nothing twice), filter, record and export a shard."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.evaluate.asr import wer_cer
from mmpipe.export import export_audio_shard
from mmpipe.sources import Shard, SourceSpec, read_shard
from mmpipe.stages.asr_quality import AsrQuality, AsrQualityConfig
from mmpipe.stages.audio_decode import AudioDecodeConfig, DecodeAudio
from mmpipe.stages.base import set_column
from mmpipe.stages.transcribe import TranscribeConfig, Transcriber
from tasks.record import record_batch
from warehouse import Warehouse
from warehouse.queries import transcripts_of

_transcribers: dict[tuple, Transcriber] = {}


def transcriber_for(config: TranscribeConfig) -> Transcriber:
    """One Transcriber (one loaded model) per process and config."""
    key = tuple(vars(config.resolved()).values())
    if key not in _transcribers:
        _transcribers[key] = Transcriber(config)
        _transcribers[key].setup()
    return _transcribers[key]


@task(cache_policy=NO_CACHE, tags=["gpu"])
def ensure_whisper(config: TranscribeConfig) -> dict:
    """Load the Whisper model up front so a missing model fails before any work; returns device info."""
    t = transcriber_for(config)
    return {"device": t.config.device, "compute_type": t.config.compute_type}


@task(cache_policy=NO_CACHE, tags=["gpu"], task_run_name="transcribe-shard-{shard.index}")
def transcribe_shard(spec: SourceSpec, shard: Shard, run_id: str, home: str, name: str, part: str,
                     decode: AudioDecodeConfig, config: TranscribeConfig, quality: AsrQualityConfig) -> dict:
    """Decode, transcribe what no run has transcribed with this model, filter, record, export kept clips."""
    if Path(part).exists():
        return {"shard": shard.index, "skipped": True, "transcribed": 0, "audio_s": 0.0}
    wh = Warehouse(home)
    batch, error = read_shard(spec, shard, name)
    decoder = DecodeAudio(decode)
    batch = decoder(batch)
    transcriber = transcriber_for(config)
    cfg = transcriber.config
    ids = [s for s in batch["sample_id"].to_pylist() if s in decoder.audio]
    known = transcripts_of(wh, config.model, cfg.compute_type, cfg.task, ids)
    todo = [s for s in ids if s not in known]
    refs = dict(zip(batch["sample_id"].to_pylist(), batch["text"].to_pylist()))
    rows = []
    for sid, r in zip(todo, transcriber.transcribe([decoder.audio[s] for s in todo])):
        w, c = wer_cer(refs.get(sid), r.get("text"))
        rows.append({"sample_id": sid, "model": config.model, "compute_type": cfg.compute_type, "task": cfg.task,
                     "language": r.get("language"), "language_probability": r.get("language_probability"),
                     "text": r.get("text", ""), "segments": json.dumps(r.get("segments", [])),
                     "avg_logprob": r.get("avg_logprob"), "no_speech_prob": r.get("no_speech_prob"),
                     "compression_ratio": r.get("compression_ratio"), "wer": w, "cer": c, "run_id": run_id})
    if rows:
        wh.write("transcripts", pa.Table.from_pylist(rows), run_id)
    known.update({r["sample_id"]: r for r in rows})
    sids = batch["sample_id"].to_pylist()
    for col, key, typ in (("asr_text", "text", pa.string()), ("asr_avg_logprob", "avg_logprob", pa.float64()),
                          ("asr_no_speech_prob", "no_speech_prob", pa.float64()),
                          ("asr_compression_ratio", "compression_ratio", pa.float64())):
        batch = set_column(batch, col, pa.array([(known.get(s) or {}).get(key) for s in sids], typ))
    quality_stage = AsrQuality(quality)
    batch = quality_stage(batch)
    written = record_batch(wh, batch, [decoder, quality_stage], run_id)
    kept = [s for s, k in zip(sids, batch["keep"].to_pylist()) if k]
    export_audio_shard([{"sample_id": s, "audio": decoder.audio[s], "text": known[s]["text"],
                         "reference": refs.get(s), "language": known[s]["language"], "wer": known[s]["wer"],
                         "whisper_model": config.model} for s in kept], part)
    return {"shard": shard.index, "skipped": False, "error": error, "read": batch.num_rows, "kept": len(kept),
            "transcribed": len(rows), "audio_s": float(sum(len(decoder.audio[s]) for s in todo) / 16000), **written}
