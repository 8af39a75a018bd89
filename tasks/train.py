"""Tasks that train and evaluate models on dataset versions and record them (models, train_steps, evals)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mmpipe.home import stored_path
from mmpipe.progress import Bar
from mmpipe.evaluate.asr import WORST_TRANSCRIPTS
from tasks.runs import code_version
from warehouse import Warehouse, utcnow
from warehouse.dataset_queries import (dataset_by_id, latest_model, model_by_recipe, model_metrics, model_row,
                                       resolve_dataset)

_PATH_KEYS = ("pretrained", "clip_pretrained", "out_dir")  # stored relative to the home when inside it
STEP_FLUSH = 25  # per-step metrics reach the warehouse in batches (a commit per step would dominate)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def resolve_dataset_task(home: str, spec: str) -> dict:
    """NAME[@VERSION|@TAG] -> the dataset row, with its shard and manifest paths made absolute."""
    wh = Warehouse(home)
    row = resolve_dataset(wh, spec)
    if not row["shards_uri"]:
        raise ValueError(f"dataset {row['name']}@{row['version']} has no samples to train on")
    return {**row, "shards": wh.resolve(row["shards_uri"]), "manifest": wh.resolve(row["manifest_uri"])}


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def recipe_task(home: str, objective: str, dataset_id: str, options: dict) -> dict:
    """The training recipe of these options on this dataset version (paths as the warehouse stores them),
    with its key."""
    from mmpipe.train.recipes import recipe, recipe_key

    stored = {k: stored_path(home, v) if k in _PATH_KEYS and isinstance(v, str) else v for k, v in options.items()}
    found = recipe(objective, dataset_id, stored)
    return {"recipe": found, "recipe_key": recipe_key(found)}


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def reusable_model(home: str, objective: str, dataset_id: str, key: str) -> dict | None:
    """A model already trained with exactly this recipe on this version: its id, checkpoint and recipe."""
    wh = Warehouse(home)
    row = model_by_recipe(wh, objective, dataset_id, key)
    if row is None or not Path(wh.resolve(row["checkpoint_uri"])).exists():  # a deleted checkpoint: train again
        return None
    recipe = json.loads(row["config"])["recipe"]
    return {"model_id": row["model_id"], "checkpoint": wh.resolve(row["checkpoint_uri"]), "recipe": recipe,
            "samples_seen": recipe["samples_seen"],
            "step": recipe["samples_seen"] // (recipe["batch_size"] * recipe.get("grad_accum", 1))}


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def stored_evaluation(home: str, model_id: str, objective: str, eval_dataset: str | None) -> dict | None:
    """A model's stored evaluation on the validation split (or on `eval_dataset`), as evaluate_task
    returns it; None when it was not evaluated there."""
    wh = Warehouse(home)
    split = "val"
    if eval_dataset:
        row = resolve_dataset(wh, eval_dataset)
        split = f"{row['name']}@{row['version']}"
    metrics = model_metrics(wh, model_id, split)
    return {"model_id": model_id, "objective": objective, "split": split, "metrics": metrics, "grid": None} \
        if metrics else None


def text_tower(home: str, dataset: str, clip_model: str | None, clip_pretrained: str | None
               ) -> tuple[str, str | None]:
    """The open_clip text tower a diffusion model trains on: the one given (a home-relative checkpoint, as
    the trained event names it, made absolute), else the newest contrastive model trained on `dataset`
    (else on any dataset)."""
    if clip_model is None:
        wh = Warehouse(home)
        found = latest_model(wh, "contrastive", resolve_dataset_task.fn(home, dataset)["dataset_id"]) or \
            latest_model(wh, "contrastive")
        if found is None:
            raise ValueError("no text tower: pass --clip-model and --clip-pretrained, or train a contrastive "
                             "model on this dataset first")
        return json.loads(found["config"])["model_name"], wh.resolve(found["checkpoint_uri"])
    if clip_pretrained and not Path(clip_pretrained).is_absolute() and (Path(home) / clip_pretrained).exists():
        return clip_model, str(Path(home) / clip_pretrained)
    return clip_model, clip_pretrained


def training_result(run_id: str, model_id: str, objective: str, ds: dict, result: dict, recipe: dict,
                    evals: dict | None, report: str | None, reused: bool) -> dict:
    """What a training flow returns: its run, model, dataset, checkpoint, progress, evals and report."""
    return {"run_id": run_id, "model_id": model_id, "objective": objective,
            "dataset": f"{ds['name']}@{ds['version']}", "checkpoint": result["checkpoint"], "steps": result["step"],
            "samples_seen": result["samples_seen"], "final": result["final"], "evals": evals, "report": report,
            "reused": reused, "recipe": recipe["recipe"]}


def model_id_for(run_id: str, objective: str) -> str:
    """A model's id: stable for a run, so a resumed run updates the same row."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mmpipe:model:{objective}:{run_id}"))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def register_model_task(home: str, run_id: str, model_id: str, objective: str, dataset_id: str | None,
                        checkpoint: str, config: dict, status: str) -> str:
    """Record (or update) a model in the `models` table; its checkpoint is stored relative to the home."""
    wh = Warehouse(home)
    config = {k: stored_path(home, v) if k in _PATH_KEYS and isinstance(v, str) else v for k, v in config.items()}
    wh.register_model({"model_id": model_id, "objective": objective, "dataset_id": dataset_id,
                       "config": json.dumps(config, sort_keys=True, default=str), "checkpoint_uri": wh.relative(checkpoint),
                       "run_id": run_id, "created_at": utcnow(), "code_version": code_version(), "status": status})
    return model_id


