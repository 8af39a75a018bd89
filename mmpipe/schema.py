"""Sample ids, Arrow schemas and column names: the one source of truth for batches."""

from __future__ import annotations

import hashlib

import pyarrow as pa

IMAGE = "image"
AUDIO = "audio"

# Constants shared by stages, sources and export.
AUDIO_SAMPLE_RATE = 16_000  # what Whisper and the exported audio shards use
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit, the default pixel budget
SHARD_SPAN = 1 << 32  # ordinal = shard index * SHARD_SPAN + position in the shard

# The fixed vocabulary of `drop_reason`: a reason -> what it means. Ids, thresholds, statuses and
# formats go to the `detail` column, so `GROUP BY drop_reason` reads as a summary.
DROP_REASONS: dict[str, str] = {
    "empty_file": "the file or member has zero bytes",
    "missing_file": "a caption or table row names a file that is not there",
    "missing_media": "a WebDataset sample or table row with no image/audio member",
    "missing_caption": "an image with no caption",
    "caption_encoding": "the caption is not valid UTF-8 (detail: where)",
    "bad_metadata": "the sample's .json member or table row cannot be parsed (detail: the error)",
    "file_too_large": "the file or tar member exceeds the byte cap (detail: its size)",
    "read_error": "the file could not be read (detail: the OS error)",
    "not_a_file": "a tar member that is a link, device or fifo: never followed (detail: its kind)",
    "budget_exceeded": "reading it would pass the tar's or the run's decompressed-bytes budget (detail: which)",
    "unreadable_rows": "rows of a table that cannot be read, e.g. a corrupt Parquet row group (detail: the range)",
    "path_refused": "a local path outside the source's folder or the allowed roots (detail: the path)",
    "fetch_failed": "a URL could not be fetched (detail: http_404, timeout, too_large, connection, redirect_refused)",
    "download_failed": "img2dataset recorded a failed download for this row (detail: its error)",
    "unsupported_format": "bytes of a format we never decode (detail: what they look like)",
    "decode_error": "the decoder rejected the bytes (detail: its message)",
    "truncated": "the image or audio ends early",
    "decompression_bomb": "more pixels than the configured budget (detail: the size)",
    "no_audio_stream": "a container with no audio stream",
    "zero_length": "audio that decodes to no samples",
    "too_short": "audio shorter than the minimum duration",
    "too_long": "audio longer than the maximum duration",
    "caption_too_short": "fewer words or characters than the basic filter asks",
    "too_small": "the shorter image side is under the minimum",
    "aspect_ratio": "the image is more elongated than the maximum aspect ratio",
    "too_many_pixels": "the image has more pixels than the basic filter allows",
    "duplicate": "the same bytes as a kept sample, or the same pair met again (detail: the kept sample id or key)",
    "near_duplicate": "a perceptual-hash twin of a kept image (detail: the kept sample id and distance)",
    "semantic_duplicate": "a CLIP-embedding twin of a kept image with a higher CLIP score (detail: its id, cosine)",
    "clip_score_low": "CLIP score under the threshold (detail: score < threshold, and the rule)",
    "no_speech": "Whisper found no speech",
    "asr_repetition": "the transcript repeats itself (compression ratio above the threshold)",
    "asr_low_confidence": "the transcript's average log-probability is under the threshold",
}

# A batch as it flows through sources and stages. `content` holds the raw bytes and never
# reaches the warehouse; `meta` is the source's own metadata (a WebDataset sample's .json), carried
# into the exported shards; `keep`/`drop_reason`/`drop_stage` are cumulative over the stages run.
# `ordinal` is where the run met the row (shard index * SHARD_SPAN + position): first seen = lowest.
BATCH_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("ordinal", pa.int64()),
        ("modality", pa.string()),
        ("source", pa.string()),
        ("source_key", pa.string()),
        ("uri", pa.string()),
        ("content_sha256", pa.string()),
        ("text", pa.string()),
        ("content", pa.large_binary()),
        ("meta", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("phash", pa.int64()),
        ("duration_s", pa.float64()),
        ("sample_rate", pa.int32()),
        ("keep", pa.bool_()),
        ("drop_reason", pa.string()),
        ("drop_detail", pa.string()),
        ("drop_stage", pa.string()),
    ]
)

