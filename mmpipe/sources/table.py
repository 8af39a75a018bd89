"""Tables of paths or http(s) URLs with captions (Parquet, CSV, JSONL): img2dataset's input format.

Each table is read once, streaming: Parquet by row groups, CSV and JSONL record by record into
Parquet parts of one shard each (`materialize`). A row that cannot be parsed or decoded is kept
as a row with a drop reason, never a crash.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from mmpipe.schema import batch_from_rows, content_sha256, drop, missing_sample_id, sample_id
from mmpipe.sources.fetch import FetchConfig, fetch_all

MEDIA_COLUMNS = ("url", "image", "path", "file", "audio", "image_path")
TEXT_COLUMNS = ("caption", "text", "transcript", "TEXT")
TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
MAX_FILE_BYTES = 256 * 1024 * 1024
# Parts written by materialize(): the row number in the source, the two columns, and a problem.
PART_SCHEMA = pa.schema([("_row", pa.int64()), ("media", pa.string()), ("text", pa.string()),
                         ("_problem", pa.string()), ("_detail", pa.string())])


@dataclass(frozen=True)
class TableColumns:
    """Column names (None: the first of the usual names that exists), fetching and local-read limits."""

    media: str | None = None
    text: str | None = None
    fetch: FetchConfig = field(default_factory=FetchConfig)
    max_file_bytes: int = MAX_FILE_BYTES
    allowed_roots: tuple[str, ...] = ()


def _kind(path: Path) -> str:
    name = path.name.lower()
    for suffix in TABLE_SUFFIXES:
        if name.endswith(suffix):
            return "jsonl" if suffix == ".json" else suffix[1:]
    raise ValueError(f"unsupported table format: {path} (use .parquet, .csv or .jsonl)")


def _first_json_record(path: Path, look: int = 1000) -> dict:
    """The first parseable object among the first `look` lines (its keys name the columns)."""
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if n > look:
                break
            if line.strip():
                try:
                    rec = json.loads(line.decode("utf-8", "surrogateescape"))
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    return rec
    raise ValueError(f"{path}: no JSON object among its first {look} lines (expected one object per line)")


def _parquet(path: str | Path) -> pq.ParquetFile:
    """Open a Parquet file; one that cannot be read is a clear error naming it."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable Parquet file ({str(e).strip()[:200]})") from None


def column_names(path: str | Path) -> list[str]:
    """The table's column names, read from its header or first record only."""
    path = Path(path)
    kind = _kind(path)
    if kind == "parquet":
        return _parquet(path).schema_arrow.names
    if kind == "csv":
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            return next(csv.reader(f), [])
    return list(_first_json_record(path))


def resolve_columns(names: list[str], cols: TableColumns) -> tuple[str, str | None]:
    """The media and text column names to use; a clear error when absent."""
    media = cols.media or next((c for c in MEDIA_COLUMNS if c in names), None)
    if media is None or media not in names:
        raise ValueError(f"no media column {cols.media or MEDIA_COLUMNS} in table columns {names}; "
                         "name it with --url-col")
    if cols.text and cols.text not in names:
        raise ValueError(f"no caption column {cols.text!r} in table columns {names}")
    return media, cols.text or next((c for c in TEXT_COLUMNS if c in names), None)


def _text_of(value) -> tuple[str | None, str | None]:
    """(text, problem detail): bytes must be UTF-8, anything else becomes its string form."""
    if value is None:
        return None, None
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8"), None
        except UnicodeDecodeError as e:
            return None, f"byte {e.start}: {bytes(value)[max(0, e.start - 8):e.start + 8]!r}"
    if isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value):
        raw = value.encode("utf-8", "surrogateescape")
        return _text_of(raw)
    return str(value), None


