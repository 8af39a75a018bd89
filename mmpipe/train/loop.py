"""One training loop for any objective: AdamW + cosine, grad accumulation, AMP on GPU,
safetensors checkpoints, resume, seeded."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mmpipe.models.clip import pick_device

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"


@dataclass
class TrainConfig:
    """Everything the loop needs; one config for one training run."""

    steps: int = 500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    seed: int = 0
    device: str | None = None
    num_workers: int = 0
    checkpoint_every: int = 100
    log_every: int = 50
    out_dir: str = "checkpoints"


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(dataset: Dataset, config: TrainConfig, device: str) -> Iterator:
    gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True, generator=gen,
                        num_workers=config.num_workers, pin_memory=device.startswith("cuda"))
    while True:
        for batch in loader:
            yield [t.to(device, non_blocking=True) for t in batch]


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name or "embedding" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _inner(objective: nn.Module) -> nn.Module:
    return getattr(objective, "model", objective)


def save_checkpoint(objective: nn.Module, opt, sched, step: int, config: TrainConfig) -> Path:
    """Model weights as safetensors (loadable by open_clip as `pretrained`), trainer state beside."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in _inner(objective).state_dict().items()}
    tmp = out / (MODEL_FILE + ".tmp")
    save_file(weights, str(tmp))
    tmp.replace(out / MODEL_FILE)
    torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "config": asdict(config), "torch_rng": torch.get_rng_state()}, out / (STATE_FILE + ".tmp"))
    (out / (STATE_FILE + ".tmp")).replace(out / STATE_FILE)
    return out / MODEL_FILE


def train(objective: nn.Module, dataset: Dataset, config: TrainConfig,
          log: Callable[[int, dict], None] | None = None) -> Path:
    """Train `objective` for config.steps optimizer steps; resumes from config.out_dir if a checkpoint is there."""
    _seed_all(config.seed)
    device = pick_device(config.device)
    objective.to(device).train()
    opt = torch.optim.AdamW(_param_groups(objective, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    step = 0
    out = Path(config.out_dir)
    if (out / MODEL_FILE).is_file() and (out / STATE_FILE).is_file():
        _inner(objective).load_state_dict(load_file(str(out / MODEL_FILE), device=device))
        state = torch.load(out / STATE_FILE, map_location=device, weights_only=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
    use_amp = device.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    batches = _batches(dataset, config, device)
    while step < config.steps:
        logs: dict = {}
        for _ in range(config.grad_accum):
            with torch.autocast(device_type="cuda" if use_amp else "cpu", dtype=amp_dtype, enabled=use_amp):
                losses, logs = objective.training_forward(next(batches))
                total = sum(v for k, v in losses.items() if k.endswith("_loss")) / config.grad_accum
            scaler.scale(total).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(objective.parameters(), config.max_grad_norm)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sched.step()
        step += 1
        if log and (step % config.log_every == 0 or step == config.steps):
            log(step, {**{k: float(v) for k, v in losses.items()}, **logs, "lr": sched.get_last_lr()[0]})
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(objective, opt, sched, step, config)
    objective.eval()
    return out / MODEL_FILE
