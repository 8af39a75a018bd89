"""Keeping a lake healthy: compaction, a catalog-vs-files check, and migration of pre-DuckLake homes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pyarrow as pa

from warehouse.catalog import write_lock
from warehouse.store import TABLES, Warehouse


def compact(wh: Warehouse, expire_older_than: str | None = None) -> dict:
    """Merge small data files; with `expire_older_than` (a DuckDB interval such as '7 days'),
    expire older snapshots and delete the files only they used. Returns what changed."""
    before = _live_files(wh)
    with write_lock(wh.catalog):
        cur = wh._cursor()
        cur.execute("CALL ducklake_merge_adjacent_files('lake')")
        expired = 0
        if expire_older_than:
            expired = len(cur.execute("SELECT * FROM ducklake_expire_snapshots('lake', older_than => now() - "
                                      "CAST(? AS INTERVAL))", [expire_older_than]).fetchall())
        # Files no snapshot references any more; an hour's grace so a concurrent writer's
        # uncommitted file is never taken.
        removed = len(cur.execute("SELECT * FROM ducklake_cleanup_old_files('lake', older_than => now() - "
                                  "INTERVAL 1 HOUR)").fetchall())
        if expire_older_than:
            removed += len(cur.execute("SELECT * FROM ducklake_cleanup_old_files('lake', cleanup_all => true)")
                           .fetchall())
        cur.close()
    removed += wh.delete_orphans()
    return {"live_files_before": before, "live_files_after": _live_files(wh), "snapshots_expired": expired,
            "files_deleted": removed}


def _live_files(wh: Warehouse) -> int:
    return sum(wh.sql(f"SELECT count(*) AS n FROM ducklake_list_files('lake', '{t}')").column("n")[0].as_py()
               for t in TABLES)


def check(wh: Warehouse) -> dict:
    """Does the catalog agree with the files? Lists referenced files that are missing and files on
    disk no snapshot references (orphans, e.g. from a writer killed mid-commit)."""
    referenced: set[str] = set()
    for t in TABLES:
        rows = wh.sql(f"SELECT data_file FROM ducklake_list_files('lake', '{t}')").column("data_file").to_pylist()
        referenced |= {os.path.normpath(p) for p in rows}
    scheduled = {os.path.basename(p) for p in wh.sql(  # file names are uuids: unique across tables
        "SELECT path FROM __ducklake_metadata_lake.ducklake_files_scheduled_for_deletion").column("path").to_pylist()}
    on_disk = {os.path.normpath(str(p)) for p in wh.catalog.data_path.rglob("*.parquet")}
    missing = sorted(referenced - on_disk)
    waiting = {p for p in on_disk - referenced if os.path.basename(p) in scheduled}
    orphans = sorted(on_disk - referenced - waiting)
    return {"ok": not missing, "files_referenced": len(referenced), "files_on_disk": len(on_disk),
            "missing": missing, "orphans": orphans, "awaiting_cleanup": len(waiting)}


def migrate(home: str | os.PathLike) -> dict[str, int]:
    """Convert a home made by mmpipe's own pre-DuckLake catalog (warehouse.duckdb + tables/) into a lake.

    Rows are read through the old catalog's file list (so only committed rows come over), copied
    into the lake keyed as usual, and the old catalog is renamed aside (warehouse.duckdb.migrated).
    Runs of that era have no `occurrences`: one per sample and run is derived from decisions.
    """
    home = Path(home).resolve()
    old = home / "warehouse.duckdb"
    if not old.is_file():
        raise FileNotFoundError(f"no pre-DuckLake catalog at {old}")
    con = duckdb.connect(str(old), read_only=True)
    files = con.execute("SELECT table_name, path FROM _files ORDER BY written_at, path").fetchall()
    con.close()
    by_table: dict[str, list[str]] = {}
    for table, path in files:
        by_table.setdefault(table, []).append(str(home / path))
    wh = Warehouse(home)
    counts: dict[str, int] = {}
    reader = duckdb.connect()
    for table, paths in by_table.items():
        if table not in TABLES:
            continue
        data = reader.execute("SELECT * EXCLUDE (_written_at) FROM read_parquet(?, union_by_name = true, "
                              "hive_partitioning = false) ORDER BY _written_at", [paths]).to_arrow_table()
        data = _upgrade(table, data)
        counts[table] = wh.write(table, data)
    if "decisions" in by_table:
        occ = reader.execute(
            "SELECT d.run_id, (row_number() OVER (PARTITION BY d.run_id ORDER BY s.source_key) - 1)::BIGINT AS ordinal, "
            "d.sample_id, s.source, s.source_key, s.uri FROM (SELECT DISTINCT run_id, sample_id FROM "
            "read_parquet(?, union_by_name = true, hive_partitioning = false)) d "
            "LEFT JOIN read_parquet(?, union_by_name = true, hive_partitioning = false) s "
            "USING (sample_id)", [by_table["decisions"], by_table.get("samples", by_table["decisions"])]).to_arrow_table()
        counts["occurrences"] = wh.write("occurrences", occ)
    reader.close()
    old.rename(old.with_name(old.name + ".migrated"))
    (home / "MIGRATED.json").write_text(json.dumps({"from": "mmpipe catalog (warehouse.duckdb + tables/)",
                                                    "rows": counts}, indent=1))
    return counts


def _upgrade(table: str, data: pa.Table) -> pa.Table:
    """Rows of the old catalog in today's vocabulary: ids and numbers out of drop_reason into detail."""
    if table == "decisions" and "drop_reason" in data.column_names:
        reasons, details = [], []
        for r in data.column("drop_reason").to_pylist():
            head, _, tail = (r or "").partition(":")
            if r is None:
                reasons.append(None), details.append(None)
            elif head == "duplicate_of":
                reasons.append("duplicate"), details.append(tail)
            elif head in ("clip_score_below", "clip_score_not_in_top"):
                reasons.append("clip_score_low"), details.append(r)
            elif head == "fetch_failed":
                reasons.append("fetch_failed"), details.append(tail or None)
            else:
                reasons.append(r), details.append(None)
        data = data.set_column(data.column_names.index("drop_reason"), "drop_reason", pa.array(reasons, pa.string()))
        data = data.append_column("detail", pa.array(details, pa.string()))
    if table == "transcripts" and "options_key" not in data.column_names:
        data = data.append_column("options_key", pa.array(["legacy"] * data.num_rows, pa.string()))
    return data
