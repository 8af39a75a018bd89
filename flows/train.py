"""Train contrastive, masked and diffusion models on a curated dataset version, then evaluate them.

One flow per objective; each resolves NAME[@VERSION], streams the version's shards, records the
model (with its dataset lineage), per-step metrics and evals, and resumes after a crash: the same
command reopens the run, which continues from its last checkpoint with the same data order.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.evaluate import evaluate_flow
from flows.runners import run_name
from mmpipe.home import resolve_home, stored_path
from mmpipe.models.names import TINY_CLIP
from tasks.report_page import write_report_page
from tasks.runs import tracked_run
from tasks.train import (announce_model, model_id_for, recipe_task, register_model_task, resolve_dataset_task,
                         reusable_model, stored_evaluation, train_task)
from warehouse import Warehouse
from warehouse.dataset_queries import latest_model


def _train(objective: str, dataset: str, home: str | None, params: dict, options: dict, evaluate: bool,
           eval_dataset: str | None, reuse: bool = True) -> dict:
    home = str(resolve_home(home))
    with tracked_run(home, f"train-{objective}", {"dataset": dataset, **params}) as run:
        ds = resolve_dataset_task(home, dataset)
        recipe = recipe_task(home, objective, ds["dataset_id"], options)
        found = reusable_model(home, objective, ds["dataset_id"], recipe["recipe_key"]) if reuse else None
        if found:  # the same recipe trained on the same version already: nothing to train, nothing to announce
            model_id, result = found["model_id"], {**found, "final": {}}
        else:
            model_id = model_id_for(run.run_id, objective)
            out_dir = Path(home) / "models" / objective / f"{ds['name']}-{ds['version']}-{run.run_id}"
            config = {**options, "dataset": f"{ds['name']}@{ds['version']}", **recipe}
            register_model_task(home, run.run_id, model_id, objective, ds["dataset_id"], str(out_dir), config,
                                "training")
            result = train_task(home, run.run_id, model_id, objective, ds["shards"], str(out_dir), options)
            register_model_task(home, run.run_id, model_id, objective, ds["dataset_id"], result["checkpoint"],
                                {**config, **result["config"]}, "trained")
            announce_model(model_id, objective, f"{ds['name']}@{ds['version']}",  # home-relative: homes move
                           stored_path(home, result["checkpoint"]), options)
    evals = None
    if evaluate:
        evals = (found and stored_evaluation(home, model_id, objective, eval_dataset)) or \
            evaluate_flow(model_id, home=home, eval_dataset=eval_dataset)
    report = write_report_page(home, f"{ds['name']}@{ds['version']}")
    return {"run_id": run.run_id, "model_id": model_id, "objective": objective,
            "dataset": f"{ds['name']}@{ds['version']}", "checkpoint": result["checkpoint"], "steps": result["step"],
            "samples_seen": result["samples_seen"], "final": result["final"], "evals": evals, "report": report,
            "reused": bool(found), "recipe": recipe["recipe"]}


def _schedule(steps: int, samples: int | None, batch_size: int, lr: float, warmup_steps: int | None,
              device: str | None, num_workers: int, seed: int) -> dict:
    return {"steps": steps, "samples": samples, "batch_size": batch_size, "lr": lr,
            "warmup_steps": warmup_steps if warmup_steps is not None else max(1, steps // 10),
            "checkpoint_every": max(1, steps // 4), "log_every": 1, "device": device, "num_workers": num_workers,
            "seed": seed}


@flow(name="train-contrastive", flow_run_name=run_name("train-contrastive", "dataset"))
def train_contrastive_flow(dataset: str, home: str | None = None, model_name: str = TINY_CLIP,
                           pretrained: str | None = None, siglip: bool = False, steps: int = 300,
                           samples: int | None = None, batch_size: int = 64, lr: float = 2e-3,
                           warmup_steps: int | None = None, device: str | None = None, num_workers: int = 0,
                           seed: int = 0, evaluate: bool = True, eval_dataset: str | None = None,
                           reuse: bool = True) -> dict:
    """A CLIP-style model (any open_clip config; CLIP or SigLIP loss), optionally initialised from a checkpoint.
    reuse: a model trained on this version with the same whole recipe is returned instead of training."""
    params = {k: v for k, v in locals().items() if k not in ("dataset", "home")}
    options = {"model_name": model_name, "pretrained": pretrained, "siglip": siglip,
               **_schedule(steps, samples, batch_size, lr, warmup_steps, device, num_workers, seed)}
    return _train("contrastive", dataset, home, params, options, evaluate, eval_dataset, reuse)


@flow(name="train-masked", flow_run_name=run_name("train-masked", "dataset"))
def train_masked_flow(dataset: str, home: str | None = None, model: dict | None = None, steps: int = 300,
                      samples: int | None = None, batch_size: int = 64, lr: float = 2e-3,
                      warmup_steps: int | None = None, device: str | None = None, num_workers: int = 0,
                      seed: int = 0, evaluate: bool = True, eval_dataset: str | None = None,
                      reuse: bool = True) -> dict:
    """An M3AE-style masked multimodal autoencoder; `model` overrides MaskedConfig fields (reuse: as
    train_contrastive_flow)."""
    params = {k: v for k, v in locals().items() if k not in ("dataset", "home")}
    options = {"model": model, **_schedule(steps, samples, batch_size, lr, warmup_steps, device, num_workers, seed)}
    return _train("masked", dataset, home, params, options, evaluate, eval_dataset, reuse)


@flow(name="train-diffusion", flow_run_name=run_name("train-diffusion", "dataset"))
def train_diffusion_flow(dataset: str, home: str | None = None, clip_model: str | None = None,
                         clip_pretrained: str | None = None, model: dict | None = None, steps: int = 300,
                         samples: int | None = None, batch_size: int = 32, lr: float = 2e-3,
                         warmup_steps: int | None = None, device: str | None = None, num_workers: int = 0,
                         seed: int = 0, evaluate: bool = True, eval_dataset: str | None = None,
                         reuse: bool = True) -> dict:
    """A text-conditioned pixel diffusion model on the frozen token states of an open_clip text tower:
    `clip_model` + `clip_pretrained`, or by default the newest contrastive model trained on this dataset
    (reuse: as train_contrastive_flow)."""
    root = str(resolve_home(home))
    if clip_model is None:
        wh = Warehouse(root)
        ds_id = resolve_dataset_task.fn(root, dataset)["dataset_id"]
        found = latest_model(wh, "contrastive", ds_id) or latest_model(wh, "contrastive")
        if found is None:
            raise ValueError("no text tower: pass --clip-model and --clip-pretrained, or train a contrastive "
                             "model on this dataset first")
        import json

        clip_model, clip_pretrained = json.loads(found["config"])["model_name"], wh.resolve(found["checkpoint_uri"])
    elif clip_pretrained and not Path(clip_pretrained).is_absolute() and (Path(root) / clip_pretrained).exists():
        clip_pretrained = str(Path(root) / clip_pretrained)  # home-relative, as the trained event names it
    params = {k: v for k, v in locals().items() if k not in ("dataset", "home", "root", "wh", "ds_id", "found", "json")}
    params["clip_pretrained"] = stored_path(root, clip_pretrained)
    options = {"clip_model": clip_model, "clip_pretrained": clip_pretrained, "model": model,
               **_schedule(steps, samples, batch_size, lr, warmup_steps, device, num_workers, seed)}
    return _train("diffusion", dataset, root, params, options, evaluate, eval_dataset, reuse)
