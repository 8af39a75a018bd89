"""Text-conditioned pixel diffusion on a frozen CLIP text tower: it uses its caption (positive
conditioning gap), saves a UNet diffusers loads, samples with guidance, and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mmpipe.evaluate.generation import evaluate_generation
from mmpipe.train.objectives.diffusion import generate, load_diffusion
from mmpipe.train.recipes import train_contrastive, train_diffusion
from mmpipe.train.synthetic import write_shape_shards

CLIP = "mmpipe-micro-clip"
UNET = {"block_out_channels": [16, 32, 32]}


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    return write_shape_shards(tmp_path_factory.mktemp("diffusion-data"), 1000, shard_size=250, side=32)


@pytest.fixture(scope="module")
def clip_checkpoint(shards, tmp_path_factory) -> str:
    """A briefly trained contrastive model: its text tower conditions, its towers score."""
    return train_contrastive(shards, tmp_path_factory.mktemp("diffusion-clip"), CLIP, steps=40, batch_size=64,
                             lr=3e-3, warmup_steps=5, progress=False)["checkpoint"]


@pytest.fixture(scope="module")
def trained(shards, clip_checkpoint, tmp_path_factory) -> dict:
    return train_diffusion(shards, tmp_path_factory.mktemp("diffusion-run"), CLIP, clip_checkpoint, model=UNET,
                           steps=100, batch_size=32, lr=3e-3, warmup_steps=15, weight_decay=0.0,
                           checkpoint_every=50, progress=False, shuffle_buffer=500)


def test_loss_falls_and_the_unet_loads_with_diffusers(trained):
    from diffusers import UNet2DConditionModel

    losses = [h["diffusion_loss"] for h in trained["history"]]
    assert sum(losses[-10:]) < 0.3 * sum(losses[:10])
    unet_dir = Path(trained["checkpoint"])
    assert unet_dir.name == "unet"
    unet = UNet2DConditionModel.from_pretrained(unet_dir)
    assert unet.config.cross_attention_dim == 64 and unet.config.sample_size == 32
    saved = load_file(str(unet_dir / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(v, saved[k]) for k, v in unet.state_dict().items())
    meta = json.loads((unet_dir.parent / "diffusion.json").read_text())
    assert meta["clip_model"] == CLIP and meta["config"]["cond_dropout"] == 0.1


def test_the_text_conditioner_is_the_frozen_clip_text_tower(trained, clip_checkpoint):
    import open_clip

    model = load_diffusion(trained["out_dir"])
    clip = open_clip.create_model(CLIP, pretrained=clip_checkpoint)
    assert all(torch.equal(v, clip.state_dict()[k]) for k, v in model.conditioner.clip.state_dict().items())
    assert not any(p.requires_grad for p in model.conditioner.parameters())
    states = model.condition(model.tokenizer(["a red circle", "a blue square"]))
    assert states.shape == (2, 16, 64) and not torch.allclose(states[0], states[1])


def test_generation_metrics_and_a_sample_grid(trained, shards, clip_checkpoint, tmp_path):
    grid = tmp_path / "samples.png"
    metrics = evaluate_generation(trained["out_dir"], shards, CLIP, clip_checkpoint, split="val", n_generate=8,
                                  steps=10, grid_path=grid)
    assert metrics["conditioning_gap"] > 0, metrics
    assert metrics["denoise_mse"] < 0.5 * metrics["denoise_mse_zero_baseline"], metrics
    for key in ("clip_score", "clip_score_real", "fd_clip", "fd_clip_real"):
        assert isinstance(metrics[key], float) and metrics[key] >= 0
    with Image.open(grid) as im:
        assert im.format == "PNG" and im.width > 200


def test_sampling_is_seeded_and_guidance_changes_the_result(trained):
    model = load_diffusion(trained["checkpoint"])
    a = generate(model, ["a red circle", "a blue square"], steps=5, guidance_scale=3.0, seed=1)
    assert a.shape == (2, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, generate(model, ["a red circle", "a blue square"], steps=5, guidance_scale=3.0, seed=1))
    assert not torch.equal(a, generate(model, ["a red circle", "a blue square"], steps=5, guidance_scale=0.0, seed=1))


def test_resume_after_a_crash_repeats_the_uninterrupted_run(shards, clip_checkpoint, tmp_path):
    opts = dict(model=UNET, steps=6, batch_size=8, lr=2e-3, warmup_steps=2, checkpoint_every=3, progress=False,
                shuffle_buffer=50)
    straight = train_diffusion(shards, tmp_path / "straight", CLIP, clip_checkpoint, **opts)

    def crash(step, _):
        if step == 4:
            raise Crash

    with pytest.raises(Crash):
        train_diffusion(shards, tmp_path / "crashed", CLIP, clip_checkpoint, on_step=crash, **opts)
    resumed = train_diffusion(shards, tmp_path / "crashed", CLIP, clip_checkpoint, **opts)
    assert resumed["resumed_from"] == 3
    assert [h["diffusion_loss"] for h in resumed["history"]] == [h["diffusion_loss"] for h in straight["history"][3:]]
    a = load_file(str(Path(straight["checkpoint"]) / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(Path(resumed["checkpoint"]) / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
