"""How rows get into the lake: keyed MERGEs scoped to what they can collide with, ledgered appends of a
run's batches, and the per-run settle that turns a run's sightings into first-sighting `samples` rows.

A shard's batch is an append: its key check is the ledger row of its batch key (one run's partition of
`mmpipe_internal.batches`), so its cost does not depend on how much the lake holds. Keys that are global
(a sample met in two runs) are reconciled once per run, set-based, by `settle`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import pyarrow as pa

SIGHTINGS = "mmpipe_internal.sightings"
LEDGER = "mmpipe_internal.batches"


@dataclass(frozen=True)
class TableSpec:
    """How a table dedupes: rows sharing `key` collapse to the first or the last written."""

    key: tuple[str, ...]
    keep: str  # "first": a rewrite of a known key is skipped; "last": the newest row wins


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_scope(spec: TableSpec, data: pa.Table) -> str | None:
    """The one run id a keyed batch's rows share, when run_id is part of the key (else None)."""
    if "run_id" not in spec.key or "run_id" not in data.column_names:
        return None
    runs = data.column("run_id").unique().to_pylist()
    return runs[0] if len(runs) == 1 and runs[0] is not None else None


def _stage_rows(cur: duckdb.DuckDBPyConnection, spec: TableSpec, cols: list[tuple[str, str]],
                data: pa.Table) -> None:
    """The batch as temp table `_in`: cast to the table's columns, deduped on the key within itself."""
    cur.register("_incoming", data.append_column("_ord", pa.array(range(data.num_rows), pa.int64())))
    select = ", ".join(f"CAST({q(c) if c in data.column_names else 'NULL'} AS {t}) AS {q(c)}" for c, t in cols)
    part = ", ".join(q(k) for k in spec.key)
    order = "ASC" if spec.keep == "first" else "DESC"
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _in AS SELECT {select} FROM _incoming "
                f"QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY _ord {order}) = 1")
    cur.unregister("_incoming")


def merge(cur: duckdb.DuckDBPyConnection, table: str, spec: TableSpec, cols: list[tuple[str, str]],
          data: pa.Table) -> int:
    """MERGE the batch on its key; a batch of one run reads only that run's partition of the table."""
    _stage_rows(cur, spec, cols, data)
    on = " AND ".join(f"t.{q(k)} IS NOT DISTINCT FROM s.{q(k)}" for k in spec.key)
    scope = run_scope(spec, data)
    if scope is not None:  # pushed into the scan: files of other runs are never opened
        on += f" AND t.run_id = {_lit(scope)}"
    when = "WHEN NOT MATCHED THEN INSERT *"
    if spec.keep == "last":
        when = "WHEN MATCHED THEN UPDATE SET * " + when
    got = cur.execute(f"MERGE INTO lake.main.{q(table)} t USING temp.main._in s ON ({on}) {when}").fetchone()
    return int(got[0]) if got else 0


def batch_done(cur: duckdb.DuckDBPyConnection, run_id: str, batch: str) -> bool:
    """Whether a batch with this key was committed (read from its run's ledger partition only)."""
    return cur.execute(f"SELECT count(*) FROM {LEDGER} WHERE run_id = ? AND batch_key = ?",
                       [run_id, batch]).fetchone()[0] > 0


def append(cur: duckdb.DuckDBPyConnection, table: str, spec: TableSpec, cols: list[tuple[str, str]],
           data: pa.Table, run_id: str) -> int:
    """Insert the batch without reading the table (samples go to the run's sightings until `settle`)."""
    _stage_rows(cur, spec, cols, data)
    if table == "samples":
        ordinal = "_ord" if "ordinal" not in data.column_names else "ordinal"
        cur.register("_ords", data.select([c for c in ("sample_id", "ordinal") if c in data.column_names])
                     .append_column("_ord", pa.array(range(data.num_rows), pa.int64())))
        got = cur.execute(
            f"INSERT INTO {SIGHTINGS} SELECT i.*, ? AS run_id, min(o.{ordinal}) AS ordinal FROM temp.main._in i "
            "JOIN _ords o USING (sample_id) GROUP BY ALL", [run_id]).fetchone()
        cur.unregister("_ords")
    else:
        got = cur.execute(f"INSERT INTO lake.main.{q(table)} SELECT * FROM temp.main._in").fetchone()
    return int(got[0]) if got else 0


def record_batch_done(cur: duckdb.DuckDBPyConnection, run_id: str, batch: str, counts: dict[str, int]) -> None:
    """The ledger row that makes a rerun of this batch a no-op (written in the batch's transaction)."""
    cur.execute(f"INSERT INTO {LEDGER} VALUES (?, ?, now()::TIMESTAMP, ?)", [run_id, batch, json.dumps(counts)])


def settle(cur: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Promote a run's sightings to `samples` (first ordinal of the run; samples already stored keep
    their row), and collapse rows a run wrote twice for a repeated sample. Returns new samples."""
    cols = ", ".join(q(c) for c in _sample_columns(cur))
    got = cur.execute(
        f"INSERT INTO lake.main.samples SELECT {cols} FROM {SIGHTINGS} s WHERE run_id = ? "
        "AND NOT EXISTS (SELECT 1 FROM lake.main.samples t WHERE t.sample_id = s.sample_id) "
        "QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY ordinal) = 1", [run_id]).fetchone()
    cur.execute(f"DELETE FROM {SIGHTINGS} WHERE run_id = ?", [run_id])
    for table, key in (("decisions", "sample_id, stage"), ("thumbnails", "sample_id")):
        cur.execute(f"DELETE FROM lake.main.{table} WHERE run_id = ? AND rowid IN (SELECT rowid FROM "
                    f"lake.main.{table} WHERE run_id = ? QUALIFY row_number() OVER (PARTITION BY {key} "
                    "ORDER BY rowid) > 1)", [run_id, run_id])
    return int(got[0]) if got else 0


def pending_sightings(cur: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """How many sightings of this run wait for `settle`."""
    return cur.execute(f"SELECT count(*) FROM {SIGHTINGS} WHERE run_id = ?", [run_id]).fetchone()[0]


def _sample_columns(cur: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in cur.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = 'lake' AND schema_name = 'main' "
        "AND table_name = 'samples' ORDER BY column_index").fetchall()]
