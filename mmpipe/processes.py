"""Process trees, through psutil: a process's children, its CPU time and start time, whether it lives.

What the command line needs to leave nothing behind (its private Prefect server, Dask workers) and
what a run lease needs to tell a live holder from a dead one.
"""

from __future__ import annotations

import os
import signal

import psutil


def children(pid: int | None = None) -> list[int]:
    """The direct child processes of `pid` (default: this process)."""
    try:
        return [p.pid for p in psutil.Process(pid if pid is not None else os.getpid()).children()]
    except psutil.NoSuchProcess:
        return []


def terminate_children(pid: int | None = None) -> None:
    """SIGTERM every direct child of `pid` (default: this process); one that is gone already is skipped."""
    for child in children(pid):
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass


def cpu_ticks(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used; None when it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def start_time(pid: int) -> str | None:
    """When a process started, as text that tells it from a later process reusing its pid; None when
    there is no such process."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:  # gone (NoSuchProcess) or hidden
        return None


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, finished but not yet reaped, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def command_line(pid: int) -> list[str]:
    """A process's command line ([] when it is gone or hidden)."""
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []
