"""Contrastive training on streamed WebDataset shards: it learns (retrieval well above chance on the
validation split), resumes exactly, and interoperates with open_clip and open_clip_train."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmpipe.evaluate.retrieval import evaluate_retrieval
from mmpipe.train.objectives.contrastive import create_contrastive
from mmpipe.train.recipes import train_contrastive
from mmpipe.train.synthetic import write_shape_shards

MODEL = "mmpipe-micro-clip"
FAST = dict(batch_size=32, lr=2e-3, warmup_steps=2, weight_decay=0.05, progress=False)


class Crash(Exception):
    pass


def crash_at(step: int):
    def on_step(s, metrics):
        if s == step:
            raise Crash(step)
    return on_step


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    return write_shape_shards(tmp_path_factory.mktemp("clip-data"), 1000, shard_size=250, side=32)


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("clip-run")
    seen = []
    result = train_contrastive(shards, out, MODEL, steps=150, batch_size=64, lr=3e-3, warmup_steps=15,
                               weight_decay=0.05, checkpoint_every=50, progress=False, shuffle_buffer=500,
                               on_step=lambda step, m: seen.append((step, m)))
    return {**result, "seen": seen}


def test_loss_falls_and_every_step_is_reported(trained):
    losses = [h["contrastive_loss"] for h in trained["history"]]
    assert len(losses) == trained["step"] == 150 and trained["samples_seen"] == 150 * 64
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
    steps, metrics = zip(*trained["seen"])
    assert list(steps) == list(range(1, 151))
    assert {"contrastive_loss", "lr", "samples_seen", "logit_scale"} <= set(metrics[-1])
    assert metrics[-1]["samples_seen"] == 150 * 64


def test_retrieval_on_the_validation_split_beats_chance(trained, shards):
    metrics = evaluate_retrieval(MODEL, trained["checkpoint"], shards, split="val")
    assert metrics["n_pairs"] >= 80
    for way in ("image_to_text", "text_to_image"):
        assert metrics[f"{way}_R@5"] >= 3 * metrics[f"chance_{way}_R@5"], metrics
    assert metrics["zero_shot_accuracy"] > 2 * metrics["zero_shot_chance"], metrics
    assert all(isinstance(v, float) for v in metrics.values())


def test_checkpoint_loads_in_open_clip_as_pretrained(trained):
    import open_clip

    model, _, _ = open_clip.create_model_and_transforms(MODEL, pretrained=trained["checkpoint"])
    saved = load_file(trained["checkpoint"])
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert model.logit_scale.exp().item() <= 100 + 1e-3


def test_training_can_start_from_a_checkpoint_and_the_temperature_is_clamped(trained, shards, tmp_path):
    objective, *_ = create_contrastive(MODEL, pretrained=trained["checkpoint"])
    saved = load_file(trained["checkpoint"])
    assert all(torch.equal(v, saved[k]) for k, v in objective.model.state_dict().items())
    with torch.no_grad():
        objective.model.logit_scale.fill_(10.0)
    objective.after_step()
    assert objective.model.logit_scale.item() == pytest.approx(math.log(100))
    warm = train_contrastive(shards, tmp_path / "warm", MODEL, pretrained=trained["checkpoint"], steps=1, **FAST)
    cold = train_contrastive(shards, tmp_path / "cold", MODEL, steps=1, **FAST)
    assert warm["history"][0]["contrastive_loss"] < cold["history"][0]["contrastive_loss"]
    assert warm["config"]["init"] == trained["checkpoint"]


def _weights(path: str) -> dict:
    return load_file(path)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_a_crash_repeats_the_uninterrupted_run(shards, tmp_path, workers):
    opts = dict(FAST, steps=8, checkpoint_every=4, num_workers=workers)
    straight = train_contrastive(shards, tmp_path / "straight", MODEL, shuffle_buffer=100, **opts)
    with pytest.raises(Crash):
        train_contrastive(shards, tmp_path / "crashed", MODEL, shuffle_buffer=100, on_step=crash_at(6), **opts)
    resumed = train_contrastive(shards, tmp_path / "crashed", MODEL, shuffle_buffer=100, **opts)
    assert resumed["resumed_from"] == 4 and resumed["step"] == 8
    assert [h["contrastive_loss"] for h in resumed["history"]] == \
        [h["contrastive_loss"] for h in straight["history"][4:]]
    a, b = _weights(straight["checkpoint"]), _weights(resumed["checkpoint"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = train_contrastive(shards, tmp_path / "crashed", MODEL, shuffle_buffer=100, **opts)
    assert again["history"] == [] and again["step"] == 8  # already complete: nothing to do


def test_siglip_loss_with_a_learned_bias(shards, tmp_path):
    # (no "siglip" in a config name: open_clip would pick the T5 tokenizer for it)
    result = train_contrastive(shards, tmp_path / "siglip", "mmpipe-micro-sigmoid-clip", siglip=True, steps=12,
                               **{**FAST, "batch_size": 64})
    losses = [h["contrastive_loss"] for h in result["history"]]
    assert losses[-1] < losses[0] and "logit_bias" in result["history"][-1]
    import open_clip

    model = open_clip.create_model("mmpipe-micro-sigmoid-clip", pretrained=result["checkpoint"])
    assert model.logit_bias is not None


def test_samples_budget_sets_the_number_of_steps(shards, tmp_path):
    result = train_contrastive(shards, tmp_path / "budget", MODEL, samples=100, **FAST)
    assert result["step"] == 4 and result["samples_seen"] == 128
    accumulated = train_contrastive(shards, tmp_path / "accum", MODEL, samples=100, grad_accum=2, log_every=2, **FAST)
    assert accumulated["step"] == 2 and accumulated["samples_seen"] == 128
    assert [h["samples_seen"] for h in accumulated["history"]] == [64, 128]


def test_open_clip_train_runs_one_epoch_on_the_same_shards(shards, tmp_path):
    pattern = str(Path(shards[0]).parent / "shapes-{000000..000003}.tar")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mmpipe.train.open_clip_main", "--model", MODEL, "--train-data", pattern,
         "--dataset-type", "webdataset", "--train-num-samples", "192", "--batch-size", "64", "--epochs", "1",
         "--workers", "1", "--precision", "fp32", "--device", "cpu", "--lr", "1e-3", "--warmup", "1",
         "--logs", str(tmp_path / "logs"), "--name", "run", "--seed", "0", "--log-every-n-steps", "1"],
        env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    checkpoint = tmp_path / "logs" / "run" / "checkpoints" / "epoch_1.pt"
    log = (tmp_path / "logs" / "run" / "out.log").read_text()
    assert checkpoint.is_file() and "Train Epoch: 0 [192/192" in log
    # their checkpoint goes through our evaluation as it is
    metrics = evaluate_retrieval(MODEL, str(checkpoint), shards[:1], split="val")
    assert 0 <= metrics["image_to_text_R@1"] <= 1
