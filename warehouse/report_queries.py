"""The queries behind `mmpipe report`: everything a dataset version's report shows, as plain data.

`report_inputs` hands mmpipe.report a dict of Arrow tables and plain values (documented there);
`compare_inputs` adds what two versions differ in. All SQL of the report lives here.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.dataset_queries import resolve_dataset
from warehouse.store import Warehouse

MAX_POINTS = 5000  # embeddings projected (hash-sampled, so the same ones every time)
MAX_SCORES = 200_000  # scores histogrammed
MAX_TRANSCRIPTS = 500  # transcript rows listed
PER_REASON = 12  # dropped samples listed per reason


def preview_count(wh: Warehouse, run_id: str) -> int:
    """How many previews (thumbnails) a run has stored: what its budget has left."""
    return wh.sql("SELECT count(*) AS n FROM thumbnails WHERE run_id = ?", [run_id]).column("n")[0].as_py()


def contributing_runs(wh: Warehouse, dataset: dict) -> list[str]:
    """The runs whose decisions made a version: its own run, and its parents' (incremental and derived
    versions) where those met inputs. Newest first."""
    runs, row, seen = [], dataset, set()
    while row and row["dataset_id"] not in seen:
        seen.add(row["dataset_id"])
        if row["run_id"] and row["run_id"] not in runs:
            runs.append(row["run_id"])
        parents = wh.sql("SELECT * FROM datasets WHERE dataset_id = ?", [row["parent_id"]]).to_pylist() \
            if row.get("parent_id") else []
        row = parents[0] if parents else None
    met = set(wh.sql("SELECT DISTINCT run_id FROM occurrences WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                     [runs]).column("run_id").to_pylist())
    return [r for r in runs if r in met]


def _clip_key(wh: Warehouse, spec: dict) -> tuple[str, str] | None:
    model = spec.get("clip_model")
    if not model or str(model).lower() == "none":
        return None
    return model, spec.get("clip_pretrained") or ""


def report_inputs(wh: Warehouse, spec: str) -> dict:
    """Everything the report of dataset NAME[@VERSION|@TAG] shows.

    Keys: dataset (row), filter_spec (dict), runs (Arrow: run_id, flow, status, source, started_at,
    finished_at, code_version), funnel (Arrow: run_id, drop_stage, drop_reason, n; null stage = kept),
    stage_versions (Arrow), clip (model, pretrained, threshold, filter model row) or None, scores (Arrow:
    sample_id, source, score, keep, drop_reason), embeddings (Arrow: sample_id, image_embedding,
    text_embedding, dim, keep, drop_reason), previews (Arrow: sample_id, role, mime, data, width,
    height, text, score, keep, drop_reason, detail, source_key), dropped (Arrow: up to PER_REASON
    samples per drop reason), duplicates (Arrow: sample_id,
    kept_id, drop_reason, detail), transcripts (Arrow) and durations (Arrow) for audio, models,
    train_steps, evals (Arrow), children (versions derived from it), home.
    """
    ds = resolve_dataset(wh, spec)
    fspec = json.loads(ds["filter_spec"]) if ds["filter_spec"] else {}
    runs = contributing_runs(wh, ds)
    out: dict = {"dataset": ds, "filter_spec": fspec, "home": str(wh.home), "run_ids": runs}
    out["runs"] = wh.sql(
        "SELECT r.run_id, r.flow, r.status, json_extract_string(r.params, '$.source') AS source, r.started_at, "
        "r.finished_at, r.code_version FROM runs r WHERE r.run_id IN (SELECT unnest(?::VARCHAR[])) "
        "OR r.run_id = ? ORDER BY r.started_at", [runs, ds["run_id"]])
    out["funnel"] = wh.sql(
        "SELECT run_id, drop_stage, drop_reason, count(*) AS n FROM outcomes "
        "WHERE run_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL ORDER BY run_id, n DESC", [runs])
    out["stage_versions"] = wh.sql(
        "SELECT stage, stage_version, count(*) AS decided, count(*) FILTER (WHERE keep) AS kept FROM decisions "
        "WHERE run_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL ORDER BY stage", [runs])
    out["clip"] = _clip_info(wh, fspec, runs)
    key = out["clip"]
    out["scores"] = wh.sql(
        "SELECT o.sample_id, coalesce(json_extract_string(r.params, '$.source'), o.source) AS source, c.score, "
        "o.keep, o.drop_reason FROM outcomes o JOIN clip_scores c ON c.sample_id = o.sample_id AND c.model = ? "
        "AND c.pretrained = ? JOIN runs r ON r.run_id = o.run_id WHERE o.run_id IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY hash(o.sample_id, o.ordinal) LIMIT ?",
        [key["model"] if key else "", key["pretrained"] if key else "", runs, MAX_SCORES])
    out["embeddings"] = wh.sql(
        "SELECT o.sample_id, e.image_embedding, e.text_embedding, e.dim, o.keep, o.drop_reason FROM "
        "(SELECT DISTINCT ON (sample_id) sample_id, keep, drop_reason FROM outcomes "
        " WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY sample_id, ordinal) o "
        "JOIN clip_embeddings e ON e.sample_id = o.sample_id AND e.model = ? AND e.pretrained = ? "
        "ORDER BY hash(o.sample_id) LIMIT ?",
        [runs, key["model"] if key else "", key["pretrained"] if key else "", MAX_POINTS])
    out["duplicates"] = wh.sql(
        "SELECT sample_id, split_part(detail, ' ', 1) AS kept_id, drop_reason, detail FROM outcomes "
        "WHERE run_id IN (SELECT unnest(?::VARCHAR[])) AND drop_reason IN ('duplicate', 'near_duplicate') "
        "AND length(split_part(detail, ' ', 1)) = 64 ORDER BY ordinal", [runs])
    out["dropped"] = wh.sql(
        "SELECT o.sample_id, o.source_key, o.drop_stage, o.drop_reason, o.detail, s.text FROM outcomes o "
        "LEFT JOIN samples s USING (sample_id) WHERE o.run_id IN (SELECT unnest(?::VARCHAR[])) AND NOT o.keep "
        "QUALIFY row_number() OVER (PARTITION BY o.drop_reason ORDER BY hash(o.sample_id, o.ordinal)) <= ? "
        "ORDER BY o.drop_reason, o.ordinal", [runs, PER_REASON])
    out["previews"] = wh.sql(
        "WITH o AS (SELECT DISTINCT ON (sample_id) sample_id, keep, drop_reason, detail, source_key FROM outcomes "
        "  WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY sample_id, ordinal), "
        "dup AS (SELECT DISTINCT split_part(detail, ' ', 1) AS sample_id FROM outcomes "
        "  WHERE run_id IN (SELECT unnest(?::VARCHAR[])) AND drop_reason IN ('duplicate', 'near_duplicate')), "
        "t AS (SELECT DISTINCT ON (sample_id) * FROM thumbnails WHERE run_id IN (SELECT unnest(?::VARCHAR[])) "
        "  OR sample_id IN (SELECT sample_id FROM dup) ORDER BY sample_id, run_id) "
        "SELECT t.sample_id, t.role, t.mime, t.data, t.width, t.height, s.text, s.duration_s, c.score, "
        "coalesce(o.keep, true) AS keep, o.drop_reason, o.detail, coalesce(o.source_key, s.source_key) AS source_key "
        "FROM t JOIN samples s USING (sample_id) LEFT JOIN o USING (sample_id) "
        "LEFT JOIN clip_scores c ON c.sample_id = t.sample_id AND c.model = ? AND c.pretrained = ? "
        "ORDER BY hash(t.sample_id)",
        [runs, runs, runs, key["model"] if key else "", key["pretrained"] if key else ""])
    if ds["modality"] == "audio":
        out["transcripts"] = wh.sql(
            "WITH o AS (SELECT DISTINCT ON (sample_id) sample_id, keep, drop_reason, source_key FROM outcomes "
            "  WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY sample_id, ordinal) "
            "SELECT DISTINCT ON (o.sample_id) o.sample_id, o.source_key, o.keep, o.drop_reason, s.text AS reference, "
            "t.text AS transcript, t.language, t.wer, t.cer, t.avg_logprob, t.no_speech_prob, s.duration_s, t.model "
            "FROM o JOIN samples s USING (sample_id) JOIN transcripts t ON t.sample_id = o.sample_id "
            "AND t.model = ? ORDER BY o.sample_id, list_contains(?::VARCHAR[], t.run_id) DESC LIMIT ?",
            [runs, fspec.get("whisper_model") or "", runs, MAX_TRANSCRIPTS])
        out["durations"] = wh.sql(
            "SELECT s.duration_s, o.keep, o.drop_reason FROM outcomes o JOIN samples s USING (sample_id) "
            "WHERE o.run_id IN (SELECT unnest(?::VARCHAR[])) AND s.duration_s IS NOT NULL", [runs])
    out.update(model_inputs(wh, [ds["dataset_id"]]))
    if ds["run_id"] not in runs and ds.get("parent_id"):
        _by_membership(out, version_members(wh, ds))
    out["children"] = wh.sql("SELECT name, version, n_samples, run_id FROM datasets WHERE parent_id = ? "
                             "ORDER BY created_at", [ds["dataset_id"]])
    out["sweep"] = sweep_inputs(wh, ds)
    return out


def _by_membership(out: dict, members: pa.Table) -> None:
    """A version derived without reading inputs (a sweep setting, an export subset, semantic dedup): its
    samples count as kept when the version holds them, as left out (dropped) when it does not."""
    import pyarrow.compute as pc

    for key in ("scores", "embeddings", "previews"):
        t = out.get(key)
        if t is None or "keep" not in t.column_names:
            continue
        held = pc.is_in(t["sample_id"], members["sample_id"])
        t = t.set_column(t.column_names.index("keep"), "keep", held)
        if "drop_reason" in t.column_names:
            t = t.set_column(t.column_names.index("drop_reason"), "drop_reason",
                             pc.if_else(held, t["drop_reason"], pa.scalar("not in this version")))
        out[key] = t


def sweep_inputs(wh: Warehouse, ds: dict) -> dict | None:
    """When a sweep made this version: every setting of that sweep (version, filter spec, samples) with
    the metrics of the model trained on it, the sweep's parameters and the tag it set; else None."""
    run = wh.sql("SELECT run_id, params FROM runs WHERE run_id = ? AND flow = 'sweep'", [ds["run_id"]]).to_pylist()
    if not run:
        return None
    params = json.loads(run[0]["params"]) if run[0]["params"] else {}
    metric = params.get("metric") or "mean_R@5"
    rows = wh.sql(
        "SELECT d.version, d.filter_spec, d.n_samples, m.model_id, e.value FROM datasets d "
        "JOIN models m USING (dataset_id) JOIN evals e ON e.model_id = m.model_id AND e.metric = ? "
        "WHERE d.name = ? AND d.parent_id = ? ORDER BY d.version",
        [metric, ds["name"], ds["parent_id"]]).to_pylist()
    tag = wh.sql("SELECT tag, version, reason FROM dataset_tags WHERE name = ? AND run_id = ?",
                 [ds["name"], ds["run_id"]]).to_pylist()
    return {"run_id": ds["run_id"], "metric": metric, "params": params,
            "settings": [{**r, "filter_spec": json.loads(r["filter_spec"]) if r["filter_spec"] else {}} for r in rows],
            "tag": tag[0] if tag else None}


