"""Tasks that open and close a row of the `runs` table, resuming an unfinished run."""

from __future__ import annotations

import subprocess
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

import mmpipe
from warehouse import Warehouse
from warehouse.queries import resumable_run


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
    wh.record_run(run_id, flow, "running", params=params, flow_run_id=str(flow_run.id or ""),
                  code_version=code_version())
    return run_id


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def finish_run(home: str, run_id: str, flow: str, status: str) -> None:
    """Close a run with its final status."""
    Warehouse(home).record_run(run_id, flow, status)


@contextmanager
def tracked_run(home: str, flow: str, params: dict, resume: bool = True) -> Iterator[str]:
    """Open (or resume) a row of `runs` and close it completed, or failed if the body raises."""
    run_id = start_run(home, flow, params, resume)
    try:
        yield run_id
    except BaseException:
        finish_run(home, run_id, flow, "failed")
        raise
    finish_run(home, run_id, flow, "completed")
