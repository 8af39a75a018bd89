"""Incremental curation (what the nightly `curate-images` deployment runs): a source that gained a shard
is curated for its new samples only, the new version holds the old one plus what was kept now, and an
unchanged source makes no version at all."""

from __future__ import annotations

import shutil
import tarfile

import pyarrow.parquet as pq
from braceexpand import braceexpand

from mmpipe.train.synthetic import write_shape_shards
from warehouse import Warehouse

PARAMS = {"name": "images", "clip_model": "none", "min_side": 32, "incremental": True, "shard_size": 40}


def _keys(shards_uri: str) -> list[str]:
    keys = []
    for path in braceexpand(shards_uri):
        with tarfile.open(path) as tf:
            keys += [m.name.split(".")[0] for m in tf if m.name.endswith(".json")]
    return keys


def test_incremental_curation_adds_only_new_samples_and_no_version_when_nothing_changed(prefect_harness, tmp_path):
    from flows.curate import curate_flow

    home, src = str(tmp_path / "home"), tmp_path / "src"
    write_shape_shards(src, 80, shard_size=40, seed=1)
    first = curate_flow(str(src), home=home, **PARAMS)
    v1 = first["dataset"]
    assert v1["version"] == "v1" and first["ingested"] == 80 and v1["n_samples"] == first["kept"] > 0

    again = curate_flow(str(src), home=home, **PARAMS)  # nothing new: no version, nothing decoded
    assert again["dataset"] is None and again["unchanged"]["version"] == "v1"
    # every input met again is an occurrence, dropped as a duplicate of where the first run met it
    assert again["ingested"] == 80 and again["seen_before"] == 80 and again["outcomes"] == {"duplicate": 80}
    wh = Warehouse(home)
    assert wh.sql("SELECT count(*) AS n FROM datasets").column("n")[0].as_py() == 1
    decided = wh.sql("SELECT stage, drop_reason, count(*) AS n, count(*) FILTER (WHERE detail LIKE "
                     "'repeat of shapes-%.tar/% (run ' || ? || ')') AS named FROM decisions WHERE run_id = ? "
                     "GROUP BY ALL", [first["run_id"], again["run_id"]]).to_pylist()
    assert decided == [{"stage": "dedup", "drop_reason": "duplicate", "n": 80, "named": 80}]

    new = write_shape_shards(tmp_path / "more", 40, shard_size=40, seed=2)
    shutil.move(new[0], src / "shapes-night2.tar")  # the source gained a shard
    third = curate_flow(str(src), home=home, **PARAMS)
    v2 = third["dataset"]
    assert third["ingested"] == 120 and third["seen_before"] == 80 and third["kept"] > 0
    assert third["outcomes"]["duplicate"] >= 80
    assert v2["version"] == "v2" and v2["n_samples"] == v1["n_samples"] + third["kept"]

    keys = _keys(v2["shards_uri"])
    assert len(keys) == len(set(keys)) == v2["n_samples"]  # no sample twice
    assert set(_keys(v1["shards_uri"])) <= set(keys)
    kept_now = set(wh.sql("SELECT sample_id FROM outcomes WHERE run_id = ? AND keep",
                          [third["run_id"]]).column("sample_id").to_pylist())
    assert set(keys) == set(_keys(v1["shards_uri"])) | kept_now
    manifest = pq.read_table(v2["manifest_uri"])
    assert sorted(manifest["sample_id"].to_pylist()) == sorted(keys)
    row = wh.sql("SELECT parent_id FROM datasets WHERE dataset_id = ?", [v2["dataset_id"]]).to_pylist()[0]
    assert row["parent_id"] == v1["dataset_id"]


def test_flow_runs_are_named_for_what_they_run(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.curate import curate_flow

    write_shape_shards(tmp_path / "src", 20, shard_size=20, seed=3)
    curate_flow(str(tmp_path / "src"), home=str(tmp_path / "home"), **{**PARAMS, "name": "named-set"})
    with get_client(sync_client=True) as client:
        names = [r.name for r in client.read_flow_runs()]
    assert any(n.startswith("curate-named-set-20") for n in names), names