TRAINED_EVENT = "mmpipe.model.trained"


@task(cache_policy=NO_CACHE)
def announce_model(model_id: str, objective: str, dataset: str, checkpoint: str, config: dict) -> None:
    """The `mmpipe.model.trained` event: a contrastive model triggers the diffusion deployment."""
    emit_event(event=TRAINED_EVENT, resource={"prefect.resource.id": f"mmpipe.model.{model_id}",
                                              "mmpipe.objective": objective},
               payload={"model_id": model_id, "objective": objective, "dataset": dataset, "checkpoint": checkpoint,
                        "model_name": config.get("model_name")})


class StepRecorder:
    """Per-step metrics to the warehouse (batched), a Prefect progress artifact and the run log."""

    def __init__(self, home: str, model_id: str, run_id: str, total_steps: int, label: str):
        """Rows are written every STEP_FLUSH steps and before every checkpoint (the loop calls flush), so
        a checkpoint never holds steps the warehouse lacks. A resumed run first deletes the rows from the
        step it resumes at on (an earlier attempt may have written them after that checkpoint) and
        records them again: every step's losses exactly once, from the run the weights continue."""
        self.wh, self.model_id, self.run_id, self.total = Warehouse(home), model_id, run_id, total_steps
        self.rows: list[dict] = []
        self.first = True
        self.progress = create_progress_artifact(0.0, description=f"{label}, run {run_id}")
        self.logger = get_run_logger()
        self.bar = Bar(total_steps, label.capitalize(), unit="step")  # on a terminal only

    def __call__(self, step: int, metrics: dict) -> None:
        if self.first:
            self.first = False
            self.wh.forget_train_steps(self.model_id, step)
        seen = int(metrics.get("samples_seen", 0))
        self.bar.advance_to(step, seen)
        if step >= self.total:
            self.bar.close()
        self.rows += [{"model_id": self.model_id, "step": step, "samples_seen": seen, "metric": k, "value": float(v),
                       "run_id": self.run_id} for k, v in metrics.items() if isinstance(v, (int, float))]
        if step % STEP_FLUSH == 0 or step >= self.total:
            self.flush()
            update_progress_artifact(self.progress, 100.0 * step / max(1, self.total))
            losses = {k: round(float(v), 4) for k, v in metrics.items() if k.endswith("_loss")}
            self.logger.info("step %d/%d %s", step, self.total, losses)

    def flush(self) -> None:
        """Write the buffered rows (the loop calls this before every checkpoint)."""
        if self.rows:
            self.wh.write("train_steps", pa.Table.from_pylist(self.rows), self.run_id)
            self.rows = []


@task(cache_policy=NO_CACHE, tags=["gpu"], task_run_name="train-{objective}")
def train_task(home: str, run_id: str, model_id: str, objective: str, shards: str, out_dir: str,
               options: dict) -> dict:
    """Train one objective on a dataset's shards (streamed; resumes from out_dir); per-step metrics recorded."""
    from mmpipe.train import recipes
    from mmpipe.train.loop import TrainConfig

    known = set(TrainConfig.__dataclass_fields__)
    train_opts = {k: v for k, v in options.items() if k in known}
    config = TrainConfig(**train_opts)
    total = config.total_steps()
    recorder = StepRecorder(home, model_id, run_id, total, f"training {objective}")
    extra = {k: v for k, v in options.items() if k not in known}
    fn = {"contrastive": recipes.train_contrastive, "masked": recipes.train_masked,
          "diffusion": recipes.train_diffusion, "asr": recipes.train_asr,
          "speech-masked": recipes.train_speech_masked,
          "audio-contrastive": recipes.train_audio_contrastive}[objective]
    result = fn(shards, out_dir, on_step=recorder, **extra, **train_opts)
    recorder.flush()
    history = result.pop("history")
    return {**result, "final": history[-1] if history else {}}


