"""`mmpipe demo`: the whole product on embedded data, then what it made and how to look at it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmpipe.cli_common import HomeOpt, guarded, start_flows, warehouse
from mmpipe.cli_output import print_dataset, print_models, print_outcomes, print_wer


@guarded
def demo(home: HomeOpt = None,
         quick: Annotated[bool, typer.Option(help="A quicker demo at a smaller size (mmpipe/demo/sizes.py): "
                                                  "what the test suite runs.")] = False,
         train_steps: Annotated[Optional[int], typer.Option(help="Steps to train the demo's CLIP filter "
                                                                 "[default: 300].")] = None,
         model_steps: Annotated[Optional[int], typer.Option(help="Steps for each of the three model families "
                                                                 "[default: 150].")] = None) -> None:
    """Run the pipeline on embedded demo data and show how to look at what it made."""
    root = start_flows(home)
    from flows.demo import demo_flow
    from warehouse import examples

    result = demo_flow(home=str(root), quick=quick, train_steps=train_steps, model_steps=model_steps)
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
    shards = result["curate"]["dataset"]["shards_uri"]
    typer.echo(f"""
What it made (under {root}):
  demo/photos, demo/shapes        the demo inputs (real photos, broken files; synthetic shapes)
  lake/                           the warehouse: every sample, decision, model and metric (DuckLake)
  datasets/demo-shapes/, demo-trusted/, demo-holdout/, demo-speech/, demo-sweep/, demo-sweep-pool/
                                  curated WebDataset shards, sizes.json, manifest.parquet, README.md
  reports/NAME/VERSION/index.html a report per version (data card, plots, galleries); reports/sweeps/
  models/demo-filter/             the bootstrapped CLIP filter (safetensors)
  models/contrastive|masked|diffusion/   the three models (diffusion: samples.png beside its unet/)

Look at it:
  .venv/bin/mmpipe runs --home {root}
  .venv/bin/mmpipe models --home {root}
  .venv/bin/mmpipe sql "{examples.DROP_REASONS}" --home {root}
  .venv/bin/mmpipe sql "{examples.DROPPED_FILES}" --home {root}
  .venv/bin/mmpipe sql "{examples.BEST_SETTING}" --home {root}
  .venv/bin/mmpipe sql "{examples.TRANSCRIPTS}" --home {root}
Train on the curated shards with open_clip itself:
  .venv/bin/python -m mmpipe.train.open_clip_main --dataset-type webdataset --train-data '{shards}' \\
      --train-num-samples {result['curate']['dataset']['n_samples']} --model mmpipe-tiny-clip --device cpu ...
""")
