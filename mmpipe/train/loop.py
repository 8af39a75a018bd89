"""One training loop for any objective: AdamW + open_clip_train's warmup-cosine, grad accumulation, AMP on GPU,
safetensors checkpoints (each a whole folder, out_dir/step-NNNNNNNN, switched to by one rename),
exact resume (weights, optimizer, RNG and data position), seeded.

The protocol it trains through is explicit (mmpipe/train/objectives/base.py): an `Objective` with
`training_forward(batch) -> (losses, logs)` (the loss is the sum of the `*_loss` entries), `after_step()`,
`save(dir)`, `load(dir)` and `checkpoint_name`; a `ResumableDataset` (mmpipe.train.data.ShardStream)
has its position saved and restored; a `StepLogger` is flushed before every checkpoint.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from open_clip_train.scheduler import cosine_lr
from tqdm.auto import tqdm

from mmpipe.models.clip import pick_device
from mmpipe.train.objectives.base import MODEL_FILE  # noqa: F401 - the default weights file, named here before
from mmpipe.train.objectives.base import CallbackLogger, Objective, ResumableDataset, StepLogger, Unpositioned

STATE_FILE = "trainer_state.pt"
CHECKPOINT_PREFIX = "step-"


@dataclass
class TrainConfig:
    """Everything the loop needs; one config for one training run."""

    steps: int = 500
    samples: int | None = None  # a samples-seen budget; when set it fixes the number of steps
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
    log_every: int = 1
    out_dir: str = "checkpoints"
    progress: bool | None = None  # tqdm bar: None shows it only on a terminal

    def total_steps(self) -> int:
        """Optimizer steps of the run: from the samples budget when given, else `steps`."""
        if self.samples:
            return math.ceil(self.samples / (self.batch_size * self.grad_accum))
        return self.steps


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (call before building a model so its init is reproducible)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(dataset: Dataset, config: TrainConfig) -> Iterator[dict]:
    # A private generator: creating the loader must not draw from the global RNG, which the
    # objective uses (masks, noise) and which a resumed run restores.
    gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, drop_last=True, generator=gen,
                        shuffle=not isinstance(dataset, IterableDataset), num_workers=config.num_workers,
                        pin_memory=torch.cuda.is_available(), persistent_workers=config.num_workers > 0)
    while True:
        yield from loader


def _to(batch: Any, device: str) -> Any:
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_" in name or "embedding" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimizer(objective: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(objective, config.weight_decay)
    try:
        # the fused kernel (CPU and CUDA) steps several times faster than the per-tensor loop
        # PyTorch picks by default on CPU
        return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_dirs(out_dir: str | Path) -> list[Path]:
    """The whole checkpoints under out_dir (step-NNNNNNNN folders), oldest first."""
    return sorted(p for p in Path(out_dir).glob(f"{CHECKPOINT_PREFIX}*")
                  if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit())


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The folder a run resumes from: the newest whole checkpoint (or out_dir itself when it holds one
    in the single-folder layout of earlier versions), else None."""
    found = checkpoint_dirs(out_dir)
    if found:
        return found[-1]
    return Path(out_dir) if (Path(out_dir) / STATE_FILE).is_file() else None


def checkpoint_folder(path: str | Path, marker: str) -> Path:
    """The checkpoint folder a loader reads: `path` itself when it holds `marker` (the objective's config
    file), else the newest whole step-N checkpoint of the run folder `path`; FileNotFoundError otherwise."""
    folder = Path(path)
    if not (folder / marker).is_file():
        folder = latest_checkpoint(folder) or folder
    if not (folder / marker).is_file():
        raise FileNotFoundError(f"no checkpoint ({marker}) in {path}")
    return folder


def _publish(tmp: Path, final: Path) -> None:
    os.rename(tmp, final)  # the one rename: the checkpoint appears whole, or not at all


