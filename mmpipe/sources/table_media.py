"""The media a table's rows name: inline bytes, local paths (confined to the allowed roots, capped in
size) and http(s) URLs (fetched); each row a sample or a sample with a drop reason."""

from __future__ import annotations

import stat
from pathlib import Path

import pyarrow as pa

from mmpipe.schema import batch_from_rows, content_sha256, drop, missing_sample_id, sample_id
from mmpipe.sources.fetch import fetch_all
from mmpipe.sources.table import TableColumns


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
