"""What the training loop asks of an objective, a dataset and a step logger: one explicit protocol.

An objective subclasses `Objective` (an nn.Module, open_clip's "task = model + loss") and implements
`training_forward`; the other hooks have the standard behaviour here and are overridden where an
objective's ecosystem wants another (clamping CLIP's temperature, diffusers folders). A dataset whose
position can be saved is a `ResumableDataset`; a step logger that buffers is a `StepLogger`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

MODEL_FILE = "model.safetensors"


class Objective(nn.Module):
    """A model plus its loss: `training_forward(batch) -> (losses, logs)`, the loss being the sum of the
    `*_loss` entries. By default a checkpoint is `checkpoint_module()`'s state dict as model.safetensors."""

    checkpoint_name: str = MODEL_FILE  # the checkpoint's weights inside a checkpoint folder

    def training_forward(self, batch: Any) -> tuple[dict, dict]:
        """Losses (`*_loss` entries are summed into the loss) and logs of one batch."""
        raise NotImplementedError(f"{type(self).__name__} does not implement training_forward")

    def after_step(self) -> None:
        """Called after every optimizer step (e.g. to clamp a parameter); nothing by default."""

    def checkpoint_module(self) -> nn.Module:
        """The module whose state dict the default save/load write and read: the objective itself."""
        return self

    def save(self, out_dir: str | Path) -> None:
        """Write the weights into the checkpoint folder `out_dir`."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.checkpoint_module().state_dict().items()}
        save_file(state, str(Path(out_dir) / MODEL_FILE))

    def load(self, out_dir: str | Path) -> None:
        """Read the weights that save() wrote (a resumed run)."""
        module = self.checkpoint_module()
        device = next(module.parameters(), torch.empty(0)).device
        module.load_state_dict(load_file(str(Path(out_dir) / MODEL_FILE), device=str(device)))


@runtime_checkable
class ResumableDataset(Protocol):
    """A dataset whose position is saved with each checkpoint and restored on resume (ShardStream)."""

    def resume(self, state: dict | None) -> None:
        """Continue after the batches that `state` (from advance) says were consumed."""

    def advance(self, state: dict | None, batch: Any) -> dict:
        """The position after the loop consumed `batch`."""


@runtime_checkable
class StepLogger(Protocol):
    """Receives each logged step's metrics; flush() makes what it received durable (before a checkpoint)."""

    def __call__(self, step: int, metrics: dict) -> None: ...

    def flush(self) -> None: ...


class Unpositioned:
    """The position of a dataset that keeps none (a map-style dataset reshuffled by seed): always None."""

    def resume(self, state: dict | None) -> None:
        """Nothing to restore."""

    def advance(self, state: dict | None, batch: Any) -> dict | None:
        """No position to move."""
        return state


class CallbackLogger:
    """A plain `on_step(step, metrics)` function (or none) as a StepLogger: nothing buffered to flush."""

    def __init__(self, on_step: Any = None) -> None:
        self.on_step = on_step

    def __call__(self, step: int, metrics: dict) -> None:
        if self.on_step is not None:
            self.on_step(step, metrics)

    def flush(self) -> None:
        """Nothing buffered."""
