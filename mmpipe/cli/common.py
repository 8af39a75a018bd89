"""What every `mmpipe` command shares: the home and runner options, one-line errors, and opening the
warehouse or Prefect (whose API server `prefect_server` starts)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, NoReturn, Optional

import typer

from mmpipe.home import configure_prefect, resolve_home
from mmpipe.processes import terminate_children

HomeOpt = Annotated[Optional[Path], typer.Option(
    "--home", envvar="MMPIPE_HOME", help="Warehouse folder (default ./mmpipe-data; also before the command).",
    show_default=False)]

DatasetArg = Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@TAG.")]
ModelOpt = Annotated[Optional[str], typer.Option(help="CLIP model of the stored embeddings (default: the one that "
                                                      "curated the version).")]
PretrainedOpt = Annotated[Optional[str], typer.Option(help="... and its pretrained tag or checkpoint, as stored.")]
TimeoutOpt = Annotated[Optional[float], typer.Option(
    "--timeout", help="Stop the query after this many seconds (default 120, or $MMPIPE_QUERY_TIMEOUT).",
    show_default=False)]
MemoryOpt = Annotated[Optional[str], typer.Option(
    "--memory", help="Stop the query past this much memory, e.g. 8GB (default 2GB, or $MMPIPE_QUERY_MEMORY).",
    show_default=False)]

# Set by the app's callback: `mmpipe --debug --verbose --home X <command>`.
OPTIONS = {"debug": False, "verbose": False}
_COMMAND_SETTINGS = contextlib.ExitStack()  # Prefect settings held until the command's process ends


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr (what, why, what to do) and a non-zero exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def _interrupted() -> NoReturn:
    """Ctrl-C or SIGTERM: the run is already marked cancelled; stop now, children included.

    In-flight work is abandoned rather than awaited: every write is atomic, and running the same
    command again resumes the run.
    """
    typer.secho("interrupted: the run is marked cancelled; run the same command again to resume it",
                fg=typer.colors.YELLOW, err=True)
    terminate_children()  # e.g. the private Prefect API server, Dask workers
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


def query_limits(timeout: Optional[float], memory: Optional[str]):
    """The limits of a user query from the flags, else the environment, else the defaults."""
    from warehouse.user_sql import QueryLimits

    try:
        return QueryLimits.from_env(timeout, memory)
    except ValueError as e:
        fail(str(e))


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
    from mmpipe.cli.prefect_server import start_for_command

    server = start_for_command()  # None when PREFECT_API_URL names a running server
    private = server is not None
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


RunnerOpt = Annotated[str, typer.Option(help="Where tasks run: local (threads in this process) or dask (a Dask "
                                             "cluster: a LocalCluster of worker processes, or --dask-address).")]
DaskAddressOpt = Annotated[Optional[str], typer.Option(help="Scheduler of a running Dask cluster (tcp://host:port); "
                                                           "implies --runner dask. Its workers need a Prefect API "
                                                           "they can reach (PREFECT_API_URL).")]
DaskWorkersOpt = Annotated[Optional[int], typer.Option(help="Worker processes of the LocalCluster --runner dask "
                                                            "starts (default 2; each declares a GPU when CUDA is "
                                                            "present).")]


def runner_choice(runner: str, dask_address: Optional[str], dask_workers: Optional[int]) -> dict:
    """The task runner choice as run_with takes it; a wrong combination fails before Prefect starts."""
    if runner not in ("local", "dask"):
        fail(f"--runner is local or dask, not {runner!r}")
    if dask_workers is not None and (dask_workers < 1 or dask_address or runner != "dask"):
        fail("--dask-workers sizes the LocalCluster that --runner dask starts: a positive count, without "
             "--dask-address")
    if (dask_address or runner == "dask") and not OPTIONS["verbose"]:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # read when distributed is first imported
    return {"runner": runner, "dask_address": dask_address, "workers": dask_workers}
