"""The curate flow on real shards with a real tiny open_clip model, under the Prefect harness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mmpipe.models.clip import TINY_MODEL
from warehouse import Warehouse


@pytest.fixture
def curate(prefect_harness, tiny_clip_checkpoint):
    from flows.curate import curate_flow

    def run(source, home, **kw):
        kw.setdefault("clip_model", TINY_MODEL)
        kw.setdefault("clip_pretrained", tiny_clip_checkpoint)
        kw.setdefault("min_side", 64)
        kw.setdefault("clip_workers", 0)
        return curate_flow(source, kw.pop("name", "shapes"), home=str(home), **kw)

    return run


def _manifest(result) -> list[tuple[str, float]]:
    table = pq.read_table(result["dataset"]["manifest_uri"])
    return sorted(zip(table["sample_id"].to_pylist(), [round(s, 4) for s in table["clip_score"].to_pylist()]))


def test_every_sample_is_kept_or_dropped_and_the_dataset_is_published(curate, shapes, home, monkeypatch):
    import tasks.dataset as dataset_tasks

    events = []
    real_emit = dataset_tasks.emit_event
    monkeypatch.setattr(dataset_tasks, "emit_event", lambda **kw: events.append(kw) or real_emit(**kw))
    result = curate(shapes.pattern, home, keep_fraction=0.5)
    wh = Warehouse(home)
    n_truth = len(shapes.truth)
    per_sample = wh.query_readonly("SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM outcomes "
                                   "WHERE run_id = ?", [result["run_id"]]).to_pylist()[0]
    assert per_sample["n"] == per_sample["d"] == n_truth == result["ingested"]
    kept = result["kept"]
    assert result["ingested"] == kept + sum(v for k, v in result["outcomes"].items() if k != "kept")
    reasons = set(result["outcomes"])
    assert {"duplicate", "near_duplicate", "too_small", "aspect_ratio", "caption_too_short", "truncated",
            "clip_score_low"} <= reasons
    from mmpipe.schema import DROP_REASONS

    assert reasons - {"kept"} <= set(DROP_REASONS)
    details = wh.query_readonly("SELECT DISTINCT detail FROM decisions WHERE drop_reason = 'clip_score_low'")
    assert all("keep_fraction=0.5" in d for d in details.column("detail").to_pylist())
    ds = wh.query_readonly("SELECT * FROM datasets").to_pylist()
    assert len(ds) == 1 and ds[0]["n_samples"] == kept and ds[0]["version"] == "v1"
    assert '"keep_fraction": 0.5' in ds[0]["filter_spec"]
    assert len(_manifest(result)) == kept
    import webdataset as wds

    assert not ds[0]["shards_uri"].startswith("/")  # relative to the home, so the home can move
    from datasets import load_dataset

    loaded = load_dataset(result["dataset"]["out_dir"], split="train")
    assert len(loaded) == kept and loaded[0]["jpg"].mode == "RGB" and "clip_score" in loaded[0]["json"]
    assert sum(1 for _ in wds.WebDataset(wh.resolve(ds[0]["shards_uri"]), shardshuffle=False)) == kept
    scored = wh.query_readonly("SELECT count(*) AS n FROM clip_scores").column("n")[0].as_py()
    embedded = wh.query_readonly("SELECT count(*) AS n, min(dim) AS d FROM clip_embeddings").to_pylist()[0]
    assert scored == embedded["n"] == result["n_scored"] and embedded["d"] == 64
    assert events and events[-1]["event"] == "mmpipe.dataset.curated"
    assert events[-1]["resource"] == {"prefect.resource.id": "mmpipe.dataset.shapes", "mmpipe.modality": "image"}
    assert events[-1]["payload"]["version"] == "v1"

    from prefect.artifacts import Artifact

    assert Artifact.get("curate-shapes-clip-scores") is not None
    assert "near_duplicate" in str(Artifact.get("curate-shapes-outcomes").data)

    again = curate(shapes.pattern, home, min_clip_score=0.0)  # a new threshold: nothing rescored
    assert again["n_scored"] == 0 and again["dataset"]["version"] == "v2"
    # time travel: the warehouse as it was when v1 was registered
    from mmpipe.cli import app

    out = CliRunner().invoke(app, ["sql", "SELECT version, (SELECT count(*) FROM runs) AS runs FROM datasets",
                                   "--as-of", "shapes@v1", "--format", "json", "--home", str(home)])
    assert out.exit_code == 0, out.output
    import json

    assert json.loads(out.stdout) == [{"version": "v1", "runs": 1}]
    now = wh.query_readonly("SELECT count(*) AS n FROM datasets").column("n")[0].as_py()
    assert now == 2


def test_a_crash_mid_scoring_resumes_to_the_same_dataset(curate, shapes, tmp_path, monkeypatch):
    from mmpipe.stages.clip_score import ClipScorer

    clean = curate(shapes.pattern, tmp_path / "clean", keep_fraction=0.5)
    real = ClipScorer.score
    calls = {"n": 0}

    def die_on_third(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker killed mid-scoring")
        return real(self, *a, **kw)

    monkeypatch.setattr(ClipScorer, "score", die_on_third)
    home = tmp_path / "crashy"
    with pytest.raises(Exception, match="mid-scoring"):
        curate(shapes.pattern, home, keep_fraction=0.5)
    partial = Warehouse(home).query_readonly("SELECT count(*) AS n FROM clip_scores").column("n")[0].as_py()
    assert 0 < partial < clean["n_scored"]
    monkeypatch.setattr(ClipScorer, "score", real)
    resumed = curate(shapes.pattern, home, keep_fraction=0.5)
    assert resumed["n_scored"] == clean["n_scored"]  # what every attempt of the run scored
    n = Warehouse(home).query_readonly("SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM clip_scores")
    assert n.to_pylist() == [{"n": clean["n_scored"], "d": clean["n_scored"]}]  # nothing scored twice
    assert _manifest(resumed) == _manifest(clean)
    runs = Warehouse(home).query_readonly("SELECT status FROM runs").column("status").to_pylist()
    assert runs == ["completed"]


def test_without_clip_every_other_stage_runs(curate, shapes, home):
    result = curate(shapes.pattern, home, clip_model="none")
    assert result["n_scored"] == 0 and not any(k.startswith("clip") for k in result["outcomes"])
    assert result["dataset"]["n_samples"] == result["kept"] > 0


def test_urls_through_the_flow_account_for_failed_fetches(curate, tmp_path, http_server, shapes):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (10, 200, 10)).save(buf, "JPEG")
    http_server["files"]["g.jpg"] = buf.getvalue()
    base = http_server["base"]
    pq.write_table(pa.table({"url": [f"{base}/img/g.jpg", f"{base}/status/500", f"{base}/img/missing.jpg"],
                             "caption": ["a green square", "server error", "missing file"]}), tmp_path / "u.parquet")
    result = curate(str(tmp_path / "u.parquet"), tmp_path / "home", name="urls", clip_model="none")
    assert result["outcomes"] == {"kept": 1, "fetch_failed": 2}
    details = Warehouse(tmp_path / "home").query_readonly(
        "SELECT detail FROM decisions WHERE drop_reason = 'fetch_failed' ORDER BY 1").column("detail").to_pylist()
    assert details == ["http_404", "http_500"]


def test_cli_names_the_offline_choices_when_default_weights_are_missing(prefect_harness, shapes, home):
    from mmpipe.cli import app

    out = CliRunner().invoke(app, ["curate", shapes.pattern, "--name", "x", "--home", str(home)])
    assert out.exit_code == 1 and "ViT-B-32" in out.output and "--clip-model none" in out.output
    assert "Traceback" not in out.output


def test_killing_the_process_mid_scoring_then_rerunning_finishes_the_job(tiny_clip_checkpoint, shapes, cli_env,
                                                                         tmp_path):
    """A real SIGKILL of `mmpipe curate` (its process group), then the same command again; the commands
    use the harness's Prefect API (`cli_env`), as with a user's `mmpipe server`."""
    exe = str(Path(sys.executable).with_name("mmpipe"))
    env = {**cli_env, "PREFECT_LOGGING_LEVEL": "WARNING"}
    args = [exe, "curate", shapes.pattern, "--name", "killed", "--min-side", "64", "--clip-model", TINY_MODEL,
            "--clip-pretrained", tiny_clip_checkpoint, "--keep-fraction", "0.5", "--clip-batch-size", "8",
            "--clip-workers", "0"]
    home = tmp_path / "home"
    scores_dir = home / "lake" / "data" / "main" / "clip_scores"
    proc = subprocess.Popen(args + ["--home", str(home)], env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if scores_dir.exists() and any(scores_dir.rglob("*.parquet")):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wh = Warehouse(home)
    assert wh.query_readonly("SELECT count(*) AS n FROM datasets").column("n")[0].as_py() == 0
    done = subprocess.run(args + ["--home", str(home)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    clean = subprocess.run(args + ["--home", str(tmp_path / "clean")], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert clean.returncode == 0
    wh = Warehouse(home)
    n = wh.query_readonly("SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM clip_scores").to_pylist()[0]
    assert n["n"] == n["d"]
    ours = wh.resolve(wh.query_readonly("SELECT manifest_uri FROM datasets").column("manifest_uri")[0].as_py())
    other = Warehouse(tmp_path / "clean")
    theirs = other.resolve(other.query_readonly("SELECT manifest_uri FROM datasets").column("manifest_uri")[0].as_py())
    a, b = pq.read_table(ours), pq.read_table(theirs)
    assert a["sample_id"].to_pylist() == b["sample_id"].to_pylist()
    assert [round(x, 4) for x in a["clip_score"].to_pylist()] == [round(x, 4) for x in b["clip_score"].to_pylist()]
