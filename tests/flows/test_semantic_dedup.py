"""Semantic dedup, index + search, export options and subsets on one curated home: a shapes pool with
planted near-copies (resized, cropped), curated with a real tiny open_clip, every flow under the harness."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from mmpipe.models.clip import TINY_MODEL
from warehouse import Warehouse


@pytest.fixture(scope="module")
def pool(prefect_harness, tiny_clip_checkpoint, tmp_path_factory):
    """shapes@v1: the pool curated with exact + pHash dedup and a CLIP filter that keeps everything
    scored, so the near-copies pHash missed reach the version."""
    from flows.curate import curate_flow
    from mmpipe.demo.shapes import write_shapes

    root = tmp_path_factory.mktemp("i15")
    shapes = write_shapes(root / "src", n=160, n_seed=8, n_holdout=8, shard_size=60, near=0.125)
    home = root / "home"
    result = curate_flow(shapes.pattern, "shapes", home=str(home), clip_model=TINY_MODEL,
                         clip_pretrained=tiny_clip_checkpoint, min_side=64, min_clip_score=-1.0, clip_workers=0)
    return {"home": home, "shapes": shapes, "curate": result, "root": root}


def _manifest_ids(result: dict) -> list[str]:
    return pq.read_table(result["manifest_uri"])["sample_id"].to_pylist()


def _by_key(wh: Warehouse, run_id: str) -> dict[str, dict]:
    rows = wh.sql("SELECT source_key, sample_id, keep, drop_stage FROM outcomes WHERE run_id = ?", [run_id])
    return {r["source_key"]: r for r in rows.to_pylist()}


def test_semantic_dedup_catches_near_copies_phash_missed(pool):
    from flows.dedup import semantic_dedup_flow

    wh = Warehouse(pool["home"])
    truth, outcomes = pool["shapes"].truth, _by_key(wh, pool["curate"]["run_id"])
    near = {k: t for k, t in truth.items() if t.get("near_copy")}
    missed = {k for k in near if outcomes[k]["keep"]}  # near-copies pHash let through
    assert any(near[k]["near_copy"] == "cropped" for k in missed)
    result = semantic_dedup_flow("shapes@v1", home=str(pool["home"]), threshold=0.995, clusters=8)
    v1, v2 = (wh.sql("SELECT * FROM datasets WHERE name = 'shapes' AND version = ?", [v]).to_pylist()[0]
              for v in ("v1", "v2"))
    assert v2["parent_id"] == v1["dataset_id"] and v2["n_samples"] == v1["n_samples"] - result["dropped"]
    rows = wh.sql("SELECT sample_id, keep, drop_reason, detail, score FROM decisions WHERE run_id = ? "
                  "AND stage = 'semantic_dedup'", [result["run_id"]]).to_pylist()
    assert len(rows) == v1["n_samples"]
    kept = set(_manifest_ids(result["dataset"]))
    scores = dict(zip(*(wh.sql("SELECT sample_id, score FROM clip_scores").column(c).to_pylist()
                        for c in ("sample_id", "score"))))
    for r in rows:
        if not r["keep"]:
            twin = r["detail"].split()[1]
            assert r["drop_reason"] == "semantic_duplicate" and twin in kept and r["score"] > 0.995
            assert scores[twin] >= scores[r["sample_id"]]  # the higher CLIP score is the one kept
    dropped = {r["sample_id"] for r in rows if not r["keep"]}
    caught = {k for k in missed if outcomes[k]["sample_id"] in dropped}
    assert len(caught) >= len(missed) // 2 and any(near[k]["near_copy"] == "cropped" for k in caught)
    from mmpipe.schema import DROP_REASONS

    assert "semantic_duplicate" in DROP_REASONS


def test_search_finds_the_planted_match_first_for_text_and_image(pool, tmp_path):
    from flows.export import index_flow
    from mmpipe.cli import app

    home = pool["home"]
    got = index_flow("shapes@v1", home=str(home))
    where = Path(got["path"])
    assert got["kind"] == "flat" and (where / "image.index").exists()
    img = np.load(where / "embeddings" / "img_emb" / "img_emb_0.npy")
    meta = pq.read_table(where / "embeddings" / "metadata" / "metadata_0.parquet")
    assert img.dtype == np.float16 and img.shape[0] == meta.num_rows == got["n"]
    assert (where / "embeddings" / "text_emb" / "text_emb_0.npy").exists()
    captions = meta["caption"].to_pylist()
    unique = next(c for c in captions if captions.count(c) == 1)
    runner = CliRunner()
    out = runner.invoke(app, ["search", "shapes@v1", unique, "--against", "text", "-k", "5", "--format", "json",
                              "--home", str(home)])
    assert out.exit_code == 0, out.output
    hits = json.loads(out.output)
    assert hits[0]["caption"] == unique and hits[0]["score"] > 0.999 and len(hits) == 5
    # an image query: a resized copy of a version's picture finds that picture first
    target = meta["sample_id"][3].as_py()
    shard = pq.read_table(Warehouse(home).resolve(pool["curate"]["dataset"]["manifest_uri"]))
    shard_of = dict(zip(shard["sample_id"].to_pylist(), shard["shard"].to_pylist()))
    with tarfile.open(Path(pool["curate"]["dataset"]["out_dir"]) / shard_of[target]) as tf:
        picture = Image.open(io.BytesIO(tf.extractfile(f"{target}.jpg").read())).convert("RGB")
    query = tmp_path / "query.png"
    picture.resize((80, 80)).save(query)
    out = runner.invoke(app, ["search", "shapes@v1", "--image", str(query), "-k", "3", "--format", "json",
                              "--home", str(home)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["sample_id"] == target
    out = runner.invoke(app, ["search", "shapes@v1", "a red circle", "-k", "3", "--home", str(home)])
    assert out.exit_code == 0 and "rank" in out.output


def test_resized_export_loads_with_datasets_and_trains(pool):
    from datasets import load_dataset

    from flows.export import export_flow
    from flows.train import train_contrastive_flow

    home = pool["home"]
    result = export_flow("shapes@v1", home=str(home), name="shapes-128", resize=128, resize_mode="center_crop",
                         shard_size=40)
    ds = result["dataset"]
    wh = Warehouse(home)
    row = wh.sql("SELECT * FROM datasets WHERE name = 'shapes-128'").to_pylist()[0]
    parent = wh.sql("SELECT dataset_id, n_samples FROM datasets WHERE name = 'shapes' AND version = 'v1'").to_pylist()[0]
    assert row["parent_id"] == parent["dataset_id"] and row["n_samples"] == parent["n_samples"]
    out = Path(ds["out_dir"])
    shards = sorted(str(p) for p in out.glob("shard-*.tar"))
    stats = [json.loads(p.read_text()) for p in sorted(out.glob("shard-*_stats.json"))]
    assert len(stats) == len(shards) and sum(s["count"] for s in stats) == row["n_samples"]
    assert all(s["status"] == "success" and s["config"]["resize"] == 128 for s in stats)
    loaded = load_dataset("webdataset", data_files={"train": shards}, split="train")
    assert len(loaded) == row["n_samples"]
    first = loaded[0]
    assert first["jpg"].size == (128, 128) and first["json"]["width"] == 128
    for field in ("original_width", "caption", "key", "clip_score", "clip_model", "sample_id"):
        assert first["json"].get(field) is not None, field
    trained = train_contrastive_flow("shapes-128", home=str(home), model_name="mmpipe-micro-clip", steps=3,
                                     batch_size=16, lr=3e-3, warmup_steps=1, evaluate=False)
    assert trained["dataset"] == "shapes-128@v1" and trained["steps"] == 3


def test_subsets_from_an_id_file_and_a_query_hold_exactly_those_samples(pool, tmp_path):
    from flows.export import export_flow
    from mmpipe.cli import app

    home = pool["home"]
    wh = Warehouse(home)
    ids = _manifest_ids(pool["curate"]["dataset"])
    wanted = ids[::7]
    uids = np.array([(int(s[:16], 16), int(s[16:32], 16)) for s in wanted], dtype="u8,u8")  # DataComp's uid format
    np.save(tmp_path / "subset.npy", uids)
    got = export_flow("shapes@v1", home=str(home), name="by-uid", ids_file=str(tmp_path / "subset.npy"))
    assert sorted(_manifest_ids(got["dataset"])) == sorted(wanted)
    pq.write_table(pa.table({"sample_id": ids[:5] + ["f" * 64]}), tmp_path / "subset.parquet")
    got = export_flow("shapes@v1", home=str(home), name="by-parquet", ids_file=str(tmp_path / "subset.parquet"))
    assert sorted(_manifest_ids(got["dataset"])) == sorted(ids[:5]) and got["missing"] == 1
    query = "SELECT sample_id FROM clip_scores WHERE score > (SELECT median(score) FROM clip_scores)"
    out = CliRunner().invoke(app, ["export", "shapes@v1", "--query", query, "--name", "by-query", "--shard-size", "10",
                                   "--home", str(home)])
    assert out.exit_code == 0, out.output
    expected = set(wh.query_readonly(query).column("sample_id").to_pylist()) & set(ids)
    row = wh.sql("SELECT * FROM datasets WHERE name = 'by-query'").to_pylist()[0]
    assert set(pq.read_table(wh.resolve(row["manifest_uri"]))["sample_id"].to_pylist()) == expected
    assert row["n_samples"] == len(expected) and json.loads(row["filter_spec"])["export"]["query"] == query
    refused = CliRunner().invoke(app, ["export", "shapes@v1", "--query", "COPY samples TO 'x.csv'",
                                       "--home", str(home)])
    assert refused.exit_code != 0 and "refused" in refused.output
