"""Named queries the pipeline runs against the warehouse (all SQL stays in this package)."""

from __future__ import annotations

import json
from typing import Iterator

import pyarrow as pa

from warehouse.store import Warehouse


def canonical_params(params: dict) -> str:
    """Params as stored in runs.params: sorted keys, so equal params compare equal."""
    return json.dumps(params, sort_keys=True, default=str)


def resumable_run(wh: Warehouse, flow: str, params: dict) -> str | None:
    """The newest unfinished run of `flow` with the same params, if any."""
    rows = wh.sql(
        "SELECT run_id FROM runs WHERE flow = ? AND params::VARCHAR = ? AND status IN ('running', 'failed', "
        "'cancelled') "
        "ORDER BY started_at DESC LIMIT 1", [flow, canonical_params(params)]).to_pylist()
    return rows[0]["run_id"] if rows else None


def decided_ids(wh: Warehouse, run_id: str, stage: str, sample_ids: list[str]) -> set[str]:
    """Which of `sample_ids` already have a decision from `stage` in this run."""
    if not sample_ids:
        return set()
    rows = wh.sql(
        "SELECT DISTINCT sample_id FROM decisions WHERE run_id = ? AND stage = ? "
        "AND sample_id IN (SELECT unnest(?::VARCHAR[]))", [run_id, stage, sample_ids])
    return set(rows.column("sample_id").to_pylist())


def outcome_counts(wh: Warehouse, run_id: str) -> dict[str, int]:
    """Input occurrences of a run by final outcome: 'kept' or their drop reason."""
    rows = wh.sql(
        "SELECT coalesce(drop_reason, 'kept') AS outcome, count(*) AS n FROM outcomes "
        "WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC, 1", [run_id]).to_pylist()
    return {r["outcome"]: r["n"] for r in rows}


def recent_runs(wh: Warehouse, limit: int = 20):
    """The newest runs with their counts (Arrow)."""
    return wh.query_readonly(
        "SELECT run_id, flow, name, status, date_trunc('second', started_at) AS started_at, "
        "date_trunc('second', finished_at) AS finished_at, ingested, kept, dropped, warnings "
        "FROM run_summary ORDER BY started_at DESC LIMIT ?", [limit])


def content_keys(wh: Warehouse, sample_ids: list[str]):
    """content_sha256 and phash of the given samples (Arrow)."""
    return wh.sql("SELECT sample_id, content_sha256, phash FROM samples "
                  "WHERE sample_id IN (SELECT unnest(?::VARCHAR[]))", [sample_ids])


def dropped_ids(wh: Warehouse, run_id: str, stage: str) -> set[str]:
    """Samples a stage dropped in this run."""
    rows = wh.sql("SELECT sample_id FROM decisions WHERE run_id = ? AND stage = ? AND NOT keep", [run_id, stage])
    return set(rows.column("sample_id").to_pylist())


def scored_ids(wh: Warehouse, model: str, pretrained: str, sample_ids: list[str]) -> set[str]:
    """Which samples already have a CLIP score from this model (in any run)."""
    rows = wh.sql("SELECT sample_id FROM clip_scores WHERE model = ? AND pretrained = ? "
                  "AND sample_id IN (SELECT unnest(?::VARCHAR[]))", [model, pretrained, sample_ids])
    return set(rows.column("sample_id").to_pylist())


def clip_scores_of(wh: Warehouse, model: str, pretrained: str, sample_ids: list[str]) -> dict[str, float]:
    """sample_id -> CLIP score from this model."""
    rows = wh.sql("SELECT sample_id, score FROM clip_scores WHERE model = ? AND pretrained = ? "
                  "AND sample_id IN (SELECT unnest(?::VARCHAR[]))", [model, pretrained, sample_ids])
    return dict(zip(rows.column("sample_id").to_pylist(), rows.column("score").to_pylist()))


def kept_ids(wh: Warehouse, run_id: str) -> set[str]:
    """Samples that every stage of this run kept."""
    rows = wh.sql("SELECT sample_id FROM outcomes WHERE run_id = ? AND keep", [run_id])
    return set(rows.column("sample_id").to_pylist())


