"""Named queries about dataset versions and models: resolving NAME@VERSION (or a tag), the next
version, lineage (derived versions), the newest model and its metrics."""

from __future__ import annotations

import json

from warehouse.store import Warehouse


def dataset_version(wh: Warehouse, name: str, run_id: str) -> str:
    """The version this run's dataset gets: its existing one, else one more than the newest."""
    rows = wh.sql("SELECT version, run_id FROM datasets WHERE name = ?", [name]).to_pylist()
    for r in rows:
        if r["run_id"] == run_id:
            return r["version"]
    return next_version(wh, name)


def next_version(wh: Warehouse, name: str) -> str:
    """One more than the newest version of `name` (v1 for a new name)."""
    rows = wh.sql("SELECT version FROM datasets WHERE name = ?", [name]).to_pylist()
    numbers = [int(r["version"][1:]) for r in rows if r["version"].startswith("v") and r["version"][1:].isdigit()]
    return f"v{max(numbers, default=0) + 1}"


def dataset_versions(wh: Warehouse, name: str | None = None):
    """Dataset versions, newest first, with counts, paths (relative to the home) and the run (Arrow)."""
    return wh.query_readonly(
        "SELECT name, version, modality, n_samples, shards_uri, manifest_uri, run_id, "
        "date_trunc('second', created_at) AS created_at FROM datasets WHERE ? IS NULL OR name = ? "
        "ORDER BY name, created_at DESC", [name, name])


def resolve_dataset(wh: Warehouse, spec: str) -> dict:
    """The `datasets` row of NAME@VERSION, NAME@TAG (a tag set by a sweep), or NAME (its newest version)."""
    name, _, version = spec.partition("@")
    rows = wh.sql("SELECT * FROM datasets WHERE name = ?", [name]).to_pylist()
    if not rows:
        known = wh.sql("SELECT DISTINCT name FROM datasets ORDER BY 1").column("name").to_pylist()
        raise LookupError(f"no dataset {name!r} in this warehouse (datasets: {', '.join(known) or 'none yet'})")
    if version:
        tagged = wh.sql("SELECT version FROM dataset_tags WHERE name = ? AND tag = ?", [name, version]).to_pylist()
        version = tagged[0]["version"] if tagged else version
        match = [r for r in rows if r["version"] == version]
        if not match:
            raise LookupError(f"dataset {name} has no version {version!r} (versions: "
                              f"{', '.join(sorted(r['version'] for r in rows))})")
        return match[0]
    return max(rows, key=lambda r: int(r["version"][1:]) if r["version"][1:].isdigit() else -1)


def dataset_by_id(wh: Warehouse, dataset_id: str) -> dict:
    """One `datasets` row by id."""
    rows = wh.sql("SELECT * FROM datasets WHERE dataset_id = ?", [dataset_id]).to_pylist()
    if not rows:
        raise LookupError(f"no dataset with id {dataset_id}")
    return rows[0]


def model_row(wh: Warehouse, model_id: str) -> dict:
    """One `models` row; a unique prefix of the id is enough."""
    rows = wh.sql("SELECT * FROM models WHERE model_id LIKE ? || '%'", [model_id]).to_pylist()
    if len(rows) != 1:
        raise LookupError(f"no model {model_id!r}" if not rows else f"model id {model_id!r} is ambiguous")
    return rows[0]


def latest_model(wh: Warehouse, objective: str, dataset_id: str | None = None) -> dict | None:
    """The newest trained model of an objective (on a dataset version, when given)."""
    rows = wh.sql("SELECT * FROM models WHERE objective = ? AND status = 'trained' AND (? IS NULL OR dataset_id = ?) "
                  "ORDER BY created_at DESC LIMIT 1", [objective, dataset_id, dataset_id]).to_pylist()
    return rows[0] if rows else None


def newest_filter(wh: Warehouse) -> dict | None:
    """The newest bootstrapped CLIP filter of the home (the bootstrap-filter flow registers it with role
    `filter`): {model_name, checkpoint (absolute path)}, or None."""
    rows = wh.sql("SELECT json_extract_string(config, '$.model_name') AS model_name, checkpoint_uri FROM models "
                  "WHERE status = 'trained' AND json_extract_string(config, '$.role') = 'filter' "
                  "ORDER BY created_at DESC LIMIT 1").to_pylist()
    return {"model_name": rows[0]["model_name"], "checkpoint": wh.resolve(rows[0]["checkpoint_uri"])} if rows else None


