"""The `mmpipe` command line: the one part of the library that reaches up into flows and warehouse
(inside its commands, so that importing it stays light).

One module per command group, as the help shows them: curate and demo (Curate), train (Train), look
(Look), operate (Operate); common holds what they share, output how results are shown, and
prefect_server every Prefect API server mmpipe starts. This module assembles the app and holds the
global options; `python -m mmpipe.cli` runs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core

from mmpipe.cli import curate, demo, look, operate, train
from mmpipe.cli.common import OPTIONS, version


PANELS = {  # the help's groups, in order: what a user came to do
    "Curate": ("demo", "ingest", "curate", "transcribe", "dedup", "export", "recipe"),
    "Train": ("train", "evaluate", "pipeline", "sweep", "speech-sweep"),
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


_MODULES = {"demo": demo, "ingest": curate, "curate": curate, "transcribe": curate, "dedup": curate,
            "export": curate, "recipe": curate, "evaluate": train, "pipeline": train, "sweep": train,
            "speech-sweep": train,
            "datasets": look, "models": look, "runs": look, "sql": look, "tables": look, "report": look,
            "index": look, "search": look, "server": operate, "deploy": operate, "serve": operate}
_GROUPS = {"train": train.train_app, "warehouse": operate.warehouse_app}
for panel, names in PANELS.items():
    for name in names:
        if name in _GROUPS:
            app.add_typer(_GROUPS[name], name=name, rich_help_panel=panel)
        else:
            app.command(name, rich_help_panel=panel)(getattr(_MODULES[name], name.replace("-", "_")))
