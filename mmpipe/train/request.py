"""A training flow's call as one value: the parameters that define the run, and the loop options they give."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmpipe.home import stored_path


@dataclass(frozen=True)
class TrainRequest:
    """What a train-<objective> flow was asked: dataset, the objective's model settings, the schedule and
    what follows training. The same request reopens (resumes) the same run."""

    objective: str
    dataset: str
    model_params: dict = field(default_factory=dict)  # the objective's own flow parameters, by name
    steps: int = 300
    samples: int | None = None
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int | None = None
    device: str | None = None
    num_workers: int = 0
    seed: int = 0
    evaluate: bool = True
    eval_dataset: str | None = None
    reuse: bool = True

    def run_params(self, home: str) -> dict:
        """The parameters that define the run (the runs row's params, whose key a resume matches): every
        flow parameter but the home, a diffusion's text tower named as the warehouse stores it."""
        model = dict(self.model_params)
        if "clip_pretrained" in model:
            model["clip_pretrained"] = stored_path(home, model["clip_pretrained"])
        return {"dataset": self.dataset, **model, "steps": self.steps, "samples": self.samples,
                "batch_size": self.batch_size, "lr": self.lr, "warmup_steps": self.warmup_steps,
                "device": self.device, "num_workers": self.num_workers, "seed": self.seed,
                "evaluate": self.evaluate, "eval_dataset": self.eval_dataset, "reuse": self.reuse}

    def options(self) -> dict:
        """The training options: the model settings plus the schedule (warmup a tenth of the steps unless
        given, four checkpoints, every step logged)."""
        warmup = self.warmup_steps if self.warmup_steps is not None else max(1, self.steps // 10)
        return {**self.model_params, "steps": self.steps, "samples": self.samples, "batch_size": self.batch_size,
                "lr": self.lr, "warmup_steps": warmup, "checkpoint_every": max(1, self.steps // 4), "log_every": 1,
                "device": self.device, "num_workers": self.num_workers, "seed": self.seed}