def export_meta(wh: Warehouse, run_id: str, sample_ids: list[str], model: str | None,
                pretrained: str | None) -> dict[str, dict]:
    """sample_id -> what its exported json carries, for the kept ones among `sample_ids`
    (ordinal: the occurrence that exports it)."""
    rows = wh.sql(
        "SELECT o.sample_id, o.ordinal, o.source, o.source_key, s.uri, s.width, s.height, c.score AS clip_score "
        "FROM outcomes o JOIN samples s USING (sample_id) LEFT JOIN clip_scores c ON c.sample_id = o.sample_id "
        "AND c.model = ? AND c.pretrained = ? WHERE o.run_id = ? AND o.keep "
        "AND o.sample_id IN (SELECT unnest(?::VARCHAR[]))",
        [model or "", pretrained or "", run_id, sample_ids]).to_pylist()
    return {r["sample_id"]: r for r in rows}


def kept_plan(wh: Warehouse, run_id: str, model: str | None, pretrained: str | None) -> Iterator[pa.RecordBatch]:
    """The run's kept image samples at the occurrence that exports them, in ordinal order, streamed: what
    each shard's export and the version's manifest carry (one set-based pass per run)."""
    return wh.stream(
        "SELECT o.sample_id, s.text, s.width, s.height, s.format, o.source, o.source_key, s.uri, s.content_sha256, "
        "c.score AS clip_score, o.ordinal FROM outcomes o JOIN samples s USING (sample_id) "
        "LEFT JOIN clip_scores c ON c.sample_id = o.sample_id AND c.model = ? AND c.pretrained = ? "
        "WHERE o.run_id = ? AND o.keep ORDER BY o.ordinal", [model or "", pretrained or "", run_id])


def scoring_skips(wh: Warehouse, run_id: str, model: str, pretrained: str) -> Iterator[pa.RecordBatch]:
    """(sample_id, ordinal) of the run's occurrences that its CLIP scoring leaves alone, in ordinal order,
    streamed: repeats of a sample met earlier in the run, samples the run's dedup dropped, and samples
    this model scored already (in any run). One set-based pass per run instead of a lookup of every
    stored score per shard."""
    return wh.stream(
        "WITH occ AS (SELECT sample_id, ordinal, ordinal > min(ordinal) OVER (PARTITION BY sample_id) AS again "
        "FROM occurrences WHERE run_id = ?) "
        "SELECT sample_id, ordinal FROM occ WHERE again OR sample_id IN (SELECT sample_id FROM decisions "
        "WHERE run_id = ? AND stage = 'dedup' AND NOT keep) OR sample_id IN (SELECT sample_id FROM clip_scores "
        "WHERE model = ? AND pretrained = ?) ORDER BY ordinal", [run_id, run_id, model, pretrained])


def manifest_rows(wh: Warehouse, run_id: str, modality: str, key: dict) -> list[dict]:
    """One row per kept sample of the run: what a curated dataset's manifest holds.

    key: {model, pretrained} of the CLIP scores (images), or {model, compute_type, options_key}
    of the transcripts (audio).
    """
    if modality == "audio":
        return wh.sql(
            "SELECT s.sample_id, s.text AS reference, t.text AS transcript, t.language, t.wer, t.cer, "
            "t.avg_logprob, t.no_speech_prob, s.duration_s, s.sample_rate, o.source, o.source_key, s.uri "
            "FROM outcomes o JOIN samples s USING (sample_id) JOIN transcripts t ON t.sample_id = o.sample_id "
            "AND t.model = ? AND t.compute_type = ? AND t.options_key = ? WHERE o.run_id = ? AND o.keep "
            "ORDER BY s.sample_id", [key["model"], key["compute_type"], key["options_key"], run_id]).to_pylist()
    return wh.sql(
        "SELECT s.sample_id, s.text, s.width, s.height, s.format, o.source, o.source_key, s.uri, "
        "s.content_sha256, c.score AS clip_score FROM outcomes o JOIN samples s USING (sample_id) "
        "LEFT JOIN clip_scores c ON c.sample_id = o.sample_id AND c.model = ? AND c.pretrained = ? "
        "WHERE o.run_id = ? AND o.keep ORDER BY s.sample_id",
        [key.get("model") or "", key.get("pretrained") or "", run_id]).to_pylist()


