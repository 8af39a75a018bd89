"""Per-write cost as the warehouse grows: shard writes as they are now (ledgered appends, a settle per
run) vs the keyed MERGE every write used before, and the pre-DuckLake catalog; one process.

Writes batches of 1,000 samples + 1,000 decisions + 1,000 CLIP scores (50 batches a run, each run settled
at its end), then reports the median write time of the last 100 batches over the first 100 (goal <= 1.2),
the settle time of the first and last run, and the time of the README's drop-reason query at the end.
The MERGE path and the old catalog (the code of commit a1951c9, read from git history into bench/out/)
run for fewer batches because their cost grows.

    .venv/bin/python bench/warehouse_scaling.py [--batches 10000] [--merge-batches 1000] [--old-batches 0]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "warehouse_scaling"
OLD_COMMIT = "a1951c9"
REASONS = ["too_small", "caption_too_short", "duplicate", "clip_score_low", None, None, None, None]
QUERY = "SELECT drop_reason, count(*) FROM decisions GROUP BY 1 ORDER BY 2 DESC"


def batch(b: int, n: int, rng: np.random.Generator) -> dict[str, pa.Table]:
    ids = [hashlib.sha256(f"{b}-{i}".encode()).hexdigest() for i in range(n)]  # real ids: 64 hex characters
    run = f"run-{b // 50}"
    reasons = [REASONS[k] for k in rng.integers(0, len(REASONS), n)]
    return {
        "samples": pa.table({"sample_id": ids, "ordinal": np.arange(n, dtype=np.int64) + b * 2**32, "modality": ["image"] * n, "source": ["bench"] * n,
                             "source_key": [f"shard-{b}.tar/{i}" for i in range(n)], "text": [f"caption {i}" for i in ids],
                             "width": rng.integers(64, 1024, n).astype("int32"), "height": rng.integers(64, 1024, n)
                             .astype("int32"), "first_run_id": [run] * n}),
        "decisions": pa.table({"sample_id": ids, "run_id": [run] * n, "stage": ["basic"] * n, "stage_version": ["1"] * n,
                               "score": rng.random(n), "keep": [r is None for r in reasons], "drop_reason": reasons}),
        "clip_scores": pa.table({"sample_id": ids, "model": ["ViT-B-32"] * n, "pretrained": ["laion2b"] * n,
                                 "score": rng.random(n), "run_id": [run] * n}),
    }


def old_warehouse_class():
    """The pre-DuckLake Warehouse, loaded from git history (it is no longer in the package)."""
    src = OUT / "old"
    src.mkdir(parents=True, exist_ok=True)
    for name in ("store.py", "schema.sql", "views.sql"):
        text = subprocess.run(["git", "show", f"{OLD_COMMIT}:warehouse/{name}"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
        (src / name).write_text(text)
    spec = importlib.util.spec_from_file_location("old_store", src / "store.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_store"] = module
    spec.loader.exec_module(module)
    return module.Warehouse


def run(label: str, make, write, batches: int, n: int, settle=None) -> dict:
    home = OUT / label
    shutil.rmtree(home, ignore_errors=True)
    wh = make(home)
    rng = np.random.default_rng(0)
    times, settles = [], []
    for b in range(batches):
        data = batch(b, n, rng)
        t = time.perf_counter()
        write(wh, data, b)
        times.append(time.perf_counter() - t)
        if settle and (b % 50 == 49 or b == batches - 1):
            t = time.perf_counter()
            settle(wh, f"run-{b // 50}")
            settles.append(time.perf_counter() - t)
    t = time.perf_counter()
    rows = wh.sql(QUERY).num_rows if hasattr(wh, "sql") else None
    query_s = time.perf_counter() - t
    first, last = statistics.median(times[:100]), statistics.median(times[-100:])
    return {"label": label, "batches": batches, "rows": batches * n, "first100_ms": first * 1000,
            "last100_ms": last * 1000, "ratio": last / first, "query_s": query_s, "groups": rows,
            "total_s": sum(times) + sum(settles), "settle_first_s": settles[0] if settles else None,
            "settle_last_s": settles[-1] if settles else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--merge-batches", type=int, default=1000)
    ap.add_argument("--old-batches", type=int, default=0)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from warehouse import Warehouse

    ours = run("append", Warehouse, lambda wh, d, b: wh.write_many(d, batch=f"run-{b // 50}/prepare/{b}"),
               args.batches, args.n, settle=lambda wh, r: wh.settle(r))
    show(ours, args.n)
    if args.merge_batches:
        merge = run("merge", Warehouse, lambda wh, d, b: wh.write_many(d), args.merge_batches, args.n)
        show(merge, args.n)
        print(f"ratio of last-100 medians, merge/append = {merge['last100_ms'] / ours['last100_ms']:.1f} "
              f"(merge at {merge['rows']:,} rows, append at {ours['rows']:,})")
    if args.old_batches:
        old = run("old-catalog", old_warehouse_class(), lambda wh, d, b: [wh.write(t, v, "r") for t, v in d.items()],
                  args.old_batches, args.n)
        show(old, args.n)


def show(r: dict, n: int) -> None:
    print(f"{r['label']:<12} {r['batches']} batches x {n} rows x 3 tables ({r['rows']:,} decisions): "
          f"median write first 100 {r['first100_ms']:.1f} ms, last 100 {r['last100_ms']:.1f} ms, "
          f"ratio {r['ratio']:.2f}; drop-reason query {r['query_s'] * 1000:.0f} ms; total {r['total_s']:.0f} s"
          + (f"; settle of 50k samples: first run {r['settle_first_s']:.2f} s, last {r['settle_last_s']:.2f} s"
             if r.get("settle_first_s") is not None else ""), flush=True)


if __name__ == "__main__":
    main()
