"""The headline claims of curation, on the demo's own data and a smaller filter (mmpipe/demo/sizes.py, CLAIMS): the
bootstrap-filter flow trains a micro CLIP on a curated trusted dataset and calibrates its threshold on the
held-out split; the curate flow then catches the planted mismatched captions of a pool; and the demo's
sweep finds that filtering beats none at equal samples seen, choosing a threshold that catches the planted
mismatches with precision and recall >= 0.9. (The demo test checks the demo's logic at a tiny size.)"""

from __future__ import annotations

import pytest

from warehouse import Warehouse


@pytest.fixture(scope="module")
def filtered(prefect_harness, tmp_path_factory):
    from flows.bootstrap_filter import bootstrap_filter_flow
    from flows.curate import curate_flow
    from mmpipe.demo.shapes import write_shapes
    from tasks.demo import evaluate_demo

    from mmpipe.demo.sizes import CLAIMS

    root = tmp_path_factory.mktemp("filter")
    home = str(root / "home")
    shapes = write_shapes(root / "shapes", **CLAIMS.shapes_kwargs())
    curate_flow(str(shapes.seed_shard.parent), "trusted", home=home, min_side=64, clip_model="none")
    filt = bootstrap_filter_flow("trusted", home=home, steps=CLAIMS.filter_steps, model_name=CLAIMS.filter_model)
    pool = curate_flow(shapes.pattern, "pool", home=home, min_side=64, clip_model=filt["model_name"],
                       clip_pretrained=filt["checkpoint"], min_clip_score=filt["min_score"])
    report = evaluate_demo.fn(home, pool["run_id"], shapes, filt["model_id"])
    return {"home": home, "filter": filt, "pool": pool, "report": report, "shapes": shapes}


def test_the_filter_catches_planted_mismatched_captions(filtered):
    clip = filtered["report"]["clip_filter"]
    assert clip["bad"] > 40  # ~20% of the pool's captions describe another picture
    assert clip["precision"] >= 0.6 and clip["recall"] >= 0.85, clip
    dedup = filtered["report"]["dedup"]
    assert dedup["precision"] == 1.0 and dedup["recall"] == 1.0


def test_offline_deployments_default_to_the_homes_filter_with_its_own_architecture(filtered):
    """`mmpipe deploy` with no network picks the newest filter the warehouse registered, as what it is (here the
    micro config), and tells why."""
    from deployments.serve import default_models

    models, why = default_models(filtered["home"], online=False)
    assert models["mmpipe_clip_model"] == "mmpipe-micro-clip" == filtered["filter"]["model_name"]
    assert models["mmpipe_clip_pretrained"] == filtered["filter"]["checkpoint"]
    assert "bootstrapped filter mmpipe-micro-clip" in why["clip"]


def test_the_threshold_is_the_quantile_of_the_held_out_split(filtered):
    import json

    import numpy as np

    from mmpipe.stages.clip_score import ClipScoreConfig, ClipScorer
    from mmpipe.train.data import iter_pairs
    from warehouse.dataset_queries import resolve_dataset

    wh = Warehouse(filtered["home"])
    filt = filtered["filter"]
    model = wh.sql("SELECT m.config, d.name FROM models m JOIN datasets d USING (dataset_id) WHERE model_id = ?",
                   [filt["model_id"]]).to_pylist()[0]
    config = json.loads(model["config"])
    assert model["name"] == "trusted" and config["calibration_quantile"] == 0.05  # lineage: the trusted dataset
    shards = wh.resolve(resolve_dataset(wh, "trusted")["shards_uri"])
    val = list(iter_pairs(shards, split="val"))
    train = list(iter_pairs(shards, split="train"))
    assert config["calibration_pairs"] == len(val) > 50 and len(train) > 5 * len(val)
    scorer = ClipScorer(ClipScoreConfig(filt["model_name"], filt["checkpoint"], num_workers=0))
    scores = [s[0] for s in scorer.score([str(i) for i in range(len(val))], [p[0] for p in val],
                                         [p[1] for p in val]).values()]
    assert filt["min_score"] == pytest.approx(float(np.quantile(scores, 0.05)), abs=1e-5)
    assert sum(s < filt["min_score"] for s in scores) / len(scores) == pytest.approx(0.05, abs=0.02)


