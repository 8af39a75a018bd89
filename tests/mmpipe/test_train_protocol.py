"""The training loop's protocol (mmpipe/train/objectives/base.py): any Objective subclass trains, its
save/load are what checkpoints and resumes use; a ResumableDataset's position and a StepLogger's flush
come back through the same explicit methods; a plain function still works as on_step."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import IterableDataset

from mmpipe.train.loop import TrainConfig, train
from mmpipe.train.objectives.base import MODEL_FILE, Objective, ResumableDataset, StepLogger
from mmpipe.train.request import TrainRequest


class Line(Objective):
    """y = w x + b fitted by MSE; records which hooks the loop called."""

    def __init__(self) -> None:
        super().__init__()
        self.fit = nn.Linear(1, 1)
        self.calls: list[str] = []

    def training_forward(self, batch: dict) -> tuple[dict, dict]:
        pred = self.fit(batch["x"])
        return {"mse_loss": ((pred - batch["y"]) ** 2).mean()}, {"w": float(self.fit.weight.detach())}

    def after_step(self) -> None:
        self.calls.append("after_step")

    def save(self, out_dir: str | Path) -> None:
        self.calls.append("save")
        super().save(out_dir)

    def load(self, out_dir: str | Path) -> None:
        self.calls.append("load")
        super().load(out_dir)


class Counting(IterableDataset):
    """x = i, y = 2 i + 1 for i = 0, 1, ...: its position is the number of samples read."""

    def __init__(self) -> None:
        super().__init__()
        self.resumed_with: list = []

    def resume(self, state: dict | None) -> None:
        self.resumed_with.append(state)
        self.start = (state or {}).get("read", 0)

    def advance(self, state: dict | None, batch: dict) -> dict:
        return {"read": (state or {}).get("read", 0) + len(batch["x"])}

    def __iter__(self):
        i = self.start
        while True:
            x = torch.tensor([float(i % 7) / 7])
            yield {"x": x, "y": 2 * x + 1}
            i += 1


class Logger:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, step: int, metrics: dict) -> None:
        self.events.append(("step", step))

    def flush(self) -> None:
        self.events.append(("flush",))


def _config(tmp_path: Path, steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=4, lr=0.05, warmup_steps=1, checkpoint_every=2, device="cpu",
                       out_dir=str(tmp_path / "run"), progress=False)


def test_a_minimal_objective_trains_checkpoints_and_resumes_through_its_own_hooks(tmp_path):
    assert isinstance(Counting(), ResumableDataset) and isinstance(Logger(), StepLogger)
    first, data, log = Line(), Counting(), Logger()
    result = train(first, data, _config(tmp_path, 4), log)
    assert result["step"] == 4 and Path(result["checkpoint"]).name == MODEL_FILE
    assert Path(result["checkpoint"]).is_file()
    assert first.calls.count("after_step") == 4 and first.calls.count("save") == 2 and "load" not in first.calls
    assert data.resumed_with == [None]
    # flushed before each checkpoint, after the steps it covers
    assert log.events == [("step", 1), ("step", 2), ("flush",), ("step", 3), ("step", 4), ("flush",)]

    again, more = Line(), Counting()
    resumed = train(again, more, _config(tmp_path, 6), lambda step, metrics: None)  # a plain function logs too
    assert resumed["resumed_from"] == 4 and resumed["step"] == 6
    assert again.calls[0] == "load" and again.calls.count("after_step") == 2
    assert more.resumed_with == [{"read": 16}]


def test_the_default_checkpoint_is_the_checkpoint_modules_state_dict(tmp_path):
    line = Line()
    line.save(tmp_path)
    copy = Line()
    copy.load(tmp_path)
    assert torch.equal(copy.fit.weight, line.fit.weight) and torch.equal(copy.fit.bias, line.fit.bias)


def test_the_contrastive_checkpoint_stays_the_open_clip_state_dict():
    from mmpipe.train.objectives.contrastive import Contrastive

    model = nn.Linear(1, 1)
    model.logit_scale = nn.Parameter(torch.zeros(()))
    assert Contrastive(model).checkpoint_module() is model


def test_the_same_request_defines_the_same_run_and_a_changed_one_another(tmp_path):
    request = TrainRequest("contrastive", "shapes@v1", {"model_name": "tiny", "pretrained": None, "siglip": False},
                           steps=10)
    same = TrainRequest("contrastive", "shapes@v1", {"model_name": "tiny", "pretrained": None, "siglip": False},
                        steps=10)
    other = TrainRequest("contrastive", "shapes@v1", {"model_name": "tiny", "pretrained": None, "siglip": False},
                         steps=11)
    home = str(tmp_path)
    assert request.run_params(home) == same.run_params(home) != other.run_params(home)
    # the keys runs recorded before TrainRequest (every flow parameter but the home), so they resume
    assert request.run_params(home) == {
        "dataset": "shapes@v1", "model_name": "tiny", "pretrained": None, "siglip": False, "steps": 10,
        "samples": None, "batch_size": 64, "lr": 2e-3, "warmup_steps": None, "device": None, "num_workers": 0,
        "seed": 0, "evaluate": True, "eval_dataset": None, "reuse": True}
    assert request.options()["warmup_steps"] == 1 and request.options()["checkpoint_every"] == 2


def test_a_diffusion_request_names_its_text_tower_home_relative(tmp_path):
    tower = tmp_path / "models" / "clip.safetensors"
    tower.parent.mkdir()
    tower.write_bytes(b"")
    request = TrainRequest("diffusion", "shapes@v1", {"clip_model": "tiny", "clip_pretrained": str(tower),
                                                      "model": None}, batch_size=32)
    assert request.run_params(str(tmp_path))["clip_pretrained"] == "models/clip.safetensors"
    assert request.options()["clip_pretrained"] == str(tower)  # trains from the absolute path
