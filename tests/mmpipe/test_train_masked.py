"""The M3AE-style masked autoencoder: it learns from the image (masked tokens beat the unigram
baseline), its checkpoint reloads, and a crashed run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmpipe.evaluate.masked import evaluate_masked
from mmpipe.train.objectives.masked import MaskedAutoencoder, MaskedConfig, load_masked
from mmpipe.train.loop import latest_checkpoint
from mmpipe.train.recipes import train_masked
from mmpipe.train.synthetic import write_shape_shards

SMALL = dict(width=64, depth=2, heads=4, decoder_width=64, decoder_depth=1)


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    return write_shape_shards(tmp_path_factory.mktemp("masked-data"), 1000, shard_size=250, side=32)


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> dict:
    return train_masked(shards, tmp_path_factory.mktemp("masked-run"), model=SMALL, steps=120, batch_size=64,
                        lr=3e-3, warmup_steps=10, weight_decay=0.05, checkpoint_every=50, progress=False,
                        shuffle_buffer=500)


def test_both_losses_fall_and_the_checkpoint_reloads(trained):
    history = trained["history"]
    for key in ("image_loss", "text_ce"):
        first, last = [h[key] for h in history[:5]], [h[key] for h in history[-5:]]
        assert sum(last) < 0.8 * sum(first), key
    out = Path(trained["out_dir"])
    assert Path(trained["checkpoint"]) == latest_checkpoint(out) / "model.safetensors"
    assert json.loads((latest_checkpoint(out) / "masked_config.json").read_text())["width"] == 64
    model = load_masked(out)  # a run folder loads its newest whole checkpoint
    saved = load_file(trained["checkpoint"])
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert trained["config"]["model"]["image_mask_ratio"] == 0.75


def test_masked_tokens_beat_the_unigram_baseline_and_features_probe(trained, shards):
    metrics = evaluate_masked(trained["checkpoint"], shards, split="val")
    assert metrics["masked_tokens"] >= 50
    assert metrics["masked_token_accuracy"] > metrics["masked_token_unigram_accuracy"], metrics
    assert metrics["masked_patch_mse"] < metrics["masked_patch_mse_zero_baseline"], metrics
    assert metrics["linear_probe_accuracy"] > metrics["linear_probe_majority_baseline"], metrics
    assert all(isinstance(v, float) for v in metrics.values())


def test_masking_follows_the_ratios():
    torch.manual_seed(0)
    model = MaskedAutoencoder(MaskedConfig(**SMALL, text_mask_ratio=0.5))
    tokens = torch.zeros(8, 16, dtype=torch.long)
    tokens[:, 0], tokens[:, 1:9], tokens[:, 9] = 49406, 320, 49407
    out = model.forward_masked(torch.randn(8, 3, 32, 32), tokens, generator=torch.Generator().manual_seed(0))
    assert out["image_masked"].sum(1).tolist() == [48] * 8  # 75% of 64 patches
    assert 16 <= len(out["targets"]) <= 48 and (out["targets"] == 320).all()  # never start, end or padding
    none = model.forward_masked(torch.randn(2, 3, 32, 32), tokens[:2], text_ratio=0.0)
    assert len(none["targets"]) == 0 and none["text_loss"].item() == 0.0


def test_resume_after_a_crash_repeats_the_uninterrupted_run(shards, tmp_path):
    opts = dict(model=SMALL, steps=6, batch_size=16, lr=2e-3, warmup_steps=2, checkpoint_every=3, progress=False,
                shuffle_buffer=50)
    straight = train_masked(shards, tmp_path / "straight", **opts)

    def crash(step, _):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        train_masked(shards, tmp_path / "crashed", on_step=crash, **opts)
    resumed = train_masked(shards, tmp_path / "crashed", **opts)
    assert resumed["resumed_from"] == 3
    for key in ("image_loss", "text_loss"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in straight["history"][3:]]
    a, b = load_file(straight["checkpoint"]), load_file(resumed["checkpoint"])
    assert all(torch.equal(a[k], b[k]) for k in a)
