"""Shared by the deployment tests: a real `prefect server start` on 127.0.0.1 with a temporary
PREFECT_HOME, stopped by PID (its whole process group), and helpers that wait on its flow runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmpipe.cli.prefect_server import healthy


@pytest.fixture
def server_env(tmp_path):
    """A real Prefect server with a temporary PREFECT_HOME, stopped by PID (its whole process group)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_UI_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", MMPIPE_HOME=str(tmp_path / "home"),
               PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="2", HF_HUB_OFFLINE="1")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 600  # a ceiling: the wait ends when the server answers, or fails when it exits
    while not healthy(url):
        assert server.poll() is None and time.monotonic() < deadline, "prefect server did not start"
        time.sleep(0.5)
    env["PREFECT_API_URL"] = url
    procs = [server]
    yield env, procs
    # The server's clients first (worker, `mmpipe serve`), then the server: a client whose server is gone
    # spends its shutdown retrying the API (20 s each, measured, when the server went first).
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


@contextlib.contextmanager
def on_server(env):
    """Prefect clients made inside talk to the test's server, whatever the process's settings are (a
    test harness another test started stays active for the session); nothing leaks into os.environ."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        yield


def runs_of(env, flow_name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def go():
        async with get_client() as client:
            return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))

    with on_server(env):
        return asyncio.run(go())


def wait_completed(env, flow_name: str, timeout: float, log: Path | None = None,
                   procs: list | None = None) -> object:
    """Waits for the event, not for a time: returns at the first completed run of `flow_name`, fails at
    once when a run of it ends otherwise or one of `procs` (server, worker) exits; `timeout` is only a
    generous ceiling for a run that never comes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = runs_of(env, flow_name)
        done = [r for r in runs if r.state and r.state.is_completed()]
        if done:
            return done[0]
        tail = log.read_text()[-4000:] if log and log.exists() else ""
        failed = [r for r in runs if r.state and r.state.is_final() and not r.state.is_completed()]
        assert not failed, f"{flow_name} ended {failed[0].state.type}: {failed[0].state.message}\n{tail}"
        dead = [p.args for p in procs or [] if p.poll() is not None]
        assert not dead, f"waiting for {flow_name}, a process exited: {dead}\n{tail}"
        time.sleep(2)
    raise AssertionError(f"no completed {flow_name} run within {timeout:.0f} s (runs: "
                         f"{[(r.name, r.state.type if r.state else None) for r in runs_of(env, flow_name)]})")


@pytest.fixture
def server_client():
    """on_server(env): a context in which Prefect's client uses the test's server."""
    return on_server


@pytest.fixture
def wait_run():
    """wait_completed(env, flow_name, timeout, log, procs) -> the first completed run of that flow."""
    return wait_completed


@pytest.fixture
def runs():
    """runs_of(env, flow_name) -> the flow runs of that flow on the test's server."""
    return runs_of
