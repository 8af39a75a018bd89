"""Writing processed batches to the warehouse: samples, occurrences and every stage's decisions."""

from __future__ import annotations

import hashlib

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

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


def record_batch(wh: Warehouse, batch: pa.Table, stages: list[Stage], run_id: str, key: str,
                 extra: dict[str, pa.Table] | None = None) -> dict[str, int]:
    """Write the batch's samples (as the run's sightings), where the run met them, their decisions (and
    `extra` tables) in one transaction: a batch is recorded whole or not at all, and a rerun of the same
    `key` (e.g. "prepare/12") adds nothing. Returns rows gained; `settle_samples` then adds new samples."""
    sightings = with_run(batch.select(SAMPLE_COLUMNS), "first_run_id", run_id)
    if "ordinal" in batch.column_names:
        sightings = sightings.append_column("ordinal", batch["ordinal"])
    got = wh.write_many({
        **(extra or {}),
        "samples": sightings,
        "occurrences": with_run(batch.select(OCCURRENCE_COLUMNS), "run_id", run_id),
        "decisions": decisions_table(batch, stages, run_id),
    }, batch=f"{run_id}/{key}/{_digest(batch)}")
    return {"occurrences": got.get("occurrences", 0), "new_decisions": got.get("decisions", 0)}


def _digest(batch: pa.Table) -> str:
    """What the batch holds, so a batch key names this content (a source changed under a resumed run
    is written, not skipped)."""
    h = hashlib.sha256()
    for col in ("sample_id", "ordinal"):
        if col in batch.column_names:
            h.update("\n".join(map(str, batch[col].to_pylist())).encode())
    return h.hexdigest()[:16]


@task(cache_policy=NO_CACHE)
def settle_samples(home: str, run_id: str) -> int:
    """After a run's shard pass: its sightings become `samples` rows (first sighting wins), in one
    set-based pass; returns how many samples are new to the warehouse."""
    return Warehouse(home).settle(run_id)
