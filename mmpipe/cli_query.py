"""Commands that read the warehouse (sql, tables, runs, datasets) and keep it (warehouse ...).

None of them starts Prefect or creates a home.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from mmpipe.cli_common import HomeOpt, fail, guarded, home_of, warehouse
from mmpipe.cli_output import FORMATS, emit

warehouse_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                            help="Keep the warehouse: compact, check, migrate, attach from your own DuckDB.")
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, csv, json (an array), jsonl or parquet.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the result here.")]
TimeoutOpt = Annotated[Optional[float], typer.Option(
    "--timeout", help="Stop the query after this many seconds (default 120, or $MMPIPE_QUERY_TIMEOUT).",
    show_default=False)]
MemoryOpt = Annotated[Optional[str], typer.Option(
    "--memory", help="Stop the query past this much memory, e.g. 8GB (default 2GB, or $MMPIPE_QUERY_MEMORY).",
    show_default=False)]


def query_limits(timeout: Optional[float], memory: Optional[str]):
    """The limits of a user query from the flags, else the environment, else the defaults."""
    from warehouse.user_sql import QueryLimits

    try:
        return QueryLimits.from_env(timeout, memory)
    except ValueError as e:
        fail(str(e))


@contextlib.contextmanager
def limits_in_env(limits) -> Iterator[None]:
    """The limits in the environment while a flow this command starts runs the query (its tasks read
    them there), restored afterwards."""
    saved = {k: os.environ.get(k) for k in ("MMPIPE_QUERY_TIMEOUT", "MMPIPE_QUERY_MEMORY")}
    os.environ.update(MMPIPE_QUERY_TIMEOUT=str(limits.timeout_s), MMPIPE_QUERY_MEMORY=limits.memory)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@guarded
def sql(query: Annotated[str, typer.Argument(help="One read-only query (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, "
                                                   "EXPLAIN).")],
        format: FormatOpt = "table", output: OutputOpt = None,
        max_rows: Annotated[int, typer.Option(help="Rows to print in table format.")] = 100,
        as_of: Annotated[Optional[str], typer.Option(help="Query the warehouse as it was when dataset NAME@VERSION "
                                                          "was registered.")] = None,
        as_of_run: Annotated[Optional[str], typer.Option(help="... or when this run finished.")] = None,
        timeout: TimeoutOpt = None, memory: MemoryOpt = None, home: HomeOpt = None) -> None:
    """Query the warehouse with SQL (read-only). Tables: runs, samples, occurrences, decisions, outcomes, ..."""
    if format not in FORMATS:
        fail(f"unknown --format {format!r}; use {', '.join(FORMATS)}")
    limits = query_limits(timeout, memory)
    wh = warehouse(home)
    snapshot = None
    if as_of:
        name, _, version = as_of.partition("@")
        if not version:
            fail("--as-of takes NAME@VERSION, e.g. demo-shapes@v1")
        snapshot = wh.snapshot_of(dataset=name, version=version)
    elif as_of_run:
        snapshot = wh.snapshot_of(run_id=as_of_run)
    emit(wh.query_readonly(query, snapshot=snapshot, limits=limits, isolated=True), format, output, max_rows)


@guarded
def tables(format: FormatOpt = "table",
           columns: Annotated[bool, typer.Option("--columns", help="Every column with its type and meaning.")] = False,
           home: HomeOpt = None) -> None:
    """The warehouse tables with their row counts, and the drop-reason vocabulary."""
    import pyarrow as pa

    from mmpipe.schema import DROP_REASONS
    from warehouse.queries import column_docs

    wh = warehouse(home)
    if columns:
        emit(column_docs(wh), format, None, 1000)
        return
    counts = wh.table_counts()
    emit(pa.table({"table": list(counts), "rows": list(counts.values())}), format, None, 100)
    if format == "table":
        typer.echo("\ndrop_reason values (decisions, outcomes); ids and thresholds are in the `detail` column:")
        for reason, meaning in DROP_REASONS.items():
            typer.echo(f"  {reason:<20} {meaning}")


@guarded
def runs(limit: Annotated[int, typer.Option(help="How many runs to show.")] = 20, format: FormatOpt = "table",
         home: HomeOpt = None) -> None:
    """Recent runs with their status and counts (ingested = kept + dropped)."""
    from warehouse.queries import recent_runs

    emit(recent_runs(warehouse(home), limit), format, None, limit)


@guarded
def datasets(name: Annotated[Optional[str], typer.Argument(help="Only this dataset's versions.")] = None,
             format: FormatOpt = "table", home: HomeOpt = None) -> None:
    """Dataset versions with their sample counts and where their shards are."""
    from warehouse.dataset_queries import dataset_versions

    emit(dataset_versions(warehouse(home), name), format, None, 1000)


@warehouse_app.command("compact")
@guarded
def compact(expire_older_than: Annotated[Optional[str], typer.Option(
        help="Also expire snapshots older than this DuckDB interval ('30 days'); time travel before it ends.")] = None,
        home: HomeOpt = None) -> None:
    """Merge small data files (and expire old snapshots on request)."""
    from warehouse.maintenance import compact as run

    got = run(warehouse(home, writable=True), expire_older_than)
    typer.echo(f"live data files {got['live_files_before']} -> {got['live_files_after']}; "
               f"{got['snapshots_expired']} snapshots expired; {got['files_deleted']} unreferenced files deleted")


@warehouse_app.command("check")
@guarded
def check(home: HomeOpt = None) -> None:
    """Do the catalog and the data files agree? Lists missing files and orphans."""
    from warehouse.maintenance import check as run

    got = run(warehouse(home))
    typer.echo(f"{got['files_referenced']} files referenced, {got['files_on_disk']} on disk, "
               f"{got['awaiting_cleanup']} awaiting cleanup")
    for path in got["missing"]:
        typer.echo(f"missing: {path}")
    for path in got["orphans"]:
        typer.echo(f"orphan: {path}")
    if not got["ok"]:
        fail(f"{len(got['missing'])} referenced data file(s) are missing")
    typer.echo("ok" if not got["orphans"] else f"ok; {len(got['orphans'])} orphan file(s) (`mmpipe warehouse "
                                                "compact` removes them once no writer can still commit them)")


@warehouse_app.command("migrate")
@guarded
def migrate(home: HomeOpt = None) -> None:
    """Convert a home made before the DuckLake warehouse (warehouse.duckdb + tables/) in place."""
    from warehouse.maintenance import migrate as run

    counts = run(home_of(home))
    typer.echo("migrated: " + ", ".join(f"{t} {n}" for t, n in counts.items()))


@warehouse_app.command("attach")
@guarded
def attach(home: HomeOpt = None) -> None:
    """Print the SQL that opens this warehouse (read-only) from your own DuckDB 1.5.5 session."""
    from warehouse.catalog import attach_script

    typer.echo(attach_script(warehouse(home).catalog))