# Columns of the warehouse `samples` table that a batch supplies (the task adds first_run_id).
SAMPLE_COLUMNS = [
    "sample_id",
    "modality",
    "source",
    "source_key",
    "uri",
    "content_sha256",
    "text",
    "width",
    "height",
    "format",
    "duration_s",
    "sample_rate",
    "phash",
]

# Columns of the warehouse `decisions` table that a stage supplies (the task adds run_id).
DECISION_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("stage", pa.string()),
        ("stage_version", pa.string()),
        ("score", pa.float64()),
        ("keep", pa.bool_()),
        ("drop_reason", pa.string()),
        ("detail", pa.string()),
    ]
)

# Columns of the warehouse `occurrences` table: where a run met each sample (the task adds run_id).
OCCURRENCE_COLUMNS = ["ordinal", "sample_id", "source", "source_key", "uri"]


def content_sha256(content: bytes) -> str:
    """Hex sha256 of the raw bytes alone (exact-duplicate key)."""
    return hashlib.sha256(content).hexdigest()


def sample_id(content: bytes, text: str | None) -> str:
    """Hex sha256 over the bytes and the text: the same pair is the same sample anywhere."""
    h = hashlib.sha256()
    h.update(len(content).to_bytes(8, "little"))
    h.update(content)
    h.update((text or "").encode("utf-8"))
    return h.hexdigest()


def missing_sample_id(source_key: str, text: str | None) -> str:
    """Id for an entry whose bytes could not be read: derived from where it was seen."""
    return sample_id(b"missing:" + source_key.encode("utf-8"), text)


def check_batch(batch: pa.Table, schema: pa.Schema = BATCH_SCHEMA) -> None:
    """Raise ValueError unless `batch` carries every column of `schema` with its type."""
    missing = [f.name for f in schema if f.name not in batch.column_names]
    if missing:
        raise ValueError(f"batch lacks columns {missing}")
    wrong = [
        f"{f.name}: {batch.schema.field(f.name).type} != {f.type}"
        for f in schema
        if not batch.schema.field(f.name).type.equals(f.type)
    ]
    if wrong:
        raise ValueError(f"batch has wrong column types: {wrong}")


def batch_from_rows(rows: list[dict], shard_index: int = 0) -> pa.Table:
    """Build a BATCH_SCHEMA table from dicts; absent columns become null, ordinals follow row order."""
    for i, r in enumerate(rows):
        r.setdefault("ordinal", shard_index * SHARD_SPAN + i)
        if r.get("drop_reason") is not None and r["drop_reason"] not in DROP_REASONS:
            raise ValueError(f"drop reason {r['drop_reason']!r} is not in the vocabulary")
    return pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in BATCH_SCHEMA} for r in rows], schema=BATCH_SCHEMA
    )


def drop(row: dict, reason: str, detail: str | None = None, stage: str = "decode") -> dict:
    """Mark a source row as dropped before any stage ran (it never reaches a decoder)."""
    if reason not in DROP_REASONS:
        raise ValueError(f"drop reason {reason!r} is not in the vocabulary")
    row.update(keep=False, drop_reason=reason, drop_detail=detail, drop_stage=stage)
    return row


def _unit_hash(text: str) -> float:
    """A uniform number in [0, 1) from a string, the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") / 2**64


def split_of(sample_id: str, val_fraction: float = 0.1) -> str:
    """'val' or 'train', decided by a hash of the sample id alone, so a sample stays on its side
    in every dataset version that contains it."""
    return "val" if _unit_hash("mmpipe-split:" + sample_id) < val_fraction else "train"
