"""The `mmpipe` command line: the one module of the library that reaches up into flows and warehouse.

Commands live in cli_query (read and keep the warehouse; never start Prefect) and cli_curate
(run flows); this module assembles them and holds the global options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmpipe import cli_curate, cli_demo, cli_index, cli_query, cli_report, cli_server, cli_sweep, cli_train
from mmpipe.cli_common import OPTIONS, version

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="mmpipe: curate multimodal datasets with Prefect flows, train on them, and query every "
                       "decision with SQL.")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"mmpipe {version()}")
        raise typer.Exit()


@app.callback()
def main(home: Annotated[Optional[Path], typer.Option("--home", help="Warehouse folder for every command "
                                                                      "(default $MMPIPE_HOME or ./mmpipe-data).")] = None,
         debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
         verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's task-state log lines.")] = False,
         show_version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                                    help="Print the version and exit.")] = False) -> None:
    """mmpipe: curate multimodal datasets with Prefect flows, train on them, and query every decision with SQL."""
    OPTIONS.update(debug=debug, verbose=verbose)
    if home is not None:
        os.environ["MMPIPE_HOME"] = str(home)  # a command's own --home still wins


for module, names in ((cli_query, ("sql", "tables", "runs", "datasets")),
                      (cli_curate, ("ingest", "curate", "transcribe")),
                      (cli_demo, ("demo",)),
                      (cli_train, ("evaluate", "models", "pipeline")),
                      (cli_sweep, ("sweep",)),
                      (cli_server, ("server", "deploy", "serve")),
                      (cli_report, ("report",)),
                      (cli_index, ("dedup", "index", "search", "export", "recipe"))):
    for name in names:
        app.command(name)(getattr(module, name))
app.add_typer(cli_train.train_app, name="train")
app.add_typer(cli_query.warehouse_app, name="warehouse")


if __name__ == "__main__":
    app()
