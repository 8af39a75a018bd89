"""Train contrastive, masked and diffusion models on a curated image-text version, and asr models on a
curated audio version, then evaluate them.

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
from mmpipe.train.request import TrainRequest
from tasks.report_page import write_report_page
from tasks.runs import Run, tracked_run
from tasks.train import (announce_model, model_id_for, recipe_task, register_model_task, resolve_dataset_task,
                         reusable_model, stored_evaluation, text_tower, train_task, training_result)


def _train(request: TrainRequest, home: str | None) -> dict:
    """Train (or find) the requested model in its tracked run, then evaluate it and refresh the report."""
    home = str(resolve_home(home))
    objective, options = request.objective, request.options()
    with tracked_run(home, f"train-{objective}", request.run_params(home)) as run:
        ds = resolve_dataset_task(home, request.dataset)
        recipe = recipe_task(home, objective, ds["dataset_id"], options)
        found = reusable_model(home, objective, ds["dataset_id"], recipe["recipe_key"]) if request.reuse else None
        if found:  # the same recipe trained on the same version already: nothing to train, nothing to announce
            model_id, result = found["model_id"], {**found, "final": {}}
        else:
            model_id, result = _train_anew(home, run, objective, ds, recipe, options)
    evals = None
    if request.evaluate:
        evals = (found and stored_evaluation(home, model_id, objective, request.eval_dataset)) or \
            evaluate_flow(model_id, home=home, eval_dataset=request.eval_dataset)
    report = write_report_page(home, f"{ds['name']}@{ds['version']}")
    return training_result(run.run_id, model_id, objective, ds, result, recipe, evals, report, bool(found))


def _train_anew(home: str, run: Run, objective: str, ds: dict, recipe: dict, options: dict) -> tuple[str, dict]:
    """Register the model as training, train it (resuming its run's checkpoints), register and announce it."""
    model_id = model_id_for(run.run_id, objective)
    out_dir = Path(home) / "models" / objective / f"{ds['name']}-{ds['version']}-{run.run_id}"
    dataset = f"{ds['name']}@{ds['version']}"
    config = {**options, "dataset": dataset, **recipe}
    register_model_task(home, run.run_id, model_id, objective, ds["dataset_id"], str(out_dir), config, "training")
    result = train_task(home, run.run_id, model_id, objective, ds["shards"], str(out_dir), options)
    register_model_task(home, run.run_id, model_id, objective, ds["dataset_id"], result["checkpoint"],
                        {**config, **result["config"]}, "trained")
    announce_model(model_id, objective, dataset, stored_path(home, result["checkpoint"]), options)  # homes move
    return model_id, result


@flow(name="train-contrastive", flow_run_name=run_name("train-contrastive", "dataset"))
def train_contrastive_flow(dataset: str, home: str | None = None, model_name: str = TINY_CLIP,
                           pretrained: str | None = None, siglip: bool = False, steps: int = 300,
                           samples: int | None = None, batch_size: int = 64, lr: float = 2e-3,
                           warmup_steps: int | None = None, device: str | None = None, num_workers: int = 0,
                           seed: int = 0, evaluate: bool = True, eval_dataset: str | None = None,
                           reuse: bool = True) -> dict:
    """A CLIP-style model (any open_clip config; CLIP or SigLIP loss), optionally initialised from a checkpoint.
    reuse: a model trained on this version with the same whole recipe is returned instead of training."""
    model = {"model_name": model_name, "pretrained": pretrained, "siglip": siglip}
    return _train(TrainRequest("contrastive", dataset, model, steps, samples, batch_size, lr, warmup_steps, device,
                               num_workers, seed, evaluate, eval_dataset, reuse), home)


@flow(name="train-masked", flow_run_name=run_name("train-masked", "dataset"))
def train_masked_flow(dataset: str, home: str | None = None, model: dict | None = None, steps: int = 300,
                      samples: int | None = None, batch_size: int = 64, lr: float = 2e-3,
                      warmup_steps: int | None = None, device: str | None = None, num_workers: int = 0,
                      seed: int = 0, evaluate: bool = True, eval_dataset: str | None = None,
                      reuse: bool = True) -> dict:
    """An M3AE-style masked multimodal autoencoder; `model` overrides MaskedConfig fields (reuse: as
    train_contrastive_flow)."""
    return _train(TrainRequest("masked", dataset, {"model": model}, steps, samples, batch_size, lr, warmup_steps,
                               device, num_workers, seed, evaluate, eval_dataset, reuse), home)


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
    home = str(resolve_home(home))
    clip_model, clip_pretrained = text_tower(home, dataset, clip_model, clip_pretrained)
    tower = {"clip_model": clip_model, "clip_pretrained": clip_pretrained, "model": model}
    return _train(TrainRequest("diffusion", dataset, tower, steps, samples, batch_size, lr, warmup_steps, device,
                               num_workers, seed, evaluate, eval_dataset, reuse), home)


@flow(name="train-asr", flow_run_name=run_name("train-asr", "dataset"))
def train_asr_flow(dataset: str, home: str | None = None, model: dict | None = None, steps: int = 300,
                   samples: int | None = None, batch_size: int = 32, lr: float = 3e-3,
                   warmup_steps: int | None = None, device: str | None = None, num_workers: int = 0,
                   seed: int = 0, evaluate: bool = True, eval_dataset: str | None = None,
                   reuse: bool = True) -> dict:
    """A Whisper-architecture recognizer trained on an audio version's transcripts (the pseudo-labels), or
    on the reference texts where `model={"targets": "reference"}`; `model` overrides AsrConfig fields.
    Evaluated by WER and CER against the references of the validation split (reuse: as
    train_contrastive_flow)."""
    return _train(TrainRequest("asr", dataset, {"model": model}, steps, samples, batch_size, lr, warmup_steps,
                               device, num_workers, seed, evaluate, eval_dataset, reuse), home)


@flow(name="train-speech-masked", flow_run_name=run_name("train-speech-masked", "dataset"))
def train_speech_masked_flow(dataset: str, home: str | None = None, model: dict | None = None, steps: int = 300,
                             samples: int | None = None, batch_size: int = 16, lr: float = 2e-3,
                             warmup_steps: int | None = None, device: str | None = None, num_workers: int = 0,
                             seed: int = 0, evaluate: bool = True, eval_dataset: str | None = None,
                             reuse: bool = True) -> dict:
    """wav2vec 2.0 masked pretraining on an audio version's clips; `model` overrides SpeechMaskedConfig
    fields. Evaluated by the held-out pretraining loss and a linear probe where clips carry labels (reuse:
    as train_contrastive_flow)."""
    return _train(TrainRequest("speech-masked", dataset, {"model": model}, steps, samples, batch_size, lr,
                               warmup_steps, device, num_workers, seed, evaluate, eval_dataset, reuse), home)


@flow(name="train-audio-contrastive", flow_run_name=run_name("train-audio-contrastive", "dataset"))
def train_audio_contrastive_flow(dataset: str, home: str | None = None, model: dict | None = None,
                                 steps: int = 300, samples: int | None = None, batch_size: int = 32,
                                 lr: float = 2e-3, warmup_steps: int | None = None, device: str | None = None,
                                 num_workers: int = 0, seed: int = 0, evaluate: bool = True,
                                 eval_dataset: str | None = None, reuse: bool = True) -> dict:
    """CLAP-style audio-text contrastive training on an audio version's clips and transcripts; `model`
    overrides AudioContrastiveConfig fields (e.g. text_pretrained: an open_clip checkpoint for the text
    tower). Evaluated by audio-to-text and text-to-audio R@k (reuse: as train_contrastive_flow)."""
    return _train(TrainRequest("audio-contrastive", dataset, {"model": model}, steps, samples, batch_size, lr,
                               warmup_steps, device, num_workers, seed, evaluate, eval_dataset, reuse), home)
