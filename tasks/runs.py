"""Tasks that open and close a row of the `runs` table, resuming an unfinished run."""

from __future__ import annotations

import errno
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.runtime import flow_run

import mmpipe
from mmpipe.failures import DISK_FULL, failure_reason, release, reserve
from warehouse import Warehouse
from warehouse.queries import resumable_run, run_warnings

COMPLETED = "completed"
COMPLETED_WITH_WARNINGS = "completed_with_warnings"
# Called after a run has been marked cancelled (Ctrl-C, SIGTERM): the command line stops the
# process there instead of waiting for in-flight tasks, whose writes are atomic anyway.
CANCEL_HOOKS: list[Callable[[], None]] = []


def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(mmpipe.__file__).parent,
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{mmpipe.__version__}+{sha}" if sha else mmpipe.__version__


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def start_run(home: str, flow: str, params: dict, resume: bool = True) -> str:
    """Open a run (or reopen the newest unfinished one with the same params) and return its id."""
    wh = Warehouse(home)
    run_id = resumable_run(wh, flow, params) if resume else None
    if run_id is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_id = f"{flow}-{stamp}-{uuid.uuid4().hex[:6]}"
    # A resumed run keeps the warnings it recorded before the crash (a shard that broke off is staged
    # by then and not read again, so it would not warn twice).
    wh.record_run(run_id, flow, "running", params=params, flow_run_id=str(flow_run.id or ""),
                  code_version=code_version(), warnings=run_warnings(wh, run_id) or [])
    return run_id


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def record_warnings(home: str, run_id: str, flow: str, warnings: list) -> None:
    """Store a running run's warnings as they happen, so a crash after them does not lose them."""
    Warehouse(home).record_run(run_id, flow, "running", warnings=warnings)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def finish_run(home: str, run_id: str, flow: str, status: str, warnings: list | None = None) -> None:
    """Close a run with its final status (and what went wrong without failing it); a finished run
    also clears data files that writers killed mid-commit left behind."""
    wh = Warehouse(home)
    wh.record_run(run_id, flow, status, warnings=warnings)
    if status.startswith(COMPLETED):
        wh.delete_orphans()


@dataclass
class Run:
    """An open run: its id and the warnings its flow collects (a shard that broke off, ...), those of
    an earlier attempt of a resumed run included."""

    run_id: str
    home: str
    flow: str
    warnings: list[dict] = field(default_factory=list)

    def warn(self, what: str, message: str, **detail) -> None:
        """Record something that went wrong without failing the run (stored at once, once however often
        a resumed run meets it); the run ends `completed_with_warnings`."""
        warning = {"what": what, "message": message, **detail}
        get_run_logger().warning("%s: %s", what, message)
        if warning not in self.warnings:
            self.warnings.append(warning)
            record_warnings(self.home, self.run_id, self.flow, self.warnings)


@contextmanager
def tracked_run(home: str, flow: str, params: dict, resume: bool = True) -> Iterator[Run]:
    """Open (or resume) a row of `runs`; close it completed (with warnings, if any), cancelled on
    Ctrl-C or SIGTERM, or failed if the body raises."""
    run_id = start_run(home, flow, params, resume)
    # the reason a failed attempt recorded is not a warning of the resumed run
    run = Run(run_id, home, flow, [w for w in run_warnings(Warehouse(home), run_id) if w.get("what") != "failed"])
    reserve(home)
    try:
        yield run
    except (KeyboardInterrupt, SystemExit, TerminationSignal):
        finish_run.fn(home, run.run_id, flow, "cancelled", run.warnings)
        for hook in CANCEL_HOOKS:
            hook()
        raise
    except BaseException as e:
        reason = failure_reason(e, home)
        if reason == DISK_FULL:
            release(home)  # room to record the failure
        finish_run(home, run.run_id, flow, "failed", run.warnings + [{"what": "failed", "message": reason}])
        if reason == DISK_FULL:
            raise OSError(errno.ENOSPC, reason) from e
        raise
    finish_run(home, run.run_id, flow, COMPLETED_WITH_WARNINGS if run.warnings else COMPLETED, run.warnings)
