"""Tables of paths or http(s) URLs with captions (Parquet, CSV, JSONL): img2dataset's input format.

Each table is read once, streaming: Parquet by row groups, CSV and JSONL record by record into
Parquet parts of one shard each (`materialize`). A row that cannot be parsed or decoded is kept
as a row with a drop reason, never a crash.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from mmpipe.sources.fetch import FetchConfig

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
        for n, line in enumerate(_bounded_lines(f), 1):
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
            return next(csv.reader(_bounded_lines(f)), [])
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


MAX_LINE_BYTES = 16 * 1024 * 1024  # one CSV/JSONL line (a row's caption and path): more is not a row
_OVERLONG = "\x00mmpipe-overlong-line"


def _bounded_lines(f, limit: int | None = None):
    """A file's lines, each read at most `limit` (MAX_LINE_BYTES) long: a longer one is skipped in
    chunks and stands as a marker line, so one endless line cannot fill memory."""
    limit = limit or MAX_LINE_BYTES
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith("\n" if isinstance(line, str) else b"\n"):
            while (more := f.readline(limit)) and not more.endswith("\n" if isinstance(more, str) else b"\n"):
                pass
            line = _OVERLONG + "\n" if isinstance(line, str) else _OVERLONG.encode() + b"\n"
        yield line


def _overlong(row: int, where: str) -> dict:
    return {"_row": row, "media": None, "text": None, "_problem": "bad_metadata",
            "_detail": f"{where} is longer than {MAX_LINE_BYTES} bytes"}


def _csv_records(path: Path, media: str, text: str | None) -> Iterator[dict]:
    csv.field_size_limit(MAX_LINE_BYTES)
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(_bounded_lines(f))
        row = 0
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # a field over the limit: this row is lost, the reader goes on
                yield {"_row": row, "media": None, "text": None, "_problem": "bad_metadata",
                       "_detail": f"line {reader.line_num}: {e}"}
            else:
                if _OVERLONG in (next(iter(rec.values()), None) or ""):
                    yield _overlong(row, f"line {reader.line_num}")
                else:
                    yield _record(row, rec.get(media), rec.get(text) if text else None)
            row += 1


def _records(path: Path, kind: str, media: str, text: str | None) -> Iterator[dict]:
    """(row, media value, text, problem, detail) of a CSV or JSONL file, one record at a time."""
    if kind == "csv":
        yield from _csv_records(path, media, text)
        return
    with path.open("rb") as f:
        row = 0
        for n, line in enumerate(_bounded_lines(f), 1):
            if not line.strip():
                continue
            if line.startswith(_OVERLONG.encode()):
                yield _overlong(row, f"line {n}")
                row += 1
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


MAX_ROW_GROUP_BYTES = 2 * 1024**3  # a row group's uncompressed size (its footer says) read in one go


def _lost_rows(first: int, n: int, detail: str) -> list[dict]:
    """Placeholder records for rows that cannot be read: each an occurrence dropped with the range."""
    return [{"_row": first + i, "media": None, "text": None, "_problem": "unreadable_rows", "_detail": detail}
            for i in range(min(n, 1_000_000))]


def read_parquet_rows(path: str | Path, groups: tuple[int, ...], first_row: int, cols: TableColumns
                      ) -> tuple[list[dict], list[str]]:
    """The records of some row groups of a Parquet source, in PART_SCHEMA's shape (media may be bytes),
    and what could not be read: a corrupt (or oversized) row group is a loss of exactly its rows, each
    recorded as `unreadable_rows` with the range; the other row groups are read."""
    pf = _parquet(path)
    media, text = resolve_columns(pf.schema_arrow.names, cols)
    out: list[dict] = []
    errors: list[str] = []
    row = first_row
    for g in groups:
        meta = pf.metadata.row_group(g)
        span = f"rows {row}-{row + meta.num_rows - 1} of {Path(path).name} (row group {g})"
        try:
            if meta.total_byte_size > MAX_ROW_GROUP_BYTES:
                raise ValueError(f"{meta.total_byte_size} bytes uncompressed > {MAX_ROW_GROUP_BYTES}")
            table = pf.read_row_group(g, columns=[c for c in (media, text) if c])
        except (pa.ArrowException, OSError, ValueError) as e:
            detail = f"{span}: {type(e).__name__}: {' '.join(str(e).split())[:160]}"
            out.extend(_lost_rows(row, meta.num_rows, detail))
            errors.append(f"{span} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
                          "those rows are recorded as unreadable_rows")
            row += meta.num_rows
            continue
        medias = table.column(media).to_pylist()
        texts = table.column(text).to_pylist() if text else [None] * len(medias)
        for m, t in zip(medias, texts):
            value, bad = _text_of(t)
            out.append({"_row": row, "media": m, "text": value,
                        "_problem": "caption_encoding" if bad else None, "_detail": bad})
            row += 1
    return out, errors
