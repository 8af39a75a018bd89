"""Per-write cost as the warehouse grows: the DuckLake warehouse vs the pre-DuckLake catalog, one run.

Appends batches of 1,000 samples + 1,000 decisions + 1,000 CLIP scores (one run each), then reports
the median write time of the last 100 batches over the first 100 (goal <= 1.5x) and the time of the
README's drop-reason query at the end (goal < 1 s at 1M decisions). The old catalog is the code of
commit a1951c9 (read from git history into bench/out/), run for fewer batches because its cost grows.

    .venv/bin/python bench/warehouse_scaling.py [--batches 1000] [--old-batches 200]
"""

from __future__ import annotations

import argparse
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
    ids = [f"{b:06d}-{i:04d}" for i in range(n)]
    run = f"run-{b // 50}"
    reasons = [REASONS[k] for k in rng.integers(0, len(REASONS), n)]
    return {
        "samples": pa.table({"sample_id": ids, "modality": ["image"] * n, "source": ["bench"] * n,
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


def run(label: str, make, write, batches: int, n: int) -> dict:
    home = OUT / label
    shutil.rmtree(home, ignore_errors=True)
    wh = make(home)
    rng = np.random.default_rng(0)
    times = []
    for b in range(batches):
        data = batch(b, n, rng)
        t = time.perf_counter()
        write(wh, data)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    rows = wh.sql(QUERY).num_rows if hasattr(wh, "sql") else None
    query_s = time.perf_counter() - t
    first, last = statistics.median(times[:100]), statistics.median(times[-100:])
    return {"label": label, "batches": batches, "rows": batches * n, "first100_ms": first * 1000,
            "last100_ms": last * 1000, "ratio": last / first, "query_s": query_s, "groups": rows,
            "total_s": sum(times)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--old-batches", type=int, default=200)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from warehouse import Warehouse

    Old = old_warehouse_class()
    results = [run("ducklake", Warehouse, lambda wh, d: wh.write_many(d), args.batches, args.n)]
    show(results[0], args.n)
    results.append(run("old-catalog", Old, lambda wh, d: [wh.write(t, v, "r") for t, v in d.items()],
                       args.old_batches, args.n))
    show(results[1], args.n)
    print(f"ratio of last-100 medians, old/ducklake = {results[1]['last100_ms'] / results[0]['last100_ms']:.1f} "
          f"(old at {results[1]['rows']:,} rows, ducklake at {results[0]['rows']:,})")


def show(r: dict, n: int) -> None:
    print(f"{r['label']:<12} {r['batches']} batches x {n} rows x 3 tables ({r['rows']:,} decisions): "
          f"median write first 100 {r['first100_ms']:.1f} ms, last 100 {r['last100_ms']:.1f} ms, "
          f"ratio {r['ratio']:.2f}; drop-reason query {r['query_s'] * 1000:.0f} ms; total {r['total_s']:.0f} s",
          flush=True)


if __name__ == "__main__":
    main()