def models_with_evals(wh: Warehouse, model_ids: list[str] | None = None):
    """Models with their dataset version and every metric (Arrow, one row per model x metric x split)."""
    return wh.query_readonly(
        "SELECT m.model_id, m.objective, d.name || '@' || d.version AS dataset, e.metric, e.split, "
        "round(e.value, 4) AS value FROM models m LEFT JOIN datasets d USING (dataset_id) "
        "LEFT JOIN evals e USING (model_id) WHERE ? IS NULL OR list_contains(?, m.model_id) "
        "ORDER BY m.created_at, m.model_id, e.metric", [model_ids, model_ids])


def latest_curated(wh: Warehouse, name: str, run_id: str) -> dict | None:
    """The newest version of `name` that a curation run (other than `run_id`) published: what an
    incremental curation adds to."""
    rows = wh.sql(
        "SELECT d.* FROM datasets d JOIN runs r USING (run_id) WHERE d.name = ? AND r.flow = 'curate' "
        "AND d.run_id <> ?", [name, run_id]).to_pylist()
    return max(rows, key=lambda r: int(r["version"][1:]) if r["version"][1:].isdigit() else -1, default=None)


def versions_of_run(wh: Warehouse, name: str, run_id: str) -> list[dict]:
    """The `datasets` rows of `name` that run `run_id` registered."""
    return wh.sql("SELECT * FROM datasets WHERE name = ? AND run_id = ?", [name, run_id]).to_pylist()


def derived_version(wh: Warehouse, name: str, parent_id: str, filter_spec_json: str) -> dict | None:
    """The version of `name` already derived from `parent_id` with this filter spec, or None."""
    rows = wh.sql("SELECT * FROM datasets WHERE name = ? AND parent_id = ? AND filter_spec::VARCHAR = ?",
                  [name, parent_id, filter_spec_json]).to_pylist()
    return rows[0] if rows else None


def model_metrics(wh: Warehouse, model_id: str, split: str) -> dict[str, float]:
    """metric -> value of a model's evaluation on `split`."""
    rows = wh.sql("SELECT metric, value FROM evals WHERE model_id = ? AND split = ?", [model_id, split]).to_pylist()
    return {r["metric"]: r["value"] for r in rows}


def model_by_recipe(wh: Warehouse, objective: str, dataset_id: str, recipe_key: str) -> dict | None:
    """The newest trained model of this objective on this dataset version whose recipe (config's
    recipe_key) is `recipe_key`, or None."""
    rows = wh.sql("SELECT * FROM models WHERE objective = ? AND dataset_id = ? AND status = 'trained' "
                  "AND json_extract_string(config, '$.recipe_key') = ? ORDER BY created_at DESC LIMIT 1",
                  [objective, dataset_id, recipe_key]).to_pylist()
    return rows[0] if rows else None


def model_recipes(wh: Warehouse, model_ids: list[str]) -> dict[str, dict]:
    """model_id -> the recipe stored with the model (its config's `recipe`; {} for models without one)."""
    rows = wh.sql("SELECT model_id, json_extract(config, '$.recipe') AS recipe FROM models "
                  "WHERE list_contains(?, model_id)", [model_ids]).to_pylist()
    return {r["model_id"]: json.loads(r["recipe"]) if r["recipe"] else {} for r in rows}


def run_tallies(wh: Warehouse, run_id: str) -> dict[str, int]:
    """What a run added over all its attempts (a resumed run skips the shards an earlier attempt
    finished, so their counts are read back here): samples it met first, CLIP scores it computed."""
    return wh.sql("SELECT (SELECT count(*) FROM samples WHERE first_run_id = ?) AS new_samples, "
                  "(SELECT count(*) FROM clip_scores WHERE run_id = ?) AS n_scored", [run_id, run_id]).to_pylist()[0]