def test_a_sweep_finds_that_filtering_beats_no_filtering_at_equal_samples_seen(filtered):
    """The demo's sweep: its thresholds and no filtering, from the stored scores (no rescoring), one recipe,
    one held-out evaluation set; filtering wins, the chosen threshold catches the planted mismatched
    captions with precision and recall >= 0.9, the winner is tagged, the plot written, and a rerun
    retrains nothing."""
    from flows.curate import curate_flow
    from flows.demo import SWEEP_SCORES
    from flows.sweep import sweep_flow
    from mmpipe.demo.sizes import CLAIMS
    from tasks.demo import evaluate_sweep_choice
    from warehouse.dataset_queries import resolve_dataset

    home, filt, shapes = filtered["home"], filtered["filter"], filtered["shapes"]
    curate_flow(str(shapes.holdout_shard), "heldout", home=home, min_side=64, clip_model="none")
    wh = Warehouse(home)
    scored_before = wh.sql("SELECT count(*) AS n FROM clip_scores").column("n")[0].as_py()
    params = {"home": home, "keep_fractions": [1.0], "min_clip_scores": list(SWEEP_SCORES),
              "clip_models": [[filt["model_name"], filt["checkpoint"]]], "samples_seen": CLAIMS.sweep_samples,
              "batch_size": 64, "lr": 3e-3, "curate": {"min_side": 64}}
    result = sweep_flow(shapes.pattern, "swept", "heldout", **params)
    r5 = {r["setting"]: r["metrics"]["mean_R@5"] for r in result["results"]}
    print("sweep mean_R@5:", r5, "chosen:", result["reason"])
    unfiltered = r5.pop("keep_fraction=1")
    assert max(r5.values()) > unfiltered  # filtering beats no filtering at equal samples seen
    choice = evaluate_sweep_choice.fn(home, "swept-pool", f"swept@{result['best']['version']}", shapes)
    print("the chosen setting against the planted mismatches:", choice)
    assert result["best"]["setting"] != "keep_fraction=1"
    assert choice["precision"] >= 0.9 and choice["recall"] >= 0.9, choice
    assert {r["samples_seen"] for r in result["results"]} == {CLAIMS.sweep_samples}
    assert wh.sql("SELECT count(*) AS n FROM clip_scores").column("n")[0].as_py() == scored_before  # no rescoring
    sizes = {r["setting"]: r["n_samples"] for r in result["results"]}
    assert all(sizes["keep_fraction=1"] > n for setting, n in sizes.items() if setting != "keep_fraction=1")
    held_out = set(wh.sql("SELECT sample_id FROM occurrences o JOIN runs r USING (run_id) WHERE o.source = 'heldout'")
                   .column("sample_id").to_pylist())
    for r in result["results"]:  # no training subset holds an evaluation sample
        manifest = wh.resolve(resolve_dataset(wh, f"swept@{r['version']}")["manifest_uri"])
        import pyarrow.parquet as pq

        assert not held_out & set(pq.read_table(manifest).column("sample_id").to_pylist())
    best = resolve_dataset(wh, "swept@best")
    assert best["version"] == result["best"]["version"]
    top = max(r["metrics"]["mean_R@5"] for r in result["results"])  # the one-standard-error rule:
    se = (top * (1 - top) / resolve_dataset(wh, "heldout")["n_samples"]) ** 0.5
    assert result["best"]["metrics"]["mean_R@5"] >= top - se
    assert result["best"]["n_samples"] == max(r["n_samples"] for r in result["results"]
                                              if r["metrics"]["mean_R@5"] >= top - se)
    from pathlib import Path

    assert Path(result["plot"]).stat().st_size > 5000
    page = Path(result["report"]).read_text()  # the chosen version's report shows the sweep: table and plot
    assert "The sweep that chose this setting" in page and (Path(result["report"]).parent / "plots" / "sweep.png").is_file()
    assert all(f"swept@{r['version']}" in page for r in result["results"])
    models = wh.sql("SELECT count(*) AS n FROM models").column("n")[0].as_py()
    again = sweep_flow(shapes.pattern, "swept", "heldout", **params)  # resumes: nothing is retrained
    assert wh.sql("SELECT count(*) AS n FROM models").column("n")[0].as_py() == models
    assert [r["model_id"] for r in again["results"]] == [r["model_id"] for r in result["results"]]
