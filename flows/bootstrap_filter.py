"""Bootstrap a CLIP filter the DFN way: train a tiny CLIP on trusted pairs, calibrate its threshold."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from mmpipe.home import resolve_home
from mmpipe.models.clip import TINY_MODEL
from tasks.runs import tracked_run
from tasks.train import calibrate_task, register_model_task, train_filter_task


@flow(name="bootstrap-filter")
def bootstrap_filter_flow(seed_shards: list[str], holdout_shards: list[str], name: str = "demo-filter",
                          home: str | None = None, steps: int = 300, quantile: float = 0.05,
                          device: str | None = None) -> dict:
    """Train, calibrate on held-out trusted pairs, and register the filter model."""
    home = str(resolve_home(home))
    params = {"seed_shards": seed_shards, "holdout_shards": holdout_shards, "name": name, "steps": steps,
              "quantile": quantile}
    with tracked_run(home, "bootstrap-filter", params, resume=False) as run:
        run_id = run.run_id
        out_dir = str(Path(home) / "models" / name)
        checkpoint = train_filter_task(seed_shards, out_dir, steps, device)
        min_score = calibrate_task(holdout_shards, TINY_MODEL, checkpoint, quantile)
        model_id = register_model_task(home, run_id, "contrastive", checkpoint,
                                       {"model_name": TINY_MODEL, "steps": steps, "calibrated_min_score": min_score,
                                        "calibration_quantile": quantile})
    return {"run_id": run_id, "model_id": model_id, "model_name": TINY_MODEL, "checkpoint": checkpoint,
            "min_score": min_score}
