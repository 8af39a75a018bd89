"""Tasks of the transcribe flow: a shard pass (decode, record, stage), then per shard: transcribe what
no run has transcribed with these options, filter, record, export the clips the run met there first.

Exact dedup runs over the whole run between the two (tasks.curate.dedup_run), so shards can be
transcribed in any order, or at once, with the result of transcribing them one after another.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.export import count_samples, export_shard
from mmpipe.report.previews import CLIPS_PER_RUN, CLIPS_PER_SHARD, audio_previews
from mmpipe.schema import AUDIO_SAMPLE_RATE, SHARD_SPAN
from mmpipe.sources import Shard, SourceSpec, read_shard
from mmpipe.stages.asr_quality import AsrQuality, AsrQualityConfig
from mmpipe.stages.audio_decode import AudioDecodeConfig, DecodeAudio, clip_of
from mmpipe.stages.dedup import Dedup
from mmpipe.stages.transcribe import TranscribeConfig, Transcriber, known_columns, transcript_rows
from tasks.curate import staging_dir
from tasks.record import decisions_table, record_batch
from warehouse import Warehouse
from warehouse.queries import dropped_ids, earlier_content, transcripts_of
from warehouse.report_queries import preview_count


@task(cache_policy=NO_CACHE, tags=["gpu"])
def ensure_whisper(config: TranscribeConfig) -> dict:
    """Load the Whisper model up front so a missing model fails before any work; returns device info."""
    t = Transcriber(config)
    t.setup()
    return {"device": t.config.device, "compute_type": t.config.compute_type, "options_key": t.config.options_key()}


def staged_audio_path(home: str, run_id: str, index: int) -> Path:
    """Where a run keeps shard `index`'s decodable clips (encoded bytes and metadata) between passes."""
    return staging_dir(home, run_id) / f"audio-{index:06d}.parquet"


@task(cache_policy=NO_CACHE, task_run_name="prepare-audio-{shard.index}")
def prepare_audio_shard(spec: SourceSpec, shard: Shard, run_id: str, home: str, name: str,
                        decode: AudioDecodeConfig) -> dict:
    """Read and decode one shard; record its samples, occurrences and decode decisions; stage the
    decodable clips."""
    out = staged_audio_path(home, run_id, shard.index)
    if out.exists():
        return {"shard": shard.index, "skipped": True, "error": None}
    batch, error = read_shard(spec, shard, name)
    decoder = DecodeAudio(decode)
    batch = decoder(batch)
    wh = Warehouse(home)
    previews = audio_previews(batch, run_id, min(CLIPS_PER_SHARD, CLIPS_PER_RUN - preview_count(wh, run_id)))
    written = record_batch(wh, batch, [decoder], run_id, f"prepare-audio/{shard.index}",
                           extra={"thumbnails": previews})
    staged = _stage(batch.drop_columns(["audio"]), out)
    return {"shard": shard.index, "skipped": False, "error": error, "read": batch.num_rows, "staged": staged,
            **written}


def _stage(batch: pa.Table, path: Path) -> int:
    """The still-kept rows, each sample once at its first ordinal, with the `.ids.parquet` sidecar that
    the run-wide dedup reads; the staged file is written last, as the mark of a prepared shard."""
    kept = batch.filter(pc.fill_null(batch["keep"], True)).sort_by("ordinal")
    first = set()
    rows = [i for i, sid in enumerate(kept["sample_id"].to_pylist()) if not (sid in first or first.add(sid))]
    kept = kept.take(pa.array(rows, pa.int64()))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(kept.select(["sample_id", "ordinal"]), path.with_suffix(".ids.parquet"))
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(kept, tmp)
    os.replace(tmp, path)
    return kept.num_rows


@task(cache_policy=NO_CACHE, tags=["gpu"], task_run_name="transcribe-shard-{index}")
def transcribe_staged_shard(home: str, run_id: str, index: int, staged: str, part: str, decode: AudioDecodeConfig,
                            config: TranscribeConfig, quality: AsrQualityConfig) -> dict:
    """The shard's clips that dedup kept and the run met here first: transcribe (nothing twice),
    quality-filter, record, export the kept ones."""
    if Path(part).exists():
        return {"shard": index, "skipped": True, "kept": count_samples(part), "transcribed": 0, "audio_s": 0.0}
    wh = Warehouse(home)
    transcriber = Transcriber(config)
    cfg = transcriber.config
    batch = pq.read_table(staged)
    dups = dropped_ids(wh, run_id, Dedup.name)
    batch = batch.filter(pa.array([s not in dups for s in batch["sample_id"].to_pylist()], pa.bool_()))
    shas = batch["content_sha256"].to_pylist()
    met_before = earlier_content(wh, run_id, index * SHARD_SPAN, [s for s in shas if s])
    # A survivor whose bytes the run met in an earlier shard is that shard's sample: handled there.
    batch = batch.filter(pa.array([s not in met_before for s in shas], pa.bool_()))
    if batch.num_rows == 0:
        export_shard([], part, "audio")
        return {"shard": index, "skipped": False, "kept": 0, "transcribed": 0, "audio_s": 0.0}
    batch = DecodeAudio(decode)(batch)  # staging keeps the encoded bytes, not the 16 kHz samples
    known = transcripts_of(wh, cfg.model, cfg.compute_type, cfg.options_key(), batch["sample_id"].to_pylist())
    batch = transcriber(known_columns(batch, known))
    rows = transcript_rows(batch, known, cfg, run_id)
    quality_stage = AsrQuality(quality)
    batch = quality_stage(batch)
    tables = {"decisions": decisions_table(batch, [quality_stage], run_id)}
    if rows:
        tables["transcripts"] = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "duration_s"} for r in rows])
    written = wh.write_many(tables, batch=f"{run_id}/transcribe/{index}")
    exported = [_record(batch, i, cfg) for i, keep in enumerate(batch["keep"].to_pylist()) if keep]
    export_shard(exported, part, "audio")
    return {"shard": index, "skipped": False, "kept": len(exported), "transcribed": len(rows),
            "audio_s": sum(r["duration_s"] or 0 for r in rows), "new_decisions": written.get("decisions", 0)}


def _record(batch: pa.Table, i: int, cfg: TranscribeConfig) -> dict:
    row = {c: batch[c][i].as_py() for c in ("sample_id", "source_key", "uri", "duration_s", "sample_rate",
                                            "asr_language", "asr_text", "text")}
    return {"sample_id": row["sample_id"], "audio": clip_of(batch, i), "text": row["asr_text"],
            "reference": row["text"], "language": row["asr_language"], "key": row["source_key"],
            "url": row["uri"] if str(row["uri"] or "").startswith(("http://", "https://")) else None,
            "duration_s": row["duration_s"], "original_sample_rate": row["sample_rate"], "sample_rate": AUDIO_SAMPLE_RATE,
            "whisper_model": cfg.model}
