"""What every `mmpipe` command shares: the home option, one-line errors, and opening the warehouse or Prefect."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, NoReturn, Optional

import typer

from mmpipe.home import configure_prefect, resolve_home

HomeOpt = Annotated[Optional[Path], typer.Option(
    "--home", envvar="MMPIPE_HOME", help="Warehouse folder (default ./mmpipe-data; also before the command).",
    show_default=False)]

# Set by the app's callback: `mmpipe --debug --verbose --home X <command>`.
OPTIONS = {"debug": False, "verbose": False}
_COMMAND_SETTINGS = contextlib.ExitStack()  # Prefect settings held until the command's process ends


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr (what, why, what to do) and a non-zero exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def _children() -> list[int]:
    """Our child processes (Linux /proc), e.g. Prefect's temporary API server."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry.name))
    return found


def _interrupted() -> NoReturn:
    """Ctrl-C or SIGTERM: the run is already marked cancelled; stop now, children included.

    In-flight work is abandoned rather than awaited: every write is atomic, and running the same
    command again resumes the run.
    """
    import signal

    typer.secho("interrupted: the run is marked cancelled; run the same command again to resume it",
                fg=typer.colors.YELLOW, err=True)
    for pid in _children():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def guarded(command: Callable) -> Callable:
    """Errors become one line; the traceback only with --debug."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            _interrupted()
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - the front door: every error ends as one readable line
            from mmpipe.failures import DISK_FULL, disk_full

            if OPTIONS["debug"]:
                raise
            if disk_full(e, resolve_home(kwargs.get("home"))):  # whatever layer said it, and however
                fail(f"{DISK_FULL} (the run is marked failed with this reason)")
            if isinstance(e, OSError):
                fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            known = isinstance(e, (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, LookupError))
            hint = "" if known else f" ({type(e).__name__}; run `mmpipe --debug ...` for the traceback)"
            fail(message + hint)

    return run


def home_of(home: Optional[Path]) -> Path:
    """The home a command works in (its --home, the global --home, $MMPIPE_HOME, ./mmpipe-data)."""
    return resolve_home(home)


def warehouse(home: Optional[Path], writable: bool = False):
    """Open an existing warehouse, or fail with a clear line (never creates one); read-only unless a
    command maintains it (`mmpipe warehouse compact`)."""
    from warehouse import Warehouse

    if writable:
        check_home_writable(home_of(home))
    return Warehouse(home_of(home), create=False, read_only=not writable)


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
    private = not os.environ.get("PREFECT_API_URL")
    if private:
        from mmpipe.cli_server import start_private_server

        # Ours rather than Prefect's ephemeral server: it dies with this command, even on kill -9. It
        # starts while this process imports Prefect and the warehouse (both take seconds).
        server = start_private_server()
        os.environ["PREFECT_API_URL"] = server.url
    import flows  # noqa: F401  (applies offline Prefect settings before any flow module)
    from flows.runners import short_lived_api

    if private:  # for the rest of this command
        _COMMAND_SETTINGS.enter_context(short_lived_api())
    from tasks.runs import CANCEL_HOOKS

    if private:
        server.wait()

    CANCEL_HOOKS.append(_interrupted)
    if not OPTIONS["verbose"]:
        import logging

        # A failed task is reported as our one line, not as Prefect's traceback.
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).setLevel(logging.CRITICAL)

    return root


def version() -> str:
    import mmpipe

    return mmpipe.__version__
