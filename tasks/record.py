"""Writing processed batches to the warehouse: samples, occurrences and every stage's decisions."""

from __future__ import annotations

import pyarrow as pa

from mmpipe.schema import OCCURRENCE_COLUMNS, SAMPLE_COLUMNS
from mmpipe.stages.base import Stage, decisions_of
from warehouse import Warehouse


def with_run(table: pa.Table, column: str, run_id: str) -> pa.Table:
    """`table` with a constant run id column."""
    return table.append_column(column, pa.array([run_id] * table.num_rows, pa.string()))


def record_decisions(wh: Warehouse, batch: pa.Table, stages: list[Stage], run_id: str) -> int:
    """Write the decisions the stages made on `batch`; returns how many were new."""
    decisions = pa.concat_tables([decisions_of(batch, s) for s in stages])
    return wh.write("decisions", with_run(decisions, "run_id", run_id), run_id)


def record_batch(wh: Warehouse, batch: pa.Table, stages: list[Stage], run_id: str) -> dict[str, int]:
    """Write samples (new ones only), where the run met them, and decisions; returns rows gained."""
    samples = with_run(batch.select(SAMPLE_COLUMNS), "first_run_id", run_id)
    return {"new_samples": wh.write("samples", samples, run_id),
            "occurrences": wh.write("occurrences", with_run(batch.select(OCCURRENCE_COLUMNS), "run_id", run_id), run_id),
            "new_decisions": record_decisions(wh, batch, stages, run_id)}
