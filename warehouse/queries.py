"""Named queries the pipeline runs against the warehouse (all SQL stays in this package)."""

from __future__ import annotations

import json

from warehouse.store import Warehouse


def canonical_params(params: dict) -> str:
    """Params as stored in runs.params: sorted keys, so equal params compare equal."""
    return json.dumps(params, sort_keys=True, default=str)


def resumable_run(wh: Warehouse, flow: str, params: dict) -> str | None:
    """The newest unfinished run of `flow` with the same params, if any."""
    rows = wh.sql(
        "SELECT run_id FROM runs WHERE flow = ? AND params::VARCHAR = ? AND status <> 'completed' "
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
    """Samples of a run by final outcome: 'kept' or their drop reason."""
    rows = wh.sql(
        "SELECT coalesce(drop_reason, 'kept') AS outcome, count(*) AS n FROM outcomes "
        "WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC, 1", [run_id]).to_pylist()
    return {r["outcome"]: r["n"] for r in rows}


def recent_runs(wh: Warehouse, limit: int = 20):
    """The newest runs with their counts (Arrow)."""
    return wh.query_readonly(
        "SELECT run_id, flow, name, status, started_at, finished_at, ingested, kept, dropped "
        "FROM run_summary ORDER BY started_at DESC LIMIT ?", [limit])
