"""The `mmpipe` command line: the one module of the library that reaches up into flows and warehouse.

Commands live in cli_query (read and keep the warehouse; never start Prefect) and cli_curate
(run flows); this module assembles them and holds the global options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core

from mmpipe import cli_curate, cli_demo, cli_index, cli_query, cli_report, cli_server, cli_sweep, cli_train
from mmpipe.cli_common import OPTIONS, version


PANELS = {  # the help's groups, in order: what a user came to do
    "Curate": ("demo", "ingest", "curate", "transcribe", "dedup", "export", "recipe"),
    "Train": ("train", "evaluate", "pipeline", "sweep"),
    "Look": ("datasets", "models", "runs", "sql", "tables", "report", "index", "search"),
    "Operate": ("server", "deploy", "serve", "warehouse"),
}


class GroupedHelp(typer.core.TyperGroup):
    """Plain-text help with the commands in panels (`rich_help_panel`) and each one's first sentence whole."""

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:  # typer's own click's formatter
        by_panel: dict[str, list[tuple[str, str]]] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            panel = getattr(command, "rich_help_panel", None) or "Commands"
            by_panel.setdefault(panel, []).append((name, command.get_short_help_str(limit=1000)))
        for panel, rows in by_panel.items():
            with formatter.section(panel):
                formatter.write_dl(rows, col_max=12)


app = typer.Typer(cls=GroupedHelp, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
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
         quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (they show only on a terminal "
                                                                   "anyway).")] = False,
         show_version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                                    help="Print the version and exit.")] = False) -> None:
    """mmpipe: curate multimodal datasets with Prefect flows, train on them, and query every decision with SQL."""
    OPTIONS.update(debug=debug, verbose=verbose)
    if quiet:
        from mmpipe.progress import QUIET_ENV

        os.environ[QUIET_ENV] = "1"  # read where the bars are drawn, in flows and training
    if home is not None:
        os.environ["MMPIPE_HOME"] = str(home)  # a command's own --home still wins


_MODULES = {"demo": cli_demo, "ingest": cli_curate, "curate": cli_curate, "transcribe": cli_curate,
            "dedup": cli_index, "export": cli_index, "recipe": cli_index, "index": cli_index, "search": cli_index,
            "evaluate": cli_train, "pipeline": cli_train, "models": cli_train, "sweep": cli_sweep,
            "datasets": cli_query, "runs": cli_query, "sql": cli_query, "tables": cli_query, "report": cli_report,
            "server": cli_server, "deploy": cli_server, "serve": cli_server}
_GROUPS = {"train": cli_train.train_app, "warehouse": cli_query.warehouse_app}
for panel, names in PANELS.items():
    for name in names:
        if name in _GROUPS:
            app.add_typer(_GROUPS[name], name=name, rich_help_panel=panel)
        else:
            app.command(name, rich_help_panel=panel)(getattr(_MODULES[name], name))


if __name__ == "__main__":
    app()
