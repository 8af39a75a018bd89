"""A sweep reuses a trained model only when its whole recipe matches: a rerun with the same settings
trains nothing, a rerun with another samples-seen trains new models, and each result row shows its
own model's recipe from the `models` table."""

from __future__ import annotations

from mmpipe.models.clip import TINY_MODEL
from warehouse import Warehouse


def test_a_sweep_rerun_with_another_samples_seen_trains_new_models(prefect_harness, shapes, tiny_clip_checkpoint,
                                                                    tmp_path):
    from flows.curate import curate_flow
    from flows.sweep import sweep_flow

    home = str(tmp_path / "home")
    curate_flow(str(shapes.holdout_shard), "heldout", home=home, min_side=64, clip_model="none")
    # one setting: reuse is decided per trained model, by its whole recipe; more settings only repeat that
    params = dict(home=home, keep_fractions=[0.5], clip_models=[[TINY_MODEL, tiny_clip_checkpoint]],
                  batch_size=32, curate={"min_side": 64, "clip_workers": 0})
    wh = Warehouse(home)

    def models() -> int:
        return wh.sql("SELECT count(*) AS n FROM models WHERE objective = 'contrastive'").column("n")[0].as_py()

    first = sweep_flow(shapes.pattern, "swept", "heldout", samples_seen=128, **params)
    assert models() == 1 and not any(r["reused"] for r in first["results"])
    same = sweep_flow(shapes.pattern, "swept", "heldout", samples_seen=128, **params)
    assert models() == 1 and all(r["reused"] for r in same["results"])  # the same recipe: nothing retrained
    assert [r["model_id"] for r in same["results"]] == [r["model_id"] for r in first["results"]]

    more = sweep_flow(shapes.pattern, "swept", "heldout", samples_seen=256, **params)
    assert models() == 2 and not any(r["reused"] for r in more["results"])  # same versions, another recipe
    assert [r["version"] for r in more["results"]] == [r["version"] for r in first["results"]]
    assert not {r["model_id"] for r in more["results"]} & {r["model_id"] for r in first["results"]}
    assert {r["samples_seen"] for r in more["results"]} == {256} and {r["samples_seen"] for r in first["results"]} == {128}
    assert {r["batch_size"] for r in more["results"]} == {32}
    steps = wh.sql("SELECT model_id, max(step) AS s FROM train_steps GROUP BY 1").to_pylist()
    assert {r["s"] for r in steps if r["model_id"] in {m["model_id"] for m in more["results"]}} == {256 // 32}

