"""The asr objective on speech shards laid out as the transcribe flow exports them (audio member, transcript
.txt, json with the reference): its loss falls, its checkpoint reloads with transformers' from_pretrained,
its targets are the transcripts or the references as asked, and a crashed run resumes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmpipe.train.audio_data import AudioStream
from mmpipe.train.loop import latest_checkpoint
from mmpipe.train.objectives.asr import AsrConfig, AsrFeatures, load_asr, normalized_target
from mmpipe.train.recipes import train_asr

SMALL = {"max_seconds": 6, "d_model": 64, "ffn_dim": 128}


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def shards(speech_shard) -> str:
    return speech_shard


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> dict:
    return train_asr(shards, tmp_path_factory.mktemp("asr-run"), model=SMALL, split=None, steps=60, batch_size=8,
                     lr=3e-3, warmup_steps=4, checkpoint_every=30, progress=False, shuffle_buffer=10)


def test_the_loss_falls_and_the_checkpoint_reloads_with_transformers(trained, shards, tmp_path):
    from transformers import PreTrainedTokenizerFast, WhisperFeatureExtractor, WhisperForConditionalGeneration

    losses = [h["asr_loss"] for h in trained["history"]]
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5]), losses
    folder = latest_checkpoint(trained["out_dir"])
    assert Path(trained["checkpoint"]) == folder / "model.safetensors"
    model = WhisperForConditionalGeneration.from_pretrained(folder)
    assert model.config.d_model == 64 and model.config.num_mel_bins == 40
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    assert tokenizer.decode(tokenizer("the cat")["input_ids"]) == "the cat"
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    assert extractor.feature_size == 40 and extractor.n_samples == 6 * 16000
    reloaded = load_asr(trained["out_dir"])  # a run folder loads its newest whole checkpoint
    ours = dict(model.named_parameters())
    assert all(torch.equal(p, ours[k]) for k, p in reloaded.model.named_parameters())
    # it has learned from the clips: its greedy transcripts are closer to the references than the untrained
    # model's (at this size, far from right: what a recognizer learns is shown on the speech set)
    from mmpipe.evaluate.asr import evaluate_recognizer
    from mmpipe.train.objectives.asr import SpeechRecognizer

    metrics = evaluate_recognizer(str(folder), shards, split=None, worst=2)
    torch.manual_seed(0)
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    SpeechRecognizer(AsrConfig(**SMALL)).save(untrained)
    baseline = evaluate_recognizer(str(untrained), shards, split=None)
    assert metrics["n_clips"] == 10 and metrics["n_references"] == 10
    assert metrics["cer"] < min(1.0, baseline["cer"]), (metrics, baseline)
    # the ten clips all fall in the training split: an empty validation split measures nothing, and says so
    assert evaluate_recognizer(str(folder), shards, split="val") == {"n_clips": 0.0, "n_references": 0.0}
    assert len(metrics["worst"]) == 2 and metrics["worst"][0]["wer"] >= metrics["worst"][1]["wer"]


def test_targets_are_the_transcripts_or_the_references_as_asked(shards):
    # the shard's transcripts are the references less their last word (tests/mmpipe/conftest.py)
    for targets, pick in (("transcript", lambda ref: ref.rsplit(" ", 1)[0]), ("reference", lambda ref: ref)):
        features = AsrFeatures(AsrConfig(**SMALL, targets=targets))
        seen = list(AudioStream(shards, features, split=None, shuffle_buffer=0, repeat=False))
        assert len(seen) == 10
        for s in seen:
            assert s["text"] == pick(s["reference"])
            ids = s["labels"][s["labels"] != -100].tolist()
            assert ids[-1] == features.tokenizer.eos_token_id
            assert features.tokenizer.decode(ids[:-1]) == normalized_target(s["text"])
            assert s["input_features"].shape == (40, 600)
    with pytest.raises(ValueError, match="targets"):
        AsrConfig(targets="captions")


def test_a_clip_longer_than_the_window_is_skipped(shards):
    features = AsrFeatures(AsrConfig(**{**SMALL, "max_seconds": 3}))
    kept = list(AudioStream(shards, features, split=None, shuffle_buffer=0, repeat=False))
    assert 0 < len(kept) < 10  # the shipped clips run 2.8 to 5 s


def test_resume_after_a_crash_repeats_the_uninterrupted_run(shards, tmp_path):
    opts = dict(model=SMALL, split=None, steps=6, batch_size=4, lr=2e-3, warmup_steps=2, checkpoint_every=3,
                progress=False, shuffle_buffer=10)
    straight = train_asr(shards, tmp_path / "straight", **opts)

    def crash(step, _):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        train_asr(shards, tmp_path / "crashed", on_step=crash, **opts)
    resumed = train_asr(shards, tmp_path / "crashed", **opts)
    assert resumed["resumed_from"] == 3
    assert [h["asr_loss"] for h in resumed["history"]] == [h["asr_loss"] for h in straight["history"][3:]]
