"""How the `mmpipe` command line shows results: tables, exported query results, run summaries."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Optional

import typer


def print_table(table, max_rows: int = 100) -> None:
    """Print an Arrow table as a terminal table, at most `max_rows` rows."""
    from rich.console import Console
    from rich.table import Table

    out = Table(show_lines=False, header_style="bold")
    for name in table.column_names:
        out.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        out.add_row(*["" if v is None else str(v) for v in row.values()])
    rows = table.slice(0, max_rows).to_pylist()
    widest = [max([len(str(c))] + [len(str(r[c])) for r in rows]) for c in table.column_names]
    console = Console(width=min(250, max(Console().width, sum(widest) + 3 * len(widest) + 1)))
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
            raise typer.BadParameter("--format parquet needs --output PATH")
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


def print_outcomes(result: dict) -> None:
    """The run's inputs by outcome (ingested = kept + dropped)."""
    typer.echo(f"\nrun {result['run_id']}: {result['ingested']} inputs, {result['kept']} kept, "
               f"{result['ingested'] - result['kept']} dropped ({result['new_samples']} new samples in the warehouse)")
    for outcome, n in result["outcomes"].items():
        typer.echo(f"  {outcome:<24} {n}")


def print_warnings(result: dict) -> None:
    """What went wrong without failing the run, last, so it is the thing a user reads."""
    warnings = result.get("warnings") or []
    if warnings:
        typer.secho(f"\nrun {result['run_id']} completed with {len(warnings)} warning(s):", fg=typer.colors.YELLOW,
                    err=True)
        for w in warnings:
            typer.secho(f"  {w['what']}: {w['message']}", fg=typer.colors.YELLOW, err=True)


def print_wer(result: dict) -> None:
    w = result["wer"]
    if w.get("mean_wer") is not None:
        typer.echo(f"WER {w['mean_wer']:.3f} mean, {w['median_wer']:.3f} median, CER {w['mean_cer']:.3f} "
                   f"over {w['with_reference']} clips with a reference ({result['device']}, {result['compute_type']})")


def print_dataset(ds: dict) -> None:
    typer.echo(f"\ndataset {ds['version']}: {ds['n_samples']} samples")
    typer.echo(f"  shards:   {ds['shards_uri']}")
    typer.echo(f"  manifest: {ds['manifest_uri']}")
