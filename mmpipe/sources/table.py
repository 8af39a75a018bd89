"""Tables of paths or http(s) URLs with captions (Parquet, CSV, JSONL): img2dataset's input format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from mmpipe.schema import batch_from_rows, content_sha256, missing_sample_id, sample_id
from mmpipe.sources.fetch import FetchConfig, fetch_all

MEDIA_COLUMNS = ("url", "image", "path", "file", "audio", "image_path")
TEXT_COLUMNS = ("caption", "text", "transcript", "TEXT")


@dataclass
class TableColumns:
    """Column names; None means: the first of the usual names that exists."""

    media: str | None = None
    text: str | None = None
    fetch: FetchConfig = field(default_factory=FetchConfig)


def read_table_file(path: str | Path) -> pa.Table:
    """A Parquet, CSV or JSONL file as Arrow."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if name.endswith(".csv"):
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path)
    if name.endswith((".jsonl", ".json")):
        import pyarrow.json as pajson

        return pajson.read_json(path)
    raise ValueError(f"unsupported table format: {path} (use .parquet, .csv or .jsonl)")


def resolve_columns(table: pa.Table, cols: TableColumns) -> tuple[str, str | None]:
    """The media and text column names to use; a clear error when absent."""
    names = table.column_names
    media = cols.media or next((c for c in MEDIA_COLUMNS if c in names), None)
    if media is None or media not in names:
        raise ValueError(f"no media column {cols.media or MEDIA_COLUMNS} in table columns {names}; "
                         "name it with --url-col")
    text = cols.text or next((c for c in TEXT_COLUMNS if c in names), None)
    if cols.text and cols.text not in names:
        raise ValueError(f"no caption column {cols.text!r} in table columns {names}")
    return media, text


def _content_of(value) -> tuple[bytes | None, str | None, str | None]:
    """(bytes, uri, problem) for inline media: raw bytes or a {bytes, path} struct (HF Image)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), None, None
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"]), value.get("path"), None
        return None, value.get("path"), None
    return None, None, None


def read_rows(table: pa.Table, start: int, stop: int, base_dir: Path, source: str, cols: TableColumns,
              modality: str = "image", key_prefix: str = "") -> pa.Table:
    """Rows [start, stop) of a table as a batch: local paths read, URLs fetched, inline bytes taken."""
    media_col, text_col = resolve_columns(table, cols)
    part = table.slice(start, stop - start)
    values = part.column(media_col).to_pylist()
    texts = part.column(text_col).to_pylist() if text_col else [None] * len(values)
    contents: list[bytes | None] = [None] * len(values)
    uris: list[str | None] = [None] * len(values)
    problems: list[str | None] = [None] * len(values)
    urls = []
    for i, v in enumerate(values):
        content, uri, _ = _content_of(v)
        if content is not None:
            contents[i], uris[i] = content, uri
            continue
        v = uri if uri is not None else v
        if v is None or str(v).strip() == "":
            problems[i] = "missing_media"
        elif str(v).startswith(("http://", "https://")):
            uris[i] = str(v)
            urls.append(i)
        else:
            p = Path(str(v)) if Path(str(v)).is_absolute() else base_dir / str(v)
            uris[i] = str(p)
            try:
                contents[i] = p.read_bytes()
            except FileNotFoundError:
                problems[i] = "missing_file"
            except OSError:
                problems[i] = "read_error"
    for i, (content, reason) in zip(urls, fetch_all([uris[i] for i in urls], cols.fetch)):
        contents[i], problems[i] = content, reason
    rows = []
    for i in range(len(values)):
        text = None if texts[i] is None else str(texts[i])
        key = f"{key_prefix}{start + i}"
        row = {"modality": modality, "source": source, "source_key": key, "uri": uris[i], "text": text,
               "keep": True}
        if contents[i] is not None:
            row.update(sample_id=sample_id(contents[i], text), content=contents[i],
                       content_sha256=content_sha256(contents[i]))
        else:
            row["sample_id"] = missing_sample_id(uris[i] or key, text)
        problem = problems[i] or (None if text is not None or modality != "image" else "missing_caption")
        if problem:
            row.update(keep=False, drop_reason=problem, drop_stage="decode")
        rows.append(row)
    return batch_from_rows(rows)
