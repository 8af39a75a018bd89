"""Deployments for real: a `prefect server start` on 127.0.0.1, deployments/prefect.yaml deployed with
`mmpipe deploy`, a process worker, curation run through its deployment, and training triggered by
the `mmpipe.dataset.curated` event reaching Completed with its model and evals in the warehouse; then
transcription through its deployment, whose audio version's curated event triggers the speech trainings."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from warehouse import Warehouse

ROOT = Path(__file__).resolve().parent.parent.parent
EXE = str(Path(sys.executable).with_name("mmpipe"))
TRAINED_IMAGE = ("train-contrastive", "train-masked", "train-diffusion")
SPEECH_TRAININGS = ("train-asr", "train-speech-masked", "train-audio-contrastive")
PARKED = "parked"  # a work queue of the pool that this test's worker does not poll


@pytest.mark.timeout(3000)
def test_curation_through_its_deployment_triggers_training(server_env, server_client, wait_run, runs, tmp_path,
                                                           tiny_clip_checkpoint):
    """Offline and with no model named anywhere: `mmpipe deploy` picks the home's demo filter and tiny.en."""
    import shutil

    from mmpipe.train.synthetic import write_shape_shards

    env, procs = server_env
    write_shape_shards(tmp_path / "src", 160, shard_size=80)
    demo_filter = Path(env["MMPIPE_HOME"]) / "models" / "demo-filter" / "step-00000300"
    demo_filter.mkdir(parents=True)
    shutil.copy(tiny_clip_checkpoint, demo_filter / "model.safetensors")  # where `mmpipe demo` leaves its filter
    out = subprocess.run([EXE, "deploy", "--image-source", str(tmp_path / "src"), "--audio-source", str(tmp_path)],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "warning: no CLIP model given and no network: the curation uses the home's bootstrapped filter" in out.stderr
    from prefect.client.orchestration import get_client

    async def configure():
        async with get_client() as client:
            limits = {c.tag: c.concurrency_limit for c in await client.read_concurrency_limits(limit=50, offset=0)}
            assert limits.get("gpu") == 1
            curate = await client.read_deployment_by_name("curate/curate-images")
            assert curate.parameters["clip_model"] == "mmpipe-tiny-clip"
            assert curate.parameters["clip_pretrained"] == str(demo_filter / "model.safetensors")
            assert curate.concurrency_options.collision_strategy.value == "CANCEL_NEW"
            transcribe = await client.read_deployment_by_name("transcribe/transcribe-audio")
            assert transcribe.parameters["whisper_model"] == "tiny.en"
            names = {d.name for d in await client.read_deployments()}
            assert {"curate-images", "transcribe-audio", "train-contrastive", "train-masked", "train-diffusion",
                    "train-asr", "train-speech-masked", "train-audio-contrastive", "evaluate"} <= names
            from prefect.client.schemas.actions import DeploymentUpdate

            for d in await client.read_deployments():  # CPU-sized defaults for this test
                if d.name.startswith("train-"):
                    small = {"steps": 6, "batch_size": 16 if d.name in TRAINED_IMAGE else 8, "lr": 3e-3}
                    if d.name == "train-contrastive":
                        small["model_name"] = "mmpipe-micro-clip"
                    # The trainings this test sees triggered but does not run wait in a queue no worker
                    # polls (their runs are created by the triggers all the same; running them is the
                    # flows' own tests'): five flow-run processes less on a 2-core machine.
                    queue = {} if d.name == "train-contrastive" else {"work_queue_name": PARKED}
                    await client.update_deployment(d.id, DeploymentUpdate(parameters={**d.parameters, **small},
                                                                          **queue))
            parked = {d.name: d.work_queue_name for d in await client.read_deployments()}
            assert parked["train-masked"] == PARKED and parked["train-contrastive"] == "default"

    with server_client(env):
        asyncio.run(configure())
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "mmpipe-process",
                               "--work-queue", "default", "--type", "process"], env=env, cwd=tmp_path,
                              start_new_session=True,
                              stdout=log, stderr=subprocess.STDOUT)
    procs.append(worker)
    from prefect.deployments import run_deployment

    with server_client(env):
        run_deployment("curate/curate-images", parameters={"min_side": 32}, timeout=0)  # no model override
    wlog = tmp_path / "worker.log"
    # Waits on the runs' states (and the worker staying up); the timeouts are ceilings for a busy machine.
    wait_run(env, "curate", 1200, wlog, procs)
    scored = Warehouse(tmp_path / "home").sql("SELECT DISTINCT model, pretrained FROM clip_scores").to_pylist()
    assert scored == [{"model": "mmpipe-tiny-clip", "pretrained": "models/demo-filter/step-00000300/model.safetensors"}], \
        scored
    trained = wait_run(env, "train-contrastive", 1200, wlog, procs)
    assert trained.parameters["dataset"] == "images@v1"
    wh = Warehouse(tmp_path / "home")
    model = wh.sql("SELECT m.model_id, m.status, d.name, d.version FROM models m JOIN datasets d USING (dataset_id) "
                   "WHERE m.objective = 'contrastive'").to_pylist()
    assert model and model[0]["status"] == "trained" and (model[0]["name"], model[0]["version"]) == ("images", "v1")
    evals = wh.sql("SELECT metric FROM evals WHERE model_id = ?", [model[0]["model_id"]]).column("metric").to_pylist()
    assert "mean_R@5" in evals
    # the other trainings were triggered too: masked by the same dataset event, diffusion by the contrastive
    # model's mmpipe.model.trained (their runs wait in the parked queue; completing is the contrastive case's)
    deadline = time.monotonic() + 600
    while not (runs(env, "train-masked") and runs(env, "train-diffusion")):
        assert time.monotonic() < deadline, "train-masked or train-diffusion was not triggered"
        assert worker.poll() is None, "the worker exited"
        time.sleep(2)
    assert runs(env, "train-diffusion")[0].parameters["dataset"].startswith("images")
    # speech: a transcription through its deployment; its audio version's curated event triggers the three speech
    # trainings (triggered is what this checks; their training is the flows' own tests')
    from mmpipe.demo.speech import speech_set

    truth = speech_set(tmp_path / "speech")
    for name in sorted(truth)[60:]:  # 60 clips are enough to make a version
        for path in ((tmp_path / "speech" / name), (tmp_path / "speech" / name).with_suffix(".txt")):
            path.unlink(missing_ok=True)
    with server_client(env):
        run_deployment("transcribe/transcribe-audio", parameters={"source": str(tmp_path / "speech")}, timeout=0)
    wait_run(env, "transcribe", 1200, wlog, procs)
    deadline = time.monotonic() + 600
    while not all(runs(env, name) for name in SPEECH_TRAININGS):
        assert time.monotonic() < deadline, {name: bool(runs(env, name)) for name in SPEECH_TRAININGS}
        assert worker.poll() is None, "the worker exited"
        time.sleep(2)
    assert {runs(env, name)[0].parameters["dataset"] for name in SPEECH_TRAININGS} == {"speech@v1"}
    parked = [r for name in ("train-masked", "train-diffusion", *SPEECH_TRAININGS) for r in runs(env, name)]
    assert {r.state.type.value for r in parked} == {"SCHEDULED"}, [(r.name, r.state.type) for r in parked]
