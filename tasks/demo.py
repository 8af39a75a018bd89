"""Tasks of the demo: its data, and scoring its curation against the known ground truth."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.demo.photos import write_demo_folder
from mmpipe.demo.shapes import ShapesSet, evaluate, write_shapes
from warehouse import Warehouse, utcnow
from warehouse.queries import run_outcomes


@task(cache_policy=NO_CACHE)
def write_demo_data(home: str, shapes_kwargs: dict | None = None) -> tuple[str, ShapesSet]:
    """The photo folder and the synthetic shapes set (sized by `write_shapes` arguments), under <home>/demo."""
    photos = Path(home) / "demo" / "photos"
    write_demo_folder(photos)
    return str(photos), write_shapes(Path(home) / "demo" / "shapes", **(shapes_kwargs or {}))


@task(cache_policy=NO_CACHE)
def evaluate_demo(home: str, run_id: str, shapes: ShapesSet, model_id: str) -> dict:
    """Precision/recall of the filters against the known mismatches and copies; recorded in `evals`."""
    wh = Warehouse(home)
    report = evaluate(run_outcomes(wh, run_id), shapes.truth)
    rows = [{"model_id": model_id, "metric": f"mismatch_{k}", "value": float(report["clip_filter"][k]),
             "split": "demo-shapes-pool", "run_id": run_id, "created_at": utcnow()} for k in ("precision", "recall")]
    wh.record_eval(rows, run_id)
    return report


@task(cache_policy=NO_CACHE)
def evaluate_sweep_choice(home: str, pool: str, chosen: str, shapes: ShapesSet) -> dict:
    """Precision/recall, against the known mismatched captions, of the setting a sweep chose: what the
    chosen version (NAME@VERSION) left out of the pool version it was derived from."""
    import pyarrow.parquet as pq

    from mmpipe.evaluate.filtering import precision_recall
    from warehouse.dataset_queries import resolve_dataset

    wh = Warehouse(home)

    def keys(spec: str) -> dict[str, str]:
        manifest = pq.read_table(wh.resolve(resolve_dataset(wh, spec)["manifest_uri"]),
                                 columns=["sample_id", "source_key"])
        return dict(zip(manifest["sample_id"].to_pylist(), manifest["source_key"].to_pylist()))

    candidates, kept = keys(pool), keys(chosen)
    mismatched = {k for k, t in shapes.truth.items() if t.get("mismatched")}
    return precision_recall({candidates[i] for i in candidates.keys() - kept.keys()}, mismatched,
                            set(candidates.values()))


@task(cache_policy=NO_CACHE)
def write_speech_set(home: str, good_clips: int | None = None) -> tuple[str, str, dict]:
    """The shipped speech set under <home>/demo/speech-set (its first `good_clips` good clips and every bad
    one, or all): (pool folder, holdout folder, truth)."""
    from mmpipe.demo.speech import split_speech_set

    pool, holdout, truth = split_speech_set(Path(home) / "demo" / "speech-set", good_clips=good_clips)
    return str(pool), str(holdout), truth


@task(cache_policy=NO_CACHE)
def evaluate_speech_choice(home: str, pool: str, chosen: str, truth: dict) -> dict:
    """What the speech sweep's chosen version left out of its pool, by the kind of clip (good or a bad kind)."""
    import pyarrow.parquet as pq

    from warehouse.dataset_queries import resolve_dataset

    wh = Warehouse(home)

    def keys(spec: str) -> set[str]:
        return set(pq.read_table(wh.resolve(resolve_dataset(wh, spec)["manifest_uri"]),
                                 columns=["source_key"]).column("source_key").to_pylist())

    candidates, kept = keys(pool), keys(chosen)
    out: dict[str, dict] = {}
    for key in candidates:
        counts = out.setdefault(truth[key]["kind"], {"pool": 0, "dropped": 0})
        counts["pool"] += 1
        counts["dropped"] += key not in kept
    return dict(sorted(out.items()))
