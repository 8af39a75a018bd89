"""Commands that train and evaluate models on curated dataset versions, the whole loop (pipeline), and
the sweep that chooses a CLIP filter setting by what the model trained on its output does."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmpipe.cli.common import DaskAddressOpt, DaskWorkersOpt, HomeOpt, RunnerOpt, fail, guarded, home_of, \
    runner_choice, start_flows, warehouse
from mmpipe.cli.output import emit, print_models, print_outcomes
from mmpipe.models.names import CLIP_MODEL, CLIP_PRETRAINED, TINY_CLIP

train_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Train on a curated dataset version: contrastive, masked or diffusion (image-text); "
                             "asr, speech-masked or audio-contrastive (audio).")
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


@train_app.command("asr")
@guarded
def asr(dataset: DatasetOpt, steps: Steps = 300, samples: Samples = None, batch_size: int = 32, lr: float = 3e-3,
        targets: Annotated[str, typer.Option(help="transcript: learn the transcribe flow's pseudo-labels; reference: "
                                                  "learn each clip's reference text where it has one.")] = "transcript",
        device: Device = None, workers: Workers = 0, evaluate: Evaluate = True, eval_dataset: EvalSet = None,
        reuse: Reuse = True, home: HomeOpt = None) -> None:
    """Train a Whisper-architecture speech recognizer on a curated audio version (WER/CER on its references)."""
    start_flows(home)
    from flows.train import train_asr_flow

    _done(train_asr_flow(dataset, home=str(home_of(home)), model={"targets": targets}, steps=steps, samples=samples,
                         batch_size=batch_size, lr=lr, device=device, num_workers=workers, evaluate=evaluate,
                         eval_dataset=eval_dataset, reuse=reuse), home)


@train_app.command("speech-masked")
@guarded
def speech_masked(dataset: DatasetOpt, steps: Steps = 300, samples: Samples = None, batch_size: int = 16,
                  lr: float = 2e-3, device: Device = None, workers: Workers = 0, evaluate: Evaluate = True,
                  eval_dataset: EvalSet = None, reuse: Reuse = True, home: HomeOpt = None) -> None:
    """wav2vec 2.0 masked pretraining on a curated audio version (held-out loss, linear probe on labels)."""
    start_flows(home)
    from flows.train import train_speech_masked_flow

    _done(train_speech_masked_flow(dataset, home=str(home_of(home)), steps=steps, samples=samples,
                                   batch_size=batch_size, lr=lr, device=device, num_workers=workers,
                                   evaluate=evaluate, eval_dataset=eval_dataset, reuse=reuse), home)


@train_app.command("audio-contrastive")
@guarded
def audio_contrastive(dataset: DatasetOpt, steps: Steps = 300, samples: Samples = None, batch_size: int = 32,
                      lr: float = 2e-3,
                      targets: Annotated[str, typer.Option(help="Captions: transcript (the pseudo-labels) or "
                                                                "reference (where a clip has one).")] = "transcript",
                      text_pretrained: Annotated[Optional[str], typer.Option(help="Start the text tower from this "
                                                                                  "open_clip checkpoint.")] = None,
                      device: Device = None, workers: Workers = 0, evaluate: Evaluate = True,
                      eval_dataset: EvalSet = None, reuse: Reuse = True, home: HomeOpt = None) -> None:
    """CLAP-style audio-text contrastive training on a curated audio version (audio<->text R@k)."""
    start_flows(home)
    from flows.train import train_audio_contrastive_flow

    model = {"targets": targets, "text_pretrained": text_pretrained}
    _done(train_audio_contrastive_flow(dataset, home=str(home_of(home)), model=model, steps=steps, samples=samples,
                                       batch_size=batch_size, lr=lr, device=device, num_workers=workers,
                                       evaluate=evaluate, eval_dataset=eval_dataset, reuse=reuse), home)


@guarded
def evaluate(model_id: Annotated[str, typer.Argument(help="A model id (or a unique prefix), see `mmpipe models`.")],
             eval_dataset: EvalSet = None, home: HomeOpt = None) -> None:
    """Evaluate a trained model again (on its validation split, or on another dataset's samples)."""
    start_flows(home)
    from flows.evaluate import evaluate_flow

    result = evaluate_flow(model_id, home=str(home_of(home)), eval_dataset=eval_dataset)
    print_models(warehouse(home), [result["model_id"]])


@guarded
def pipeline(source: Annotated[str, typer.Argument(help="Any source `mmpipe curate` (or, for speech objectives, "
                                                        "`mmpipe transcribe`) takes.")],
             name: Annotated[str, typer.Option("--name", help="Dataset name; a new version is curated.")],
             clip_model: Annotated[str, typer.Option(help="CLIP for the filter (or none).")] = CLIP_MODEL,
             clip_pretrained: Annotated[Optional[str], typer.Option(help="Its tag or checkpoint.")] = CLIP_PRETRAINED,
             min_clip_score: Optional[float] = None, keep_fraction: Optional[float] = None, min_side: int = 200,
             whisper_model: Annotated[Optional[str], typer.Option(help="Whisper model for audio sources (default: "
                                                                       "as `mmpipe transcribe`).")] = None,
             objectives: Annotated[str, typer.Option(help="Comma-separated: contrastive,masked,diffusion (image-text) "
                                                          "or asr,speech-masked,audio-contrastive (audio)")] =
             "contrastive,masked,diffusion",
             steps: Steps = 300, batch_size: int = 64, device: Device = None, home: HomeOpt = None) -> None:
    """The whole loop: curate (or transcribe) SOURCE into a new version of NAME, then train and evaluate each
    objective on it."""
    from mmpipe.sources import SourceSpec, validate
    from mmpipe.train.objectives import pipeline_modality

    wanted = tuple(o.strip() for o in objectives.split(",") if o.strip())
    audio = pipeline_modality(wanted) == "audio"
    validate(SourceSpec(source))
    start_flows(home)
    from flows.pipeline import pipeline_flow

    if audio:
        curate = {"device": device, **({"whisper_model": whisper_model} if whisper_model else {})}
    else:
        curate = {"clip_model": clip_model, "clip_pretrained": clip_pretrained, "min_clip_score": min_clip_score,
                  "keep_fraction": keep_fraction, "min_side": min_side, "device": device}
    result = pipeline_flow(source, name, home=str(home_of(home)), curate=curate, objectives=wanted, steps=steps,
                           batch_size=batch_size, device=device)
    print_outcomes(result["curate"])
    typer.echo(f"\ntrained on {result['dataset']}:")
    print_models(warehouse(home), [result[o]["model_id"] for o in wanted])


def _floats(text: Optional[str], flag: str) -> list[float]:
    if not text:
        return []
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{flag} takes comma-separated numbers, e.g. 0.2,0.25,0.3; not {text!r}")


@guarded
def sweep(source: Annotated[str, typer.Argument(help="Any source `mmpipe curate` takes (the candidate pool).")],
          name: Annotated[str, typer.Option("--name", help="Name of the swept dataset; the winner is tagged "
                                                           "NAME@best.")],
          eval_dataset: Annotated[str, typer.Option(help="NAME[@VERSION] every model is evaluated on; its samples "
                                                        "are kept out of every training subset.")],
          min_clip_score: Annotated[Optional[str], typer.Option(help="Thresholds to sweep, comma-separated.")] = None,
          keep_fraction: Annotated[Optional[str], typer.Option(help="Keep fractions to sweep, comma-separated "
                                                                    "(1.0 is no filtering).")] = None,
          clip_model: Annotated[Optional[list[str]], typer.Option(help="Filter model(s) to compare; repeatable, "
                                                                      "paired in order with --clip-pretrained.")] = None,
          clip_pretrained: Annotated[Optional[list[str]], typer.Option(help="Tag or checkpoint of each "
                                                                           "--clip-model ('none' for none).")] = None,
          objective: Annotated[str, typer.Option(help="contrastive or masked: the fixed recipe.")] = "contrastive",
          samples_seen: Annotated[int, typer.Option(help="Training samples seen per setting (equal compute).")] = 9600,
          model_name: Annotated[str, typer.Option(help="The trained open_clip config (contrastive).")] = TINY_CLIP,
          batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
          metric: Annotated[str, typer.Option(help="What chooses the winner (an `evals` metric).")] = "mean_R@5",
          min_side: Annotated[int, typer.Option(help="Basic filter of the pool's curation.")] = 200,
          device: Annotated[Optional[str], typer.Option(help="cuda or cpu.")] = None,
          format: Annotated[str, typer.Option("--format", help="table, json or jsonl.")] = "table",
          runner: RunnerOpt = "local", dask_address: DaskAddressOpt = None, dask_workers: DaskWorkersOpt = None,
          home: HomeOpt = None) -> None:
    """Train the same recipe on a version per filter setting and tag the best one NAME@best.

    Each setting's version is derived from stored scores; each model sees the same samples and is
    evaluated on one fixed set. On Dask the settings train side by side, one per worker (one GPU each
    where the workers declare GPUs)."""
    scores, fractions = _floats(min_clip_score, "--min-clip-score"), _floats(keep_fraction, "--keep-fraction")
    if not scores and not fractions:
        fail("give the settings to sweep: --min-clip-score 0.2,0.25,0.3 and/or --keep-fraction 0.3,0.5,1.0")
    if any(not 0 < f <= 1 for f in fractions):
        fail("keep fractions are in (0, 1]")
    if objective not in ("contrastive", "masked"):
        fail("--objective is contrastive or masked")
    models = clip_model or [TINY_CLIP]
    tags = clip_pretrained or [None] * len(models)
    if len(tags) != len(models):
        fail("give one --clip-pretrained per --clip-model")
    from mmpipe.sources import SourceSpec, validate

    try:
        validate(SourceSpec(source))
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    where = runner_choice(runner, dask_address, dask_workers)
    start_flows(home)
    from flows.runners import run_with
    from flows.sweep import sweep_flow

    try:
        result = run_with(sweep_flow, **where, source=source, name=name, eval_dataset=eval_dataset, home=str(home_of(home)), min_clip_scores=scores or None,
                            keep_fractions=fractions or None,
                            clip_models=[[m, None if (t or "").lower() == "none" else t] for m, t in zip(models, tags)],
                            objective=objective, samples_seen=samples_seen, model_name=model_name,
                            batch_size=batch_size, lr=lr, seed=seed, metric=metric, curate={"min_side": min_side},
                            device=device)
    except LookupError as e:
        fail(str(e))
    # each model's own recipe (from the models table), and whether this sweep trained it or found it
    rows = [{"setting": r["setting"], "filter_model": r["model"], "dataset": f"{name}@{r['version']}",
             "samples": r["n_samples"], "samples_seen": r["samples_seen"], "batch_size": r["batch_size"], "lr": r["lr"],
             "seed": r["seed"], metric: round(r["metrics"][metric], 4), "model_id": r["model_id"],
             "trained": "reused" if r["reused"] else "now"} for r in result["results"]]
    import pyarrow as pa

    emit(pa.Table.from_pylist(rows), format, None)
    if format != "table":
        return
    typer.echo(f"\nchosen: {result['best']['setting']} -> {name}@{result['best']['version']}, tagged {name}@best: "
               f"{result['reason']}")
    typer.echo(f"plot:   {result['plot']}")
    from warehouse import examples

    typer.echo(f"query:  mmpipe sql \"{examples.sweep_metrics(name, metric)}\"")


@guarded
def speech_sweep(source: Annotated[str, typer.Argument(help="Any source `mmpipe transcribe` takes (the pool).")],
                 name: Annotated[str, typer.Option("--name", help="Name of the swept dataset; the winner is tagged "
                                                                  "NAME@best.")],
                 eval_dataset: Annotated[str, typer.Option(help="NAME[@VERSION] of a transcribed set with reference "
                                                               "texts: every student's WER is measured on it, and its "
                                                               "clips are kept out of every training subset.")],
                 min_avg_logprob: Annotated[Optional[str], typer.Option(help="Average log-probability thresholds, "
                                                                             "comma-separated.")] = None,
                 max_no_speech_prob: Annotated[Optional[str], typer.Option(help="No-speech probability thresholds, "
                                                                                "comma-separated.")] = None,
                 max_wer: Annotated[Optional[str], typer.Option(help="WER-against-the-reference thresholds (clips "
                                                                     "without a reference are kept).")] = None,
                 unfiltered: Annotated[bool, typer.Option(help="Also train on the unfiltered pool.")] = True,
                 whisper_model: Annotated[str, typer.Option(help="The Whisper model that transcribes the pool.")] =
                 "tiny.en",
                 samples_seen: Annotated[int, typer.Option(help="Training samples seen per setting.")] = 3200,
                 batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
                 device: Annotated[Optional[str], typer.Option(help="cuda or cpu.")] = None,
                 format: Annotated[str, typer.Option("--format", help="table, json or jsonl.")] = "table",
                 home: HomeOpt = None) -> None:
    """Train the same asr student on a version per transcription-quality threshold and tag the lowest-WER one
    NAME@best (one-standard-error rule, preferring the setting that keeps more)."""
    from mmpipe.sources import SourceSpec, validate
    from mmpipe.speech_sweep import SpeechSweepRequest

    request = SpeechSweepRequest(source, name, eval_dataset, _floats(min_avg_logprob, "--min-avg-logprob") or None,
                                 _floats(max_no_speech_prob, "--max-no-speech-prob") or None,
                                 _floats(max_wer, "--max-wer") or None, unfiltered, whisper_model, samples_seen,
                                 batch_size, lr, seed, "wer", None, device)  # refuses a sweep with no thresholds
    validate(SourceSpec(source))
    start_flows(home)
    from flows.speech_sweep import speech_sweep_flow

    result = speech_sweep_flow(home=str(home_of(home)), **request.params())
    rows = [{"setting": r["setting"], "dataset": f"{name}@{r['version']}", "samples": r["n_samples"],
             "samples_seen": r["samples_seen"], "wer": round(r["metrics"]["wer"], 4),
             "cer": round(r["metrics"].get("cer", float("nan")), 4), "model_id": r["model_id"],
             "trained": "reused" if r["reused"] else "now"} for r in result["results"]]
    import pyarrow as pa

    emit(pa.Table.from_pylist(rows), format, None)
    if format == "table":
        typer.echo(f"\nchosen: {result['best']['setting']} -> {name}@{result['best']['version']}, tagged "
                   f"{name}@best: {result['reason']}")
        typer.echo(f"plot:   {result['plot']}")