def _records(path: Path, kind: str, media: str, text: str | None) -> Iterator[dict]:
    """(row, media value, text, problem, detail) of a CSV or JSONL file, one record at a time."""
    if kind == "csv":
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
            for row, rec in enumerate(csv.DictReader(f)):
                yield _record(row, rec.get(media), rec.get(text) if text else None)
        return
    with path.open("rb") as f:
        row = 0
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                # Which field is broken is unknown; parse what we can to keep the media reference.
                try:
                    rec = json.loads(line.decode("utf-8", "surrogateescape"))
                except ValueError:
                    rec = None
                out = _record(row, rec.get(media) if isinstance(rec, dict) else None, None)
                out.update(_problem="caption_encoding", _detail=f"line {n} is not UTF-8")
                yield out
                row += 1
                continue
            except ValueError as e:
                yield {"_row": row, "media": None, "text": None, "_problem": "bad_metadata",
                       "_detail": f"line {n}: {str(e)[:120]}"}
                row += 1
                continue
            if not isinstance(rec, dict):
                yield {"_row": row, "media": None, "text": None, "_problem": "bad_metadata",
                       "_detail": f"line {n}: not a JSON object"}
            else:
                yield _record(row, rec.get(media), rec.get(text) if text else None)
            row += 1


def _record(row: int, media_value, text_value) -> dict:
    out = {"_row": row, "media": None if media_value is None else str(media_value), "text": None,
           "_problem": None, "_detail": None}
    if isinstance(media_value, str) and any("\udc80" <= ch <= "\udcff" for ch in media_value):
        out.update(media=None, _problem="bad_metadata", _detail="the path or URL is not UTF-8")
    text, bad = _text_of(text_value)
    out["text"] = text
    if bad and out["_problem"] is None:
        out.update(_problem="caption_encoding", _detail=bad)
    return out


def materialize(path: str | Path, cols: TableColumns, shard_size: int, workdir: str | Path) -> list[tuple[str, int, int]]:
    """Stream a CSV/JSONL table once into Parquet parts of `shard_size` rows; [(part, first row, rows)]."""
    path, workdir = Path(path), Path(workdir)
    media, text = resolve_columns(column_names(path), cols)
    workdir.mkdir(parents=True, exist_ok=True)
    parts: list[tuple[str, int, int]] = []
    chunk: list[dict] = []

    def flush() -> None:
        part = workdir / f"part-{len(parts):06d}.parquet"
        tmp = part.with_name(part.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(chunk, schema=PART_SCHEMA), tmp)
        os.replace(tmp, part)
        parts.append((str(part), chunk[0]["_row"], len(chunk)))
        chunk.clear()

    for rec in _records(path, _kind(path), media, text):
        chunk.append(rec)
        if len(chunk) >= shard_size:
            flush()
    if chunk:
        flush()
    return parts


def parquet_groups(path: str | Path, shard_size: int) -> list[tuple[tuple[int, ...], int, int]]:
    """Row groups of a Parquet file packed into shards of about `shard_size` rows: [(groups, first row, rows)]."""
    meta = _parquet(path).metadata
    out, groups, first, n, row = [], [], 0, 0, 0
    for g in range(meta.num_row_groups):
        if not groups:
            first = row
        groups.append(g)
        k = meta.row_group(g).num_rows
        n += k
        row += k
        if n >= shard_size:
            out.append((tuple(groups), first, n))
            groups, n = [], 0
    if groups:
        out.append((tuple(groups), first, n))
    return out


def read_parquet_rows(path: str | Path, groups: tuple[int, ...], first_row: int, cols: TableColumns) -> list[dict]:
    """The records of some row groups of a Parquet source, in PART_SCHEMA's shape (media may be bytes)."""
    pf = _parquet(path)
    media, text = resolve_columns(pf.schema_arrow.names, cols)
    table = pf.read_row_groups(list(groups), columns=[c for c in (media, text) if c])  # may raise: see read_shard
    medias = table.column(media).to_pylist()
    texts = table.column(text).to_pylist() if text else [None] * len(medias)
    out = []
    for i, (m, t) in enumerate(zip(medias, texts)):
        value, bad = _text_of(t)
        out.append({"_row": first_row + i, "media": m, "text": value,
                    "_problem": "caption_encoding" if bad else None, "_detail": bad})
    return out


