"""The speech-masked objective (wav2vec 2.0 pretraining) on speech shards: its contrastive loss falls below
chance, its checkpoint reloads with transformers' from_pretrained, and a crashed run resumes exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mmpipe.evaluate.speech import evaluate_speech_masked
from mmpipe.train.loop import latest_checkpoint
from mmpipe.train.objectives.speech_masked import SpeechMaskedConfig, WaveFeatures, load_speech_masked
from mmpipe.train.recipes import train_speech_masked

SMALL = {"max_seconds": 5}


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def trained(speech_shard, tmp_path_factory) -> dict:
    return train_speech_masked(speech_shard, tmp_path_factory.mktemp("w2v-run"), model=SMALL, split=None,
                               steps=40, batch_size=8, lr=2e-3, warmup_steps=4, checkpoint_every=20,
                               progress=False, shuffle_buffer=10)


def test_the_contrastive_loss_falls_below_chance_and_the_checkpoint_reloads(trained, speech_shard):
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

    losses = [h["contrastive_loss"] for h in trained["history"]]
    # it falls, from above chance (an untrained model's ln(K + 1) for K = 20 distractors) to below it
    assert sum(losses[-5:]) < 0.95 * sum(losses[:5]) and sum(losses[-5:]) / 5 < math.log(21) < losses[0], losses
    assert all("diversity_loss" in h for h in trained["history"])
    folder = latest_checkpoint(trained["out_dir"])
    assert Path(trained["checkpoint"]) == folder / "model.safetensors"
    model = Wav2Vec2ForPreTraining.from_pretrained(folder)
    assert model.config.hidden_size == 64 and model.config.num_negatives == 20
    assert Wav2Vec2FeatureExtractor.from_pretrained(folder).do_normalize
    reloaded = load_speech_masked(trained["out_dir"])
    ours = dict(model.named_parameters())
    assert all(torch.equal(p, ours[k]) for k, p in reloaded.model.named_parameters())
    metrics = evaluate_speech_masked(str(folder), speech_shard, split=None)
    assert metrics["contrastive_loss_chance"] == pytest.approx(math.log(21))
    assert metrics["contrastive_loss"] < metrics["contrastive_loss_chance"], metrics
    assert metrics["codevector_perplexity"] > 1


def test_clips_are_normalized_padded_and_masked_within_their_audio():
    features = WaveFeatures(SpeechMaskedConfig(max_seconds=2))
    short = features.sample(torch.randn(16000).numpy() * 3 + 1)
    assert short["input_values"].shape == (32000,) and short["attention_mask"].sum() == 16000
    audio = short["input_values"][:16000]
    assert abs(float(audio.mean())) < 1e-3 and abs(float(audio.std()) - 1) < 1e-2
    assert float(short["input_values"][16000:].abs().max()) == 0
    from mmpipe.train.objectives.speech_masked import SpeechMasked

    model = SpeechMasked(SpeechMaskedConfig(max_seconds=2))
    batch = {k: torch.stack([v, v]) for k, v in short.items()}
    frames, masked, negatives = model.masks(batch)
    assert masked.shape == frames.shape and not (masked & ~frames.bool()).any()  # no mask on padding
    assert negatives.shape[-1] == 20


def test_resume_after_a_crash_repeats_the_uninterrupted_run(speech_shard, tmp_path):
    opts = dict(model=SMALL, split=None, steps=6, batch_size=4, lr=2e-3, warmup_steps=2, checkpoint_every=3,
                progress=False, shuffle_buffer=10)
    straight = train_speech_masked(speech_shard, tmp_path / "straight", **opts)

    def crash(step, _):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        train_speech_masked(speech_shard, tmp_path / "crashed", on_step=crash, **opts)
    resumed = train_speech_masked(speech_shard, tmp_path / "crashed", **opts)
    assert resumed["resumed_from"] == 3
    assert [h["contrastive_loss"] for h in resumed["history"]] == \
        [h["contrastive_loss"] for h in straight["history"][3:]]


def test_a_linear_probe_scores_its_features_where_clips_carry_labels(trained, tmp_path):
    """Clips whose json carries a `label` (here the speech set's voice, male or female) get a linear probe on
    the frozen features, trained on the training split and scored on the validation split beside the
    majority class."""
    import json

    from mmpipe.demo.speech import speech_set
    from mmpipe.sources.tars import write_tar_atomic

    truth = speech_set(tmp_path / "set")
    good = sorted(k for k, t in truth.items() if t["kind"] == "good")[:80]
    write_tar_atomic(tmp_path / "labelled.tar", [
        {"__key__": Path(k).stem, "ogg": (tmp_path / "set" / k).read_bytes(), "txt": truth[k]["text"].encode(),
         "json": json.dumps({"sample_id": Path(k).stem, "reference": truth[k]["text"],
                             "label": "female" if "+f" in truth[k]["voice"] else "male"}).encode()} for k in good])
    metrics = evaluate_speech_masked(str(latest_checkpoint(trained["out_dir"])), str(tmp_path / "labelled.tar"),
                                     split="val", val_fraction=0.3)
    assert metrics["linear_probe_classes"] == 2
    assert 0 <= metrics["linear_probe_accuracy"] <= 1 and 0.5 <= metrics["linear_probe_majority_baseline"] <= 1
    assert metrics["contrastive_loss"] > 0 and metrics["eval_batches"] >= 1
