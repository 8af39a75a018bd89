"""`mmpipe report`: the HTML report of a dataset version, from the warehouse alone (never starts Prefect)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mmpipe.cli_common import HomeOpt, guarded, warehouse


@guarded
def report(dataset: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@TAG (default: the newest "
                                                       "version).")],
           output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for index.html and "
                                                          "plots/ (default <home>/reports/NAME/VERSION).")] = None,
           compare: Annotated[Optional[str], typer.Option("--compare", help="Also show what changed from this "
                                                          "version to NAME@V: samples added and removed, "
                                                          "decisions whose reason changed, score shift.")] = None,
           home: HomeOpt = None) -> None:
    """Write a dataset version's report (one self-contained HTML page + PNG plots) and print its path."""
    from mmpipe.report import report_dir, write_report
    from warehouse.report_queries import compare_inputs, report_inputs

    wh = warehouse(home)
    inputs = report_inputs(wh, dataset)
    other = compare_inputs(wh, dataset, compare) if compare else None
    ds = inputs["dataset"]
    target = output or report_dir(wh.home, ds["name"], ds["version"],
                                  f"{other['b']['name']}@{other['b']['version']}" if other else None)
    typer.echo(str(write_report(inputs, target, other)))
