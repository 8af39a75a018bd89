"""Deployments for real: a `prefect server start` on 127.0.0.1, deployments/prefect.yaml deployed with
`mmpipe deploy`, a process worker, curation run through its deployment, and training triggered by
the `mmpipe.dataset.curated` event reaching Completed with its model and evals in the warehouse."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from warehouse import Warehouse

ROOT = Path(__file__).resolve().parent.parent.parent
EXE = str(Path(sys.executable).with_name("mmpipe"))


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


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
    deadline = time.monotonic() + 180
    while not _healthy(url):
        assert server.poll() is None and time.monotonic() < deadline, "prefect server did not start"
        time.sleep(0.5)
    env["PREFECT_API_URL"] = url
    procs = [server]
    yield env, procs
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def _runs(env, flow_name: str) -> list:
    os.environ.update({k: v for k, v in env.items() if k.startswith("PREFECT_")})
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def go():
        async with get_client() as client:
            return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))

    return asyncio.run(go())


def _wait_completed(env, flow_name: str, timeout: float, log: Path | None = None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs(env, flow_name)
        done = [r for r in runs if r.state and r.state.is_completed()]
        if done:
            return done[0]
        failed = [r for r in runs if r.state and r.state.is_final() and not r.state.is_completed()]
        assert not failed, (f"{flow_name} ended {failed[0].state.type}: {failed[0].state.message}\n"
                            + (log.read_text()[-4000:] if log and log.exists() else ""))
        time.sleep(2)
    raise AssertionError(f"no completed {flow_name} run within {timeout:.0f} s (runs: "
                         f"{[(r.name, r.state.type if r.state else None) for r in _runs(env, flow_name)]})")


def test_curation_through_its_deployment_triggers_training(server_env, tmp_path):
    from mmpipe.train.synthetic import write_shape_shards

    env, procs = server_env
    write_shape_shards(tmp_path / "src", 160, shard_size=80)
    out = subprocess.run([EXE, "deploy", "--image-source", str(tmp_path / "src"), "--audio-source", str(tmp_path)],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    os.environ.update({k: v for k, v in env.items() if k.startswith("PREFECT_")})
    from prefect.client.orchestration import get_client

    async def configure():
        async with get_client() as client:
            limits = {c.tag: c.concurrency_limit for c in await client.read_concurrency_limits(limit=50, offset=0)}
            assert limits.get("gpu") == 1
            names = {d.name for d in await client.read_deployments()}
            assert {"curate-images", "transcribe-audio", "train-contrastive", "train-masked", "train-diffusion",
                    "evaluate"} <= names
            for d in await client.read_deployments():  # CPU-sized defaults for this test
                if d.name in ("train-contrastive", "train-masked", "train-diffusion"):
                    small = {"steps": 6, "batch_size": 16, "lr": 3e-3}
                    if d.name == "train-contrastive":
                        small["model_name"] = "mmpipe-micro-clip"
                    from prefect.client.schemas.actions import DeploymentUpdate

                    await client.update_deployment(d.id, DeploymentUpdate(parameters={**d.parameters, **small}))

    asyncio.run(configure())
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "mmpipe-process",
                               "--type", "process"], env=env, cwd=tmp_path, start_new_session=True,
                              stdout=log, stderr=subprocess.STDOUT)
    procs.append(worker)
    from prefect.deployments import run_deployment

    run_deployment("curate/curate-images", parameters={"clip_model": "none", "min_side": 32}, timeout=0)
    wlog = tmp_path / "worker.log"
    _wait_completed(env, "curate", 300, wlog)
    trained = _wait_completed(env, "train-contrastive", 400, wlog)
    assert trained.parameters["dataset"] == "images@v1"
    wh = Warehouse(tmp_path / "home")
    model = wh.sql("SELECT m.model_id, m.status, d.name, d.version FROM models m JOIN datasets d USING (dataset_id) "
                   "WHERE m.objective = 'contrastive'").to_pylist()
    assert model and model[0]["status"] == "trained" and (model[0]["name"], model[0]["version"]) == ("images", "v1")
    evals = wh.sql("SELECT metric FROM evals WHERE model_id = ?", [model[0]["model_id"]]).column("metric").to_pylist()
    assert "mean_R@5" in evals
    _wait_completed(env, "train-masked", 300, wlog)
    _wait_completed(env, "train-diffusion", 400, wlog)  # triggered by the contrastive model's mmpipe.model.trained
