"""`mmpipe demo`: the whole product on embedded data, then what it made and how to look at it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmpipe.cli.common import HomeOpt, guarded, start_flows, warehouse
from mmpipe.cli.output import print_dataset, print_models, print_outcomes, print_wer


@guarded
def demo(home: HomeOpt = None,
         quick: Annotated[bool, typer.Option(help="A quicker demo at a smaller size (mmpipe/demo/sizes.py): "
                                                  "what the test suite runs.")] = False,
         train_steps: Annotated[Optional[int], typer.Option(help="Steps to train the demo's CLIP filter "
                                                                 "[default: 300].")] = None,
         model_steps: Annotated[Optional[int], typer.Option(help="Steps for each of the three model families "
                                                                 "[default: 150].")] = None,
         speech: Annotated[bool, typer.Option(help="Also train the speech models: the shipped speech set (300 "
                                                   "clips) transcribed, asr, speech-masked and audio-contrastive "
                                                   "trained on it, and the speech sweep (about 5 minutes more).")]
         = False) -> None:
    """Run the pipeline on embedded demo data and show how to look at what it made."""
    root = start_flows(home)
    from flows.demo import demo_flow
    result = demo_flow(home=str(root), quick=quick, train_steps=train_steps, model_steps=model_steps, speech=speech)
    if quick:
        typer.echo("\n(the quick demo: " + ", ".join(f"{k} {v}" for k, v in result["size"].items())
                   + "; its figures are not the full demo's)")
    typer.echo("\n== photos (ingest flow) ==")
    print_outcomes(result["ingest"])
    typer.echo("\n== synthetic shapes (curate -> bootstrap-filter -> curate flows) ==")
    filt = result["filter"]
    typer.echo(f"filter: {filt['model_name']} trained on the training split of {filt['dataset']} -> "
               f"{filt['checkpoint']}")
    typer.echo(f"        threshold calibrated on its held-out validation split: min CLIP score {filt['min_score']:.4f}")
    print_outcomes(result["curate"])
    print_dataset(result["curate"]["dataset"])
    rep = result["report"]
    c, d = rep["clip_filter"], rep["dedup"]
    typer.echo(f"\nCLIP filter vs the known mismatched captions: precision {c['precision']:.3f}, "
               f"recall {c['recall']:.3f} ({c['true_positives']} of {c['bad']} caught, {c['dropped']} dropped, "
               f"{c['evaluated']} scored)")
    typer.echo(f"dedup vs the known copies: precision {d['precision']:.3f}, recall {d['recall']:.3f}")
    typer.echo(f"basic filters: {rep['basic']['caught_with_expected_reason']} of {rep['basic']['expected']} "
               "planted bad samples dropped with the expected reason")
    sweep = result["sweep"]
    typer.echo("\n== threshold sweep (sweep flow: one tiny CLIP per setting, same samples seen, evaluated on "
               "demo-holdout) ==")
    for r in sweep["results"]:
        mark = "  <- chosen" if r["version"] == sweep["best"]["version"] else ""
        typer.echo(f"  {r['setting']:<22} demo-sweep@{r['version']:<4} {r['n_samples']:>4} samples  "
                   f"mean_R@5 {r['metrics']['mean_R@5']:.4f}{mark}")
    sf = sweep["filter"]
    typer.echo(f"chosen {sweep['best']['setting']}, tagged demo-sweep@best; against the known mismatched "
               f"captions: precision {sf['precision']:.3f} / recall {sf['recall']:.3f} "
               f"({sf['true_positives']}/{sf['bad']})")
    typer.echo(f"plot: {sweep['plot']}")
    typer.echo("\n== report (the curated version's data card, plots and galleries, from the warehouse) ==")
    typer.echo(f"open {result['curate'].get('report') or '(not written: see the run log)'}")
    typer.echo("\n== models trained on the curated shapes (train-* flows; metrics on its validation split) ==")
    wh = warehouse(root)
    print_models(wh, [m["model_id"] for m in result["models"]])
    typer.echo("\n== speech clips (transcribe flow, faster-whisper tiny.en) ==")
    print_outcomes(result["speech"])
    print_wer(result["speech"])
    print_dataset(result["speech"]["dataset"])
    if result["speech_training"]:
        _print_speech_training(result["speech_training"], wh)
    typer.echo(f"""
