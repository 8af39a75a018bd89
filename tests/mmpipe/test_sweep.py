"""Choosing a sweep's setting, and which samples a setting keeps."""

from __future__ import annotations

import pytest

from mmpipe.sweep import Setting, choose


def _r(setting: str, n: int, r5: float) -> dict:
    return {"setting": setting, "n_samples": n, "metrics": {"mean_R@5": r5}, "samples_seen": 9600}


def test_the_one_standard_error_rule_prefers_more_data_within_the_noise():
    results = [_r("t=0.55", 607, 0.377), _r("t=0.65", 567, 0.392), _r("t=0.45", 626, 0.339), _r("none", 776, 0.281)]
    best, reason = choose(results, "mean_R@5", 200)  # se = sqrt(.392 * .608 / 200) = 0.0345
    assert best["setting"] == "t=0.55" and "within one standard error" in reason
    assert choose(results, "mean_R@5", 20000)[0]["setting"] == "t=0.65"  # a large eval set: no slack
    assert choose(results, "mean_R@5")[0]["setting"] == "t=0.65"  # no eval size: the best wins
    assert choose([_r("a", 10, 0.5), _r("b", 5, 0.5)], "mean_R@5")[0]["setting"] == "a"  # tie: more data


def test_settings_select_from_stored_scores():
    pairs = [("a", 0.9), ("b", 0.1), ("c", 0.5), ("d", None), ("e", 0.7)]
    assert Setting("m", "p", "min_clip_score", 0.5).select(pairs) == ["a", "c", "e"]
    assert Setting("m", "p", "keep_fraction", 0.5).select(pairs) == ["a", "e"]  # top half of the scored 4
    assert Setting("m", "p", "keep_fraction", 1.0).select(pairs) == ["a", "b", "c", "e"]
    with pytest.raises(ValueError):
        Setting("m", "p", "keep_fraction", 0.0)


def test_the_sweep_flow_takes_a_filter_model_without_weights():
    """`mmpipe sweep --clip-model ViT-B-32 --clip-pretrained none` passes [model, None]: Prefect must accept it."""
    from flows.sweep import sweep_flow

    params = sweep_flow.validate_parameters({"source": "s", "name": "n", "eval_dataset": "e", "keep_fractions": [1.0],
                                             "clip_models": [["ViT-B-32", None], ["mmpipe-tiny-clip", "w.pt"]]})
    assert params["clip_models"] == [["ViT-B-32", None], ["mmpipe-tiny-clip", "w.pt"]]


def test_a_recipe_is_everything_that_changes_the_trained_model():
    from mmpipe.train.recipes import RECIPE_VERSION, recipe, recipe_key

    base = {"model_name": "m", "pretrained": None, "siglip": False, "steps": 300, "samples": 3200, "batch_size": 64,
            "lr": 3e-3, "warmup_steps": 30, "checkpoint_every": 75, "log_every": 1, "device": None, "num_workers": 0,
            "seed": 0}
    key = recipe_key(recipe("contrastive", "d1", base))
    assert recipe("contrastive", "d1", base)["samples_seen"] == 3200
    assert recipe("contrastive", "d1", base)["recipe_version"] == RECIPE_VERSION
    for change in ({"samples": 6400}, {"batch_size": 32}, {"lr": 1e-3}, {"seed": 1}, {"model_name": "n"},
                   {"pretrained": "w.pt"}, {"siglip": True}, {"warmup_steps": 5}):
        assert recipe_key(recipe("contrastive", "d1", {**base, **change})) != key, change
    assert recipe_key(recipe("contrastive", "d2", base)) != key  # another data version
    assert recipe_key(recipe("masked", "d1", base)) != key
    for same in ({"device": "cuda"}, {"num_workers": 4}, {"checkpoint_every": 10}, {"log_every": 5},
                 {"steps": 10}):  # where and how it runs; steps yield to the samples budget
        assert recipe_key(recipe("contrastive", "d1", {**base, **same})) == key, same


def test_a_sweeps_rows_are_its_settings_with_the_model_each_version_trained():
    from mmpipe.sweep import settings_of, with_models

    settings = settings_of("tiny", "models/f.safetensors", [0.5], [1.0])
    assert [s.label for s in settings] == ["min_clip_score=0.5", "keep_fraction=1"]
    rows = [s.row({"version": f"v{i}", "dataset_id": f"d{i}", "n_samples": 10 * i}) for i, s in enumerate(settings)]
    assert rows[0] == {"setting": "min_clip_score=0.5", "model": "tiny", "rule": "min_clip_score", "value": 0.5,
                       "version": "v0", "dataset_id": "d0", "n_samples": 0}
    trained = {f"d{i}": {"model_id": f"m{i}", "evals": {"metrics": {"mean_R@5": i}}, "reused": False} for i in (0, 1)}
    recipes = {"m0": {"lr": 1e-3, "seed": 0}, "m1": {"lr": 2e-3, "seed": 0}}
    results = with_models(rows, trained, recipes, ("lr", "seed"))
    assert results[1] == {**rows[1], "model_id": "m1", "metrics": {"mean_R@5": 1}, "reused": False, "lr": 2e-3,
                          "seed": 0}
