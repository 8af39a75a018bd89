"""The bootstrapped CLIP filter: a small CLIP trained on a trusted seed split (the DFN idea)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from mmpipe.models.names import TINY_CLIP


def train_filter(seed_shards: str | Sequence[str], out_dir: str | Path, steps: int = 300, batch_size: int = 128,
                 lr: float = 2e-3, seed: int = 0, device: str | None = None, num_workers: int = 0,
                 on_step: Callable[[int, dict], None] | None = None, split: str | None = None,
                 model_name: str = TINY_CLIP) -> Path:
    """Train an open_clip model (mmpipe-tiny-clip unless named) on the trusted shards' pairs (all, or one hash
    split; streamed); returns the safetensors checkpoint open_clip loads as `pretrained`."""
    from mmpipe.train.recipes import train_contrastive

    result = train_contrastive(seed_shards, out_dir, model_name, split=split, on_step=on_step, steps=steps,
                               batch_size=batch_size, lr=lr, warmup_steps=max(1, steps // 10), weight_decay=0.05,
                               seed=seed, device=device, num_workers=num_workers,
                               checkpoint_every=max(1, steps // 3), log_every=max(1, steps // 6))
    return Path(result["checkpoint"])
