"""What every `mmpipe` command shares: the home option, one-line errors, and opening the warehouse or Prefect."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Callable, NoReturn, Optional

import typer

from mmpipe.home import configure_prefect, resolve_home

HomeOpt = Annotated[Optional[Path], typer.Option(
    "--home", envvar="MMPIPE_HOME", help="Warehouse folder (default ./mmpipe-data; also before the command).",
    show_default=False)]

# Set by the app's callback: `mmpipe --debug --verbose --home X <command>`.
OPTIONS = {"debug": False, "verbose": False}


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr (what, why, what to do) and a non-zero exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def guarded(command: Callable) -> Callable:
    """Errors become one line; the traceback only with --debug."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - the front door: every error ends as one readable line
            if OPTIONS["debug"]:
                raise
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            known = isinstance(e, (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, LookupError))
            hint = "" if known else f" ({type(e).__name__}; run `mmpipe --debug ...` for the traceback)"
            fail(message + hint)

    return run


def home_of(home: Optional[Path]) -> Path:
    """The home a command works in (its --home, the global --home, $MMPIPE_HOME, ./mmpipe-data)."""
    return resolve_home(home)


def warehouse(home: Optional[Path]):
    """Open an existing warehouse, or fail with a clear line (never creates one)."""
    from warehouse import Warehouse

    return Warehouse(home_of(home), create=False)


def check_home_writable(home: Path) -> None:
    """Before a flow starts: the home is a folder we can write (or can be created)."""
    if home.exists() and not home.is_dir():
        fail(f"the home {home} is a file, not a folder; pass --home DIR")
    probe = home if home.exists() else next((p for p in home.parents if p.exists()), Path("/"))
    if not os.access(probe, os.W_OK):
        fail(f"cannot write to {probe}: the home must be writable (pass --home DIR)")


def start_flows(home: Optional[Path]) -> Path:
    """Configure Prefect for this home (offline, quiet unless --verbose) and import the flows."""
    root = home_of(home)
    check_home_writable(root)
    if not OPTIONS["verbose"]:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    configure_prefect(root)
    import flows  # noqa: F401  (applies offline Prefect settings before any flow module)

    return root


def version() -> str:
    import mmpipe

    return mmpipe.__version__
