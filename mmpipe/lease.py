"""Who holds a run's lease, whether that holder still lives, and the thread that renews it.

An owner is `host/pid/start/nonce`: the process's start time (psutil) tells a live holder from a
later process that reused its pid, so a command whose identical predecessor on this host was killed
(even with kill -9) takes over at once instead of waiting for the lease to expire.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import uuid
from typing import Callable

from mmpipe.processes import start_time


def lease_key(flow: str, params: dict) -> str:
    """The lease of a command: its flow and its params (as runs.params stores them)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return f"{flow}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def owner_id() -> str:
    """This process as a lease owner (a new nonce each call: two runs of one process are two owners)."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{start_time(pid) or '?'}/{uuid.uuid4().hex[:8]}"


def describe(owner: str) -> str:
    """'pid N on HOST' for messages."""
    host, pid, *_ = owner.split("/")
    return f"pid {pid} on {host}"


def is_dead(owner: str) -> bool:
    """Whether the owner is a process of this host that no longer runs (False when it runs, or when it
    belongs to another host: its lease then ends only by expiring)."""
    host, pid, start, _ = (owner.split("/") + ["", "", "", ""])[:4]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    now = start_time(int(pid))
    if now is None:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False  # it runs (its start time cannot be read to compare)
    return start != "?" and now != start


class Heartbeat:
    """Calls `renew()` every `interval_s` on a daemon thread until stopped; `lost` is set when a
    renewal says the lease is no longer ours (it expired while we stalled and another run took it)."""

    def __init__(self, renew: Callable[[], bool], interval_s: float, on_error: Callable[[Exception], None]):
        """Start renewing."""
        self.renew, self.interval_s, self.on_error = renew, interval_s, on_error
        self.stopped, self.lost = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name="mmpipe-lease-heartbeat", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                if not self.renew():
                    self.lost.set()
                    self.on_error(RuntimeError("the run lease expired and another run took it"))
                    return
            except Exception as e:  # noqa: BLE001 - a failed renewal is retried at the next beat
                self.on_error(e)

    def stop(self) -> None:
        """Stop renewing (waits for a renewal in progress)."""
        self.stopped.set()
        self.thread.join()
