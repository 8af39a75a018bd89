"""Peak RSS of the curate flow at 2k vs 20k samples (same config): streaming keeps memory flat.

    .venv/bin/python bench/memory_scaling.py [--small 2000] [--large 20000]

Each size is written by one process and curated by another (its own ephemeral Prefect server) with
the tiny CLIP, which reports its peak RSS; prints ratio = peak(large) / peak(small). Goal: <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# The data is written by one process and curated by another, so the peak is the curation's alone
# (generating the synthetic set holds every image in memory).
WRITE = r"""
import sys
from mmpipe.demo.shapes import write_shapes
print(write_shapes(sys.argv[2] + "/data", n=int(sys.argv[1]), n_seed=8, n_holdout=8, shard_size=500).pattern)
"""
CHILD = r"""
import json, resource, sys, time
from flows.curate import curate_flow
n, root, pattern = int(sys.argv[1]), sys.argv[2], sys.argv[3]
t = time.perf_counter()
r = curate_flow(pattern, "mem", home=root + "/home", min_side=64, clip_model="mmpipe-tiny-clip",
                clip_pretrained=None, keep_fraction=0.8, clip_workers=0)
print(json.dumps({"n": n, "seconds": time.perf_counter() - t, "kept": r["kept"], "ingested": r["ingested"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(n: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_LOGGING_LEVEL="ERROR", MMPIPE_HOME=root + "/home", HF_HUB_OFFLINE="1")
        data = subprocess.run([sys.executable, "-c", WRITE, str(n), root], env=env, capture_output=True, text=True)
        if data.returncode:
            raise SystemExit(data.stderr[-3000:])
        pattern = data.stdout.strip().splitlines()[-1]
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), root, pattern], env=env, capture_output=True,
                             text=True)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large", type=int, default=20000)
    args = ap.parse_args()
    t = time.perf_counter()
    small, large = run(args.small), run(args.large)
    for r in (small, large):
        print(f"n={r['n']:>6}  peak RSS {r['peak_rss_mb']:7.1f} MB  {r['seconds']:6.1f} s  "
              f"({r['ingested']} ingested, {r['kept']} kept)")
    print(f"ratio = peak({args.large}) / peak({args.small}) = {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}"
          f"  (total {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
