"""`mmpipe curate --config recipe.yaml` equals the same curation from flags, and is stored with the run."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from mmpipe.models.clip import TINY_MODEL
from warehouse import Warehouse


def _curated(home):
    wh = Warehouse(home)
    run = wh.sql("SELECT run_id, params FROM runs WHERE flow = 'curate'").to_pylist()[0]
    ds = wh.sql("SELECT * FROM datasets WHERE name = 'pool' AND version = 'v1'").to_pylist()[0]
    manifest = pq.read_table(wh.resolve(ds["manifest_uri"])).select(["sample_id", "clip_score"]).to_pylist()
    return run, ds, sorted((r["sample_id"], round(r["clip_score"], 5)) for r in manifest)


def test_a_recipe_run_equals_the_same_run_from_flags(prefect_harness, shapes, tiny_clip_checkpoint, tmp_path):
    from mmpipe.cli import app

    recipe = {"name": "pool", "source": {"path": shapes.pattern, "shard_size": 100},
              "basic": {"min_side": 64, "min_caption_words": 2},
              "dedup": {"exact": True, "hamming": 6},
              "clip": {"model": TINY_MODEL, "pretrained": tiny_clip_checkpoint, "workers": 0, "batch_size": 32},
              "clip_filter": {"keep_fraction": 0.5},
              "semantic_dedup": {"threshold": 0.999, "clusters": 4}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    runner = CliRunner()
    a, b = tmp_path / "a", tmp_path / "b"
    out = runner.invoke(app, ["curate", "--config", str(path), "--home", str(a)])
    assert out.exit_code == 0, out.output
    flags = ["curate", shapes.pattern, "--name", "pool", "--shard-size", "100", "--min-side", "64",
             "--dedup-hamming", "6", "--clip-model", TINY_MODEL, "--clip-pretrained", tiny_clip_checkpoint,
             "--clip-workers", "0", "--clip-batch-size", "32", "--keep-fraction", "0.5", "--home", str(b)]
    out = runner.invoke(app, flags)
    assert out.exit_code == 0, out.output
    (run_a, ds_a, rows_a), (run_b, ds_b, rows_b) = _curated(a), _curated(b)
    assert json.loads(run_a["params"]) == json.loads(run_b["params"])  # the recipe is stored as the run's params
    assert rows_a == rows_b and json.loads(ds_a["filter_spec"]) == json.loads(ds_b["filter_spec"])
    # the recipe's semantic dedup ran on the new version; its resolved recipe sits beside the version
    v2 = Warehouse(a).sql("SELECT parent_id FROM datasets WHERE name = 'pool' AND version = 'v2'").to_pylist()
    assert v2 and v2[0]["parent_id"] == ds_a["dataset_id"]
    stored = yaml.safe_load((a / "datasets" / "pool" / "v1" / "recipe.yaml").read_text())
    assert stored["dedup"]["hamming"] == 6 and stored["semantic_dedup"]["threshold"] == 0.999
    # `mmpipe recipe RUN_ID` gives back a recipe that describes the flags run exactly
    out = runner.invoke(app, ["recipe", run_b["run_id"], "--home", str(b)])
    assert out.exit_code == 0, out.output
    from mmpipe.recipe import parse_recipe

    values, _ = parse_recipe(yaml.safe_load(out.output))
    assert values["clip_pretrained"] == tiny_clip_checkpoint and values["keep_fraction"] == 0.5
    assert values["source"] == shapes.pattern and values["dedup_hamming"] == 6