def score_quantiles(wh: Warehouse, run_id: str, model: str, pretrained: str) -> dict[str, float]:
    """Quantiles of the CLIP scores of this run's scored samples."""
    row = wh.sql(
        "SELECT count(*) AS n, min(score) AS min, quantile_cont(score, 0.1) AS p10, "
        "quantile_cont(score, 0.25) AS p25, median(score) AS p50, quantile_cont(score, 0.75) AS p75, "
        "quantile_cont(score, 0.9) AS p90, max(score) AS max FROM clip_scores c "
        "WHERE model = ? AND pretrained = ? AND sample_id IN "
        "(SELECT sample_id FROM decisions WHERE run_id = ? AND stage = 'clip_filter')",
        [model, pretrained, run_id]).to_pylist()[0]
    return row


def run_outcomes(wh: Warehouse, run_id: str) -> list[dict]:
    """Every input occurrence of a run with its final outcome."""
    return wh.sql(
        "SELECT source_key, sample_id, ordinal, keep, drop_reason, drop_stage, detail FROM outcomes "
        "WHERE run_id = ? ORDER BY ordinal", [run_id]).to_pylist()


def transcripts_of(wh: Warehouse, model: str, compute_type: str, options_key: str,
                   sample_ids: list[str]) -> dict[str, dict]:
    """sample_id -> stored transcript row for this model, compute type and decoding options."""
    rows = wh.sql("SELECT * FROM transcripts WHERE model = ? AND compute_type = ? AND options_key = ? "
                  "AND sample_id IN (SELECT unnest(?::VARCHAR[]))", [model, compute_type, options_key, sample_ids])
    return {r["sample_id"]: r for r in rows.to_pylist()}


def earlier_content(wh: Warehouse, run_id: str, before_ordinal: int, shas: list[str]) -> dict[str, str]:
    """content_sha256 -> the sample id this run met first with those bytes, among occurrences before
    `before_ordinal` (shards processed in order: exact dedup without a run-wide pass)."""
    rows = wh.sql(
        "SELECT s.content_sha256, arg_min(o.sample_id, o.ordinal) AS sample_id FROM occurrences o "
        "JOIN samples s USING (sample_id) WHERE o.run_id = ? AND o.ordinal < ? "
        "AND s.content_sha256 IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1",
        [run_id, before_ordinal, shas]).to_pylist()
    return {r["content_sha256"]: r["sample_id"] for r in rows}


def wer_summary(wh: Warehouse, run_id: str, model: str, compute_type: str, options_key: str) -> dict:
    """Mean WER/CER and audio hours of the run's transcribed clips that have a reference."""
    return wh.sql(
        "SELECT count(*) AS clips, count(t.wer) AS with_reference, avg(t.wer) AS mean_wer, median(t.wer) AS median_wer, "
        "avg(t.cer) AS mean_cer, sum(s.duration_s) / 3600 AS audio_hours FROM transcripts t JOIN samples s "
        "USING (sample_id) WHERE t.model = ? AND t.compute_type = ? AND t.options_key = ? AND t.sample_id IN "
        "(SELECT sample_id FROM decisions WHERE run_id = ? AND stage = 'asr_quality')",
        [model, compute_type, options_key, run_id]).to_pylist()[0]


def run_warnings(wh: Warehouse, run_id: str) -> list:
    """The warnings recorded on a run (e.g. shards that broke off)."""
    rows = wh.sql("SELECT warnings FROM runs WHERE run_id = ?", [run_id]).to_pylist()
    return json.loads(rows[0]["warnings"]) if rows and rows[0]["warnings"] else []


def column_docs(wh: Warehouse):
    """Every user-facing column with its type and what it means (Arrow)."""
    return wh.sql(  # system tables: ours to read, refused to user SQL
        "SELECT table_name AS \"table\", column_name AS \"column\", data_type AS type, comment AS meaning "
        "FROM duckdb_columns() WHERE database_name = 'lake' AND schema_name = 'main' "
        "AND table_name IN (SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake' "
        "AND schema_name = 'main') ORDER BY table_name, column_index")


def run_row(wh: Warehouse, run_id: str) -> dict | None:
    """A run's id, flow and params (JSON text), or None."""
    rows = wh.sql("SELECT run_id, flow, params FROM runs WHERE run_id = ?", [run_id]).to_pylist()
    return rows[0] if rows else None
