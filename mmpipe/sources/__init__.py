"""Sources: every kind yields batches of the same Arrow schema (mmpipe.schema.BATCH_SCHEMA).

A source is planned into shards (a tar, a slice of table rows, a slice of a folder), the unit
of work of the flows; `read_shard` turns one into a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from mmpipe.sources.fetch import FetchConfig
from mmpipe.sources.table import TableColumns

KINDS = ("folder", "webdataset", "table", "hf")


@dataclass(frozen=True)
class SourceSpec:
    """What to read: a path or pattern, its kind (detected when None) and column names."""

    path: str
    kind: str | None = None
    media_col: str | None = None
    text_col: str | None = None
    split: str | None = None
    shard_size: int = 512
    modality: str = "image"
    fetch: FetchConfig = field(default_factory=FetchConfig)

    def resolved_kind(self) -> str:
        return self.kind or detect_kind(self.path)


@dataclass(frozen=True)
class Shard:
    """One unit of work: a tar file, or rows [start, stop) of a table, dataset or folder listing."""

    index: int
    kind: str
    path: str
    start: int = 0
    stop: int = 0
    entries: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.path}:{self.start}-{self.stop}"


def detect_kind(path: str) -> str:
    """Guess the source kind from a path or pattern."""
    from mmpipe.sources.hf import is_hf_dataset_dir

    p = Path(path)
    lower = path.lower()
    if "{" in path and ".." in path or lower.endswith((".tar", ".tgz", ".tar.gz")):
        return "webdataset"
    if lower.endswith((".parquet", ".csv", ".jsonl", ".json")):
        return "table"
    if is_hf_dataset_dir(p):
        return "hf"
    if p.is_dir():
        if any(x.name.endswith((".tar", ".tgz", ".tar.gz")) for x in p.iterdir()):
            return "webdataset"
        return "folder"
    raise FileNotFoundError(f"source not found or of unknown kind: {path}")


def plan_shards(spec: SourceSpec) -> list[Shard]:
    """Split a source into shards, in a stable order (first seen = lowest shard, lowest row)."""
    kind = spec.resolved_kind()
    if kind == "webdataset":
        from mmpipe.sources.webdataset import expand_shards

        return [Shard(i, kind, p) for i, p in enumerate(expand_shards(spec.path))]
    if kind == "folder":
        from mmpipe.sources.folder import scan_folder

        entries = scan_folder(spec.path, require_text=spec.modality == "image")
        return [Shard(i, kind, spec.path, s, min(s + spec.shard_size, len(entries)),
                      tuple(entries[s: s + spec.shard_size]))
                for i, s in enumerate(range(0, len(entries), spec.shard_size))]
    n = _load_table(spec).num_rows
    return [Shard(i, kind, spec.path, s, min(s + spec.shard_size, n))
            for i, s in enumerate(range(0, n, spec.shard_size))]


def _load_table(spec: SourceSpec) -> pa.Table:
    if spec.resolved_kind() == "hf":
        from mmpipe.sources.hf import load_arrow

        return load_arrow(spec.path, spec.split)
    from mmpipe.sources.table import read_table_file

    return read_table_file(spec.path)


def read_shard(spec: SourceSpec, shard: Shard, source: str) -> tuple[pa.Table, str | None]:
    """One shard as a batch, and an error message if the shard itself broke off midway."""
    if shard.kind == "webdataset":
        from mmpipe.sources.webdataset import read_tar

        return read_tar(shard.path, source, spec.modality)
    if shard.kind == "folder":
        from mmpipe.sources.folder import read_entries

        return read_entries(list(shard.entries), source, spec.modality), None
    from mmpipe.sources.table import read_rows

    table = _load_table(spec)
    base = Path(spec.path).parent if shard.kind == "table" else Path(spec.path)
    cols = TableColumns(media=spec.media_col, text=spec.text_col, fetch=spec.fetch)
    prefix = f"{Path(spec.path).name}:" if shard.kind == "table" else f"{spec.split or 'train'}:"
    return read_rows(table, shard.start, shard.stop, base, source, cols, spec.modality, prefix), None
