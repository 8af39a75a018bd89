"""Masked-autoencoder evaluation: reconstruction on held-out pairs, each beside its trivial baseline,
and a linear probe on frozen image features where samples carry a label."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F


def linear_probe(train_x: torch.Tensor, train_y: Sequence[str], test_x: torch.Tensor, test_y: Sequence[str],
                 weight_decay: float = 1e-3, iters: int = 200) -> dict[str, float]:
    """Multinomial logistic regression (torch L-BFGS) on standardized features; test accuracy beside
    the majority-class baseline. Test labels never seen in training count as errors."""
    classes = sorted(set(train_y))
    index = {c: i for i, c in enumerate(classes)}
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x, xt = (train_x - mean) / std, (test_x - mean) / std
    y = torch.tensor([index[c] for c in train_y])
    linear = torch.nn.Linear(x.shape[1], len(classes))
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(x), y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        pred = [classes[i] for i in linear(xt).argmax(1).tolist()]
    majority = Counter(train_y).most_common(1)[0][0]
    n = max(1, len(test_y))
    return {"linear_probe_accuracy": sum(p == t for p, t in zip(pred, test_y)) / n,
            "linear_probe_majority_baseline": sum(t == majority for t in test_y) / n,
            "linear_probe_classes": float(len(classes))}


@torch.no_grad()
def reconstruction_metrics(model: torch.nn.Module, batches: Iterable[dict], device: str = "cpu", seed: int = 0,
                           max_samples: int | None = None) -> dict[str, float]:
    """Masked-patch MSE (normalized pixels) beside predicting each patch's mean (MSE of zeros), and
    masked-token accuracy beside the unigram baseline: always answering the most frequent token
    of those same masked positions."""
    gen = torch.Generator().manual_seed(seed)  # the same masks for every model evaluated
    sq_err = sq_zero = patches = correct = 0.0
    targets: Counter = Counter()
    seen = 0
    for batch in batches:
        out = model.forward_masked(batch["image"].to(device), batch["text"].to(device), generator=gen)
        masked = out["image_masked"]
        sq_err += ((out["pixels"] - out["target"]) ** 2).mean(-1)[masked].sum().item()
        sq_zero += (out["target"] ** 2).mean(-1)[masked].sum().item()
        patches += masked.sum().item()
        correct += (out["logits"].argmax(-1) == out["targets"]).sum().item()
        targets.update(out["targets"].tolist())
        seen += len(batch["image"])
        if max_samples and seen >= max_samples:
            break
    n_tokens = sum(targets.values())
    return {"masked_patch_mse": sq_err / max(1, patches), "masked_patch_mse_zero_baseline": sq_zero / max(1, patches),
            "masked_token_accuracy": correct / max(1, n_tokens),
            "masked_token_unigram_accuracy": (targets.most_common(1)[0][1] if targets else 0) / max(1, n_tokens),
            "masked_tokens": float(n_tokens)}


@torch.no_grad()
def image_features(model: torch.nn.Module, batches: Iterable[dict], device: str = "cpu",
                   max_samples: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """Frozen encoder features of the labelled images of a stream, with their labels."""
    feats, labels = [], []
    for batch in batches:
        keep = [i for i, label in enumerate(batch["label"]) if label]
        if keep:
            feats.append(model.encode_image(batch["image"][keep].to(device)).float().cpu())
            labels += [batch["label"][i] for i in keep]
        if max_samples and len(labels) >= max_samples:
            break
    return (torch.cat(feats) if feats else torch.zeros(0, 1)), labels


def evaluate_masked(checkpoint: str, shards: str | Sequence[str], split: str = "val", probe_split: str = "train",
                    val_fraction: float = 0.1, batch_size: int = 128, max_samples: int | None = 5000,
                    probe_samples: int | None = 5000, seed: int = 0, device: str | None = None,
                    num_workers: int = 0) -> dict[str, float]:
    """Reconstruction metrics on `split`; a linear probe trained on `probe_split` features and scored
    on `split` when the samples carry labels."""
    from torch.utils.data import DataLoader

    from mmpipe.models.clip import pick_device
    from mmpipe.train.data import ShardStream
    from mmpipe.train.objectives.masked import load_masked, masked_tokenizer, masked_transform

    device = pick_device(device)
    model = load_masked(checkpoint, device)

    def loader(which: str) -> DataLoader:
        stream = ShardStream(shards, masked_transform(model.config), masked_tokenizer(model.config), split=which,
                             val_fraction=val_fraction, shuffle_buffer=0, repeat=False)
        return DataLoader(stream, batch_size=batch_size, num_workers=num_workers)

    out = reconstruction_metrics(model, loader(split), device, seed, max_samples)
    test_x, test_y = image_features(model, loader(split), device, max_samples)
    if test_y:
        train_x, train_y = image_features(model, loader(probe_split), device, probe_samples)
        if len(set(train_y)) > 1:
            out.update(linear_probe(train_x, train_y, test_x, test_y))
    return out