def _clip_info(wh: Warehouse, fspec: dict, runs: list[str]) -> dict | None:
    key = _clip_key(wh, fspec)
    if key is None:
        return None
    got = wh.sql("SELECT min(score) FILTER (WHERE keep) AS lowest_kept, max(score) FILTER (WHERE NOT keep) AS "
                 "highest_dropped, count(*) AS decided FROM decisions WHERE stage = 'clip_filter' AND "
                 "run_id IN (SELECT unnest(?::VARCHAR[]))", [runs]).to_pylist()[0]
    threshold = fspec.get("min_clip_score")
    if threshold is None:
        threshold = got["lowest_kept"]
    filt = wh.sql("SELECT m.model_id, m.objective, m.config, m.checkpoint_uri, d.name || '@' || d.version AS "
                  "trained_on FROM models m LEFT JOIN datasets d USING (dataset_id) WHERE m.checkpoint_uri = ?",
                  [key[1]]).to_pylist()
    return {"model": key[0], "pretrained": key[1], "threshold": threshold, "decided": got["decided"],
            "rule": "min_clip_score" if fspec.get("min_clip_score") is not None else
            f"keep_fraction={fspec.get('keep_fraction')}", "filter_model": filt[0] if filt else None}


def model_inputs(wh: Warehouse, dataset_ids: list[str]) -> dict:
    """Models trained on the versions, their loss curves (metrics ending in `loss`) and evals."""
    models = wh.sql("SELECT model_id, objective, status, checkpoint_uri, config, run_id, created_at, code_version "
                    "FROM models WHERE dataset_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY created_at",
                    [dataset_ids])
    ids = models.column("model_id").to_pylist()
    steps = wh.sql("SELECT model_id, step, metric, value FROM train_steps WHERE model_id IN "
                   "(SELECT unnest(?::VARCHAR[])) AND metric LIKE '%loss' ORDER BY model_id, metric, step", [ids])
    evals = wh.sql("SELECT model_id, metric, value, split, run_id, created_at FROM evals WHERE model_id IN "
                   "(SELECT unnest(?::VARCHAR[])) ORDER BY model_id, metric", [ids])
    return {"models": models, "train_steps": steps, "evals": evals}


