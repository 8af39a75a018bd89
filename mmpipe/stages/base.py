"""Stage and Filter bases: a filter annotates keep + drop_reason and never deletes rows."""

from __future__ import annotations

from collections import Counter
from typing import Union

import pyarrow as pa
import pyarrow.compute as pc

from mmpipe.schema import DECISION_SCHEMA, DROP_REASONS

# What a filter says of one row: None (keep), a reason, or (reason, detail).
Verdict = Union[None, str, tuple[str, Union[str, None]]]


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
    verdict (None to keep, a reason from mmpipe.schema.DROP_REASONS, or (reason, detail)) and
    optionally a score. Rows dropped by an earlier stage pass through untouched, so each sample
    is dropped by exactly one stage; the rows a filter evaluated are marked in `<name>_keep`.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._ready = False

    def decide(self, batch: pa.Table) -> tuple[list[Verdict], list[float | None] | None]:
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not self._ready:
            self.setup()
            self._ready = True
        active = pc.fill_null(batch["keep"], True)
        idx = pc.indices_nonzero(active).to_pylist()
        n = batch.num_rows
        verdicts: list[Verdict] = [None] * n
        scores_all: list[float | None] = [None] * n
        if idx:
            got, scores = self.decide(batch.take(idx))
            for j, i in enumerate(idx):
                verdicts[i] = got[j]
                scores_all[i] = scores[j] if scores is not None else None
        cols = {c: batch[c].to_pylist() for c in ("keep", "drop_reason", "drop_detail", "drop_stage")}
        evaluated: list[bool | None] = [None] * n
        for i in idx:
            reason, detail = (verdicts[i], None) if not isinstance(verdicts[i], tuple) else verdicts[i]
            evaluated[i] = reason is None
            if reason is None:
                cols["keep"][i] = True
                self.counts["kept"] += 1
                continue
            if reason not in DROP_REASONS:
                raise ValueError(f"stage {self.name} gave drop reason {reason!r}, not in the vocabulary")
            cols["keep"][i], cols["drop_reason"][i], cols["drop_detail"][i] = False, reason, detail
            cols["drop_stage"][i] = self.name
            self.counts[reason] += 1
        for c, typ in (("keep", pa.bool_()), ("drop_reason", pa.string()), ("drop_detail", pa.string()),
                       ("drop_stage", pa.string())):
            batch = set_column(batch, c, pa.array(cols[c], typ))
        batch = set_column(batch, f"{self.name}_keep", pa.array(evaluated, pa.bool_()))
        return set_column(batch, f"{self.name}_score", pa.array(scores_all, pa.float64()))


def set_column(batch: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Replace the column `name`, or append it."""
    if name in batch.column_names:
        return batch.set_column(batch.column_names.index(name), name, values)
    return batch.append_column(name, values)


def decisions_of(batch: pa.Table, stage: Stage) -> pa.Table:
    """The decision rows `stage` made on `batch`: every row it evaluated, kept or dropped.

    A row dropped by the source before any decoder ran carries drop_stage = the first stage's
    name, and counts as that stage's decision.
    """
    flag = f"{stage.name}_keep"
    evaluated = pc.is_valid(batch[flag]) if flag in batch.column_names else pa.array([False] * batch.num_rows)
    by_source = pc.fill_null(pc.equal(batch["drop_stage"], stage.name), False)
    rows = batch.filter(pc.or_(evaluated, by_source))
    score_col = f"{stage.name}_score"
    scores = rows[score_col] if score_col in rows.column_names else pa.nulls(rows.num_rows, pa.float64())
    own_drop = pc.fill_null(pc.equal(rows["drop_stage"], stage.name), False)
    none = pa.scalar(None, pa.string())
    return pa.table(
        {
            "sample_id": rows["sample_id"],
            "stage": pa.array([stage.name] * rows.num_rows, pa.string()),
            "stage_version": pa.array([stage.version] * rows.num_rows, pa.string()),
            "score": scores.cast(pa.float64()),
            "keep": pc.invert(own_drop),
            "drop_reason": pc.if_else(own_drop, rows["drop_reason"], none),
            "detail": pc.if_else(own_drop, rows["drop_detail"], none),
        },
        schema=DECISION_SCHEMA,
    )