def _inline(value) -> tuple[bytes | None, str | None]:
    """(bytes, uri) for inline media: raw bytes or a {bytes, path} struct (HF Image/Audio)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), None
    if isinstance(value, dict):
        return (bytes(value["bytes"]) if value.get("bytes") else None), value.get("path")
    return None, None


def read_local(value: str, base_dir: Path, cols: TableColumns) -> tuple[bytes | None, str, str | None, str | None]:
    """(bytes, uri, reason, detail) of a local path named by a table row: confined and capped."""
    raw = value[len("file://"):] if value.startswith("file://") else value
    p = Path(raw) if Path(raw).is_absolute() else base_dir / raw
    roots = [Path(r).resolve() for r in (cols.allowed_roots or (str(base_dir),))]
    try:
        real = p.resolve()
    except (OSError, RuntimeError) as e:
        return None, str(p), "read_error", str(e)[:200]
    if not any(real == r or real.is_relative_to(r) for r in roots):
        return None, str(p), "path_refused", f"{raw} is outside {', '.join(map(str, roots))}"
    try:
        st = real.stat()
        if not stat.S_ISREG(st.st_mode):
            return None, str(p), "read_error", "not a regular file"
        if st.st_size > cols.max_file_bytes:
            return None, str(p), "file_too_large", f"{st.st_size} bytes > {cols.max_file_bytes}"
        with real.open("rb") as f:
            data = f.read(cols.max_file_bytes + 1)
    except FileNotFoundError:
        return None, str(p), "missing_file", None
    except OSError as e:
        return None, str(p), "read_error", str(e)[:200]
    if len(data) > cols.max_file_bytes:
        return None, str(p), "file_too_large", f"> {cols.max_file_bytes} bytes"
    return data, str(p), None, None


def read_records(records: list[dict], base_dir: Path, source: str, cols: TableColumns, modality: str,
                 key_prefix: str, shard_index: int) -> pa.Table:
    """Records as a batch: local paths read (confined, capped), URLs fetched, inline bytes taken."""
    n = len(records)
    contents: list[bytes | None] = [None] * n
    uris: list[str | None] = [None] * n
    problems: list[tuple[str, str | None] | None] = [None] * n
    urls = []
    for i, rec in enumerate(records):
        if rec.get("_problem") and rec["_problem"] != "caption_encoding":
            problems[i] = (rec["_problem"], rec.get("_detail"))
            continue
        content, uri = _inline(rec["media"])
        value = uri if content is None and uri is not None else rec["media"]
        if content is not None:
            contents[i], uris[i] = content, uri
        elif value is None or str(value).strip() == "":
            problems[i] = ("missing_media", None)
        elif str(value).startswith(("http://", "https://")):
            uris[i] = str(value)
            urls.append(i)
        else:
            contents[i], uris[i], reason, detail = read_local(str(value), base_dir, cols)
            problems[i] = (reason, detail) if reason else None
        if rec.get("_problem") == "caption_encoding" and problems[i] is None:
            problems[i] = ("caption_encoding", rec.get("_detail"))
    for i, (content, failure) in zip(urls, fetch_all([uris[i] for i in urls], cols.fetch)):
        contents[i] = content
        if failure:
            problems[i] = ("fetch_failed", failure)
    rows = []
    for i, rec in enumerate(records):
        text = rec.get("text")
        key = f"{key_prefix}{rec['_row']}"
        row = {"modality": modality, "source": source, "source_key": key, "uri": uris[i], "text": text, "keep": True}
        if contents[i] is not None and problems[i] is None:
            row.update(sample_id=sample_id(contents[i], text), content=contents[i],
                       content_sha256=content_sha256(contents[i]))
        else:
            row["sample_id"] = missing_sample_id(uris[i] or key, text)
        problem = problems[i] or (None if text is not None or modality != "image" else ("missing_caption", None))
        if problem:
            drop(row, *problem)
        rows.append(row)
    return batch_from_rows(rows, shard_index)
