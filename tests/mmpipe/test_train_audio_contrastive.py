"""The audio-contrastive objective (a Whisper-encoder audio tower, an open_clip text tower, ClipLoss) on speech
shards: its loss falls and retrieval beats chance on the clips it learned, the audio tower reloads with
transformers' from_pretrained, the text tower starts from an open_clip checkpoint, and a crash resumes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmpipe.evaluate.speech import evaluate_audio_contrastive
from mmpipe.train.loop import latest_checkpoint
from mmpipe.train.objectives.audio_contrastive import (AUDIO_TOWER, AudioContrastive, AudioContrastiveConfig,
                                                       load_audio_contrastive)
from mmpipe.train.recipes import train_audio_contrastive

SMALL = {"max_seconds": 6, "d_model": 64, "ffn_dim": 128}


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def trained(speech_shard, tmp_path_factory) -> dict:
    return train_audio_contrastive(speech_shard, tmp_path_factory.mktemp("clap-run"), model=SMALL, split=None,
                                   steps=40, batch_size=10, lr=2e-3, warmup_steps=4, checkpoint_every=20,
                                   progress=False, shuffle_buffer=10)


def test_the_loss_falls_retrieval_beats_chance_and_the_audio_tower_reloads(trained, speech_shard):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    losses = [h["contrastive_loss"] for h in trained["history"]]
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses
    folder = latest_checkpoint(trained["out_dir"])
    assert Path(trained["checkpoint"]) == folder / "model.safetensors"
    tower = WhisperEncoder.from_pretrained(folder / AUDIO_TOWER)
    model = load_audio_contrastive(trained["out_dir"])
    ours = dict(model.audio.named_parameters())
    assert all(torch.equal(p, ours[k]) for k, p in tower.named_parameters())
    metrics = evaluate_audio_contrastive(str(folder), speech_shard, split=None)
    assert metrics["n_pairs"] == 10
    assert metrics["mean_R@1"] > 2 * metrics["chance_R@1"], metrics
    assert {"audio_to_text_R@5", "text_to_audio_R@5", "chance_audio_to_text_R@5"} <= set(metrics)


def test_the_text_tower_starts_from_an_open_clip_checkpoint(tiny_clip_checkpoint):
    from safetensors.torch import load_file

    model = AudioContrastive(AudioContrastiveConfig(**SMALL, text_pretrained=tiny_clip_checkpoint))
    clip = load_file(tiny_clip_checkpoint)
    assert torch.equal(model.text.token_embedding.weight, clip["token_embedding.weight"])
    assert torch.equal(model.text.text_projection, clip["text_projection"])
    with pytest.raises(ValueError, match="targets"):
        AudioContrastiveConfig(targets="labels")


def test_resume_after_a_crash_repeats_the_uninterrupted_run(speech_shard, tmp_path):
    opts = dict(model=SMALL, split=None, steps=6, batch_size=4, lr=2e-3, warmup_steps=2, checkpoint_every=3,
                progress=False, shuffle_buffer=10)
    straight = train_audio_contrastive(speech_shard, tmp_path / "straight", **opts)

    def crash(step, _):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        train_audio_contrastive(speech_shard, tmp_path / "crashed", on_step=crash, **opts)
    resumed = train_audio_contrastive(speech_shard, tmp_path / "crashed", **opts)
    assert resumed["resumed_from"] == 3
    assert [h["contrastive_loss"] for h in resumed["history"]] == \
        [h["contrastive_loss"] for h in straight["history"][3:]]
