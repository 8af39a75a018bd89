"""Writing a processed batch to the warehouse: its samples and every stage's decisions."""

from __future__ import annotations

import pyarrow as pa

from mmpipe.schema import SAMPLE_COLUMNS
from mmpipe.stages.base import Stage, decisions_of
from warehouse import Warehouse


def record_batch(wh: Warehouse, batch: pa.Table, stages: list[Stage], run_id: str) -> dict[str, int]:
    """Write samples (new ones only) and decisions; returns how many rows each table gained."""
    samples = batch.select(SAMPLE_COLUMNS).append_column(
        "first_run_id", pa.array([run_id] * batch.num_rows, pa.string()))
    decisions = pa.concat_tables([decisions_of(batch, s) for s in stages])
    decisions = decisions.append_column("run_id", pa.array([run_id] * decisions.num_rows, pa.string()))
    return {
        "new_samples": wh.write("samples", samples, run_id),
        "new_decisions": wh.write("decisions", decisions, run_id),
    }
