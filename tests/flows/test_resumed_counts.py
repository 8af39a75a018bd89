"""A resumed run reports what all its attempts did, not only the last one: the shards an earlier
attempt finished are skipped on resume, and their new samples still count."""

from __future__ import annotations

import pytest


def test_a_resumed_curation_counts_the_samples_its_first_attempt_added(prefect_harness, tmp_path, monkeypatch):
    import flows.curate as curate
    from mmpipe.train.synthetic import write_shape_shards
    from warehouse import Warehouse

    write_shape_shards(tmp_path / "src", 60, shard_size=30, side=32)
    home = str(tmp_path / "home")
    real = curate.dedup_run

    def crash(*args, **kwargs):
        raise RuntimeError("killed after reading every shard")

    monkeypatch.setattr(curate, "dedup_run", crash)
    with pytest.raises(RuntimeError, match="killed after reading"):
        curate.curate_flow(str(tmp_path / "src"), "shapes", home=home, clip_model="none", min_side=16)
    monkeypatch.setattr(curate, "dedup_run", real)
    resumed = curate.curate_flow(str(tmp_path / "src"), "shapes", home=home, clip_model="none", min_side=16)
    wh = Warehouse(home)
    assert wh.sql("SELECT count(DISTINCT run_id) AS n FROM runs").column("n")[0].as_py() == 1  # one run, resumed
    assert resumed["ingested"] == resumed["kept"] == 60
    assert resumed["new_samples"] == 60  # all added by the first attempt, whose shards the resume skipped
    assert resumed["n_scored"] == 0
