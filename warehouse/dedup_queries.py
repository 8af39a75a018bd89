"""Run-wide dedup and the CLIP keep-fraction in SQL, over the stored hashes and scores.

The run's candidates are the (sample_id, ordinal) sidecars of its staged shards (what decode and the
basic filters kept, each sample at its first ordinal); their hashes come from `samples`, their scores
from `clip_scores`. Nothing is loaded into Python but one chunk of decisions at a time: DuckDB does
the joins (and spills to disk past its memory limit), and decisions are written per ordinal range.

Dedup rules (the in-memory `mmpipe.stages.dedup.Dedup` gives the same decisions on the same run):
- exact: among candidates with the same content_sha256, the lowest ordinal is kept and the others are
  `duplicate` with its id as the detail;
- near: among the candidates exact dedup kept that have a phash, candidate C is `near_duplicate` of the
  lowest-ordinal EARLIER candidate within `hamming` bits, whether or not that one was itself dropped
  as a near duplicate (chains A~B~C drop B and C even when A and C are far apart); the detail is
  "<its id> hamming=<distance>". Pigeonhole banding: 64 bits cut into hamming+1 bands (the in-memory
  edges), so a pair within the radius agrees on a whole band; only same-band pairs get the exact
  bit_count check.
- earlier versions (incremental runs and curations into an existing name): a candidate that is not
  itself a sample of an earlier version of the dataset, whose bytes or phash match a sample kept there,
  is dropped first (`duplicate` / `near_duplicate`, detail "<twin id> [hamming=<d> ]in <name>@<version>",
  the earliest version's twin, then the nearest, then the lowest id; a version an incremental one
  holds whole is read through that newer one, which then names the twin). A sample so dropped takes no
  further part in the run's own dedup.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from warehouse.store import Warehouse

CHUNK_ROWS = 100_000  # decisions computed and committed per ordinal range
_NONE = "SELECT NULL::VARCHAR AS sample_id, NULL::INTEGER AS rank, NULL::VARCHAR AS label WHERE false"


def band_edges(hamming: int) -> list[tuple[int, int]]:
    """(lo, hi) bit ranges of the pigeonhole bands for a radius (the in-memory stage's edges)."""
    bands = min(hamming + 1, 64)
    edges = np.linspace(0, 64, bands + 1).astype(int).tolist()
    return list(zip(edges[:-1], edges[1:]))


def _existing(paths: list[str]) -> list[str]:
    return [str(p) for p in paths if Path(p).exists()]


def _candidates(files: list[str]) -> str:
    if not files:
        return "cand AS (SELECT NULL::VARCHAR AS sample_id, NULL::BIGINT AS ordinal WHERE false)"
    return "cand AS (SELECT sample_id, min(ordinal) AS ordinal FROM read_parquet($files) GROUP BY sample_id)"


def earlier_versions(wh: Warehouse, name: str, run_id: str) -> list[dict]:
    """Versions of `name` made by other runs whose samples are not all in a later curated version
    (an incremental version holds its parent whole), oldest first: what new samples dedup against."""
    rows = wh.sql(
        "SELECT version, manifest_uri FROM datasets d WHERE name = $name AND run_id <> $run "
        "AND coalesce(manifest_uri, '') <> '' AND dataset_id NOT IN (SELECT c.parent_id FROM datasets c "
        "JOIN runs r USING (run_id) WHERE c.name = $name AND r.flow = 'curate' AND c.run_id <> $run "
        "AND c.parent_id IS NOT NULL) ORDER BY created_at, version", {"name": name, "run": run_id}).to_pylist()
    return [{"label": f"{name}@{r['version']}", "manifest": wh.resolve(r["manifest_uri"])} for r in rows
            if Path(wh.resolve(r["manifest_uri"])).exists()]


def _prior(versions: list[dict] | None) -> tuple[str, dict]:
    if not versions:
        return f"prior AS ({_NONE})", {}
    sql = ("prior_files AS (SELECT unnest($pfiles) AS filename, unnest($plabels) AS label, "
           "unnest(range(len($pfiles))) AS rank), "
           "prior AS (SELECT m.sample_id, min(f.rank) AS rank, arg_min(f.label, f.rank) AS label "
           "FROM read_parquet($pfiles, filename = true, union_by_name = true) m JOIN prior_files f USING (filename) "
           "GROUP BY m.sample_id)")
    return sql, {"pfiles": [v["manifest"] for v in versions], "plabels": [v["label"] for v in versions]}


def _dedup_sql(files: list[str], exact: bool, hamming: int | None, prior_sql: str, has_prior: bool) -> str:
    """The decisions of the candidates with ordinal in [$lo, $hi)."""
    ctes = [_candidates(files), prior_sql,
            "keyed AS (SELECT c.sample_id, c.ordinal, s.content_sha256 AS sha, s.phash AS h "
            "FROM cand c JOIN samples s USING (sample_id)), "
            "pk AS (SELECT p.sample_id, p.rank, p.label, s.content_sha256 AS sha, s.phash AS h "
            "FROM prior p JOIN samples s USING (sample_id)), "
            "fresh AS (SELECT * FROM keyed WHERE sample_id NOT IN (SELECT sample_id FROM prior))"]
    none = "SELECT NULL::VARCHAR AS sample_id, NULL::VARCHAR AS twin, NULL::VARCHAR AS label, NULL::BIGINT AS rk, " \
           "NULL::BIGINT AS dist WHERE false"
    if exact and has_prior:
        ctes.append("x_prior AS (SELECT n.sample_id, arg_min(p.sample_id, (p.rank, p.sample_id)) AS twin, "
                    "arg_min(p.label, (p.rank, p.sample_id)) AS label FROM fresh n JOIN pk p ON n.sha = p.sha "
                    "GROUP BY n.sample_id)")
    else:
        ctes.append(f"x_prior AS ({none})")
    if exact:
        ctes.append("x_run AS (SELECT sample_id, first_value(sample_id) OVER w AS twin, row_number() OVER w AS rk "
                    "FROM keyed WHERE sha IS NOT NULL AND sample_id NOT IN (SELECT sample_id FROM x_prior) "
                    "WINDOW w AS (PARTITION BY sha ORDER BY ordinal))")
    else:
        ctes.append(f"x_run AS ({none})")
    if hamming is not None and hamming >= 0:
        # BIGINT >> is arithmetic, but the mask keeps only the band's own bits; a 64-bit band needs none
        values = ", ".join(f"({b}, {lo}, {-1 if hi - lo == 64 else (1 << (hi - lo)) - 1})"
                           for b, (lo, hi) in enumerate(band_edges(hamming)))
        ctes += [
            f"bands AS (SELECT * FROM (VALUES {values}) t(b, lo, mask))",
            "alive AS (SELECT * FROM keyed WHERE h IS NOT NULL AND ordinal < $hi "
            "AND sample_id NOT IN (SELECT sample_id FROM x_prior) "
            "AND sample_id NOT IN (SELECT sample_id FROM x_run WHERE rk > 1))",
        ]
        if has_prior:
            ctes += [
                "pb AS (SELECT p.sample_id, p.rank, p.label, p.h, b.b, (p.h >> b.lo) & b.mask AS key "
                "FROM pk p, bands b WHERE p.h IS NOT NULL)",
                "n_pairs AS (SELECT c.sample_id, p.sample_id AS twin, p.rank, p.label, "
                "bit_count(xor(c.h, p.h)) AS dist FROM (SELECT a.sample_id, a.h, b.b, (a.h >> b.lo) & b.mask AS key "
                "FROM alive a, bands b WHERE a.sample_id NOT IN (SELECT sample_id FROM prior)) c "
                "JOIN pb p ON c.b = p.b AND c.key = p.key WHERE bit_count(xor(c.h, p.h)) <= $hamming)",
                "n_prior AS (SELECT sample_id, arg_min(twin, (rank, dist, twin)) AS twin, "
                "arg_min(label, (rank, dist, twin)) AS label, arg_min(dist, (rank, dist, twin)) AS dist "
                "FROM n_pairs GROUP BY sample_id)",
            ]
        else:
            ctes.append(f"n_prior AS ({none})")
        ctes += [
            # the band join carries ordinals (unique per candidate), not ids: a narrow hash table
            "ab AS (SELECT a.ordinal, a.h, b.b, (a.h >> b.lo) & b.mask AS key FROM alive a, bands b "
            "WHERE a.sample_id NOT IN (SELECT sample_id FROM n_prior))",
            "n_ord AS (SELECT c.ordinal, min(a.ordinal) AS twin_ordinal, "
            "arg_min(bit_count(xor(a.h, c.h)), a.ordinal) AS dist "
            "FROM (SELECT * FROM ab WHERE ordinal >= $lo) c JOIN ab a ON a.b = c.b AND a.key = c.key "
            "AND a.ordinal < c.ordinal WHERE bit_count(xor(a.h, c.h)) <= $hamming GROUP BY c.ordinal)",
            "n_run AS (SELECT c.sample_id, t.sample_id AS twin, n.dist FROM n_ord n "
            "JOIN keyed c ON c.ordinal = n.ordinal JOIN keyed t ON t.ordinal = n.twin_ordinal)",
        ]
    else:
        ctes += [f"n_prior AS ({none})", f"n_run AS ({none})"]
    return (
        "WITH " + ", ".join(ctes) + " "
        "SELECT k.sample_id, $run AS run_id, 'dedup' AS stage, $version AS stage_version, NULL::DOUBLE AS score, "
        "xp.sample_id IS NULL AND coalesce(xr.rk, 1) = 1 AND np.sample_id IS NULL AND nr.sample_id IS NULL AS keep, "
        "CASE WHEN xp.sample_id IS NOT NULL OR xr.rk > 1 THEN 'duplicate' "
        "WHEN np.sample_id IS NOT NULL OR nr.sample_id IS NOT NULL THEN 'near_duplicate' END AS drop_reason, "
        "CASE WHEN xp.sample_id IS NOT NULL THEN xp.twin || ' in ' || xp.label WHEN xr.rk > 1 THEN xr.twin "
        "WHEN np.sample_id IS NOT NULL THEN np.twin || ' hamming=' || np.dist || ' in ' || np.label "
        "WHEN nr.sample_id IS NOT NULL THEN nr.twin || ' hamming=' || nr.dist END AS detail "
        "FROM keyed k LEFT JOIN x_prior xp USING (sample_id) LEFT JOIN x_run xr USING (sample_id) "
        "LEFT JOIN n_prior np USING (sample_id) LEFT JOIN n_run nr USING (sample_id) "
        "WHERE k.ordinal >= $lo AND k.ordinal < $hi ORDER BY k.ordinal")


def chunk_bounds(wh: Warehouse, staged_ids: list[str], chunk_rows: int = CHUNK_ROWS) -> list[tuple[int, int]]:
    """[lo, hi) ordinal ranges of at most `chunk_rows` of the run's candidates each."""
    files = _existing(staged_ids)
    if not files:
        return []
    starts = wh.sql(f"WITH {_candidates(files)} SELECT ordinal FROM (SELECT ordinal, row_number() OVER "
                    "(ORDER BY ordinal) - 1 AS r FROM cand) WHERE r % $n = 0 ORDER BY ordinal",
                    {"files": files, "n": chunk_rows}).column("ordinal").to_pylist()
    return list(zip(starts, starts[1:] + [2**63 - 1]))


def dedup_decisions(wh: Warehouse, staged_ids: list[str], run_id: str, exact: bool, hamming: int | None,
                    lo: int, hi: int, versions: list[dict] | None = None, version: str = "1") -> pa.Table:
    """`decisions` rows of stage dedup for the run's candidates with ordinal in [lo, hi)."""
    files = _existing(staged_ids)
    prior_sql, params = _prior(versions)
    sql = _dedup_sql(files, exact, hamming, prior_sql, bool(versions))
    params.update({"run": run_id, "version": version, "lo": lo, "hi": hi})
    if hamming is not None and hamming >= 0:
        params["hamming"] = hamming
    if files:
        params["files"] = files
    return wh.sql(sql, params)


def dedup_done(wh: Warehouse, staged_ids: list[str], run_id: str) -> bool:
    """Whether every candidate of the run with stored hashes has its dedup decision (a finished pass)."""
    files = _existing(staged_ids)
    if not files:
        return True
    row = wh.sql(f"WITH {_candidates(files)}, keyed AS (SELECT sample_id FROM cand JOIN samples USING (sample_id)) "
                 "SELECT (SELECT count(*) FROM keyed) AS n, (SELECT count(*) FROM decisions WHERE run_id = $run "
                 "AND stage = 'dedup' AND sample_id IN (SELECT sample_id FROM keyed)) AS done",
                 {"files": files, "run": run_id}).to_pylist()[0]
    return row["done"] >= row["n"]


def keep_fraction_threshold(wh: Warehouse, staged_ids: list[str], run_id: str, model: str, pretrained: str,
                            keep_fraction: float) -> float:
    """The score of the k-th best scored candidate (k = max(1, round(fraction * scored))), inf when none."""
    files = _existing(staged_ids)
    if not files:
        return math.inf
    params = {"files": files, "run": run_id, "model": model, "pretrained": pretrained}
    scored = f"WITH {_candidates(files)}, {_scored()}"
    n = wh.sql(f"{scored} SELECT count(score) AS n FROM scored", params).column("n")[0].as_py()
    if not n:
        return math.inf
    k = max(1, int(round(keep_fraction * n)))  # Python's round, as the in-memory stage
    got = wh.sql(f"{scored} SELECT score FROM scored WHERE score IS NOT NULL ORDER BY score DESC "
                 "LIMIT 1 OFFSET $skip", {**params, "skip": k - 1})
    return float(got.column("score")[0].as_py())


def _scored() -> str:
    return ("scored AS (SELECT c.sample_id, c.ordinal, CASE WHEN isnan(s.score) THEN NULL ELSE s.score END AS score "
            "FROM cand c LEFT JOIN clip_scores s ON s.sample_id = c.sample_id AND s.model = $model "
            "AND s.pretrained = $pretrained WHERE c.sample_id NOT IN (SELECT sample_id FROM decisions "
            "WHERE run_id = $run AND stage = 'dedup' AND NOT keep))")


def clip_filter_decisions(wh: Warehouse, staged_ids: list[str], run_id: str, model: str, pretrained: str,
                          threshold: float, rule: str, lo: int, hi: int, version: str = "1") -> pa.Table:
    """`decisions` rows of stage clip_filter for the candidates dedup kept with ordinal in [lo, hi):
    kept when scored and at or above `threshold`."""
    files = _existing(staged_ids)
    if not files:
        return wh.sql("SELECT NULL::VARCHAR AS sample_id WHERE false")
    return wh.sql(
        f"WITH {_candidates(files)}, {_scored()} "
        "SELECT sample_id, $run AS run_id, 'clip_filter' AS stage, $version AS stage_version, "
        "coalesce(score, 'NaN'::DOUBLE) AS score, coalesce(score >= $threshold, false) AS keep, "
        "CASE WHEN NOT coalesce(score >= $threshold, false) THEN 'clip_score_low' END AS drop_reason, "
        "CASE WHEN NOT coalesce(score >= $threshold, false) THEN printf('%.4f', coalesce(score, 'NaN'::DOUBLE)) "
        "|| ' < ' || $shown || ' (' || $rule || ')' END AS detail "
        "FROM scored WHERE ordinal >= $lo AND ordinal < $hi ORDER BY ordinal",
        {"files": files, "run": run_id, "model": model, "pretrained": pretrained, "threshold": threshold,
         "shown": f"{threshold:.4f}", "rule": rule, "lo": lo, "hi": hi, "version": version})


def met_before(wh: Warehouse, name: str, run_id: str, sample_ids: list[str]) -> dict[str, dict]:
    """sample_id -> {run_id, source_key} of where an earlier finished run of source `name` first met
    it, for those of `sample_ids` one did: what an incremental curation records as duplicates."""
    if not sample_ids:
        return {}
    rows = wh.sql(
        "SELECT o.sample_id, arg_min(o.run_id, (r.started_at, o.run_id, o.ordinal)) AS run_id, "
        "arg_min(o.source_key, (r.started_at, o.run_id, o.ordinal)) AS source_key "
        "FROM occurrences o JOIN runs r USING (run_id) WHERE o.source = $name AND o.run_id <> $run "
        "AND r.status IN ('completed', 'completed_with_warnings') "
        "AND o.sample_id IN (SELECT unnest($ids::VARCHAR[])) GROUP BY o.sample_id",
        {"name": name, "run": run_id, "ids": sample_ids}).to_pylist()
    return {r["sample_id"]: r for r in rows}
