"""The demo's bootstrapped CLIP filter: a tiny CLIP trained on a trusted seed split (the DFN idea)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mmpipe.models.clip import TINY_MODEL, register_configs
from mmpipe.train.data import PairDataset
from mmpipe.train.loop import TrainConfig, train
from mmpipe.train.objectives.contrastive import Contrastive


def train_filter(seed_pairs: list[tuple[bytes, str]], out_dir: str | Path, steps: int = 300, batch_size: int = 128,
                 lr: float = 2e-3, seed: int = 0, device: str | None = None,
                 log: Callable[[int, dict], None] | None = None) -> Path:
    """Train mmpipe-tiny-clip on trusted pairs; returns the safetensors checkpoint open_clip loads."""
    import open_clip
    import torch

    register_configs()
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_MODEL, pretrained=None, pretrained_text=False)
    dataset = PairDataset(seed_pairs, preprocess, open_clip.get_tokenizer(TINY_MODEL))
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=max(1, steps // 10),
                         weight_decay=0.05, seed=seed, device=device, checkpoint_every=max(1, steps // 3),
                         log_every=max(1, steps // 6), out_dir=str(out_dir))
    return train(Contrastive(model), dataset, config, log)
