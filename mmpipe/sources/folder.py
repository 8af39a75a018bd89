"""Folder source: media files with captions from sidecar .txt files or a captions.jsonl/.csv."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from mmpipe.schema import batch_from_rows, content_sha256, drop, missing_sample_id, sample_id

MANIFESTS = ("captions.jsonl", "captions.csv")
# Files that describe samples rather than being samples.
_SIDECAR_SUFFIXES = {".txt", ".json", ".jsonl", ".csv", ".parquet", ".md", ".tmp"}
FILE_KEYS = ("file", "image", "path", "filename", "audio", "key")
TEXT_KEYS = ("caption", "text", "transcript")
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One candidate sample: where it lives, its text, and a problem found while scanning."""

    source_key: str
    uri: str
    text: str | None
    problem: str | None = None


class ManifestError(ValueError):
    """A captions manifest that cannot be parsed; names the file and line."""


def _pick(record: dict, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        if record.get(k) not in (None, ""):
            return str(record[k])
    return None


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, was UTF-8) of a manifest; a bad line is decoded with escapes, not fatal."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield n, raw.decode("utf-8"), True
            except UnicodeDecodeError:
                yield n, raw.decode("utf-8", "surrogateescape"), False


def read_manifest(path: Path) -> dict[str, str | None]:
    """Map relative file name -> caption (None when its bytes are not UTF-8) from a captions.jsonl or .csv."""
    out: dict[str, str | None] = {}
    records: list[tuple[int, object, bool]] = []
    if path.suffix == ".jsonl":
        for n, line, ok in _lines(path):
            if not line.strip():
                continue
            try:
                records.append((n, json.loads(line), ok))
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{n}: not valid JSON ({e.msg})") from e
    else:
        lines = list(_lines(path))
        bad = {n for n, _, ok in lines if not ok}
        reader = csv.DictReader(io.StringIO("".join(t for _, t, _ in lines), newline=""))
        records = [(reader.line_num, rec, reader.line_num not in bad) for rec in reader]
    for n, rec, ok in records:
        if not isinstance(rec, dict):
            raise ManifestError(f"{path}:{n}: expected an object with a file and a caption")
        name = _pick(rec, FILE_KEYS)
        if name is None:
            raise ManifestError(f"{path}:{n}: no file column (one of {', '.join(FILE_KEYS)})")
        text = _pick(rec, TEXT_KEYS) or ""
        out[name] = text if ok and not _escaped(text) else None
    return out


def _escaped(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def scan_folder(root: str | Path, require_text: bool = True) -> list[Entry]:
    """Every candidate file under `root` paired with its caption, sorted by path.

    A file without a caption (when `require_text`; audio references are optional) and a manifest
    row without a file are kept as entries with a problem (`missing_caption`, `missing_file`),
    so nothing seen goes unaccounted.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    captions: dict[str, str | None] = {}
    for manifest in sorted(p for name in MANIFESTS for p in root.rglob(name)):
        base = manifest.parent.relative_to(root)
        for name, text in read_manifest(manifest).items():
            captions[(base / name).as_posix()] = text
    entries: list[Entry] = []
    seen: set[str] = set()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in _SIDECAR_SUFFIXES or path.name in MANIFESTS:
            continue
        key = rel.as_posix()
        seen.add(key)
        text, problem = captions.get(key), None
        if key in captions and text is None:
            problem = "caption_encoding"
        elif text is None:
            sidecar = path.with_suffix(".txt")
            if sidecar.is_file():
                try:
                    text = sidecar.read_text(encoding="utf-8").strip()
                except UnicodeDecodeError:
                    problem = "caption_encoding"
        if text is None and problem is None and require_text:
            problem = "missing_caption"
        entries.append(Entry(key, str(path), text, problem))
    for key, text in sorted(captions.items()):
        if key not in seen:
            inside = _inside(root, str(root / key))
            entries.append(Entry(key, str(root / key), text, "missing_file" if inside else "path_refused"))
    # A manifest may name a path that climbs out of the folder: refuse it.
    return [e if e.problem or _inside(root, e.uri) else Entry(e.source_key, e.uri, e.text, "path_refused")
            for e in entries]


def _inside(root: Path, path: str) -> bool:
    try:
        return Path(path).resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        return False


def read_entries(entries: list[Entry], source: str, modality: str = "image",
                 max_file_bytes: int = MAX_FILE_BYTES, shard_index: int = 0) -> pa.Table:
    """Read the bytes of each entry into a batch; unreadable entries arrive already dropped."""
    rows = []
    for e in entries:
        row = {"modality": modality, "source": source, "source_key": e.source_key, "uri": e.uri,
               "text": e.text, "keep": True}
        problem, detail, content = e.problem, None, None
        if problem in (None, "missing_caption"):
            try:
                size = Path(e.uri).stat().st_size
                if size > max_file_bytes:
                    problem, detail = "file_too_large", f"{size} bytes > {max_file_bytes}"
                else:
                    with open(e.uri, "rb") as f:
                        content = f.read(max_file_bytes + 1)
                    if len(content) > max_file_bytes:
                        problem, detail, content = "file_too_large", f"> {max_file_bytes} bytes", None
            except FileNotFoundError:
                problem = "missing_file"
            except OSError as err:
                problem, detail = "read_error", str(err)[:200]
        if content is not None:
            row["content"] = content
            row["content_sha256"] = content_sha256(content)
            row["sample_id"] = sample_id(content, e.text)
        else:
            row["sample_id"] = missing_sample_id(e.source_key, e.text)
        if problem is not None:
            drop(row, problem, detail)
        rows.append(row)
    return batch_from_rows(rows, shard_index)