def _prune(out: Path, keep: Path) -> None:
    for old in checkpoint_dirs(out):
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(objective: Objective, state: dict, out_dir: str | Path) -> Path:
    """Weights (objective.save) and trainer state written into a new folder,
    which then becomes out_dir/step-NNNNNNNN in one rename (open_clip_train's write-then-rename, for
    a folder): a kill at any point leaves the previous checkpoint whole. Returns the weights' path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{CHECKPOINT_PREFIX}{state['step']:08d}"
    tmp = out / f".{final.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)  # a partial folder a killed save left behind
    if not final.is_dir():
        tmp.mkdir()
        objective.save(tmp)
        torch.save(state, tmp / STATE_FILE)
        for f in tmp.rglob("*"):  # on disk before the rename makes them the checkpoint
            if f.is_file():
                _fsync(f)
        _publish(tmp, final)
        _fsync(out)
    _prune(out, final)
    return final / objective.checkpoint_name


def train(objective: Objective, dataset: Dataset, config: TrainConfig,
          on_step: StepLogger | Callable[[int, dict], None] | None = None) -> dict:
    """Train `objective` to config.total_steps() optimizer steps, resuming from the newest checkpoint
    under config.out_dir. Calls on_step(step, metrics) every `log_every` steps, before any checkpoint
    of that step (and on_step.flush(), for a StepLogger, before every checkpoint), so steps it recorded
    are never newer than the checkpoint a resume starts from, and none is lost. Returns {checkpoint,
    out_dir, step, samples_seen, resumed_from, history}; checkpoint is inside out_dir/step-NNNNNNNN."""
    position: ResumableDataset = dataset if isinstance(dataset, ResumableDataset) else Unpositioned()
    log: StepLogger = on_step if isinstance(on_step, StepLogger) else CallbackLogger(on_step)
    seed_everything(config.seed)
    device = pick_device(config.device)
    objective.to(device).train()
    total = config.total_steps()
    opt = _optimizer(objective, config)
    # open_clip_train's linear warmup then cosine decay, a pure function of the step (so a resume needs no
    # scheduler state); warmup shorter than the run, or its cosine would divide by zero
    adjust_lr = cosine_lr(opt, config.lr, min(config.warmup_steps, max(0, total - 1)), total)
    use_amp = device.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    out = Path(config.out_dir)
    step, data_state = 0, None
    resume_dir = latest_checkpoint(out)
    if resume_dir is not None:
        objective.load(resume_dir)
        state = torch.load(resume_dir / STATE_FILE, map_location="cpu", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step, data_state = state["step"], state["data"]
    resumed_from = step
    position.resume(data_state)
    batches = _batches(dataset, config)
    per_step = config.batch_size * config.grad_accum
    history: list[dict] = []
    bar = tqdm(total=total, initial=step, desc=f"train {type(objective).__name__.lower()}", unit="step",
               disable=None if config.progress is None else not config.progress)
    started = time.perf_counter()
    while step < total:
        lr = adjust_lr(step)
        sums: dict[str, float] = {}
        for _ in range(config.grad_accum):
            batch = next(batches)
            data_state = position.advance(data_state, batch)
            with torch.autocast(device_type="cuda" if use_amp else "cpu", dtype=amp_dtype, enabled=use_amp):
                losses, logs = objective.training_forward(_to(batch, device))
                loss = sum(v for k, v in losses.items() if k.endswith("_loss"))
            scaler.scale(loss / config.grad_accum).backward()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v) / config.grad_accum
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(objective.parameters(), config.max_grad_norm)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        objective.after_step()
        step += 1
        metrics = {**sums, **logs, "lr": lr, "samples_seen": step * per_step,
                   "samples_per_s": (step - resumed_from) * per_step / (time.perf_counter() - started)}
        history.append({"step": step, **metrics})
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in sums.items()}, refresh=False)
        # What on_step records is durable before the checkpoint that follows it: a kill in between
        # resumes from the previous checkpoint and records those steps again, never loses them.
        if step % config.log_every == 0 or step == total:
            log(step, metrics)
        if step % config.checkpoint_every == 0 or step == total:
            log.flush()
            resume_dir = save_checkpoint(objective, {
                "step": step, "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(), "config": asdict(config), "data": data_state,
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                "numpy_rng": np.random.get_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, out).parent
    bar.close()
    objective.eval()
    where = resume_dir or out
    return {"checkpoint": str(where / objective.checkpoint_name), "out_dir": str(out),
            "step": step, "samples_seen": step * per_step, "resumed_from": resumed_from, "history": history}
