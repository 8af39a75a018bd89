"""The run-wide dedup and CLIP filter in SQL give the in-memory stages' decisions on the same run
(crafted hashes with chains, ties, repeats and missing keys; scores with ties and gaps)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mmpipe.schema import SHARD_SPAN
from mmpipe.stages.base import decisions_of
from mmpipe.stages.clip_filter import ClipFilter, ClipFilterConfig
from mmpipe.stages.dedup import Dedup, DedupConfig
from warehouse import Warehouse
from warehouse.dedup_queries import (chunk_bounds, clip_filter_decisions, dedup_decisions,
                                     keep_fraction_threshold)
from warehouse.queries import content_keys

RUN = "curate-test-run"


def _decidable(table: pa.Table) -> pa.Table:
    n = table.num_rows
    for col, arr in (("keep", pa.array([True] * n, pa.bool_())), ("drop_reason", pa.nulls(n, pa.string())),
                     ("drop_detail", pa.nulls(n, pa.string())), ("drop_stage", pa.nulls(n, pa.string()))):
        table = table.append_column(col, arr)
    return table


def run_candidates(sidecars: list[str]) -> pa.Table:
    """The in-memory path's candidates: every staged sample once, at its first ordinal."""
    ids = pa.concat_tables([pq.read_table(p) for p in sidecars])
    return ids.group_by("sample_id").aggregate([("ordinal", "min")]).rename_columns(["sample_id", "ordinal"]) \
        .sort_by("ordinal")


def in_memory_dedup(wh: Warehouse, sidecars: list[str], config: DedupConfig) -> set[tuple]:
    """What `tasks.curate.dedup_run` decided before the SQL path: the Dedup stage over the whole run."""
    ids = run_candidates(sidecars)
    batch = _decidable(ids.join(content_keys(wh, ids["sample_id"].to_pylist()), "sample_id"))
    out = decisions_of(Dedup(config)(batch), Dedup)
    return {(r["sample_id"], r["keep"], r["drop_reason"], r["detail"]) for r in out.to_pylist()}


def sql_dedup(wh: Warehouse, sidecars: list[str], config: DedupConfig, chunk_rows: int, versions=None) -> set[tuple]:
    rows = []
    for lo, hi in chunk_bounds(wh, sidecars, chunk_rows):
        rows += dedup_decisions(wh, sidecars, RUN, config.exact, config.hamming, lo, hi, versions).to_pylist()
    assert len(rows) == len({r["sample_id"] for r in rows})  # one decision per candidate, over all chunks
    assert all(r["run_id"] == RUN and r["stage"] == "dedup" and r["score"] is None for r in rows)
    return {(r["sample_id"], r["keep"], r["drop_reason"], r["detail"]) for r in rows}


def _sid(i: int) -> str:
    return hashlib.sha256(f"sample {i}".encode()).hexdigest()


def _flip(h: int, bits: list[int]) -> int:
    u = h & (2**64 - 1)
    for b in bits:
        u ^= 1 << b
    return u - 2**64 if u >= 2**63 else u


