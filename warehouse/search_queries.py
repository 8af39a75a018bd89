"""Named queries of semantic dedup, retrieval and exports (all SQL stays in this package)."""

from __future__ import annotations

import pyarrow as pa

from warehouse.guard import ReadOnlyError
from warehouse.store import Warehouse


def embedding_models(wh: Warehouse, sample_ids: list[str]) -> list[dict]:
    """(model, pretrained, n) of the CLIP embeddings stored for these samples, most complete first."""
    return wh.sql("SELECT model, pretrained, count(*) AS n FROM clip_embeddings "
                  "WHERE sample_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL ORDER BY n DESC, model, pretrained",
                  [sample_ids]).to_pylist()


def stored_embeddings(wh: Warehouse, model: str, pretrained: str, sample_ids: list[str]) -> pa.Table:
    """sample_id, dim, image/text embedding (float16 bytes) and CLIP score of these samples under one
    model, in sample id order."""
    return wh.sql(
        "SELECT e.sample_id, e.dim, e.image_embedding, e.text_embedding, c.score AS clip_score "
        "FROM clip_embeddings e LEFT JOIN clip_scores c ON c.sample_id = e.sample_id AND c.model = e.model "
        "AND c.pretrained = e.pretrained WHERE e.model = ? AND e.pretrained = ? "
        "AND e.sample_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY e.sample_id", [model, pretrained, sample_ids])


def sample_info(wh: Warehouse, sample_ids: list[str]) -> dict[str, dict]:
    """sample_id -> caption, source key, uri, size, format, audio fields: what an export's json and a
    search hit show."""
    rows = wh.sql(
        "SELECT s.sample_id, s.text AS caption, s.source, s.source_key, s.uri, s.width, s.height, s.format, "
        "s.duration_s, s.sample_rate, (SELECT any_value(t.language) FROM transcripts t "
        "WHERE t.sample_id = s.sample_id) AS language FROM samples s "
        "WHERE s.sample_id IN (SELECT unnest(?::VARCHAR[]))", [sample_ids]).to_pylist()
    return {r["sample_id"]: r for r in rows}


def user_sample_ids(wh: Warehouse, query: str) -> list[str]:
    """The sample ids a user's SQL selects, run like `mmpipe sql` (confined, within the query limits
    of $MMPIPE_QUERY_TIMEOUT / $MMPIPE_QUERY_MEMORY, in a capped child process)."""
    table = wh.query_readonly(query, isolated=True)
    if "sample_id" not in table.column_names:
        raise ReadOnlyError(f"the query must return a sample_id column; it returned {', '.join(table.column_names)}")
    return [s for s in table.column("sample_id").to_pylist() if s is not None]


def record_semantic_dedup(wh: Warehouse, decisions: pa.Table) -> int:
    """Write the decisions of a semantic dedup run (rows of `decisions`)."""
    return wh.write("decisions", decisions)


def semantic_dedup_summary(wh: Warehouse, run_id: str) -> dict[str, int]:
    """kept / semantic_duplicate counts of one semantic dedup run."""
    rows = wh.sql("SELECT coalesce(drop_reason, 'kept') AS outcome, count(*) AS n FROM decisions "
                  "WHERE run_id = ? AND stage = 'semantic_dedup' GROUP BY 1", [run_id]).to_pylist()
    return {r["outcome"]: r["n"] for r in rows}
