"""Bootstrap a CLIP filter the DFN way: train a tiny CLIP on a trusted dataset, calibrate its threshold."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.runners import run_name
from mmpipe.home import resolve_home
from mmpipe.models.names import TINY_CLIP
from tasks.runs import tracked_run
from tasks.train import (calibrate_task, model_id_for, register_model_task, resolve_dataset_task,
                         train_filter_task)


@flow(name="bootstrap-filter", flow_run_name=run_name("bootstrap-filter"))
def bootstrap_filter_flow(dataset: str, name: str = "demo-filter", home: str | None = None, steps: int = 300,
                          quantile: float = 0.05, device: str | None = None, model_name: str = TINY_CLIP) -> dict:
    """Train an open_clip model (`model_name`, a shipped config or any open_clip architecture) on the training
    split of a trusted dataset version (NAME[@VERSION]), take as threshold the `quantile` of the scores of its
    held-out validation split, and register the model with its lineage."""
    home = str(resolve_home(home))
    params = {"dataset": dataset, "name": name, "steps": steps, "quantile": quantile, "model_name": model_name}
    with tracked_run(home, "bootstrap-filter", params, resume=False) as run:
        ds = resolve_dataset_task(home, dataset)
        out_dir = str(Path(home) / "models" / name)
        checkpoint = train_filter_task(ds["shards"], out_dir, steps, model_name, device)
        calibration = calibrate_task(ds["shards"], model_name, checkpoint, quantile)
        model_id = register_model_task(home, run.run_id, model_id_for(run.run_id, "contrastive"), "contrastive",
                                       ds["dataset_id"], checkpoint,
                                       {"model_name": model_name, "steps": steps, "role": "filter",
                                        "calibrated_min_score": calibration["min_score"],
                                        "calibration_quantile": quantile,
                                        "calibration_pairs": calibration["holdout_pairs"]}, "trained")
    return {"run_id": run.run_id, "model_id": model_id, "model_name": model_name, "checkpoint": checkpoint,
            "min_score": calibration["min_score"], "dataset": f"{ds['name']}@{ds['version']}"}
