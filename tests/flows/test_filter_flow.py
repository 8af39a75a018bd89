"""The headline claim of curation, on a CLIP that has learned something: the bootstrap-filter flow
trains a tiny CLIP on a curated trusted dataset, calibrates its threshold on the held-out split,
and the curate flow then catches the planted mismatched captions of a pool."""

from __future__ import annotations

import pytest

from warehouse import Warehouse


@pytest.fixture(scope="module")
def filtered(prefect_harness, tmp_path_factory):
    from flows.bootstrap_filter import bootstrap_filter_flow
    from flows.curate import curate_flow
    from mmpipe.demo.shapes import write_shapes
    from tasks.demo import evaluate_demo

    root = tmp_path_factory.mktemp("filter")
    home = str(root / "home")
    shapes = write_shapes(root / "shapes", n=400, n_seed=800, n_holdout=200, shard_size=200, seed=7)
    curate_flow(str(shapes.seed_shard.parent), "trusted", home=home, min_side=64, clip_model="none")
    filt = bootstrap_filter_flow("trusted", home=home, steps=120)
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


def test_the_threshold_is_the_quantile_of_the_held_out_split(filtered):
    import json

    import numpy as np

    from mmpipe.stages.clip_score import ClipScoreConfig, ClipScorer
    from mmpipe.train.data import iter_pairs
    from warehouse.queries import resolve_dataset

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
