"""Writing processed batches to the warehouse: samples and every stage's decisions."""

from __future__ import annotations

import pyarrow as pa

from mmpipe.schema import SAMPLE_COLUMNS
from mmpipe.stages.base import Stage, decisions_of
from warehouse import Warehouse


def _with_run(table: pa.Table, column: str, run_id: str) -> pa.Table:
    return table.append_column(column, pa.array([run_id] * table.num_rows, pa.string()))


def record_decisions(wh: Warehouse, batch: pa.Table, stages: list[Stage], run_id: str) -> int:
    """Write the decisions the stages made on `batch`; returns how many were new."""
    decisions = pa.concat_tables([decisions_of(batch, s) for s in stages])
    return wh.write("decisions", _with_run(decisions, "run_id", run_id), run_id)


def record_batch(wh: Warehouse, batch: pa.Table, stages: list[Stage], run_id: str) -> dict[str, int]:
    """Write samples (new ones only) and decisions; returns how many rows each table gained."""
    samples = _with_run(batch.select(SAMPLE_COLUMNS), "first_run_id", run_id)
    return {"new_samples": wh.write("samples", samples, run_id),
            "new_decisions": record_decisions(wh, batch, stages, run_id)}
