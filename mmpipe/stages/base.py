"""Stage and Filter bases: a filter annotates keep + drop_reason and never deletes rows."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from mmpipe.schema import DECISION_SCHEMA


class Stage:
    """A batch -> batch step. `setup()` loads heavy things once per process."""

    name = "stage"
    version = "1"

    def setup(self) -> None:
        """Load models or other heavy state; called once before the first batch."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError


class Filter(Stage):
    """A stage that decides keep/drop for each row still kept; it counts its drops.

    Subclasses implement `decide(batch)` over the rows still kept and return, per row, a
    drop reason (None to keep) and optionally a score. Rows dropped by an earlier stage
    pass through untouched, so each sample is dropped by exactly one stage.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._ready = False

    def decide(self, batch: pa.Table) -> tuple[list[str | None], list[float | None] | None]:
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not self._ready:
            self.setup()
            self._ready = True
        active = pc.fill_null(batch["keep"], True)
        idx = pc.indices_nonzero(active).to_pylist()
        reasons_all: list[str | None] = [None] * batch.num_rows
        scores_all: list[float | None] = [None] * batch.num_rows
        if idx:
            reasons, scores = self.decide(batch.take(idx))
            for j, i in enumerate(idx):
                reasons_all[i] = reasons[j]
                scores_all[i] = scores[j] if scores is not None else None
        keep = batch["keep"].to_pylist()
        drop_reason = batch["drop_reason"].to_pylist()
        drop_stage = batch["drop_stage"].to_pylist()
        for i in idx:
            reason = reasons_all[i]
            keep[i] = reason is None
            if reason is not None:
                drop_reason[i] = reason
                drop_stage[i] = self.name
                self.counts[reason.split(":", 1)[0]] += 1
            else:
                self.counts["kept"] += 1
        batch = set_column(batch, "keep", pa.array(keep, pa.bool_()))
        batch = set_column(batch, "drop_reason", pa.array(drop_reason, pa.string()))
        batch = set_column(batch, "drop_stage", pa.array(drop_stage, pa.string()))
        return set_column(batch, f"{self.name}_score", pa.array(scores_all, pa.float64()))


def set_column(batch: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Replace the column `name`, or append it."""
    if name in batch.column_names:
        return batch.set_column(batch.column_names.index(name), name, values)
    return batch.append_column(name, values)


def decisions_of(batch: pa.Table, stage: Stage) -> pa.Table:
    """The decision rows `stage` made on `batch`: every row it evaluated, kept or dropped."""
    evaluated = pc.or_kleene(pc.is_null(batch["drop_stage"]), pc.equal(batch["drop_stage"], stage.name))
    rows = batch.filter(pc.fill_null(evaluated, False))
    score_col = f"{stage.name}_score"
    scores = rows[score_col] if score_col in rows.column_names else pa.nulls(rows.num_rows, pa.float64())
    return pa.table(
        {
            "sample_id": rows["sample_id"],
            "stage": pa.array([stage.name] * rows.num_rows, pa.string()),
            "stage_version": pa.array([stage.version] * rows.num_rows, pa.string()),
            "score": scores.cast(pa.float64()),
            "keep": pc.fill_null(rows["keep"], True),
            "drop_reason": pc.if_else(pc.fill_null(rows["keep"], True), pa.scalar(None, pa.string()), rows["drop_reason"]),
        },
        schema=DECISION_SCHEMA,
    )
