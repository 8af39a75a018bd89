"""Writing processed batches to the warehouse: samples, occurrences and every stage's decisions."""

from __future__ import annotations

import pyarrow as pa

from mmpipe.schema import OCCURRENCE_COLUMNS, SAMPLE_COLUMNS
from mmpipe.stages.base import Stage, decisions_of
from warehouse import Warehouse


def with_run(table: pa.Table, column: str, run_id: str) -> pa.Table:
    """`table` with a constant run id column."""
    return table.append_column(column, pa.array([run_id] * table.num_rows, pa.string()))


def decisions_table(batch: pa.Table, stages: list[Stage], run_id: str) -> pa.Table:
    """The decisions the stages made on `batch`, as rows of `decisions`."""
    return with_run(pa.concat_tables([decisions_of(batch, s) for s in stages]), "run_id", run_id)


def record_decisions(wh: Warehouse, batch: pa.Table, stages: list[Stage], run_id: str) -> int:
    """Write the decisions the stages made on `batch`; returns how many were new."""
    return wh.write("decisions", decisions_table(batch, stages, run_id), run_id)


def record_batch(wh: Warehouse, batch: pa.Table, stages: list[Stage], run_id: str,
                 extra: dict[str, pa.Table] | None = None) -> dict[str, int]:
    """Write samples (new ones only), where the run met them, their decisions (and `extra` tables)
    in one transaction: a batch is recorded whole or not at all. Returns rows gained."""
    got = wh.write_many({
        **(extra or {}),
        "samples": with_run(batch.select(SAMPLE_COLUMNS), "first_run_id", run_id),
        "occurrences": with_run(batch.select(OCCURRENCE_COLUMNS), "run_id", run_id),
        "decisions": decisions_table(batch, stages, run_id),
    })
    return {"new_samples": got.get("samples", 0), "occurrences": got.get("occurrences", 0),
            "new_decisions": got.get("decisions", 0)}
