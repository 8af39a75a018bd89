"""The Warehouse facade over a DuckLake lake: keyed, atomic writes; pipeline reads; confined user SQL."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from warehouse.catalog import RETRYABLE, Catalog, catalog_for, commit_lock, connect, retrying, write_lock
from warehouse.guard import QueryError, ReadOnlyError, without_password
from warehouse.records import Records, utcnow
from warehouse import writes
from warehouse.writes import TableSpec

_SQL_DIR = Path(__file__).parent
SCHEMA_VERSION = "6"


TABLES: dict[str, TableSpec] = {
    "runs": TableSpec(("run_id",), "last"),
    "samples": TableSpec(("sample_id",), "first"),
    "occurrences": TableSpec(("run_id", "ordinal"), "first"),
    "decisions": TableSpec(("sample_id", "run_id", "stage"), "first"),
    "clip_scores": TableSpec(("sample_id", "model", "pretrained"), "first"),
    "clip_embeddings": TableSpec(("sample_id", "model", "pretrained"), "first"),
    "transcripts": TableSpec(("sample_id", "model", "compute_type", "options_key"), "first"),
    "datasets": TableSpec(("dataset_id",), "last"),
    "models": TableSpec(("model_id",), "last"),
    "evals": TableSpec(("model_id", "metric", "split", "run_id"), "last"),
    "train_steps": TableSpec(("model_id", "step", "metric"), "first"),
    "dataset_tags": TableSpec(("name", "tag"), "last"),
    "thumbnails": TableSpec(("sample_id", "run_id"), "first"),
}
VIEWS = ("outcomes", "run_summary")

# A table is compacted once it holds this many live data files: each MERGE reads every file of its
# table, so without it the cost of a write grows with the number of writes before it.
COMPACT_AT_FILES = 48
_connections: dict[tuple, duckdb.DuckDBPyConnection] = {}
_writes_since_check: dict[tuple, int] = {}
_columns: dict[tuple, list[tuple[str, str]]] = {}
_open_lock = threading.Lock()


_q = writes.q


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Warehouse(Records):
    """The mmpipe warehouse under `home` (DuckLake: <home>/lake/catalog.sqlite or PostgreSQL + lake/data)."""

    def __init__(self, home: str | os.PathLike, create: bool = True, catalog: str | None = None,
                 read_only: bool = False):
        """Open (or create) the warehouse; `read_only` opens an existing one without writing anything
        to the home (no lock file, no schema change), as the reading commands do."""
        self.home = Path(home).resolve()
        self.read_only = read_only
        if self.home.exists() and not self.home.is_dir():
            raise NotADirectoryError(f"the mmpipe home {self.home} is a file, not a folder")
        self.catalog: Catalog = catalog_for(self.home, catalog)
        if not self.catalog.exists():
            if not create or read_only:
                raise FileNotFoundError(f"no warehouse at {self.home}: run `mmpipe demo` or `mmpipe ingest` first")
            self.catalog.data_path.mkdir(parents=True, exist_ok=True)
        self._con = self._connection()
        if not self.catalog.exists():
            (self.catalog.lake / "catalog.json").write_text(json.dumps(
                {"kind": self.catalog.kind, "dsn": without_password(self.catalog.dsn)}, indent=1))

    # ---- connections -------------------------------------------------------------------
    def _connection(self) -> duckdb.DuckDBPyConnection:
        """One DuckDB per process and catalog (reads and writes use cursors of it)."""
        key = (os.getpid(), str(self.home), self.catalog.kind, self.catalog.dsn, self.read_only)
        with _open_lock:
            if key not in _connections and self.read_only:
                con = connect(self.catalog, read_only=True)
                got = con.execute("SELECT value FROM mmpipe_internal.meta WHERE key = 'schema_version'").fetchone()
                if not got or got[0] != SCHEMA_VERSION:
                    raise RuntimeError(f"the warehouse at {self.home} has schema version {got and got[0]}, this "
                                       f"mmpipe writes {SCHEMA_VERSION}: run a flow on it once to upgrade it")
                _connections[key] = con
            if key not in _connections:
                with write_lock(self.catalog):  # creating the catalog and its tables is one writer's job
                    con = retrying(lambda: connect(self.catalog))
                    self._ensure_schema(con)
                _connections[key] = con
            return _connections[key]

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = self._con.cursor()
        cur.execute("USE lake")
        return cur

    @staticmethod
    def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE SCHEMA IF NOT EXISTS mmpipe_internal")
        con.execute("CREATE TABLE IF NOT EXISTS mmpipe_internal.meta (key VARCHAR, value VARCHAR)")
        row = con.execute("SELECT value FROM mmpipe_internal.meta WHERE key = 'schema_version'").fetchone()
        if row and row[0] == SCHEMA_VERSION:
            return
        con.execute("BEGIN")
        for name in ("schema.sql", "views.sql"):
            for statement in con.extract_statements((_SQL_DIR / name).read_text()):
                con.execute(statement.query)
        con.execute("DELETE FROM mmpipe_internal.meta WHERE key = 'schema_version'")
        con.execute("INSERT INTO mmpipe_internal.meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        con.execute("COMMIT")

    def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, type) of a table's columns, in order."""
        key = (str(self.home), table)
        if key not in _columns:
            rows = self._cursor().execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = 'lake' "
                "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()
            _columns[key] = [(r[0], r[1]) for r in rows]
        return _columns[key]

    # ---- writes ------------------------------------------------------------------------
    def write(self, table: str, data: pa.Table, run_id: str | None = None) -> int:
        """Add rows atomically and idempotently; returns how many rows were new (or replaced)."""
        return self.write_many({table: data}).get(table, 0)

    def write_many(self, tables: dict[str, pa.Table], message: dict | None = None,
                   batch: str | None = None) -> dict[str, int]:
        """Write to several tables in ONE transaction: all rows become visible together or none do.

        Rows are cast to each table's schema and deduped on its key within the data. Without `batch`,
        they are MERGEd against what is stored (first-wins tables keep the stored row; last-wins tables
        replace it); a batch of one run reads only that run's partition. With `batch` (a key that starts
        with the run id, e.g. "<run>/prepare/12"), the rows are appended without reading the tables and
        the key goes in the ledger: a rerun of the batch adds nothing, and `samples` rows wait in the
        run's sightings until `settle(run_id)`. Writers lock only their own keys, so writers of other
        batches, runs or tables commit at the same time. `message` is recorded as the snapshot's commit
        info (time travel finds it). Returns rows added (or replaced) per table.
        """
        if self.read_only:
            raise PermissionError("this warehouse was opened read-only")
        prepared = [(t, self._prepare(t, d)) for t, d in tables.items() if d.num_rows]
        if not prepared:
            return {}
        run = batch.split("/", 1)[0] if batch else None
        if batch:
            keys = [f"batch:{batch}"]
        else:
            keys = [f"merge:{t}:{writes.run_scope(TABLES[t], d) or '*'}" for t, d in prepared]

        def body(cur: duckdb.DuckDBPyConnection) -> dict[str, int]:
            if batch and writes.batch_done(cur, run, batch):
                return {}
            counts = {}
            for table, data in prepared:
                if batch:
                    counts[table] = writes.append(cur, table, TABLES[table], self.columns(table), data, run)
                else:
                    counts[table] = writes.merge(cur, table, TABLES[table], self.columns(table), data)
            if batch:
                writes.record_batch_done(cur, run, batch, counts)
            if message is not None:
                cur.execute("CALL lake.set_commit_message('mmpipe', ?, extra_info => ?)",
                            [message.get("message", ""), json.dumps(message, default=str)])
            return counts

        counts = self.locked_transaction(body, keys)
        self._maybe_compact([t for t, _ in prepared])
        if batch and "samples" in counts:
            counts.pop("samples")  # sightings, not yet samples: settle() says how many are new
        return counts

    def settle(self, run_id: str) -> int:
        """Make a run's sightings `samples` rows (first sighting wins) and collapse rows the run wrote twice
        for a repeated sample; returns how many samples are new. Idempotent; one set-based pass per run."""
        if self.read_only:
            raise PermissionError("this warehouse was opened read-only")

        def body(cur: duckdb.DuckDBPyConnection) -> int:
            if not writes.pending_sightings(cur, run_id) and not self._repeats(cur, run_id):
                return 0
            return writes.settle(cur, run_id)

        return self.locked_transaction(body, ["merge:samples:*", f"merge:decisions:{run_id}",
                                              f"merge:thumbnails:{run_id}"])

    @staticmethod
    def _repeats(cur: duckdb.DuckDBPyConnection, run_id: str) -> bool:
        return cur.execute("SELECT count(*) > count(DISTINCT (sample_id, stage)) FROM decisions WHERE run_id = ?",
                           [run_id]).fetchone()[0]

    def _maybe_compact(self, tables: list[str]) -> None:
        """Merge a table's small files once there are many (checked every few writes of this process).

        Compaction commits like any writer (one compactor per table at a time); losing a race with a
        concurrent commit only postpones it to a later check.
        """
        for table in tables:
            key = (str(self.home), table)
            _writes_since_check[key] = _writes_since_check.get(key, 0) + 1
            if _writes_since_check[key] < COMPACT_AT_FILES // 4:
                continue
            _writes_since_check[key] = 0
            with write_lock(self.catalog, [f"compact:{table}"]):
                cur = self._cursor()
                try:
                    files = cur.execute("SELECT count(*) FROM ducklake_list_files('lake', ?)", [table]).fetchone()[0]
                    if files >= COMPACT_AT_FILES:
                        with commit_lock(self.catalog):
                            cur.execute(f"CALL ducklake_merge_adjacent_files('lake', {_lit(table)})")
                            # merged-away files go once no reader can still be on a snapshot that needs them
                            cur.execute("CALL ducklake_cleanup_old_files('lake', older_than => now() - "
                                        "INTERVAL 10 MINUTE)")
                except duckdb.Error as e:
                    if not any(s in str(e) for s in RETRYABLE):
                        raise
                finally:
                    cur.close()

    def _prepare(self, table: str, data: pa.Table) -> pa.Table:
        if table not in TABLES:
            raise KeyError(f"unknown warehouse table {table!r}; tables: {sorted(TABLES)}")
        names = {c for c, _ in self.columns(table)}
        extra = {"ordinal"} if table == "samples" else set()  # where a run met it: orders its sightings
        unknown = [c for c in data.column_names if c not in names | extra]
        if unknown:
            raise ValueError(f"table {table!r} has no columns {unknown}")
        missing = [k for k in TABLES[table].key if k not in data.column_names]
        if missing:
            raise ValueError(f"rows for {table!r} lack key columns {missing}")
        return data

    def delete_orphans(self) -> int:
        """Delete data files no snapshot references (left by a writer killed mid-commit); returns how many.

        Safe without a grace period because every writer writes inside the write lock held here.
        """
        if self.read_only:
            return 0
        with write_lock(self.catalog):
            cur = self._cursor()
            try:
                return len(cur.execute("SELECT * FROM ducklake_delete_orphaned_files('lake', cleanup_all => true)")
                           .fetchall())
            finally:
                cur.close()

    # ---- reads -------------------------------------------------------------------------
    def sql(self, query: str, params: list | None = None) -> pa.Table:
        """Run a query for the pipeline itself (it sees the latest committed snapshot) and return Arrow."""
        cur = self._cursor()
        try:
            return cur.execute(query, params or []).to_arrow_table()
        finally:
            cur.close()

    def stream(self, query: str, params: list | None = None, rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Run a pipeline query and yield its result in record batches (memory flat in the result's size)."""
        cur = self._cursor()
        try:
            reader = cur.execute(query, params or []).to_arrow_reader(rows)
            yield from reader
        finally:
            cur.close()

    def snapshot_of(self, dataset: str | None = None, version: str | None = None, run_id: str | None = None) -> int:
        """The snapshot that registered a dataset version, or that closed a run."""
        if dataset:
            where = ("json_extract_string(commit_extra_info, '$.dataset') = ? "
                     "AND json_extract_string(commit_extra_info, '$.version') = ?")
            args = [dataset, version]
        else:
            where = ("json_extract_string(commit_extra_info, '$.run_id') = ? "
                     "AND json_extract_string(commit_extra_info, '$.status') <> 'running'")
            args = [run_id]
        rows = self.sql(f"SELECT max(snapshot_id) AS s FROM lake.snapshots() WHERE {where}", args).to_pylist()
        if not rows or rows[0]["s"] is None:
            what = f"dataset {dataset}@{version}" if dataset else f"run {run_id}"
            raise LookupError(f"no snapshot of {what} in this warehouse")
        return int(rows[0]["s"])

    def query_readonly(self, query: str, params: list | None = None, snapshot: int | None = None,
                       limits=None, isolated: bool = False) -> pa.Table:
        """Run a user's query (warehouse.user_sql): one SELECT-like statement naming only the warehouse's
        tables and views, on a read-only attach (optionally at a snapshot), within time and memory
        limits; `isolated` runs it in a capped child process (what the commands do with user SQL)."""
        from warehouse.user_sql import run_isolated, run_query

        return (run_isolated if isolated else run_query)(self.catalog, query, params, snapshot, limits)

    def table_counts(self) -> dict[str, int]:
        """Row counts of every user-facing table."""
        return {t: self.sql(f"SELECT count(*) AS n FROM {_q(t)}").column("n")[0].as_py() for t in TABLES}

    def resolve(self, uri: str | None) -> str | None:
        """A path the warehouse stores relative to the home, as an absolute path (URLs and absolute paths as they are)."""
        if not uri or "://" in uri or os.path.isabs(uri):
            return uri
        return str(self.home / uri)

    def relative(self, path: str | os.PathLike) -> str:
        """A path under the home as stored in the warehouse (relative, so the home can move)."""
        p = Path(path).resolve()
        return str(p.relative_to(self.home)) if p.is_relative_to(self.home) else str(p)


__all__ = ["TABLES", "VIEWS", "QueryError", "ReadOnlyError", "Warehouse", "utcnow"]
