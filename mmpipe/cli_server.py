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


def private_server(timeout_s: float = 120.0) -> str:
    """Start a temporary Prefect API for this command (as Prefect's ephemeral mode does, but bound to
    our lifetime) and return its URL. Its database lives in PREFECT_HOME (under the mmpipe home)."""
    port = _free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    from importlib.util import find_spec

    app_dir = Path(find_spec("prefect").origin).parent.parent  # not imported here: settings come from env later
    # Commands started together share PREFECT_HOME's database; a server migrates it as it starts, so
    # starts are taken one at a time (two migrations at once fail), each until its server answers.
    prefect_home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    prefect_home.mkdir(parents=True, exist_ok=True)
    with open(prefect_home / ".mmpipe-server-start.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start(app_dir, port, env, timeout_s)


def _start(app_dir: Path, port: int, env: dict, timeout_s: float) -> str:
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir),
                             "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                            env=env, preexec_fn=_dies_with(os.getpid()), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    atexit.register(_stop, proc)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout_s
    while not healthy(url):
        if proc.poll() is not None:
            raise RuntimeError(f"the Prefect API server exited: {proc.stderr.read().decode()[-500:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Prefect API server did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)
    return url


def _stop(proc: subprocess.Popen) -> None:
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
