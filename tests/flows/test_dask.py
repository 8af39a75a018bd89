"""Flows on a real Dask cluster of two worker processes give the local run's dataset, under the Prefect harness."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from mmpipe.demo.speech import SPEECH_DIR
from mmpipe.models.clip import TINY_MODEL
from warehouse import Warehouse


def _decisions(home, run_id) -> list[tuple]:
    rows = Warehouse(home).query_readonly(
        "SELECT sample_id, stage, keep, drop_reason FROM decisions WHERE run_id = ? "
        "ORDER BY sample_id, stage", [run_id])
    return [tuple(r.values()) for r in rows.to_pylist()]


def _manifest(result) -> list[dict]:
    # `uri` is left out: the manifest takes it from `samples`, where the first writer wins, and shards
    # are prepared concurrently on either runner; `source_key` (the run's first occurrence) stays in.
    rows = pq.read_table(result["dataset"]["manifest_uri"]).drop_columns(["uri"]).sort_by("sample_id").to_pylist()
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def test_the_runner_choice():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.runners import task_runner

    assert isinstance(task_runner(), ThreadPoolTaskRunner)
    joined = task_runner("dask", "tcp://127.0.0.1:8786")
    assert isinstance(joined, DaskTaskRunner) and joined.address == "tcp://127.0.0.1:8786"
    local = task_runner("dask", workers=3)
    assert local.cluster_kwargs["n_workers"] == 3 and local.cluster_kwargs["threads_per_worker"] == 1
    for bad in ({"runner": "ray"}, {"runner": "local", "dask_address": "tcp://h:1"},
                {"runner": "dask", "dask_address": "tcp://h:1", "workers": 2}):
        with pytest.raises(ValueError):
            task_runner(**bad)


def test_workers_declare_a_gpu_only_where_cuda_is(monkeypatch):
    import torch

    from flows.runners import local_cluster_kwargs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "resources" not in local_cluster_kwargs()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert local_cluster_kwargs(4) == {"n_workers": 4, "threads_per_worker": 1, "processes": True,
                                       "dashboard_address": None, "resources": {"GPU": 1}}


def test_curation_on_a_local_dask_cluster_gives_the_local_dataset(prefect_harness, shapes, tiny_clip_checkpoint,
                                                                  tmp_path):
    from flows.curate import curate_flow
    from flows.runners import run_with
    from mmpipe.models import cache

    params = {"source": shapes.pattern, "name": "shapes", "clip_model": TINY_MODEL, "min_side": 64,
              "clip_pretrained": tiny_clip_checkpoint, "keep_fraction": 0.5, "clip_workers": 0}
    local = run_with(curate_flow, "local", home=str(tmp_path / "local"), **params)
    cache.clear()
    on_dask = run_with(curate_flow, "dask", workers=2, home=str(tmp_path / "dask"), **params)
    assert not cache._models  # CLIP was loaded and run in the worker processes only
    assert on_dask["outcomes"] == local["outcomes"] and on_dask["n_scored"] == local["n_scored"] > 0
    assert _decisions(tmp_path / "dask", on_dask["run_id"]) == _decisions(tmp_path / "local", local["run_id"])
    assert _manifest(on_dask) == _manifest(local) and len(_manifest(local)) == local["kept"]


@pytest.fixture
def mixed_cluster():
    """Two worker processes, only one of which declares a GPU."""
    from distributed import Client, Nanny, Scheduler, SpecCluster

    from flows.runners import same_numerics

    workers = {"gpu": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
               "cpu": {"cls": Nanny, "options": {"nthreads": 1}}}
    with same_numerics():
        cluster = SpecCluster(scheduler={"cls": Scheduler, "options": {"dashboard_address": None}}, workers=workers)
    with cluster, Client(cluster) as client:
        yield cluster, client


def test_transcription_on_dask_gives_the_sequential_result_with_model_tasks_on_the_gpu_worker(
        prefect_harness, mixed_cluster, tmp_path):
    from distributed import get_task_stream

    from flows.runners import run_with
    from flows.transcribe import transcribe_flow

    folder = tmp_path / "speech"  # 3 shards of 2: a copy of shard 0's bytes in shard 1, a repeat in shard 2
    folder.mkdir()
    for name in ("clip00", "clip01", "clip02"):
        for ext in ("flac", "txt"):
            shutil.copy(SPEECH_DIR / f"{name}.{ext}", folder / f"{name}.{ext}")
    shutil.copy(SPEECH_DIR / "clip00.flac", folder / "other_text.flac")
    (folder / "other_text.txt").write_text("a reference that differs")
    for ext in ("flac", "txt"):
        shutil.copy(SPEECH_DIR / f"clip01.{ext}", folder / f"z_repeat.{ext}")
    params = {"source": str(folder), "name": "speech", "whisper_model": "tiny.en", "device": "cpu", "shard_size": 2}
    local = run_with(transcribe_flow, "local", home=str(tmp_path / "local"), **params)
    assert local["outcomes"] == {"kept": 3, "duplicate": 2} and local["transcribed"] == 3

    cluster, client = mixed_cluster
    with get_task_stream(client) as stream:
        on_dask = run_with(transcribe_flow, "dask", dask_address=cluster.scheduler_address,
                           home=str(tmp_path / "dask"), **params)
    assert on_dask["outcomes"] == local["outcomes"] and on_dask["transcribed"] == local["transcribed"]
    assert _decisions(tmp_path / "dask", on_dask["run_id"]) == _decisions(tmp_path / "local", local["run_id"])
    assert _manifest(on_dask) == _manifest(local)

    names = {addr: w["name"] for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()}
    ran = [(t["key"].rsplit("-", 1)[0], names[t["worker"]]) for t in stream.data]
    model_tasks = [w for task, w in ran if task in ("ensure_whisper", "transcribe_staged_shard")]
    assert len(model_tasks) == 4 and set(model_tasks) == {"gpu"}  # 1 load + 3 shards, all where the GPU is
    assert any(task == "prepare_audio_shard" for task, _ in ran)


def test_cli_runner_options_fail_fast_on_a_wrong_combination(shapes, tmp_path):
    from typer.testing import CliRunner

    from mmpipe.cli import app

    for extra, message in ((["--runner", "ray"], "--runner is local or dask"),
                           (["--dask-workers", "2"], "--dask-workers sizes the LocalCluster"),
                           (["--dask-address", "tcp://127.0.0.1:1", "--dask-workers", "2"], "without --dask-address")):
        for command in (["curate", shapes.pattern, "--name", "x"],
                        ["sweep", shapes.pattern, "--name", "x", "--eval-dataset", "h", "--keep-fraction", "0.5,1"]):
            out = CliRunner().invoke(app, [*command, "--home", str(tmp_path), *extra])
            assert out.exit_code == 1 and message in out.output and "Traceback" not in out.output


def test_a_sweep_on_dask_scores_the_pool_on_the_workers_and_trains_its_settings_side_by_side(
        prefect_harness, shapes, tiny_clip_checkpoint, tmp_path):
    """Two settings, two worker processes: each setting's training (a subflow in a task) runs on its own
    worker, at the same time as the other; the driver loads no model."""
    from distributed import Client, LocalCluster, get_task_stream

    from flows.curate import curate_flow
    from flows.runners import local_cluster_kwargs, run_with, same_numerics
    from flows.sweep import sweep_flow
    from mmpipe.models import cache

    home = str(tmp_path / "home")
    curate_flow(str(shapes.holdout_shard), "heldout", home=home, min_side=64, clip_model="none")
    cache.clear()
    with same_numerics():
        cluster = LocalCluster(**local_cluster_kwargs(2))
    with cluster, Client(cluster) as client, get_task_stream(client) as stream:
        result = run_with(sweep_flow, dask_address=cluster.scheduler_address, source=shapes.pattern, name="swept",
                          eval_dataset="heldout", home=home, keep_fractions=[1.0, 0.5],
                          clip_models=[[TINY_MODEL, tiny_clip_checkpoint]], samples_seen=256, batch_size=32,
                          curate={"min_side": 64, "clip_workers": 0})
        names = {addr: w["name"] for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()}
    assert not cache._models  # scoring and training loaded their models in the workers only
    assert [r["setting"] for r in result["results"]] == ["keep_fraction=1", "keep_fraction=0.5"]
    assert all(r["samples_seen"] == 256 and "mean_R@5" in r["metrics"] for r in result["results"])
    assert result["results"][0]["n_samples"] > result["results"][1]["n_samples"] > 0
    spans = {}
    for t in stream.data:
        if t["key"].startswith("_flow_on_a_worker"):
            compute = [s for s in t["startstops"] if s["action"] == "compute"]
            spans[t["key"]] = (names[t["worker"]], compute[0]["start"], compute[0]["stop"])
    assert len(spans) == 2
    (w1, start1, stop1), (w2, start2, stop2) = spans.values()
    assert w1 != w2 and max(start1, start2) < min(stop1, stop2)  # two workers, overlapping in time
    assert any(t["key"].startswith("score_staged_shard") for t in stream.data)  # the pool was scored on Dask
