"""The `outcomes` view takes a dropped sample's reason, stage and detail from one decision row."""

from __future__ import annotations

import pyarrow as pa

from warehouse import Warehouse


def test_a_sample_dropped_twice_reports_the_first_stage_whole(tmp_path):
    wh = Warehouse(tmp_path / "home")
    run = "curate-twice"
    wh.write("occurrences", pa.table({"run_id": [run] * 3, "ordinal": [0, 1, 2], "sample_id": ["a", "b", "c"],
                                      "source_key": ["k/a", "k/b", "k/c"]}))
    # per column, max() would give reason from basic, stage from clip_filter and detail from basic for
    # "a", and stage dedup with clip_filter's reason for "b"
    rows = [("a", "basic", "too_small", "100x50 < 200"), ("a", "clip_filter", "clip_score_low", "0.1000 < 0.3"),
            ("b", "clip_filter", "clip_score_low", "0.2000 < 0.3"), ("b", "dedup", "duplicate", "a"),
            ("c", "decode", None, None), ("c", "basic", None, None)]
    wh.write("decisions", pa.table({"sample_id": [r[0] for r in rows], "run_id": [run] * len(rows),
                                    "stage": [r[1] for r in rows], "keep": [r[2] is None for r in rows],
                                    "drop_reason": [r[2] for r in rows], "detail": [r[3] for r in rows]}))
    got = {r["sample_id"]: (r["keep"], r["drop_reason"], r["drop_stage"], r["detail"]) for r in wh.sql(
        "SELECT sample_id, keep, drop_reason, drop_stage, detail FROM outcomes WHERE run_id = ?", [run]).to_pylist()}
    assert got == {"a": (False, "too_small", "basic", "100x50 < 200"),
                   "b": (False, "duplicate", "dedup", "a"),
                   "c": (True, None, None, None)}
