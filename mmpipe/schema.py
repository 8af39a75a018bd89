"""Sample ids, Arrow schemas and column names: the one source of truth for batches."""

from __future__ import annotations

import hashlib

import pyarrow as pa

IMAGE = "image"
AUDIO = "audio"

# A batch as it flows through sources and stages. `content` holds the raw bytes and never
# reaches the warehouse; `keep`/`drop_reason`/`drop_stage` are cumulative over the stages run.
BATCH_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("modality", pa.string()),
        ("source", pa.string()),
        ("source_key", pa.string()),
        ("uri", pa.string()),
        ("content_sha256", pa.string()),
        ("text", pa.string()),
        ("content", pa.large_binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("phash", pa.int64()),
        ("duration_s", pa.float64()),
        ("sample_rate", pa.int32()),
        ("keep", pa.bool_()),
        ("drop_reason", pa.string()),
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
    ]
)


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


def batch_from_rows(rows: list[dict]) -> pa.Table:
    """Build a BATCH_SCHEMA table from dicts; absent columns become null."""
    return pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in BATCH_SCHEMA} for r in rows], schema=BATCH_SCHEMA
    )
