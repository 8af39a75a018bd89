"""The `mmpipe` command line: the one module of the library that reaches up into flows and warehouse."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmpipe.home import configure_prefect, resolve_home

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="mmpipe: curate multimodal datasets with Prefect flows; query every decision with SQL.")

HomeOpt = Annotated[Optional[Path], typer.Option(
    "--home", envvar="MMPIPE_HOME", help="Warehouse folder (default ./mmpipe-data).", show_default=False)]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _warehouse(home: Optional[Path]):
    from warehouse import Warehouse

    try:
        return Warehouse(resolve_home(home), create=False)
    except FileNotFoundError as e:
        _fail(str(e))


def _flows(home: Optional[Path]):
    configure_prefect(home)
    import flows  # noqa: F401  (applies offline Prefect settings before any flow module)


def print_table(table, max_rows: int = 100) -> None:
    """Print an Arrow table as a terminal table, at most `max_rows` rows."""
    from rich.console import Console
    from rich.table import Table

    out = Table(show_lines=False, header_style="bold")
    for name in table.column_names:
        out.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        out.add_row(*["" if v is None else str(v) for v in row.values()])
    console = Console(width=max(120, Console().width))
    console.print(out)
    shown = min(max_rows, table.num_rows)
    console.print(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}"
                  + (f", first {shown} shown; use --format csv --output FILE for all" if shown < table.num_rows else "")
                  + ")")


def write_result(table, fmt: str, output: Optional[Path]) -> None:
    """Write an Arrow table as csv, json (one object per line) or parquet."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        if output is None:
            _fail("--format parquet needs --output PATH")
        pq.write_table(table, output)
    elif fmt == "csv":
        if output is None:
            buf = io.BytesIO()
            pacsv.write_csv(table, buf)
            sys.stdout.write(buf.getvalue().decode())
        else:
            pacsv.write_csv(table, output)
    else:
        lines = "".join(json.dumps(r, default=str) + "\n" for r in table.to_pylist())
        if output is None:
            sys.stdout.write(lines)
        else:
            output.write_text(lines)
    if output is not None:
        typer.echo(f"wrote {table.num_rows} rows to {output}", err=True)


@app.command()
def sql(query: Annotated[str, typer.Argument(help="A read-only SQL query (SELECT, WITH, DESCRIBE, EXPLAIN).")],
        format: Annotated[str, typer.Option("--format", "-f", help="table, csv, json or parquet")] = "table",
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the result here.")] = None,
        max_rows: Annotated[int, typer.Option(help="Rows to print in table format.")] = 100,
        home: HomeOpt = None) -> None:
    """Query the warehouse with SQL (read-only). Tables: runs, samples, decisions, outcomes, ..."""
    from warehouse import QueryError, ReadOnlyError

    if format not in ("table", "csv", "json", "parquet"):
        _fail(f"unknown --format {format!r}; use table, csv, json or parquet")
    wh = _warehouse(home)
    try:
        result = wh.query_readonly(query)
    except (ReadOnlyError, QueryError) as e:
        _fail(str(e))
    if format == "table" and output is None:
        print_table(result, max_rows)
    else:
        write_result(result, "csv" if format == "table" else format, output)


@app.command()
def tables(home: HomeOpt = None) -> None:
    """List the warehouse tables with their row counts."""
    import pyarrow as pa

    counts = _warehouse(home).table_counts()
    print_table(pa.table({"table": list(counts), "rows": list(counts.values())}))


@app.command()
def runs(limit: Annotated[int, typer.Option(help="How many runs to show.")] = 20, home: HomeOpt = None) -> None:
    """Recent runs with their status and counts (ingested = kept + dropped)."""
    from warehouse.queries import recent_runs

    print_table(recent_runs(_warehouse(home), limit))


@app.command()
def ingest(folder: Annotated[Path, typer.Argument(help="Folder of images with captions (.txt sidecars or captions.jsonl/.csv).")],
           name: Annotated[str, typer.Option("--name", help="Name of this source in the warehouse.")],
           batch_size: Annotated[int, typer.Option(help="Samples per Prefect task.")] = 256,
           max_pixels: Annotated[int, typer.Option(help="Larger images are dropped as decompression bombs.")] = 89_478_485,
           home: HomeOpt = None) -> None:
    """Ingest a folder of captioned images: decode, validate, record every sample and decision."""
    if not folder.is_dir():
        _fail(f"not a folder: {folder}")
    _flows(home)
    from flows.ingest import ingest_flow
    from mmpipe.sources.folder import ManifestError

    try:
        result = ingest_flow(str(folder), name, home=str(resolve_home(home)), batch_size=batch_size,
                             max_pixels=max_pixels)
    except ManifestError as e:
        _fail(str(e))
    _print_outcomes(result)


def _print_outcomes(result: dict) -> None:
    typer.echo(f"\nrun {result['run_id']}: {result['ingested']} samples, {result['kept']} kept, "
               f"{result['ingested'] - result['kept']} dropped ({result['new_samples']} new to the warehouse)")
    for outcome, n in result["outcomes"].items():
        typer.echo(f"  {outcome:<24} {n}")


@app.command()
def demo(home: HomeOpt = None) -> None:
    """Run the pipeline on embedded demo data (real photos plus broken files) and show how to look at it."""
    from mmpipe.demo.photos import write_demo_folder

    root = resolve_home(home)
    folder = root / "demo" / "photos"
    write_demo_folder(folder)
    _flows(home)
    from flows.ingest import ingest_flow

    result = ingest_flow(str(folder), "demo-photos", home=str(root))
    _print_outcomes(result)
    typer.echo(f"""
What it made:
  {folder}   demo images (real photos from scikit-image, and deliberately broken files)
  {root / 'warehouse.duckdb'}   the DuckDB catalog; rows live as Parquet under {root / 'tables'}

Look at it:
  mmpipe tables --home {root}
  mmpipe runs --home {root}
  mmpipe sql "SELECT drop_reason, count(*) AS n FROM decisions GROUP BY 1 ORDER BY 2 DESC" --home {root}
  mmpipe sql "SELECT s.source_key, d.drop_reason FROM decisions d JOIN samples s USING (sample_id) WHERE NOT d.keep" --home {root}
""")


if __name__ == "__main__":
    app()