@task(cache_policy=NO_CACHE, tags=["gpu"], task_run_name="evaluate-{model_id}")
def evaluate_task(home: str, model_id: str, run_id: str, eval_dataset: str | None = None) -> dict:
    """Evaluate a model on the validation split of its dataset version (or on a named eval dataset's
    samples); every metric becomes a row of `evals` with the split it was measured on."""
    from mmpipe.evaluate import asr, generation, masked, retrieval, speech

    wh = Warehouse(home)
    model = model_row(wh, model_id)
    config = json.loads(model["config"])
    checkpoint = wh.resolve(model["checkpoint_uri"])
    if eval_dataset:
        ds = resolve_dataset(wh, eval_dataset)
        shards, split, split_name = wh.resolve(ds["shards_uri"]), None, f"{ds['name']}@{ds['version']}"
    else:
        ds = dataset_by_id(wh, model["dataset_id"])
        shards, split, split_name = wh.resolve(ds["shards_uri"]), "val", "val"
    objective = model["objective"]
    model_dir = Path(checkpoint) if Path(checkpoint).is_dir() and Path(checkpoint).name != "unet" else \
        Path(checkpoint).parent
    grid = None
    if objective == "contrastive":
        metrics = retrieval.evaluate_retrieval(config["model_name"], checkpoint, shards, split=split,
                                               device=config.get("device"))
    elif objective == "masked":
        metrics = masked.evaluate_masked(str(model_dir), shards, split=split or "val",
                                         device=config.get("device"))
    elif objective == "asr":
        metrics = asr.evaluate_recognizer(str(model_dir), shards, split=split, device=config.get("device"), worst=10)
        worst = {"split": split_name, "clips": metrics.pop("worst")}  # the report's table, beside the checkpoint
        (model_dir / WORST_TRANSCRIPTS).write_text(json.dumps(worst, indent=1))
    elif objective == "speech-masked":
        metrics = speech.evaluate_speech_masked(str(model_dir), shards, split=split, device=config.get("device"))
    elif objective == "audio-contrastive":
        metrics = speech.evaluate_audio_contrastive(str(model_dir), shards, split=split,
                                                    device=config.get("device"))
    else:
        grid = str(model_dir / "samples.png")
        metrics = generation.evaluate_generation(checkpoint, shards, config["clip_model"],
                                                 wh.resolve(config.get("clip_pretrained")), split=split,
                                                 grid_path=grid, device=config.get("device"))
    wh.record_eval([{"model_id": model["model_id"], "metric": k, "value": float(v), "split": split_name,
                     "run_id": run_id, "created_at": utcnow()} for k, v in metrics.items()], run_id)
    lines = [f"# {objective} model `{model['model_id'][:8]}` on {ds['name']}@{ds['version']} ({split_name})", "",
             "| metric | value |", "|---|---|", *[f"| {k} | {v:.4f} |" for k, v in metrics.items()]]
    if grid:
        lines += ["", f"Samples: `{grid}`", "", f"![samples]({Path(grid).as_uri()})"]
    create_markdown_artifact("\n".join(lines), key=f"eval-{objective}-{model['model_id'][:8]}",
                             description=f"evaluation of {objective} model")
    return {"model_id": model["model_id"], "objective": objective, "split": split_name, "metrics": metrics,
            "grid": grid}


@task(cache_policy=NO_CACHE, tags=["gpu"])
def train_filter_task(shards: str, out_dir: str, steps: int, model_name: str, device: str | None = None) -> str:
    """Train the CLIP filter on the training split of trusted pairs; returns its checkpoint."""
    from mmpipe.train.bootstrap import train_filter

    logger = get_run_logger()
    return str(train_filter(shards, out_dir, steps=steps, device=device, split="train", model_name=model_name,
                            on_step=lambda step, m: step % 50 == 0 and logger.info("filter step %d loss %.4f", step,
                                                                                   m.get("contrastive_loss", 0))))


@task(cache_policy=NO_CACHE, tags=["gpu"])
def calibrate_task(shards: str, model_name: str, checkpoint: str, quantile: float) -> dict:
    """The min CLIP score that drops only `quantile` of the held-out (validation split) trusted pairs."""
    from mmpipe.evaluate.filtering import calibrate_min_score
    from mmpipe.stages.clip_score import ClipScoreConfig, ClipScorer
    from mmpipe.train.data import iter_pairs

    pairs = list(iter_pairs(shards, split="val"))
    scorer = ClipScorer(ClipScoreConfig(model_name, checkpoint, num_workers=0))
    scores = scorer.score([str(i) for i in range(len(pairs))], [p[0] for p in pairs], [p[1] for p in pairs])
    return {"min_score": calibrate_min_score([s[0] for s in scores.values()], quantile), "holdout_pairs": len(pairs)}