What it made (under {root}):
  demo/photos, demo/shapes        the demo inputs (real photos, broken files; synthetic shapes)
  lake/                           the warehouse: every sample, decision, model and metric (DuckLake)
  datasets/demo-shapes/, demo-trusted/, demo-holdout/, demo-speech/, demo-sweep/, demo-sweep-pool/
                                  curated WebDataset shards, sizes.json, manifest.parquet, README.md
  reports/NAME/VERSION/index.html a report per version (data card, plots, galleries); reports/sweeps/
  models/demo-filter/             the bootstrapped CLIP filter (safetensors)
  models/contrastive|masked|diffusion/   the three models (diffusion: samples.png beside its unet/)
""" + ("""  datasets/demo-speech-set/, demo-speech-holdout/, demo-speech-sweep/, demo-speech-sweep-pool/
                                  the speech set's versions (--speech); models/asr|speech-masked|audio-contrastive/
""" if result["speech_training"] else ""))
    look, train = next_commands(root, result["curate"]["dataset"])
    typer.echo("Look at it:")
    for command in look:
        typer.echo(f"  {command}")
    typer.echo("Train on the curated shards with open_clip itself (one epoch on the CPU):")
    typer.echo(f"  {train}\n")


def _print_speech_training(part: dict, wh) -> None:
    """The speech part: the set's curation, the three speech models' metrics, the speech sweep and its choice."""
    typer.echo("\n== speech set (transcribe flow, then train-asr, train-speech-masked, train-audio-contrastive) ==")
    print_outcomes(part["curate"])
    print_dataset(part["curate"]["dataset"])
    typer.echo("models trained on it (metrics on its validation split; tiny models on synthetic speech, minutes "
               "of CPU: they show the loop works and learns, not what a real recognizer reaches):")
    print_models(wh, [m["model_id"] for m in part["models"]])
    sweep = part["sweep"]
    typer.echo("\n== speech sweep (one asr student per transcript-quality threshold, same samples seen, WER on "
               "demo-speech-holdout) ==")
    for r in sweep["results"]:
        mark = "  <- chosen" if r["version"] == sweep["best"]["version"] else ""
        typer.echo(f"  {r['setting']:<22} demo-speech-sweep@{r['version']:<4} {r['n_samples']:>4} clips  "
                   f"wer {r['metrics']['wer']:.4f}{mark}")
    dropped = ", ".join(f"{kind} {c['dropped']}/{c['pool']}" for kind, c in sweep["dropped"].items())
    typer.echo(f"chosen {sweep['best']['setting']}, tagged demo-speech-sweep@best: {sweep['reason']}")
    typer.echo(f"what it left out of the pool, by kind of clip: {dropped}")


def _bin(name: str) -> str:
    """This environment's `name` executable, as short as it can be written from here and still run."""
    path = Path(sys.executable).parent / name
    return shlex.quote(str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path))


def _quoted(text: str) -> str:
    """Shell-quoted, in double quotes where nothing inside needs escaping (SQL reads better so)."""
    return f'"{text}"' if not set(text) & set('"$`\\!') else shlex.quote(text)


def next_commands(root: Path, curated: dict) -> tuple[list[str], str]:
    """The commands the demo suggests next, whole and quoted so each pastes into a shell as it is: the
    queries to look at what it made, and open_clip_train's own trainer on the curated shards."""
    from warehouse import examples

    home = f"--home {shlex.quote(str(root))}"
    mmpipe = _bin("mmpipe")
    look = [f"{mmpipe} runs {home}", f"{mmpipe} models {home}", f"{mmpipe} datasets {home}",
            *(f"{mmpipe} sql {_quoted(q)} {home}" for q in (examples.DROP_REASONS, examples.DROPPED_FILES,
                                                                 examples.BEST_SETTING, examples.TRANSCRIPTS)),
            f"{mmpipe} report demo-shapes {home}"]
    logs = shlex.quote(str(Path(root) / "open_clip"))
    train = (f"HF_HUB_OFFLINE=1 {_bin('python')} -m mmpipe.train.open_clip_main --dataset-type webdataset "
             f"--train-data {shlex.quote(curated['shards_uri'])} --train-num-samples {curated['n_samples']} "
             f"--model mmpipe-tiny-clip --device cpu --precision fp32 --batch-size 32 --epochs 1 --workers 0 "
             f"--lr 1e-3 --warmup 1 --logs {logs} --name demo-shapes-{curated['version']}")
    return look, train