def crafted_run(tmp_path, wh: Warehouse) -> list[str]:
    """A run of 3 shards: random hashes, exact copies (same bytes, other caption), near copies within
    and beyond radius 4, chains A~B~C with A far from C, ties (two earlier twins, nearer one later),
    repeats of a sample across and within shards, missing phash and missing bytes hash."""
    rng = np.random.default_rng(7)
    rows: list[dict] = []

    def add(h, sha=None):
        i = len(rows)
        rows.append({"sample_id": _sid(i), "content_sha256": sha or f"sha-{i}", "phash": h})
        return i

    base = [int(x) for x in rng.integers(-2**63, 2**63 - 1, size=120, dtype=np.int64)]
    for h in base:
        add(h)
    for k in range(40):  # near copies at 1..7 bits from a random earlier one
        add(_flip(base[k], [int(b) for b in rng.choice(64, size=1 + k % 7, replace=False)]))
    for k in range(20):  # exact copies: the bytes of an earlier sample under another caption
        add(int(rng.integers(-2**63, 2**63 - 1)), sha=rows[int(rng.integers(0, 150))]["content_sha256"])
    for k in range(10):  # chains: A, B = A + 3 bits, C = B + 3 other bits (A-C: 6 bits)
        a = add(int(rng.integers(-2**63, 2**63 - 1)))
        b = add(_flip(rows[a]["phash"], [0, 1, 2]))
        add(_flip(rows[b]["phash"], [40, 41, 42]))
    for k in range(5):  # ties: D, E = D + 3 bits, F = D + 1 bit = E + 4 bits (two earlier twins in radius)
        d = add(int(rng.integers(-2**63, 2**63 - 1)))
        add(_flip(rows[d]["phash"], [10, 20, 30]))
        add(_flip(rows[d]["phash"], [50]))
    add(None)
    add(None, sha="sha-0")
    rows.append({"sample_id": _sid(len(rows)), "content_sha256": None, "phash": base[3]})
    order = list(rng.permutation(len(rows)))
    order += [order[5], order[17], order[40]]  # repeats: the same sample met again later in the run
    shards: list[list[tuple[str, int]]] = [[], [], []]
    for pos, i in enumerate(order):
        k = pos * 3 // len(order)
        shards[k].append((rows[i]["sample_id"], k * SHARD_SPAN + len(shards[k])))
    shards[0].append((shards[0][2][0], 0 * SHARD_SPAN + len(shards[0])))  # a repeat within a shard
    wh.write("samples", pa.Table.from_pylist(rows, schema=pa.schema(
        [("sample_id", pa.string()), ("content_sha256", pa.string()), ("phash", pa.int64())])))
    paths = []
    for k, members in enumerate(shards):
        path = tmp_path / f"shard-{k:06d}.ids.parquet"
        pq.write_table(pa.table({"sample_id": [m[0] for m in members], "ordinal": [m[1] for m in members]},
                                schema=pa.schema([("sample_id", pa.string()), ("ordinal", pa.int64())])), path)
        paths.append(str(path))
    return paths


@pytest.fixture
def crafted(tmp_path):
    wh = Warehouse(tmp_path / "home")
    return wh, crafted_run(tmp_path, wh)


@pytest.mark.parametrize("config", [DedupConfig(True, 4), DedupConfig(True, None), DedupConfig(False, 4),
                                    DedupConfig(True, 0), DedupConfig(True, 1), DedupConfig(True, 6),
                                    DedupConfig(False, None)])
def test_sql_dedup_decides_as_the_in_memory_stage(crafted, config):
    wh, sidecars = crafted
    want = in_memory_dedup(wh, sidecars, config)
    whole = sql_dedup(wh, sidecars, config, chunk_rows=10_000)
    assert whole == want
    assert sql_dedup(wh, sidecars, config, chunk_rows=17) == want  # chunks of ordinal ranges: the same
    reasons = {r[2] for r in want}
    if config.exact:
        assert "duplicate" in reasons
    if config.hamming:
        assert "near_duplicate" in reasons


def test_chains_drop_every_later_link_and_ties_go_to_the_earliest(crafted):
    wh, sidecars = crafted
    got = {r[0]: r for r in sql_dedup(wh, sidecars, DedupConfig(True, 4), chunk_rows=50)}
    near = [r for r in got.values() if r[2] == "near_duplicate"]
    assert near and all(r[3].split(" ")[1].startswith("hamming=") for r in near)
    # each chain C (3 bits from B, 6 from A) is dropped as B's twin whether or not B itself was dropped
    chained = [r for r in near if r[3].endswith("hamming=3") and got[r[3].split(" ")[0]][2] == "near_duplicate"]
    assert chained


def _scores(tmp_path, wh: Warehouse, n: int = 200) -> list[str]:
    rng = np.random.default_rng(3)
    ids = [_sid(10_000 + i) for i in range(n)]
    scores = [round(float(s), 2) for s in rng.normal(0.3, 0.1, size=n)]  # rounded: many ties
    have = [i for i in range(n) if i % 9]  # some candidates were never scored
    wh.write("clip_scores", pa.table({"sample_id": [ids[i] for i in have], "model": ["m"] * len(have),
                                      "pretrained": ["p"] * len(have), "score": [scores[i] for i in have]}))
    wh.write("clip_scores", pa.table({"sample_id": [ids[1]], "model": ["other"], "pretrained": ["p"],
                                      "score": [9.0]}))
    dropped = ids[2::13]  # dedup dropped these: the filter never sees them
    wh.write("decisions", pa.table({"sample_id": ids, "run_id": [RUN] * n, "stage": ["dedup"] * n,
                                    "keep": [s not in dropped for s in ids],
                                    "drop_reason": ["duplicate" if s in dropped else None for s in ids]}))
    half = n // 2
    paths = []
    for k, part in enumerate((ids[:half], ids[half:])):
        path = tmp_path / f"scores-{k}.ids.parquet"
        pq.write_table(pa.table({"sample_id": part, "ordinal": [k * SHARD_SPAN + i for i in range(len(part))]}), path)
        paths.append(str(path))
    return paths


