"""Tasks of the sweep flow: the scored candidates of a pool, the chosen version's tag, the result artifacts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mmpipe.sweep import plot
from warehouse import Warehouse, utcnow
from warehouse.dataset_queries import model_recipes
from warehouse.queries import clip_scores_of


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def candidates_task(home: str, pool: dict, model: str, pretrained: str) -> list[tuple[str, float]]:
    """(sample id, stored CLIP score) of every sample of a pool version (curated with no CLIP filter),
    in manifest order."""
    import pyarrow.parquet as pq

    wh = Warehouse(home)
    ids = pq.read_table(wh.resolve(pool["manifest_uri"]), columns=["sample_id"]).column("sample_id").to_pylist()
    scores = clip_scores_of(wh, model, pretrained, ids)
    return [(i, scores.get(i)) for i in ids]


@task(cache_policy=NO_CACHE)
def eval_ids_task(manifest: str) -> set[str]:
    """The sample ids of the evaluation set (its manifest)."""
    import pyarrow.parquet as pq

    return set(pq.read_table(manifest, columns=["sample_id"]).column("sample_id").to_pylist())


RECIPE_COLUMNS = ("samples_seen", "batch_size", "lr", "seed")  # what a sweep's table shows of each model's recipe


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def model_recipes_task(home: str, model_ids: list[str]) -> dict[str, dict]:
    """model_id -> the recipe the `models` table stores for it."""
    return model_recipes(Warehouse(home), model_ids)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def tag_best(home: str, name: str, version: str, reason: str, run_id: str, tag: str = "best") -> None:
    """NAME@best points at the chosen version, so scheduled training can follow it."""
    Warehouse(home).write("dataset_tags", pa.Table.from_pylist([
        {"name": name, "tag": tag, "version": version, "reason": reason, "run_id": run_id, "created_at": utcnow()}]),
        run_id)


@task(cache_policy=NO_CACHE)
def publish_sweep(home: str, run_id: str, name: str, results: list[dict], metric: str, best: dict,
                  reason: str) -> str:
    """The results as a table artifact, the metric-versus-setting plot, and a markdown summary."""
    path = plot(results, metric, Path(home) / "reports" / "sweeps" / run_id / f"{metric.replace('@', '_at_')}.png",
                chance=results[0]["metrics"].get(metric.replace("mean_", "chance_"))
                if results and metric.startswith("mean_") else None,
                chosen=best["version"])
    create_table_artifact([{"setting": r["setting"], "filter model": r["model"], "dataset": f"{name}@{r['version']}",
                            "samples": r["n_samples"], "samples seen": r["samples_seen"],
                            metric: round(r["metrics"][metric], 4)} for r in results],
                          key=f"sweep-{name}".lower().replace("_", "-"), description=f"sweep {run_id}")
    create_markdown_artifact(f"# Sweep `{name}`\n\nChosen: **{best['setting']}** (`{name}@{best['version']}`, "
                             f"tagged `{name}@best`): {reason}.\n\n![plot]({path.as_uri()})\n",
                             key=f"sweep-{name}-summary".lower().replace("_", "-"))
    return str(path)


@task(cache_policy=NO_CACHE)
def quality_candidates_task(manifest: str) -> list[dict]:
    """Each sample of an audio pool version with its stored transcript quality: sample_id, avg_logprob,
    no_speech_prob, wer (None without a reference), in manifest order."""
    import pyarrow.parquet as pq

    return pq.read_table(manifest, columns=["sample_id", "avg_logprob", "no_speech_prob", "wer"]).to_pylist()
