"""Evaluation of the speech objectives: speech-masked by its pretraining losses on held-out clips beside
chance and a linear probe on its frozen features where clips carry a label (a speaker, a language, a
voice); audio-contrastive by audio-to-text and text-to-audio recall@k beside chance."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch

from mmpipe.evaluate.masked import linear_probe


def _loader(shards, features, split, val_fraction, batch_size):
    from torch.utils.data import DataLoader

    from mmpipe.train.audio_data import AudioStream

    stream = AudioStream(shards, features, split=split, val_fraction=val_fraction, shuffle_buffer=0, repeat=False)
    return DataLoader(stream, batch_size=batch_size)


@torch.no_grad()
def pretraining_losses(model, batches: Iterable[dict], device: str = "cpu", seed: int = 0) -> dict[str, float]:
    """Mean per-masked-frame contrastive and diversity losses and codebook perplexity, with masks and negatives
    drawn from `seed` (the same for every model evaluated), beside the contrastive loss of chance: ln(K + 1)
    for K distractors."""
    state = np.random.get_state()
    np.random.seed(seed)
    sums, n = {"contrastive_loss": 0.0, "diversity_loss": 0.0, "codevector_perplexity": 0.0}, 0
    try:
        for batch in batches:
            out = model.losses({"input_values": batch["input_values"].to(device),
                                "attention_mask": batch["attention_mask"].to(device)})
            for k in sums:
                sums[k] += float(out[k])
            n += 1
    finally:
        np.random.set_state(state)
    if not n:  # a small version's validation split can be empty: nothing to measure
        return {"eval_batches": 0.0}
    return {**{k: v / n for k, v in sums.items()},
            "contrastive_loss_chance": math.log(model.config.num_negatives + 1), "eval_batches": float(n)}


@torch.no_grad()
def clip_features(model, batches: Iterable[dict], device: str = "cpu") -> tuple[torch.Tensor, list[str]]:
    """Mean-pooled transformer states (over each clip's audio frames) of the labelled clips, with their labels."""
    feats, labels = [], []
    for batch in batches:
        keep = [i for i, label in enumerate(batch["label"]) if label]
        if not keep:
            continue
        values, attention = batch["input_values"][keep].to(device), batch["attention_mask"][keep].to(device)
        hidden = model.model.wav2vec2(values, attention_mask=attention).last_hidden_state
        frames = model.model._get_feature_vector_attention_mask(hidden.shape[1], attention).unsqueeze(-1).float()
        feats.append(((hidden * frames).sum(1) / frames.sum(1).clamp(min=1)).cpu())
        labels += [batch["label"][i] for i in keep]
    return (torch.cat(feats) if feats else torch.zeros(0, 1)), labels


def evaluate_speech_masked(checkpoint: str, shards: str | Sequence[str], split: str | None = "val",
                           probe_split: str = "train", val_fraction: float = 0.1, batch_size: int = 16, seed: int = 0,
                           device: str | None = None) -> dict[str, float]:
    """Pretraining losses on `split`; a linear probe trained on `probe_split` features and scored on `split`
    where clips carry labels of more than one kind."""
    from mmpipe.models.clip import pick_device
    from mmpipe.train.objectives.speech_masked import load_speech_masked

    device = pick_device(device)
    model = load_speech_masked(checkpoint, device)
    out = pretraining_losses(model, _loader(shards, model.features, split, val_fraction, batch_size), device, seed)
    test_x, test_y = clip_features(model, _loader(shards, model.features, split, val_fraction, batch_size), device)
    if test_y and split is not None:
        train_x, train_y = clip_features(model, _loader(shards, model.features, probe_split, val_fraction,
                                                        batch_size), device)
        if len(set(train_y)) > 1:
            out.update(linear_probe(train_x, train_y, test_x, test_y))
    return out


@torch.no_grad()
def evaluate_audio_contrastive(checkpoint: str, shards: str | Sequence[str], split: str | None = "val",
                               val_fraction: float = 0.1, batch_size: int = 32, device: str | None = None
                               ) -> dict[str, float]:
    """Recall@k both ways between a split's clips and their captions (the texts the model trained on),
    with chance levels; clips that share a caption are not each other's competitors."""
    from mmpipe.evaluate.retrieval import retrieval_metrics
    from mmpipe.models.clip import pick_device
    from mmpipe.train.objectives.audio_contrastive import load_audio_contrastive

    device = pick_device(device)
    model = load_audio_contrastive(checkpoint, device)
    audio, text, captions = [], [], []
    for batch in _loader(shards, model.features, split, val_fraction, batch_size):
        audio.append(model.encode_audio(batch["input_features"].to(device), batch["n_frames"].to(device)).cpu())
        text.append(model.encode_text(batch["tokens"].to(device)).cpu())
        captions += list(batch["text"])
    if not captions:  # a small version's validation split can be empty: nothing to measure
        return {"n_pairs": 0.0}
    metrics = retrieval_metrics(torch.cat(audio), torch.cat(text), captions)
    return {k.replace("image_to_text", "audio_to_text").replace("text_to_image", "text_to_audio"): v
            for k, v in metrics.items()}
