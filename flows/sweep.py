"""Choose the filter by what it does downstream: curate a scored pool once per filter model, derive a
version per setting from the stored scores, train the same recipe for the same samples seen, evaluate
on one fixed set, tag the winner NAME@best."""

from __future__ import annotations

from prefect import flow

from flows.curate import curate_flow
from flows.fanout import flows_side_by_side
from flows.runners import nested, run_name
from flows.train import train_contrastive_flow, train_masked_flow
from mmpipe.home import resolve_home, stored_path
from mmpipe.models.names import TINY_CLIP
from mmpipe.sweep import SweepRequest, choose, settings_of, with_models
from tasks.dataset import derive_dataset
from tasks.report_page import write_report_page
from tasks.runs import tracked_run
from tasks.sweep import RECIPE_COLUMNS, candidates_task, eval_ids_task, model_recipes_task, publish_sweep, tag_best
from tasks.train import resolve_dataset_task


@flow(name="sweep", flow_run_name=run_name("sweep"))
def sweep_flow(source: str, name: str, eval_dataset: str, home: str | None = None,
               min_clip_scores: list[float] | None = None, keep_fractions: list[float] | None = None,
               clip_models: list[list[str | None]] | None = None, objective: str = "contrastive",
               samples_seen: int = 9600,
               model_name: str = TINY_CLIP, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
               metric: str = "mean_R@5", curate: dict | None = None, device: str | None = None) -> dict:
    """clip_models: [[model, pretrained], ...] (one scored pool each); each rule value is one setting."""
    home = str(resolve_home(home))
    request = SweepRequest(source, name, eval_dataset, min_clip_scores, keep_fractions, clip_models, objective,
                           samples_seen, model_name, batch_size, lr, seed, metric, curate, device)
    with tracked_run(home, "sweep", request.params()) as run:
        eval_split = resolve_dataset_task(home, eval_dataset)
        eval_name = f"{eval_split['name']}@{eval_split['version']}"
        held_out = eval_ids_task(eval_split["manifest"])  # no training subset may contain an evaluation sample
        rows, pending = [], {}  # pending: a training per dataset version (two settings may select the same)
        train = train_contrastive_flow if objective == "contrastive" else train_masked_flow
        recipe = request.train_recipe(home, eval_name)
        for model, pretrained in request.filter_models():
            pool = _scored_pool(home, source, name, model, pretrained, device, curate)
            candidates = [c for c in candidates_task(home, pool, model, stored_path(home, pretrained))
                          if c[0] not in held_out]
            for setting in settings_of(model, stored_path(home, pretrained), min_clip_scores, keep_fractions):
                spec = setting.filter_spec(f"{name}-pool@{pool['version']}", eval_name)
                ds = derive_dataset(home, run.run_id, pool, setting.select(candidates), name, spec)
                rows.append(setting.row(ds))
                # The training flow reuses a model only when its whole recipe matches (a rerun or resumed
                # sweep retrains nothing; another samples-seen, batch size, lr or seed trains anew).
                pending[ds["dataset_id"]] = (f"train-{name}@{ds['version']}", train,
                                             {"dataset": f"{name}@{ds['version']}", **recipe})
        # Settings train side by side on Dask workers (one GPU each where declared), in turn otherwise.
        trained = flows_side_by_side(list(pending.values()), f"sweep {name}, {len(pending)} settings")
        trained = dict(zip(pending, trained))
        # Each row shows its model's own recipe, as the models table stores it.
        results = with_models(rows, trained, model_recipes_task(home, [t["model_id"] for t in trained.values()]),
                              RECIPE_COLUMNS)
        best, reason = choose(results, metric, eval_split["n_samples"])
        tag_best(home, name, best["version"], reason, run.run_id)
        plot = publish_sweep(home, run.run_id, name, results, metric, best, reason)
        report = write_report_page(home, f"{name}@{best['version']}")  # with the sweep's table and plot
    return {"run_id": run.run_id, "results": results, "best": best, "reason": reason, "plot": plot, "report": report,
            "eval_dataset": eval_name}


def _scored_pool(home: str, source: str, name: str, model: str, pretrained: str | None, device: str | None,
                 curate: dict | None) -> dict:
    """The pool: every candidate scored, none filtered by CLIP; incremental, so a rerun over the same source
    makes no new pool version and the derived versions and trained models are found again. On Dask, its
    shards are scored across the same cluster the settings then train on."""
    curated = nested(curate_flow)(source, f"{name}-pool", home=home, clip_model=model, clip_pretrained=pretrained,
                                  keep_fraction=1.0, device=device, incremental=True, **(curate or {}))
    return curated["dataset"] or curated["unchanged"]
