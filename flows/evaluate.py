"""Evaluate a trained model: retrieval and zero-shot (contrastive), reconstruction and a linear probe
(masked), denoising, conditioning gap, CLIP score and FD (diffusion); every metric a row of `evals`."""

from __future__ import annotations

from prefect import flow

from flows.runners import run_name
from mmpipe.home import resolve_home
from tasks.runs import tracked_run
from tasks.train import evaluate_task


@flow(name="evaluate", flow_run_name=run_name("evaluate", "model_id"))
def evaluate_flow(model_id: str, home: str | None = None, eval_dataset: str | None = None) -> dict:
    """On the validation split of the model's dataset version, or on the samples of `eval_dataset`."""
    home = str(resolve_home(home))
    with tracked_run(home, "evaluate", {"model_id": model_id, "eval_dataset": eval_dataset}) as run:
        result = evaluate_task(home, model_id, run.run_id, eval_dataset)
    return {"run_id": run.run_id, **result}
