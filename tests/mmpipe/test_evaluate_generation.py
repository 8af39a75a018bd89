"""Generation metrics: Fréchet distance on known Gaussians, the denoising baselines, the sample grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmpipe.evaluate.generation import denoising_metrics, frechet_distance, save_grid, to_pil
from mmpipe.models.clip import TINY_MODEL
from mmpipe.train.objectives.diffusion import Diffusion, DiffusionConfig


def test_frechet_distance_is_zero_for_one_set_and_the_mean_shift_squared_for_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 2.0) == pytest.approx(8 * 4.0, rel=1e-6)
    b = rng.normal(size=(500, 8)) * 2
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6) and frechet_distance(a, b) > 1


def test_images_map_from_minus_one_one_to_bytes_and_the_grid_is_a_png(tmp_path):
    pil = to_pil(torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4))
    assert pil[0].getpixel((0, 0)) == (0, 128, 255)
    path = save_grid(pil * 3, ["a red circle"] * 6, tmp_path / "g" / "grid.png", cols=3)
    with Image.open(path) as im:
        assert im.format == "PNG"


def test_denoising_metrics_of_an_untrained_model(tiny_clip_checkpoint):
    torch.manual_seed(0)
    model = Diffusion.create(DiffusionConfig(image_size=16, block_out_channels=[8, 16],
                                             down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                                             up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
                                             attention_head_dim=8), TINY_MODEL, tiny_clip_checkpoint).eval()
    tokens = model.tokenizer(["a red circle", "a blue square", "a green cross", "a yellow circle"])
    batch = {"image": torch.rand(4, 3, 16, 16) * 2 - 1, "text": tokens}
    m = denoising_metrics(model, [batch, batch], seed=0)
    assert m["denoise_mse_zero_baseline"] == pytest.approx(1.0, abs=0.15)
    assert m["conditioning_gap"] == pytest.approx(m["denoise_mse_mid_shuffled"] - m["denoise_mse_mid"])
    assert m == denoising_metrics(model, [batch, batch], seed=0)  # same noise for the same seed
