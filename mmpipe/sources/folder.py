"""Folder source: media files with captions from sidecar .txt files or a captions.jsonl/.csv."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from mmpipe.schema import batch_from_rows, content_sha256, missing_sample_id, sample_id

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


def read_manifest(path: Path) -> dict[str, str]:
    """Map relative file name -> caption from a captions.jsonl or captions.csv."""
    out: dict[str, str] = {}
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            records = []
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ManifestError(f"{path}:{n}: not valid JSON ({e.msg})") from e
    else:
        with path.open(encoding="utf-8", newline="") as f:
            records = list(enumerate(csv.DictReader(f), 2))
    for n, rec in records:
        if not isinstance(rec, dict):
            raise ManifestError(f"{path}:{n}: expected an object with a file and a caption")
        name = _pick(rec, FILE_KEYS)
        if name is None:
            raise ManifestError(f"{path}:{n}: no file column (one of {', '.join(FILE_KEYS)})")
        out[name] = _pick(rec, TEXT_KEYS) or ""
    return out


def scan_folder(root: str | Path, require_text: bool = True) -> list[Entry]:
    """Every candidate file under `root` paired with its caption, sorted by path.

    A file without a caption (when `require_text`; audio references are optional) and a manifest
    row without a file are kept as entries with a problem (`missing_caption`, `missing_file`),
    so nothing seen goes unaccounted.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    captions: dict[str, str] = {}
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
        if text is None:
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
            entries.append(Entry(key, str(root / key), text, "missing_file"))
    return entries


def read_entries(entries: list[Entry], source: str, modality: str = "image",
                 max_file_bytes: int = MAX_FILE_BYTES) -> pa.Table:
    """Read the bytes of each entry into a batch; unreadable entries arrive already dropped."""
    rows = []
    for e in entries:
        row = {"modality": modality, "source": source, "source_key": e.source_key, "uri": e.uri,
               "text": e.text, "keep": True}
        problem, content = e.problem, None
        if problem in (None, "missing_caption"):
            try:
                size = Path(e.uri).stat().st_size
                if size > max_file_bytes:
                    problem = "file_too_large"
                else:
                    content = Path(e.uri).read_bytes()
            except FileNotFoundError:
                problem = "missing_file"
            except OSError:
                problem = "read_error"
        if content is not None:
            row["content"] = content
            row["content_sha256"] = content_sha256(content)
            row["sample_id"] = sample_id(content, e.text)
        else:
            row["sample_id"] = missing_sample_id(e.source_key, e.text)
        if problem is not None:
            row.update(keep=False, drop_reason=problem, drop_stage="decode")
        rows.append(row)
    return batch_from_rows(rows)