def in_memory_clip_filter(wh: Warehouse, sidecars: list[str], config: ClipFilterConfig) -> tuple[float, set]:
    """What `tasks.curate.clip_filter_run` decided before the SQL path: ClipFilter over the whole run."""
    from warehouse.queries import clip_scores_of, dropped_ids

    dups = dropped_ids(wh, RUN, Dedup.name)
    ids = [s for s in run_candidates(sidecars)["sample_id"].to_pylist() if s not in dups]
    scores = clip_scores_of(wh, "m", "p", ids)
    batch = _decidable(pa.table({"sample_id": pa.array(ids, pa.string()),
                                 "clip_score": pa.array([scores.get(s) for s in ids], pa.float64())}))
    stage = ClipFilter(config)
    out = decisions_of(stage(batch), stage)
    return stage.threshold, {_row(r) for r in out.to_pylist()}


def _row(r: dict) -> tuple:
    score = "nan" if r["score"] is None or math.isnan(r["score"]) else r["score"]
    return r["sample_id"], score, r["keep"], r["drop_reason"], r["detail"]


@pytest.mark.parametrize("config", [ClipFilterConfig(keep_fraction=0.3), ClipFilterConfig(keep_fraction=0.5),
                                    ClipFilterConfig(keep_fraction=0.0001), ClipFilterConfig(keep_fraction=1.0),
                                    ClipFilterConfig(min_score=0.31)])
def test_sql_clip_filter_decides_as_the_in_memory_stage(tmp_path, config):
    wh = Warehouse(tmp_path / "home")
    sidecars = _scores(tmp_path, wh)
    threshold, want = in_memory_clip_filter(wh, sidecars, config)
    if config.keep_fraction is not None:
        assert keep_fraction_threshold(wh, sidecars, RUN, "m", "p", config.keep_fraction) == threshold
        rule = f"keep_fraction={config.keep_fraction:g}"
    else:
        rule = f"min_clip_score={config.min_score:g}"
    rows = []
    for lo, hi in chunk_bounds(wh, sidecars, 33):
        rows += clip_filter_decisions(wh, sidecars, RUN, "m", "p", threshold, rule, lo, hi).to_pylist()
    assert {_row(r) for r in rows} == want and len(rows) == len(want)
    assert any(not r["keep"] for r in rows) or config.keep_fraction == 1.0


def test_sql_dedup_decides_as_the_in_memory_stage_on_a_real_run(tmp_path):
    """The demo's kinds of copies through the real shard pass: exact copies and JPEG re-encodes under
    other captions, resized and cropped copies, a shard met twice (every sample repeated)."""
    import shutil

    from mmpipe.demo.shapes import write_shapes
    from mmpipe.sources import SourceSpec, plan_shards
    from mmpipe.stages.basic import BasicFilterConfig
    from mmpipe.stages.decode import DecodeConfig
    from tasks.curate import prepare_shard, staged_ids_path, staged_path

    shapes = write_shapes(tmp_path / "shapes", n=240, n_seed=1, n_holdout=1, dup=0.15, near=0.2, shard_size=60)
    last = len(shapes.shards)
    shutil.copy(shapes.shards[0], shapes.shards[0].with_name(f"shapes-{last:06d}.tar"))  # met again, last
    home = str(tmp_path / "home")
    spec = SourceSpec(str(tmp_path / "shapes" / "pool" / f"shapes-{{000000..{last:06d}}}.tar"), shard_size=60)
    shards = plan_shards(spec, tmp_path / "plan")
    for shard in shards:
        prepare_shard.fn(spec, shard, RUN, home, "shapes", DecodeConfig(), BasicFilterConfig(min_side=64))
    wh = Warehouse(home)
    wh.settle(RUN)  # the run's sightings become samples, as the flow does after its shard pass
    sidecars = [staged_ids_path(str(staged_path(home, RUN, s.index))) for s in shards]
    for config in (DedupConfig(True, 4), DedupConfig(True, 8), DedupConfig(False, 4)):
        want = in_memory_dedup(wh, sidecars, config)
        assert sql_dedup(wh, sidecars, config, chunk_rows=25) == want
        counts = {r: sum(1 for w in want if w[2] == r) for r in ("duplicate", "near_duplicate")}
        assert counts["near_duplicate"] >= 10 and (counts["duplicate"] >= 10 or not config.exact), counts
