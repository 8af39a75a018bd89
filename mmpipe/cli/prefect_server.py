"""Every Prefect API server mmpipe starts, in one place: the private one a flow command starts when
PREFECT_API_URL is not set, tied to the command so that it never outlives it (not even kill -9); and
the long-lived local server of `mmpipe server`, its database under the home.

Nothing here imports Prefect (it runs in a child process) or the rest of the command line."""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from mmpipe.home import SHORT_LIVED_SERVER_SERVICES_OFF
from mmpipe.processes import cpu_ticks, terminate_children

_PR_SET_PDEATHSIG = 1


def _dies_with(parent: int):
    """A preexec_fn: in the child, before exec, the kernel is told to SIGKILL it when the command that
    started it dies (a private API server holds nothing worth a graceful stop, and a server still
    migrating its database would defer SIGTERM); if that command died already, the child exits."""
    def arm() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # killed between fork and prctl
            os._exit(1)

    return arm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """Whether a Prefect API answers its health check at `url`."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class ServerUnavailable(ConnectionError):
    """The command's private Prefect API server did not come up."""


def _migrated_marker(prefect_home: Path) -> Path | None:
    """The file that says this home's Prefect database is migrated for this Prefect version (None when
    the database is not the default SQLite file under PREFECT_HOME: nothing is skipped then)."""
    if any(os.environ.get(f"PREFECT_{k}_DATABASE_CONNECTION_URL") for k in ("API", "SERVER")):
        return None
    from importlib.metadata import version

    return prefect_home / f".mmpipe-db-ready-{version('prefect')}"


def private_server(timeout_s: float = 900.0) -> str:
    """Start a temporary Prefect API for this command and wait until it answers; returns its URL
    (`start_private_server` then `.wait()`)."""
    server = start_private_server(timeout_s)
    server.wait()
    return server.url


class PrivateServer:
    """A command's private Prefect API (as Prefect's ephemeral mode, but bound to our lifetime), its
    database in PREFECT_HOME (under the mmpipe home). Its URL is known at once, so the command can do
    its own imports while the server starts, and `wait()` only then.

    The first start in a home creates and migrates the database and registers Prefect's block types,
    one start at a time (two migrations at once fail); later starts skip both
    (PREFECT_API_DATABASE_MIGRATE_ON_START and ..._BLOCKS_REGISTER_ON_START are set false unless the
    environment sets them) and need no lock, so commands started together start side by side. It runs
    none of Prefect's background services (`SHORT_LIVED_SERVER_SERVICES_OFF`). A server that exits while
    the command runs ends the command with one line (see `_watch`)."""

    def __init__(self, timeout_s: float = 900.0):
        """Spawn the server (returns before it answers)."""
        env = {**SHORT_LIVED_SERVER_SERVICES_OFF, **os.environ, "PREFECT_UI_ENABLED": "0",
               "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        from importlib.util import find_spec

        app_dir = Path(find_spec("prefect").origin).parent.parent  # not imported here: settings come from env later
        prefect_home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
        prefect_home.mkdir(parents=True, exist_ok=True)
        marker = _migrated_marker(prefect_home)
        self.marker, self.lock = None, None
        if marker is not None and marker.is_file() and (prefect_home / "prefect.db").is_file():
            env.setdefault("PREFECT_API_DATABASE_MIGRATE_ON_START", "false")
            env.setdefault("PREFECT_API_BLOCKS_REGISTER_ON_START", "false")
        else:  # held until this server answers: it migrates the database the others share
            self.marker, self.lock = marker, open(prefect_home / ".mmpipe-server-start.lock", "a")
            fcntl.flock(self.lock, fcntl.LOCK_EX)
        port = _free_port()
        self.url, self.timeout_s, self.started = f"http://127.0.0.1:{port}/api", timeout_s, time.monotonic()
        self.log = tempfile.TemporaryFile()  # not a pipe: a server that logs much would block on a full one
        self.proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir),
                                      "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                                      "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                                     env=env, preexec_fn=_dies_with(os.getpid()), stdout=subprocess.DEVNULL,
                                     stderr=self.log)
        atexit.register(_stop, self.proc)

    def wait(self) -> None:
        """Until the server answers (then it is watched). ServerUnavailable at once if it exits, after
        STALL_S if it stops making progress (no CPU time used: hung), after timeout_s in any case. A
        server that is only slow (a busy machine) is waited for: it is working."""
        deadline = self.started + self.timeout_s
        progress, last_progress = cpu_ticks(self.proc.pid), time.monotonic()
        try:
            while not healthy(self.url):
                if self.proc.poll() is not None:
                    raise ServerUnavailable(f"the private Prefect API server exited at start (code "
                                            f"{self.proc.returncode}): {_tail(self.log)}")
                now, ticks = time.monotonic(), cpu_ticks(self.proc.pid)
                if ticks != progress:
                    progress, last_progress = ticks, now
                if now > deadline or now - last_progress > STALL_S:
                    _stop(self.proc)
                    why = f"within {self.timeout_s:.0f} s" if now > deadline else \
                        f"and did no work for {STALL_S:.0f} s (hung)"
                    raise ServerUnavailable(f"the private Prefect API server did not answer {why}: run again, or "
                                            "start `mmpipe server` and set PREFECT_API_URL")
                time.sleep(0.2)
            if self.marker is not None:
                self.marker.touch()
        finally:
            if self.lock is not None:
                self.lock.close()  # releases the start lock
                self.lock = None
        threading.Thread(target=_watch, args=(self.proc, self.log), name="mmpipe-server-watch", daemon=True).start()


STALL_S = 60.0


def start_private_server(timeout_s: float = 900.0) -> PrivateServer:
    """Spawn the command's private Prefect API server; call `.wait()` before the first flow runs."""
    return PrivateServer(timeout_s)


def start_for_command() -> PrivateServer | None:
    """The Prefect API of a flow command: None when PREFECT_API_URL names a running server (it is used),
    else a private server, spawned now and named in PREFECT_API_URL for the rest of the command.

    Ours rather than Prefect's ephemeral server: it dies with this command, even on kill -9. It starts
    while the command imports Prefect and the warehouse (both take seconds); `.wait()` before the first
    flow runs."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    server = start_private_server()
    os.environ["PREFECT_API_URL"] = server.url
    return server


def _tail(log) -> str:
    log.seek(0)
    lines = [ln for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip()[-300:] if lines else "no output"


_stopping = threading.Event()


def _watch(proc: subprocess.Popen, log) -> None:
    """If the server exits before the command does, the command cannot go on (its flow runs report to
    it): say so in one line, end our other child processes and exit; a rerun resumes the run."""
    code = proc.wait()
    # A command that is ending anyway (Ctrl-C or SIGTERM stop its children, then it exits) goes first.
    if _stopping.wait(1.0):
        return
    sys.stdout.flush()
    sys.stderr.write(f"error: the private Prefect API server (pid {proc.pid}) exited (code {code}) while the "
                     f"command ran: run the same command again to resume the run\n")
    sys.stderr.flush()
    terminate_children()
    os._exit(1)


def _stop(proc: subprocess.Popen) -> None:
    _stopping.set()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_local_server(port: int, ui: bool) -> int:
    """`prefect server start` on 127.0.0.1:`port` in the foreground, its database under PREFECT_HOME
    (`configure_prefect` sets it under the home); returns its exit code."""
    env = {**os.environ, "PREFECT_UI_ENABLED": "true" if ui else "false"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.call([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                            "--port", str(port)], env=env)
