"""Tasks that open and close a row of the `runs` table, resuming an unfinished run."""

from __future__ import annotations

import errno
import os
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from prefect import get_run_logger, task
from prefect.logging import get_logger
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.runtime import flow_run

import mmpipe
from mmpipe.failures import DISK_FULL, failure_reason, release, reserve
from mmpipe.lease import Heartbeat, describe, is_dead, lease_key, owner_id  # noqa: F401 (lease_key: tests)
from warehouse import Warehouse, leases
from warehouse.dataset_queries import run_tallies
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
def run_tallies_task(home: str, run_id: str) -> dict[str, int]:
    """What a run added over all its attempts: {new_samples, n_scored} (a resumed run's shard tasks
    skip what an earlier attempt finished, and count nothing for it)."""
    return run_tallies(Warehouse(home), run_id)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def record_warnings(home: str, run_id: str, flow: str, warnings: list) -> None:
    """Store a running run's warnings as they happen, so a crash after them does not lose them."""
    Warehouse(home).record_run(run_id, flow, None, warnings=warnings)  # None: a late retry reopens nothing


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


LEASE_TTL_S = float(os.environ.get("MMPIPE_LEASE_TTL_S", "300"))  # renewed every quarter of it
_LEASE_POLL_S = 2.0


class RunInProgress(BlockingIOError):
    """An identical command holds the run's lease (it is running)."""


@dataclass
class Lease:
    """A held run lease and the heartbeat renewing it."""

    home: str
    key: str
    owner: str
    heartbeat: Heartbeat | None = None

    def bind(self, run_id: str) -> None:
        """Name the run the lease guards (shown to a command that finds it held)."""
        leases.renew(Warehouse(self.home), self.key, self.owner, LEASE_TTL_S, run_id)

    def release(self) -> None:
        """Stop renewing and give the lease up (idempotent)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
            leases.release(Warehouse(self.home), self.key, self.owner)


def _wait_bound() -> float:
    """How long a command waits for an identical live run: MMPIPE_RUN_WAIT_S (default 0: it says so
    and stops at once)."""
    return float(os.environ.get("MMPIPE_RUN_WAIT_S", "0") or 0)


def hold_lease(home: str, flow: str, params: dict, wait_s: float | None = None) -> Lease:
    """Take the command's lease, waiting up to `wait_s` for an identical live run to end; a holder
    that is dead (a process of this host that is gone) or silent past its lease is taken over."""
    wh, key, owner = Warehouse(home), lease_key(flow, params), owner_id()
    deadline = time.monotonic() + (_wait_bound() if wait_s is None else wait_s)
    dead = None
    while True:
        held = leases.claim(wh, key, owner, flow, LEASE_TTL_S, replace=dead)
        if held is None:
            break
        if is_dead(held["owner"]):
            dead = held["owner"]
            continue
        if time.monotonic() >= deadline:
            raise RunInProgress(f"an identical {flow} run is in progress ({held['run_id'] or 'starting'}, "
                                f"{describe(held['owner'])}): wait for it to end, or set MMPIPE_RUN_WAIT_S "
                                "to wait for it")
        time.sleep(min(_LEASE_POLL_S, max(0.0, deadline - time.monotonic())))
    logger = get_logger("mmpipe.lease")
    lease = Lease(home, key, owner)
    lease.heartbeat = Heartbeat(lambda: leases.renew(wh, key, owner, LEASE_TTL_S), LEASE_TTL_S / 4,
                                lambda e: logger.warning("could not renew the run lease: %s", e))
    return lease


@contextmanager
def tracked_run(home: str, flow: str, params: dict, resume: bool = True) -> Iterator[Run]:
    """Hold the command's lease (one live run per command: an identical command waits or stops), then
    open (or resume, when its holder is gone) a row of `runs`; close it completed (with warnings, if
    any), cancelled on Ctrl-C or SIGTERM, or failed if the body raises."""
    lease = hold_lease(home, flow, params)
    CANCEL_HOOKS.insert(0, lease.release)  # a cancelled command exits in a hook, before any finally
    try:
        with _open_run(home, flow, params, resume, lease) as run:
            yield run
    finally:
        CANCEL_HOOKS.remove(lease.release)
        lease.release()


@contextmanager
def _open_run(home: str, flow: str, params: dict, resume: bool, lease: Lease) -> Iterator[Run]:
    run_id = start_run(home, flow, params, resume)
    lease.bind(run_id)
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
