"""`mmpipe sweep`: choose the CLIP filter setting by what the model trained on its output does."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmpipe.cli_common import HomeOpt, fail, guarded, home_of, start_flows
from mmpipe.cli_curate import DaskAddressOpt, DaskWorkersOpt, RunnerOpt, runner_choice
from mmpipe.cli_output import emit
from mmpipe.models.names import TINY_CLIP


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
