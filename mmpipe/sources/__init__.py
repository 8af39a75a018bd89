"""Sources: every kind yields batches of the same Arrow schema (mmpipe.schema.BATCH_SCHEMA).

A source is planned into shards (a tar, row groups or a part of a table, a slice of a folder or
dataset), the unit of work of the flows; `read_shard` turns one into a batch. Each input is read
once: tables stream into parts while planning, Parquet and datasets are read by range.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from mmpipe.sources.budget import MAX_RUN_BYTES, MAX_TAR_BYTES, reset_run, tar_budget
from mmpipe.sources.fetch import FetchConfig
from mmpipe.sources.table import MAX_FILE_BYTES, TABLE_SUFFIXES, TableColumns
from mmpipe.sources.tars import MAX_MEMBER_BYTES, TAR_SUFFIXES

KINDS = ("folder", "webdataset", "table", "hf")


@dataclass(frozen=True)
class SourceSpec:
    """What to read: a path or pattern, its kind (detected when None), column names and limits."""

    path: str
    kind: str | None = None
    media_col: str | None = None
    text_col: str | None = None
    split: str | None = None
    shard_size: int = 512
    modality: str = "image"
    fetch: FetchConfig = field(default_factory=FetchConfig)
    max_file_bytes: int = MAX_FILE_BYTES
    max_member_bytes: int = MAX_MEMBER_BYTES
    allowed_roots: tuple[str, ...] = ()
    max_tar_bytes: int = MAX_TAR_BYTES
    max_run_bytes: int = MAX_RUN_BYTES

    def resolved_kind(self) -> str:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"unknown source kind {self.kind!r}; use one of {', '.join(KINDS)}")
        return self.kind or detect_kind(self.path)

    def columns(self) -> TableColumns:
        return TableColumns(self.media_col, self.text_col, self.fetch, self.max_file_bytes, self.allowed_roots)


@dataclass(frozen=True)
class Shard:
    """One unit of work. `path` is what to read (a tar, a Parquet file or part, a folder or dataset);
    rows [start, stop) of the original source; `entries` (folder) or `row_groups` (Parquet)."""

    index: int
    kind: str
    path: str
    start: int = 0
    stop: int = 0
    entries: tuple = ()
    row_groups: tuple[int, ...] = ()
    origin: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.origin or self.path}:{self.start}-{self.stop}"


def detect_kind(path: str) -> str:
    """Guess the source kind from a path or pattern."""
    from mmpipe.sources.hf import is_hf_dataset_dir

    p = Path(path)
    lower = path.lower()
    if "{" in path and ".." in path or lower.endswith(TAR_SUFFIXES):
        return "webdataset"
    if lower.endswith(TABLE_SUFFIXES):
        if not p.is_file():
            raise FileNotFoundError(f"source not found: {path}")
        return "table"
    if is_hf_dataset_dir(p):
        return "hf"
    if p.is_dir():
        if any(x.name.endswith(TAR_SUFFIXES) for x in p.iterdir()):
            return "webdataset"
        return "folder"
    if p.exists():
        raise ValueError(f"source of unknown kind: {path} (a folder, .tar/.tgz shards, .parquet/.csv/.jsonl, "
                         "or a datasets save_to_disk folder)")
    raise FileNotFoundError(f"source not found: {path}")


class EmptySource(ValueError):
    """A source that holds nothing to read (an empty folder or table)."""


def plan_shards(spec: SourceSpec, workdir: str | Path | None = None) -> list[Shard]:
    """Split a source into shards, in a stable order (first seen = lowest shard, lowest row).

    CSV and JSONL tables are streamed once into Parquet parts under `workdir` (a temporary
    folder when None); the flows pass a folder of the run, so a resumed run plans the same shards.
    A source with nothing in it is EmptySource: a run over it fails rather than make an empty version.
    """
    shards = _plan(spec, workdir)
    if not shards:
        raise EmptySource(f"the source {spec.path} holds no samples: nothing to curate, no version made")
    return shards


def _plan(spec: SourceSpec, workdir: str | Path | None) -> list[Shard]:
    kind = spec.resolved_kind()
    reset_run(spec)  # the run's decompressed-bytes budget starts here (per process under Dask)
    if kind == "webdataset":
        from mmpipe.sources.tars import expand_shards

        return [Shard(i, kind, p) for i, p in enumerate(expand_shards(spec.path, must_exist=True))]
    if kind == "folder":
        from mmpipe.sources.folder import scan_folder

        entries = scan_folder(spec.path, require_text=spec.modality == "image")
        return [Shard(i, kind, spec.path, s, min(s + spec.shard_size, len(entries)),
                      tuple(entries[s: s + spec.shard_size]))
                for i, s in enumerate(range(0, len(entries), spec.shard_size))]
    if kind == "hf":
        n = _hf_dataset(spec.path, spec.split).num_rows
        from mmpipe.sources.table import resolve_columns

        resolve_columns(_hf_dataset(spec.path, spec.split).column_names, spec.columns())
        return [Shard(i, kind, spec.path, s, min(s + spec.shard_size, n))
                for i, s in enumerate(range(0, n, spec.shard_size))]
    from mmpipe.sources.table import column_names, materialize, parquet_groups, resolve_columns

    resolve_columns(column_names(spec.path), spec.columns())
    if spec.path.lower().endswith(".parquet"):
        return [Shard(i, kind, spec.path, first, first + n, row_groups=groups, origin=spec.path)
                for i, (groups, first, n) in enumerate(parquet_groups(spec.path, spec.shard_size))]
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mmpipe-table-"))
    return [Shard(i, kind, part, first, first + n, origin=spec.path)
            for i, (part, first, n) in enumerate(materialize(spec.path, spec.columns(), spec.shard_size, workdir))]


@lru_cache(maxsize=4)
def _hf_dataset(path: str, split: str | None):
    from mmpipe.sources.hf import load_dataset_on_disk

    return load_dataset_on_disk(path, split)


def read_shard(spec: SourceSpec, shard: Shard, source: str) -> tuple[pa.Table, str | None]:
    """One shard as a batch, and an error message if the shard itself broke off midway."""
    if shard.kind == "webdataset":
        from mmpipe.sources.webdataset import tar_batch

        budget = tar_budget(Path(shard.path), spec, spec.max_tar_bytes, spec.max_run_bytes)
        return tar_batch(shard.path, source, spec.modality, shard.index, spec.max_member_bytes, budget)
    if shard.kind == "folder":
        from mmpipe.sources.folder import read_entries

        return read_entries(list(shard.entries), source, spec.modality, spec.max_file_bytes, shard.index), None
    from mmpipe.sources.table import read_parquet_rows, resolve_columns
    from mmpipe.sources.table_media import read_records

    cols = spec.columns()
    if shard.kind == "hf":
        ds = _hf_dataset(spec.path, spec.split)
        media, text = resolve_columns(ds.column_names, cols)
        part = ds.with_format("arrow")[shard.start:shard.stop]
        medias = part.column(media).to_pylist()
        texts = part.column(text).to_pylist() if text else [None] * len(medias)
        records = [{"_row": shard.start + i, "media": m, "text": None if t is None else str(t)}
                   for i, (m, t) in enumerate(zip(medias, texts))]
        return read_records(records, Path(spec.path), source, cols, spec.modality,
                            f"{spec.split or 'train'}:", shard.index), None
    origin = Path(shard.origin or spec.path)
    errors: list[str] = []
    if shard.row_groups:
        # a corrupt row group loses exactly its rows (recorded, with the range); the others are read
        records, errors = read_parquet_rows(shard.path, shard.row_groups, shard.start, cols)
    else:
        import pyarrow.parquet as pq

        records = pq.read_table(shard.path).to_pylist()
    batch = read_records(records, origin.parent, source, cols, spec.modality, f"{origin.name}:", shard.index)
    return batch, "; ".join(errors) or None


def _has_a_file(folder: Path) -> bool:
    """Whether a folder tree holds any file (stops at the first: cheap on a big folder)."""
    for _, _, files in os.walk(folder):
        if files:
            return True
    return False


def validate(spec: SourceSpec) -> str:
    """Check a source before any work starts (exists, known kind, needed columns); returns its kind."""
    kind = spec.resolved_kind()
    if kind == "webdataset":
        from mmpipe.sources.tars import expand_shards

        if not expand_shards(spec.path, must_exist=True):
            raise FileNotFoundError(f"no .tar/.tgz shards in {spec.path}")
    elif kind == "folder" and not Path(spec.path).is_dir():
        raise FileNotFoundError(f"not a folder: {spec.path}")
    elif kind == "folder" and not _has_a_file(Path(spec.path)):
        raise EmptySource(f"the folder {spec.path} holds no files: nothing to curate, no version made")
    elif kind == "table":
        from mmpipe.sources.table import column_names, resolve_columns

        resolve_columns(column_names(spec.path), spec.columns())
    elif kind == "hf":
        from mmpipe.sources.table import resolve_columns

        resolve_columns(_hf_dataset(spec.path, spec.split).column_names, spec.columns())
    return kind
