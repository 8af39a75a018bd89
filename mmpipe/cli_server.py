"""The Prefect API a flow command talks to: a running server when PREFECT_API_URL is set, else a
private one started for the command, tied to it so that it never outlives it (not even kill -9);
and `mmpipe server`, a long-lived local server with its database under the home."""

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
from typing import Annotated, Optional

import typer

from mmpipe.cli_common import HomeOpt, fail, guarded, home_of

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
    environment sets them) and need no lock, so commands started together start side by side. A server
    that exits while the command runs ends the command with one line (see `_watch`)."""

    def __init__(self, timeout_s: float = 900.0):
        """Spawn the server (returns before it answers)."""
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
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
        progress, last_progress = _cpu_ticks(self.proc.pid), time.monotonic()
        try:
            while not healthy(self.url):
                if self.proc.poll() is not None:
                    raise ServerUnavailable(f"the private Prefect API server exited at start (code "
                                            f"{self.proc.returncode}): {_tail(self.log)}")
                now, ticks = time.monotonic(), _cpu_ticks(self.proc.pid)
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


def _cpu_ticks(pid: int) -> int | None:
    """CPU time a process has used (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def start_private_server(timeout_s: float = 900.0) -> PrivateServer:
    """Spawn the command's private Prefect API server; call `.wait()` before the first flow runs."""
    return PrivateServer(timeout_s)


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
    from mmpipe.cli_common import _children

    sys.stdout.flush()
    sys.stderr.write(f"error: the private Prefect API server (pid {proc.pid}) exited (code {code}) while the "
                     f"command ran: run the same command again to resume the run\n")
    sys.stderr.flush()
    for pid in _children():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    os._exit(1)


def _stop(proc: subprocess.Popen) -> None:
    _stopping.set()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@guarded
def server(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 4200,
           ui: Annotated[bool, typer.Option(help="Serve Prefect's web UI too.")] = True,
           home: HomeOpt = None) -> None:
    """Run a local Prefect server (database under <home>/prefect) for the UI, deployments and `mmpipe serve`.

    Point commands at it with PREFECT_API_URL=http://127.0.0.1:PORT/api; flow commands then reuse it.
    """
    from mmpipe.home import configure_prefect

    root = home_of(home)
    configure_prefect(root)
    env = {**os.environ, "PREFECT_UI_ENABLED": "true" if ui else "false"}
    env.pop("PREFECT_API_URL", None)
    typer.echo(f"Prefect server on http://127.0.0.1:{port} (PREFECT_HOME={env['PREFECT_HOME']}); "
               f"export PREFECT_API_URL=http://127.0.0.1:{port}/api")
    code = subprocess.call([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                            "--port", str(port)], env=env)
    if code:
        fail(f"prefect server exited with {code}", code)


def _need_server() -> None:
    if not os.environ.get("PREFECT_API_URL"):
        fail("this needs a Prefect server: start `mmpipe server` and export PREFECT_API_URL=http://127.0.0.1:4200/api")


@guarded
def deploy(gpu_slots: Annotated[int, typer.Option(help="GPU tasks at a time (the `gpu` tag's concurrency "
                                                       "limit).")] = 1,
           image_source: Annotated[Optional[str], typer.Option(help="What the nightly curation reads "
                                                                    "(Prefect variable mmpipe_image_source).")] = None,
           audio_source: Annotated[Optional[str], typer.Option(help="What the hourly transcription reads "
                                                                    "(variable mmpipe_audio_source).")] = None,
           home: HomeOpt = None) -> None:
    """Create the work pool, the `gpu` concurrency limit and every deployment of deployments/prefect.yaml;
    then start a worker: `prefect worker start --pool mmpipe-process` (with MMPIPE_HOME set)."""
    from mmpipe.home import configure_prefect

    _need_server()
    configure_prefect(home_of(home))
    from deployments.serve import REPO, SPEC, setup

    setup(gpu_slots, image_source, audio_source)
    env = {**os.environ, "MMPIPE_REPO": str(REPO)}
    code = subprocess.call([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file",
                            str(SPEC)], cwd=REPO, env=env)
    if code:
        fail(f"prefect deploy exited with {code}", code)
    typer.echo(f"deployed; start a worker: MMPIPE_HOME={home_of(home)} prefect worker start --pool mmpipe-process")


@guarded
def serve(schedule_interval: Annotated[Optional[float], typer.Option(
              help="Run the scheduled deployments every this many seconds instead of their cron/interval.")] = None,
          no_schedules: Annotated[bool, typer.Option("--no-schedules", help="Triggers only.")] = False,
          only: Annotated[Optional[list[str]], typer.Option(help="Serve only these deployments.")] = None,
          param: Annotated[Optional[list[str]], typer.Option(
              help="Override a deployment parameter: DEPLOYMENT.PARAM=VALUE (VALUE is JSON, or else a string), "
                   "e.g. curate-images.min_clip_score=0.28; repeatable.")] = None,
          home: HomeOpt = None) -> None:
    """Serve the deployments of deployments/prefect.yaml in this process (no work pool or worker needed)."""
    from mmpipe.home import configure_prefect

    overrides = _overrides(param or [])
    from deployments.serve import deployments_spec

    known = [d["name"] for d in deployments_spec()]
    unknown = [n for n in only or [] if n not in known]
    if unknown:
        fail(f"no deployment {', '.join(unknown)} in deployments/prefect.yaml (deployments: {', '.join(known)})")
    _need_server()
    root = home_of(home)
    os.environ["MMPIPE_HOME"] = str(root)
    configure_prefect(root)
    from deployments.serve import serve as run

    run(schedules=not no_schedules, only=only, interval_s=schedule_interval, parameters=overrides)


def _overrides(items: list[str]) -> dict[str, dict]:
    """`DEPLOYMENT.PARAM=VALUE` items as {deployment: {param: value}}; a malformed one fails at once."""
    import json

    from deployments.serve import deployments_spec

    names = {d["name"] for d in deployments_spec()}
    out: dict[str, dict] = {}
    for item in items:
        target, eq, raw = item.partition("=")
        deployment, dot, key = target.partition(".")
        if not (eq and dot and key):
            fail(f"--param takes DEPLOYMENT.PARAM=VALUE, not {item!r}")
        if deployment not in names:
            fail(f"--param: no deployment {deployment!r} (deployments: {', '.join(sorted(names))})")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(deployment, {})[key] = value
    return out
