"""Masked-model metrics: the probe, the unigram baseline and the patch baseline on known inputs."""

from __future__ import annotations

import pytest
import torch

from mmpipe.evaluate.masked import image_features, linear_probe, reconstruction_metrics
from mmpipe.train.objectives.masked import MaskedAutoencoder, MaskedConfig


def test_linear_probe_separates_separable_classes_and_reports_the_majority_baseline():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=gen) * 4
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 30
    idx = torch.tensor([{"a": 0, "b": 1, "c": 2}[x] for x in labels])
    x = centres[idx] + torch.randn(120, 16, generator=gen)
    m = linear_probe(x[::2], labels[::2], x[1::2], labels[1::2])
    assert m["linear_probe_accuracy"] > 0.95 and m["linear_probe_majority_baseline"] == pytest.approx(0.5)
    unseen = linear_probe(x[::2], labels[::2], x[1:3], ["zzz", "zzz"])
    assert unseen["linear_probe_accuracy"] == 0.0


def _batch(n=6):
    tokens = torch.zeros(n, 16, dtype=torch.long)
    tokens[:, 0], tokens[:, 1:6], tokens[:, 6] = 49406, 736, 49407
    tokens[:, 3] = 7117
    return {"image": torch.randn(n, 3, 32, 32), "text": tokens, "label": ["x", ""] * (n // 2)}


def test_reconstruction_metrics_have_their_baselines_on_the_same_positions():
    torch.manual_seed(0)
    model = MaskedAutoencoder(MaskedConfig(width=32, depth=1, heads=2, decoder_width=32, decoder_depth=1,
                                           text_mask_ratio=0.5)).eval()
    m = reconstruction_metrics(model, [_batch(), _batch()], seed=0)
    assert m["masked_tokens"] > 0 and 0.5 <= m["masked_token_unigram_accuracy"] <= 1.0  # 736 is 4 of 5
    assert m["masked_patch_mse_zero_baseline"] == pytest.approx(1.0, abs=0.05)  # normalized patches
    again = reconstruction_metrics(model, [_batch(), _batch()], seed=0)
    assert again["masked_tokens"] == m["masked_tokens"]  # same seed, same masks
    feats, labels = image_features(model, [_batch()])
    assert feats.shape == (3, 32) and labels == ["x", "x", "x"]
