"""Months of nightly runs, small: ten nights of incremental curation into one dataset with exact and near
copies of earlier nights, pairs met again under new names, a night with nothing new, a run killed
mid-night and finished by the next night's run, and an identical command overlapping a live run."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from warehouse import Warehouse

HOLDER = r"""
import json, sys
from tasks.runs import hold_lease
lease = hold_lease(sys.argv[1], "curate", json.loads(sys.argv[2]))
print("held", flush=True)
sys.stdin.read()
lease.release()
"""


def _picture(rng: np.random.Generator, side: int = 96) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((side, side),
                                                                                    Image.Resampling.BICUBIC)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _tar(path: Path, samples: list[tuple[str, bytes, str]]) -> None:
    with tarfile.open(path, "w") as tf:
        for key, data, text in samples:
            for name, blob in ((f"{key}.jpg", data), (f"{key}.txt", text.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))


def _night(night: int, rng: np.random.Generator, earlier: list[tuple[str, bytes, str, Image.Image]],
           fresh: int) -> list[tuple[str, bytes, str]]:
    """`fresh` new pictures, plus (after night 1) an exact copy of an earlier picture under a new caption,
    a resized copy of another under its caption, and an earlier pair again under a new file name."""
    out = []
    for i in range(fresh):
        img = _picture(rng)
        sample = (f"n{night:02d}-{i}", _jpeg(img), f"night {night} picture {i} of colour fields")
        earlier.append((*sample, img))
        out.append(sample)
    if night > 1:
        pool = earlier[: len(earlier) - fresh]
        a, b, c = (pool[int(k)] for k in rng.choice(len(pool), 3, replace=False))
        out.append((f"n{night:02d}-exact", a[1], f"another caption for night {night}"))
        out.append((f"n{night:02d}-near", _jpeg(b[3].resize((120, 120), Image.Resampling.BICUBIC)), b[2]))
        out.append((f"n{night:02d}-again", c[1], c[2]))
    return out


def _kill_mid_run(args: list[str], home: Path, env: dict) -> None:
    """Start `mmpipe curate` and SIGKILL its whole process group once it staged a shard."""
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900  # a ceiling for a busy machine; the event is the staged shard
    while time.monotonic() < deadline and proc.poll() is None:
        if any((home / "staging").glob("*/shard-*.tar")):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.timeout(2400)
def test_ten_nights_hold_each_sample_once_and_account_for_every_input(prefect_harness, cli_env, tmp_path):
    from flows.curate import curate_flow
    from tasks.runs import RunInProgress

    rng = np.random.default_rng(7)
    src, home = tmp_path / "incoming", tmp_path / "home"
    src.mkdir()
    params = {"name": "nightly", "home": str(home), "clip_model": "none", "min_side": 64, "incremental": True}
    earlier: list = []
    inputs: dict[str, int] = {}  # source_key -> how many nights brought it (files stay in the folder)
    results = []
    for night in range(1, 11):
        if night == 5:  # nothing new: only a pair met before, under a new name
            pair = earlier[0]
            batch = [(f"n05-again", pair[1], pair[2])]
        else:
            batch = _night(night, rng, earlier, fresh=6)
        _tar(src / f"night-{night:02d}.tar", batch)
        for key, _, _ in batch:
            inputs[f"night-{night:02d}.tar/{key}"] = night
        if night in (7, 8):  # the scheduled command: killed mid-night 7, and night 8's run finishes it
            # (on the harness's Prefect API, as a scheduled command with the user's `mmpipe server`)
            command = [str(Path(sys.executable).with_name("mmpipe")), "curate", str(src), "--name", "nightly",
                       "--home", str(home), "--clip-model", "none", "--min-side", "64", "--incremental"]
            if night == 7:
                _kill_mid_run(command, home, cli_env)
            else:
                done = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=1200)
                assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            continue
        if night == 9:  # an identical command overlapping a live one: it says so and changes nothing
            stored = Warehouse(home).sql("SELECT params FROM runs WHERE run_id = ?",
                                         [results[-1]["run_id"]]).column("params")[0].as_py()
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), stored], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(RunInProgress, match="in progress"):
                curate_flow(str(src), **params)
            holder.communicate("", timeout=300)
        result = curate_flow(str(src), **params)
        results.append(result)
        if night == 5:
            assert result["dataset"] is None and result["kept"] == 0

    wh = Warehouse(home)
    runs = wh.sql("SELECT run_id, status FROM runs WHERE flow = 'curate'").to_pylist()
    assert all(r["status"] in ("completed", "completed_with_warnings") for r in runs), runs
    assert len(runs) == 9  # the killed night's run was resumed by the next night's, not run twice
    # Every input of every night is an occurrence with an outcome, and the counts add up.
    rows = wh.query_readonly("SELECT o.run_id, o.source_key, o.keep, o.drop_reason FROM outcomes o").to_pylist()
    met = {}
    for r in rows:
        assert r["keep"] or r["drop_reason"], r
        met.setdefault(r["source_key"], set()).add(r["run_id"])
    assert set(met) == set(inputs)  # nothing lost
    for r in results:
        assert r["ingested"] == sum(r["outcomes"].values())
    # No version holds two copies: one row per sample and per image bytes, and no near copy of a kept one.
    versions = wh.sql("SELECT version, manifest_uri FROM datasets WHERE name = 'nightly' ORDER BY created_at").to_pylist()
    assert len(versions) == 8  # a version per night with something new kept: not night 5, one for nights 7-8
    for v in versions:
        manifest = pq.read_table(wh.resolve(v["manifest_uri"]))
        ids, shas = manifest["sample_id"].to_pylist(), manifest["content_sha256"].to_pylist()
        assert len(ids) == len(set(ids)) and len(shas) == len(set(shas)), v["version"]
    last = pq.read_table(wh.resolve(versions[-1]["manifest_uri"]))
    keys = set(last["source_key"].to_pylist())
    assert not any(k.endswith(("-exact", "-near", "-again")) for k in keys), sorted(keys)
    fresh = {k for k in inputs if not k.endswith(("-exact", "-near", "-again"))}
    assert keys == fresh  # every new picture of every night, the killed night's too
    detail = json.dumps(wh.query_readonly("SELECT source_key, drop_reason, detail FROM outcomes "
                                          "WHERE source_key LIKE '%-near'").to_pylist())
    assert "near_duplicate" in detail and "nightly@v" in detail  # the kept twin's version is named
