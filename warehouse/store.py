"""The Warehouse facade: Parquet files on disk, a DuckDB catalog and query engine over them."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa

_SQL_DIR = Path(__file__).parent
DB_NAME = "warehouse.duckdb"


@dataclass(frozen=True)
class TableSpec:
    """How a table dedupes: rows sharing `key` collapse to the first or the last written."""

    key: tuple[str, ...]
    keep: str  # "first": a rewrite of a known key is skipped; "last": the newest row wins


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
}

# Statement types a user query may run: reads only.
_READ_TYPES = {"SELECT", "EXPLAIN"}

_thread_lock = threading.RLock()


class ReadOnlyError(ValueError):
    """A user query tried to write."""


class QueryError(ValueError):
    """DuckDB rejected a query; the message is DuckDB's own."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Warehouse:
    """DuckDB catalog over hive-partitioned Parquet under `home` (tables/<name>/run_id=<id>/)."""

    def __init__(self, home: str | os.PathLike, create: bool = True):
        self.home = Path(home).resolve()
        self.db_path = self.home / DB_NAME
        if not create and not self.db_path.exists():
            raise FileNotFoundError(f"no warehouse at {self.home}: run `mmpipe demo` or `mmpipe ingest` first")
        self.home.mkdir(parents=True, exist_ok=True)
        with self._writer() as con:
            con.execute((_SQL_DIR / "schema.sql").read_text())
            stored = con.execute("SELECT value FROM _meta WHERE key = 'home'").fetchone()
            if stored is None or stored[0] != str(self.home):
                con.execute("INSERT OR REPLACE INTO _meta VALUES ('home', ?)", [str(self.home)])
                self._rebuild_views(con)
            elif not self._views_exist(con):
                self._rebuild_views(con)

    # ---- connections -------------------------------------------------------------------
    @contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection held under a process and thread lock."""
        with _thread_lock, open(self.home / ".lock", "a") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            con = duckdb.connect(str(self.db_path))
            try:
                yield con
            finally:
                con.close()
                fcntl.flock(lockf, fcntl.LOCK_UN)

    @contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; waits while a writer holds the file."""
        with _thread_lock, open(self.home / ".lock", "a") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_SH)
            con = duckdb.connect(str(self.db_path), read_only=True)
            try:
                yield con
            finally:
                con.close()
                fcntl.flock(lockf, fcntl.LOCK_UN)

    # ---- views -------------------------------------------------------------------------
    def _views_exist(self, con: duckdb.DuckDBPyConnection) -> bool:
        names = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        return set(TABLES) | {"outcomes", "run_summary"} <= names

    def _rebuild_views(self, con: duckdb.DuckDBPyConnection, only: str | None = None) -> None:
        for name, spec in TABLES.items():
            if only is None or only == name:
                con.execute(self._view_sql(con, name, spec))
        con.execute((_SQL_DIR / "views.sql").read_text())

    def _view_sql(self, con: duckdb.DuckDBPyConnection, name: str, spec: TableSpec) -> str:
        files = [r[0] for r in con.execute(
            "SELECT path FROM _files WHERE table_name = ? ORDER BY written_at, path", [name]).fetchall()]
        cols = ", ".join(_q(c) for c in self.columns(con, name))
        if not files:
            return f"CREATE OR REPLACE VIEW {_q(name)} AS SELECT {cols} FROM _schema_{name}"
        paths = "[" + ", ".join(_lit(str(self.home / p)) for p in files) + "]"
        order = "ASC" if spec.keep == "first" else "DESC"
        part = ", ".join(_q(k) for k in spec.key)
        return (
            f"CREATE OR REPLACE VIEW {_q(name)} AS SELECT {cols} FROM ("
            f"SELECT * FROM _schema_{name} UNION ALL BY NAME "
            f"SELECT * FROM read_parquet({paths}, hive_partitioning = false, union_by_name = true)) "
            f"QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY _written_at {order}) = 1"
        )

    @staticmethod
    def columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
        """Column names of a table, in schema order."""
        rows = con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
            [f"_schema_{name}"]).fetchall()
        return [r[0] for r in rows]

    # ---- writes ------------------------------------------------------------------------
    def write(self, table: str, data: pa.Table, run_id: str | None = None) -> int:
        """Append rows atomically and idempotently; returns how many new rows were committed.

        Rows are cast to the table's schema, deduped on its key (within `data` and, for
        first-wins tables, against what is stored), written to a temp file, renamed into
        tables/<table>/run_id=<run_id>/, then registered; a failure at any step leaves
        nothing visible.
        """
        if table not in TABLES:
            raise KeyError(f"unknown warehouse table {table!r}; tables: {sorted(TABLES)}")
        if data.num_rows == 0:
            return 0
        spec = TABLES[table]
        with self._writer() as con:
            cols = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
                [f"_schema_{table}"]).fetchall()
            names = {c for c, _ in cols}
            unknown = [c for c in data.column_names if c not in names]
            if unknown:
                raise ValueError(f"table {table!r} has no columns {unknown}")
            missing_key = [k for k in spec.key if k not in data.column_names]
            if missing_key:
                raise ValueError(f"rows for {table!r} lack key columns {missing_key}")
            data = data.append_column("_ord", pa.array(range(data.num_rows), pa.int64()))
            con.register("_incoming", data)
            select = ", ".join(
                f"CAST({_q(c) if c in data.column_names else 'NULL'} AS {t}) AS {_q(c)}" for c, t in cols)
            part = ", ".join(_q(k) for k in spec.key)
            where = ""
            if spec.keep == "first":
                on = " AND ".join(f"s.{_q(k)} IS NOT DISTINCT FROM i.{_q(k)}" for k in spec.key)
                where = f"WHERE NOT EXISTS (SELECT 1 FROM {_q(table)} s WHERE {on})"
            query = (
                f"SELECT {select}, now()::TIMESTAMP AS _written_at FROM _incoming i {where} "
                f"QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY i._ord) = 1"
            )
            rel_dir = Path("tables") / table / f"run_id={run_id or 'none'}"
            (self.home / rel_dir).mkdir(parents=True, exist_ok=True)
            final = rel_dir / f"part-{uuid.uuid4().hex}.parquet"
            tmp = self.home / f"{final}.tmp"
            try:
                con.execute(f"CREATE TEMP TABLE _new AS {query}")
                n = con.execute("SELECT count(*) FROM _new").fetchone()[0]
                if n == 0:
                    return 0
                con.execute(f"COPY _new TO {_lit(str(tmp))} (FORMAT parquet)")
                os.replace(tmp, self.home / final)
                try:
                    con.execute("BEGIN")
                    con.execute("INSERT INTO _files VALUES (?, ?, ?, ?, now()::TIMESTAMP)",
                                [table, str(final), run_id, n])
                    con.execute(self._view_sql(con, table, spec))
                    con.execute("COMMIT")
                except Exception:
                    con.execute("ROLLBACK")
                    (self.home / final).unlink(missing_ok=True)
                    raise
            finally:
                tmp.unlink(missing_ok=True)
            return int(n)

    def register_dataset(self, row: dict[str, Any], run_id: str | None = None) -> None:
        """Record a curated dataset version (one row of `datasets`)."""
        self.write("datasets", _row_table(row), run_id)

    def register_model(self, row: dict[str, Any], run_id: str | None = None) -> None:
        """Record a trained model (one row of `models`)."""
        self.write("models", _row_table(row), run_id)

    def record_eval(self, rows: list[dict[str, Any]], run_id: str | None = None) -> None:
        """Record evaluation metrics (rows of `evals`)."""
        self.write("evals", pa.Table.from_pylist([_jsonable(r) for r in rows]), run_id)

    def record_run(self, run_id: str, flow: str, status: str, params: dict | None = None,
                   flow_run_id: str | None = None, code_version: str | None = None,
                   started_at: datetime | None = None, warnings: list | None = None) -> None:
        """Insert or update a row of `runs` (the newest status wins)."""
        now = utcnow()
        prev = self.sql("SELECT started_at, params, flow_run_id, code_version, warnings FROM runs WHERE run_id = ?",
                        [run_id]).to_pylist()
        old = prev[0] if prev else {}
        row = {
            "run_id": run_id, "flow": flow, "status": status,
            "flow_run_id": flow_run_id or old.get("flow_run_id"),
            "params": json.dumps(params, sort_keys=True, default=str) if params is not None else old.get("params"),
            "code_version": code_version or old.get("code_version"),
            "started_at": started_at or old.get("started_at") or now,
            "finished_at": now if status != "running" else None,
            "warnings": json.dumps(warnings) if warnings is not None else old.get("warnings"),
        }
        self.write("runs", _row_table(row), run_id)

    # ---- reads -------------------------------------------------------------------------
    def sql(self, query: str, params: list | None = None) -> pa.Table:
        """Run a query for the pipeline itself and return Arrow."""
        with self._writer() as con:
            return con.execute(query, params or []).to_arrow_table()

    def query_readonly(self, query: str, params: list | None = None) -> pa.Table:
        """Run a user's query on a read-only connection; writes raise ReadOnlyError."""
        with self._reader() as con:
            try:
                return self._run_readonly(con, query, params)
            except duckdb.Error as e:
                raise QueryError(str(e)) from None

    @staticmethod
    def _run_readonly(con: duckdb.DuckDBPyConnection, query: str, params: list | None) -> pa.Table:
        statements = con.extract_statements(query)
        if not statements:
            raise QueryError("empty query")
        for st in statements:
            kind = st.type.name
            if kind not in _READ_TYPES:
                raise ReadOnlyError(
                    f"refused: `mmpipe sql` runs read-only queries (SELECT, WITH, DESCRIBE, EXPLAIN); "
                    f"got a {kind} statement. The warehouse is changed by flows only.")
        for st in statements[:-1]:
            con.execute(st.query)
        return con.execute(statements[-1].query, params or []).to_arrow_table()

    def table_counts(self) -> dict[str, int]:
        """Row counts of every user-facing table."""
        with self._reader() as con:
            return {t: con.execute(f"SELECT count(*) FROM {_q(t)}").fetchone()[0] for t in TABLES}


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for k, v in row.items()}


def _row_table(row: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([_jsonable(row)])


def utcnow() -> datetime:
    """Naive UTC now, as stored in TIMESTAMP columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)

