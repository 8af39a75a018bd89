"""Commands that train and evaluate models on curated dataset versions, and the whole loop."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmpipe.cli_common import HomeOpt, guarded, home_of, start_flows, warehouse
from mmpipe.cli_output import emit, print_models, print_outcomes
from mmpipe.models.names import CLIP_MODEL, CLIP_PRETRAINED, TINY_CLIP

train_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Train on a curated dataset version: contrastive, masked or diffusion.")
DatasetOpt = Annotated[str, typer.Option("--dataset", help="NAME, NAME@VERSION or NAME@TAG (newest version when "
                                                           "no version is given).")]
Steps = Annotated[int, typer.Option(help="Optimizer steps (ignored with --samples).")]
Samples = Annotated[Optional[int], typer.Option(help="Train for this many samples seen instead of --steps.")]
Device = Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when available).")]
Workers = Annotated[int, typer.Option("--workers", help="DataLoader worker processes that decode.")]
Evaluate = Annotated[bool, typer.Option(help="Evaluate when training ends.")]
EvalSet = Annotated[Optional[str], typer.Option(help="Evaluate on this dataset's samples instead of the "
                                                     "validation split.")]
Reuse = Annotated[bool, typer.Option(help="Return a model already trained on this version with the same whole "
                                          "recipe instead of training (--no-reuse trains anyway).")]


def _done(result: dict, home) -> None:
    verb = "found (same recipe, trained before)" if result.get("reused") else "trained"
    typer.echo(f"\n{result['objective']} model {result['model_id']} {verb} on {result['dataset']}: "
               f"{result['steps']} steps, {result['samples_seen']} samples seen -> {result['checkpoint']}")
    if result.get("evals"):
        print_models(warehouse(home), [result["model_id"]])


@train_app.command("contrastive")
@guarded
def contrastive(dataset: DatasetOpt, model: Annotated[str, typer.Option(help="open_clip model name (tiny configs "
                                                                              "ship; ViT-B-32 and up on GPUs).")] = TINY_CLIP,
                pretrained: Annotated[Optional[str], typer.Option(help="Initialise from this checkpoint or tag.")] = None,
                siglip: Annotated[bool, typer.Option(help="SigLIP's sigmoid loss instead of CLIP's.")] = False,
                steps: Steps = 300, samples: Samples = None, batch_size: int = 64, lr: float = 2e-3,
                device: Device = None, workers: Workers = 0, evaluate: Evaluate = True, eval_dataset: EvalSet = None,
                reuse: Reuse = True, home: HomeOpt = None) -> None:
    """Train a CLIP-style model (open_clip's ClipLoss, or SigLipLoss with --siglip)."""
    start_flows(home)
    from flows.train import train_contrastive_flow

    _done(train_contrastive_flow(dataset, home=str(home_of(home)), model_name=model, pretrained=pretrained,
                                 siglip=siglip, steps=steps, samples=samples, batch_size=batch_size, lr=lr,
                                 device=device, num_workers=workers, evaluate=evaluate, eval_dataset=eval_dataset,
                                 reuse=reuse), home)


@train_app.command("masked")
@guarded
def masked(dataset: DatasetOpt, steps: Steps = 300, samples: Samples = None, batch_size: int = 64, lr: float = 2e-3,
           image_mask_ratio: float = 0.75, text_mask_ratio: float = 0.3, text_loss_weight: float = 0.5,
           device: Device = None, workers: Workers = 0, evaluate: Evaluate = True, eval_dataset: EvalSet = None,
           reuse: Reuse = True, home: HomeOpt = None) -> None:
    """Train an M3AE-style masked multimodal autoencoder (image patches + caption tokens)."""
    start_flows(home)
    from flows.train import train_masked_flow

    model = {"image_mask_ratio": image_mask_ratio, "text_mask_ratio": text_mask_ratio,
             "text_loss_weight": text_loss_weight}
    _done(train_masked_flow(dataset, home=str(home_of(home)), model=model, steps=steps, samples=samples,
                            batch_size=batch_size, lr=lr, device=device, num_workers=workers, evaluate=evaluate,
                            eval_dataset=eval_dataset, reuse=reuse), home)


@train_app.command("diffusion")
@guarded
def diffusion(dataset: DatasetOpt,
              clip_model: Annotated[Optional[str], typer.Option(help="open_clip text tower to condition on (default: "
                                                                     "the newest contrastive model on the dataset).")] = None,
              clip_pretrained: Annotated[Optional[str], typer.Option(help="Its checkpoint or tag.")] = None,
              steps: Steps = 300, samples: Samples = None, batch_size: int = 32, lr: float = 2e-3,
              device: Device = None, workers: Workers = 0, evaluate: Evaluate = True, eval_dataset: EvalSet = None,
              reuse: Reuse = True, home: HomeOpt = None) -> None:
    """Train a text-conditioned pixel diffusion model (diffusers UNet2DConditionModel, DDPM)."""
    start_flows(home)
    from flows.train import train_diffusion_flow

    _done(train_diffusion_flow(dataset, home=str(home_of(home)), clip_model=clip_model, clip_pretrained=clip_pretrained,
                               steps=steps, samples=samples, batch_size=batch_size, lr=lr, device=device,
                               num_workers=workers, evaluate=evaluate, eval_dataset=eval_dataset, reuse=reuse), home)


@guarded
def evaluate(model_id: Annotated[str, typer.Argument(help="A model id (or a unique prefix), see `mmpipe models`.")],
             eval_dataset: EvalSet = None, home: HomeOpt = None) -> None:
    """Evaluate a trained model again (on its validation split, or on another dataset's samples)."""
    start_flows(home)
    from flows.evaluate import evaluate_flow

    result = evaluate_flow(model_id, home=str(home_of(home)), eval_dataset=eval_dataset)
    print_models(warehouse(home), [result["model_id"]])


@guarded
def models(format: Annotated[str, typer.Option("--format", "-f", help="table, csv, json, jsonl")] = "table",
           long: Annotated[bool, typer.Option("--long", "-l", help="Every metric of every model, one row each.")] = False,
           home: HomeOpt = None) -> None:
    """Trained models, one row each with its dataset version and headline metrics (--long: every metric)."""
    from warehouse.dataset_queries import models_with_evals

    rows = models_with_evals(warehouse(home))
    emit(rows if long else headline_table(rows), format, None, 1000)


# The metrics that say how good a model is, by objective family, shown in this order where present.
HEADLINE = ("mean_R@5", "chance_R@5", "zero_shot_accuracy", "masked_token_accuracy", "masked_token_unigram_accuracy",
            "conditioning_gap", "fd_clip", "clip_score", "wer", "cer")


def headline_table(rows):
    """One row per model (newest last): its dataset, the split evaluated, and its headline metrics."""
    import pyarrow as pa

    models: dict[str, dict] = {}
    for r in rows.to_pylist():
        m = models.setdefault(r["model_id"], {"model_id": r["model_id"], "objective": r["objective"],
                                              "dataset": r["dataset"], "metrics": {}})
        if r["metric"] is not None:
            m["metrics"].setdefault(r["split"], {})[r["metric"]] = r["value"]
    out = []
    for m in models.values():
        split = "val" if "val" in m["metrics"] else next(iter(m["metrics"]), None)
        got = m["metrics"].get(split, {})
        shown = [f"{k} {got[k]:.4g}" for k in HEADLINE if got.get(k) is not None]
        out.append({"model_id": m["model_id"], "objective": m["objective"], "dataset": m["dataset"], "split": split,
                    "metrics": ", ".join(shown or [f"{k} {v:.4g}" for k, v in list(got.items())[:3] if v is not None]),
                    "n_metrics": sum(len(v) for v in m["metrics"].values())})
    names = ("model_id", "objective", "dataset", "split", "metrics", "n_metrics")
    return pa.table({k: [o[k] for o in out] for k in names}) if out else pa.table({k: [] for k in names})


@guarded
def pipeline(source: Annotated[str, typer.Argument(help="Any source `mmpipe curate` takes.")],
             name: Annotated[str, typer.Option("--name", help="Dataset name; a new version is curated.")],
             clip_model: Annotated[str, typer.Option(help="CLIP for the filter (or none).")] = CLIP_MODEL,
             clip_pretrained: Annotated[Optional[str], typer.Option(help="Its tag or checkpoint.")] = CLIP_PRETRAINED,
             min_clip_score: Optional[float] = None, keep_fraction: Optional[float] = None, min_side: int = 200,
             objectives: Annotated[str, typer.Option(help="Comma-separated: contrastive,masked,diffusion")] =
             "contrastive,masked,diffusion",
             steps: Steps = 300, batch_size: int = 64, device: Device = None, home: HomeOpt = None) -> None:
    """The whole loop: curate SOURCE into a new version of NAME, then train and evaluate each objective on it."""
    from mmpipe.cli_common import fail
    from mmpipe.sources import SourceSpec, validate

    wanted = tuple(o.strip() for o in objectives.split(",") if o.strip())
    if not set(wanted) <= {"contrastive", "masked", "diffusion"}:
        fail(f"unknown objective in {objectives!r}; use contrastive, masked, diffusion")
    validate(SourceSpec(source))
    start_flows(home)
    from flows.pipeline import pipeline_flow

    curate = {"clip_model": clip_model, "clip_pretrained": clip_pretrained, "min_clip_score": min_clip_score,
              "keep_fraction": keep_fraction, "min_side": min_side, "device": device}
    result = pipeline_flow(source, name, home=str(home_of(home)), curate=curate, objectives=wanted, steps=steps,
                           batch_size=batch_size, device=device)
    print_outcomes(result["curate"])
    typer.echo(f"\ntrained on {result['dataset']}:")
    print_models(warehouse(home), [result[o]["model_id"] for o in wanted])