def version_members(wh: Warehouse, dataset: dict) -> pa.Table:
    """The sample ids a version holds (its manifest)."""
    if not dataset["manifest_uri"]:
        return pa.table({"sample_id": pa.array([], pa.string())})
    return pq.read_table(wh.resolve(dataset["manifest_uri"]), columns=["sample_id"])


def compare_inputs(wh: Warehouse, spec: str, other: str) -> dict:
    """What changed from version `spec` to version `other`: members, decisions, scores.

    Keys: a, b (dataset rows), added, removed (Arrow: sample_id, text), n_common, changed (Arrow:
    sample_id, text, a_keep, a_reason, b_keep, b_reason), scores_a, scores_b (lists of CLIP scores
    of each version's members, each under its own filter model), clip_a, clip_b.
    """
    a, b = resolve_dataset(wh, spec), resolve_dataset(wh, other)
    ma, mb = version_members(wh, a), version_members(wh, b)
    runs_a, runs_b = contributing_runs(wh, a), contributing_runs(wh, b)
    member_sql = (
        "SELECT m.sample_id, s.text, s.source_key FROM (SELECT unnest(?::VARCHAR[]) AS sample_id) m "
        "LEFT JOIN samples s USING (sample_id) WHERE m.sample_id NOT IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY hash(m.sample_id)")
    ids_a, ids_b = ma["sample_id"].to_pylist(), mb["sample_id"].to_pylist()
    out = {"a": a, "b": b, "added": wh.sql(member_sql, [ids_b, ids_a]), "removed": wh.sql(member_sql, [ids_a, ids_b]),
           "n_common": len(set(ids_a) & set(ids_b))}
    out["changed"] = wh.sql(
        "WITH x AS (SELECT DISTINCT ON (sample_id) sample_id, keep, drop_reason FROM outcomes "
        "  WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY sample_id, ordinal), "
        "y AS (SELECT DISTINCT ON (sample_id) sample_id, keep, drop_reason FROM outcomes "
        "  WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY sample_id, ordinal) "
        "SELECT x.sample_id, s.text, x.keep AS a_keep, x.drop_reason AS a_reason, y.keep AS b_keep, "
        "y.drop_reason AS b_reason FROM x JOIN y USING (sample_id) JOIN samples s USING (sample_id) "
        "WHERE x.keep IS DISTINCT FROM y.keep OR x.drop_reason IS DISTINCT FROM y.drop_reason "
        "ORDER BY a_reason NULLS FIRST, b_reason NULLS FIRST, x.sample_id", [runs_a, runs_b])
    for tag, ds, ids, runs in (("a", a, ids_a, runs_a), ("b", b, ids_b, runs_b)):
        fspec = json.loads(ds["filter_spec"]) if ds["filter_spec"] else {}
        clip = _clip_info(wh, fspec, runs)
        out[f"clip_{tag}"] = clip
        out[f"scores_{tag}"] = wh.sql(
            "SELECT score FROM clip_scores WHERE model = ? AND pretrained = ? AND sample_id IN "
            "(SELECT unnest(?::VARCHAR[]))", [clip["model"], clip["pretrained"], ids]
        ).column("score").to_pylist() if clip else []
    return out
