"""The demo as a user runs it: `mmpipe demo --quick` (the demo's every stage at a few hundred pairs and a
few training steps, see mmpipe/demo/sizes.py) in a fresh process, every printed number checked against the
warehouse and the demo's ground truth. This checks the demo's logic; what its figures show is proved at the
smallest size that shows it: the filter and the sweep's choice on the demo's own data (a micro filter) in
tests/flows/test_filter_flow.py, each model family in tests/mmpipe/test_train_*.py. `make demo` runs the
full size, not the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(3600)
def test_mmpipe_demo_end_to_end(tmp_path):
    """The README's demo command at its quick size, in a fresh process with its own ephemeral Prefect
    server; every number it prints is checked against the warehouse and the demo's ground truth."""
    import re
    import tarfile

    from warehouse import Warehouse

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    home = tmp_path / "demo-home"
    env["MMPIPE_HOME"] = str(home)
    exe = Path(sys.executable).with_name("mmpipe")
    # The wait ends when the demo does; the timeout is only a ceiling for a hang (the quick demo takes about a
    # minute and a half alone, and ten times that on a 2-core machine shared with five other test runs).
    proc = subprocess.run([str(exe), "demo", "--quick", "--speech"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=3300)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "mmpipe sql" in out and "decompression_bomb" in out and "the quick demo" in out
    assert (home / "prefect").is_dir()  # PREFECT_HOME under the mmpipe home
    wh = Warehouse(home)
    # run lines: "run <id>: N inputs, K kept, D dropped"
    for run_id, n, k, d in re.findall(r"run (\S+): (\d+) inputs, (\d+) kept, (\d+) dropped", out):
        row = wh.query_readonly("SELECT ingested, kept, dropped FROM run_summary WHERE run_id = ?", [run_id]).to_pylist()
        assert row == [{"ingested": int(n), "kept": int(k), "dropped": int(d)}], run_id
    # the filter's precision/recall, recomputed from the outcomes and the pool's planted truth
    m = re.search(r"precision ([\d.]+), recall ([\d.]+) \((\d+) of (\d+) caught, (\d+) dropped", out)
    assert m, out[-3000:]
    truth = {}
    for shard in sorted((home / "demo" / "shapes" / "pool").glob("*.tar")):
        with tarfile.open(shard) as tf:
            for mem in tf:
                if mem.name.endswith(".json"):
                    truth[f"{shard.name}/{mem.name[:-5]}"] = json.loads(tf.extractfile(mem).read())
    curate_run = wh.query_readonly("SELECT run_id FROM run_summary WHERE flow = 'curate' AND name = 'demo-shapes'"
                                   ).column("run_id")[0].as_py()
    outcomes = wh.query_readonly("SELECT source_key, drop_stage FROM outcomes WHERE run_id = ?",
                                 [curate_run]).to_pylist()
    dropped = {o["source_key"] for o in outcomes if o["drop_stage"] == "clip_filter"}
    scored = {o["source_key"] for o in outcomes if o["drop_stage"] in (None, "clip_filter")}
    bad = {k for k, t in truth.items() if t.get("mismatched")} & scored
    tp = len(dropped & bad)
    assert (int(m.group(3)), int(m.group(4)), int(m.group(5))) == (tp, len(bad), len(dropped))
    assert float(m.group(1)) == pytest.approx(tp / max(len(dropped), 1), abs=5e-4)
    assert float(m.group(2)) == pytest.approx(tp / len(bad), abs=5e-4)
    # dataset lines: "dataset vN: S samples" + its shards hold exactly S samples
    for version, n in re.findall(r"dataset (v\d+): (\d+) samples", out):
        rows = wh.query_readonly("SELECT n_samples FROM datasets WHERE version = ? AND n_samples = ?",
                                 [version, int(n)]).to_pylist()
        assert rows, (version, n)
    # the three model families on the curated shapes: each metric printed is the warehouse's, on the validation split
    ev = {(r["objective"], r["metric"]): r["value"] for r in wh.query_readonly(
        "SELECT m.objective, e.metric, e.value FROM evals e JOIN models m USING (model_id) JOIN datasets d "
        "USING (dataset_id) WHERE d.name = 'demo-shapes' AND e.split = 'val'").to_pylist()}
    for objective in ("contrastive", "masked", "diffusion"):
        line = re.search(rf"^  {objective}\s+\w+\s+demo-shapes@v1 \[val\]  (.*)$", out, re.M)
        pairs = re.findall(r"([\w@]+) (-?[\d.]+)", line.group(1)) if line else []
        assert len(pairs) >= 3, (objective, out[-3000:])
        for metric, value in pairs:
            assert float(value) == pytest.approx(ev[(objective, metric)], rel=1e-3, abs=1e-3), (objective, metric)
    # the sweep: each setting's printed size and score are the warehouse's; the chosen one is tagged best, and
    # the printed precision/recall of its choice are recomputed from the manifests and the planted truth
    sweep = {r["setting"]: (r["n"], r["value"]) for r in wh.query_readonly(
        "SELECT coalesce('min_clip_score=' || (d.filter_spec->>'min_clip_score'), 'keep_fraction=1') AS setting, "
        "d.n_samples AS n, e.value FROM datasets d JOIN models m USING (dataset_id) JOIN evals e USING (model_id) "
        "WHERE d.name = 'demo-sweep' AND e.metric = 'mean_R@5' AND e.split = 'demo-holdout@v1'").to_pylist()}
    printed = {s: (int(n), float(v)) for s, n, v in re.findall(
        r"^  (\S+=\S+)\s+demo-sweep@v\d+\s+(\d+) samples  mean_R@5 ([\d.]+)", out, re.M)}
    assert len(sweep) == 4 and printed.keys() == sweep.keys(), (printed, sweep)
    for setting, (n, value) in sweep.items():
        assert printed[setting][0] == n and printed[setting][1] == pytest.approx(value, abs=5e-5), setting
    chosen = re.search(r"^  \S+\s+demo-sweep@(v\d+) .*<- chosen$", out, re.M).group(1)
    m = re.search(r"against the known mismatched captions: precision ([\d.]+) / recall ([\d.]+)", out)
    assert m, out[-3000:]
    best = wh.query_readonly("SELECT d.version, d.manifest_uri FROM dataset_tags t JOIN datasets d ON "
                             "d.name = t.name AND d.version = t.version WHERE t.name = 'demo-sweep' AND t.tag = 'best'"
                             ).to_pylist()
    assert best[0]["version"] == chosen
    pool = wh.query_readonly("SELECT manifest_uri FROM datasets WHERE name = 'demo-sweep-pool'").to_pylist()
    import pyarrow.parquet as pq

    kept = set(pq.read_table(wh.resolve(best[0]["manifest_uri"])).column("source_key").to_pylist())
    candidates = set(pq.read_table(wh.resolve(pool[0]["manifest_uri"])).column("source_key").to_pylist())
    bad = {k for k, t in truth.items() if t.get("mismatched")} & candidates
    caught = (candidates - kept) & bad
    assert float(m.group(1)) == pytest.approx(len(caught) / max(len(candidates - kept), 1), abs=5e-4)
    assert float(m.group(2)) == pytest.approx(len(caught) / len(bad), abs=5e-4)
    assert re.search(r"plot: (\S+\.png)", out) and Path(re.search(r"plot: (\S+\.png)", out).group(1)).is_file()
    # the open_clip command it prints names exactly the version's shards
    from braceexpand import braceexpand

    pattern = re.search(r"--train-data '([^']+)'", out).group(1)
    sizes = json.loads((home / "datasets" / "demo-shapes" / "v1" / "sizes.json").read_text())
    assert sorted(Path(p).name for p in braceexpand(pattern)) == sorted(sizes)
    assert all(Path(p).is_file() for p in braceexpand(pattern))
    # every command it suggests is whole (each one running as printed is tests/test_demo_commands.py's job)
    suggested = [line.strip() for line in out.split("Look at it:", 1)[1].splitlines()
                 if line.startswith("  ") and line.strip()]
    assert len(suggested) >= 9 and not any(c.endswith("...") for c in suggested), suggested
    assert any("open_clip_main" in c for c in suggested), suggested
    _check_speech_part(out, wh)
    q = subprocess.run([str(exe), "sql", "SELECT drop_reason, count(*) FROM outcomes GROUP BY 1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert q.returncode == 0 and "truncated" in q.stdout and "duplicate" in q.stdout
    _relocate_and_compare(home, tmp_path / "moved" / "demo-home")


def _check_speech_part(out: str, wh) -> None:
    """`--speech`: the three speech models' printed metrics are the warehouse's, each sweep row's clips and WER
    too, the chosen one is tagged best, and what it left out, by kind, is recomputed from the set's truth."""
    import re

    import pyarrow.parquet as pq

    from mmpipe.demo.speech import speech_set_truth
    from warehouse.dataset_queries import resolve_dataset

    part = out.split("== speech set", 1)[1]
    ev = {(r["objective"], r["metric"]): r["value"] for r in wh.query_readonly(
        "SELECT m.objective, e.metric, e.value FROM evals e JOIN models m USING (model_id) JOIN datasets d "
        "USING (dataset_id) WHERE d.name = 'demo-speech-set' AND e.split = 'val'").to_pylist()}
    for objective in ("asr", "speech-masked", "audio-contrastive"):
        line = re.search(rf"^  {objective}\s+\w+\s+demo-speech-set@v1 \[val\]  (.*)$", part, re.M)
        pairs = re.findall(r"([\w@]+) (-?[\d.]+)", line.group(1)) if line else []
        assert pairs, (objective, part[:3000])
        for metric, value in pairs:
            assert float(value) == pytest.approx(ev[(objective, metric)], rel=1e-3, abs=1e-3), (objective, metric)
    rows = re.findall(r"^  (\S+=\S+)\s+demo-speech-sweep@(v\d+)\s+(\d+) clips  wer ([\d.]+)(  <- chosen)?$", part, re.M)
    assert len(rows) == 3, part[-3000:]
    for setting, version, n, wer in [r[:4] for r in rows]:
        found = wh.query_readonly("SELECT d.n_samples, e.value FROM datasets d JOIN models m USING (dataset_id) "
                                  "JOIN evals e USING (model_id) WHERE d.name = 'demo-speech-sweep' AND d.version = ? "
                                  "AND e.metric = 'wer'", [version]).to_pylist()
        assert found and found[0]["n_samples"] == int(n) and found[0]["value"] == pytest.approx(float(wer), abs=5e-5)
    chosen = [r[1] for r in rows if r[4]]
    assert chosen == [resolve_dataset(wh, "demo-speech-sweep@best")["version"]]
    truth = speech_set_truth()

    def keys(spec):
        return set(pq.read_table(wh.resolve(resolve_dataset(wh, spec)["manifest_uri"])).column("source_key").to_pylist())

    pool, kept = keys("demo-speech-sweep-pool"), keys(f"demo-speech-sweep@{chosen[0]}")
    printed = dict(re.findall(r"(\w+) (\d+/\d+)", part.split("by kind of clip:", 1)[1].splitlines()[0]))
    for kind, counts in printed.items():
        of_kind = {k for k in pool if truth[k]["kind"] == kind}
        assert counts == f"{len(of_kind - kept)}/{len(of_kind)}", kind
    # what each threshold selected (data, not model quality, so it holds at the quick size): no evaluation clip
    # in any training subset; each threshold keeps a strict subset of no filtering and drops bad clips at more
    # than 1.5x their share (tiny.en's pseudo-labels of these short clips are rough, so good clips fall too);
    # max_wer drops the clips read from another sentence and the foreign gibberish
    by_setting = {setting: keys(f"demo-speech-sweep@{version}") for setting, version in [r[:2] for r in rows]}
    holdout = keys("demo-speech-holdout")
    assert not any(s & holdout for s in by_setting.values())
    everything = by_setting["keep_fraction=1"]
    bad = {k for k in everything if truth[k]["kind"] != "good"}
    for setting in ("min_avg_logprob=-1", "max_wer=1"):
        assert by_setting[setting] < everything, setting
        dropped = everything - by_setting[setting]
        assert len(dropped & bad) / len(dropped) > 1.5 * len(bad) / len(everything), (setting, len(dropped & bad))
    for kind in ("mismatched", "foreign_gibberish"):
        assert len({k for k in everything if truth[k]["kind"] == kind} - by_setting["max_wer=1"]) >= 3, kind
    # the chosen one: the lowest WER unless a setting keeping more is within one standard error of it
    wers = {version: float(wer) for _, version, _, wer, _ in rows}
    sizes = {version: int(n) for _, version, n, _, _ in rows}
    top = min(wers.values())
    n_eval = resolve_dataset(wh, "demo-speech-holdout")["n_samples"]
    se = (top * (1 - top) / n_eval) ** 0.5 if 0 <= top <= 1 else 0.0
    assert sizes[chosen[0]] == max(sizes[v] for v, w in wers.items() if w <= top + se + 1e-4)


def _relocate_and_compare(home, moved):
    """Copy a home elsewhere, delete the original: every query answers the same, every path resolves."""
    import shutil

    from warehouse import Warehouse

    queries = ["SELECT run_id, coalesce(drop_reason, 'kept') AS o, count(*) AS n FROM outcomes GROUP BY ALL ORDER BY ALL",
               "SELECT name, version, n_samples, shards_uri, manifest_uri FROM datasets ORDER BY ALL",
               "SELECT count(*) AS n, sum(score) AS s FROM clip_scores",
               "SELECT objective, checkpoint_uri FROM models ORDER BY ALL"]
    before = [Warehouse(home).query_readonly(q).to_pylist() for q in queries]
    shutil.copytree(home, moved)
    shutil.rmtree(home)
    wh = Warehouse(moved, create=False)
    assert [wh.query_readonly(q).to_pylist() for q in queries] == before
    from braceexpand import braceexpand

    for row in before[1]:
        assert all(Path(p).is_file() for p in braceexpand(wh.resolve(row["shards_uri"])))
        assert Path(wh.resolve(row["manifest_uri"])).is_file()
    for row in before[3]:
        assert Path(wh.resolve(row["checkpoint_uri"])).exists()
    assert not home.exists()
