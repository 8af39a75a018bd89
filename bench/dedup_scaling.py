"""Run-wide dedup at scale: the SQL path (warehouse/dedup_queries.py) at N candidates vs the in-memory
`Dedup` stage (what tasks.curate.dedup_run ran before) at a size it can hold, each in its own process.

Candidates are synthetic stored hashes: random 64-bit phashes, with a planted share of exact copies
(the bytes hash of an earlier sample) and near copies (1-3 bits from an earlier phash), written to
`samples` and to staged (sample_id, ordinal) sidecars as a curate run leaves them.

    .venv/bin/python bench/dedup_scaling.py --n 1000000 --baseline-n 20000

Prints seconds, candidates/s and peak RSS of each path, and ratio = ours/baseline at the baseline size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = "curate-bench-dedup"
SHARD = 10_000


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_run(home: str, n: int, seed: int = 0, copies: float = 0.05) -> list[str]:
    """Write n candidates' hashes to the warehouse and their staged sidecars; returns the sidecars."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmpipe.schema import SHARD_SPAN
    from warehouse import Warehouse

    rng = np.random.default_rng(seed)
    phash = rng.integers(-2**63, 2**63 - 1, size=n, dtype=np.int64)
    sha = np.arange(n, dtype=np.int64)
    k = int(n * copies)
    near_src, near_at = rng.integers(0, n // 2, size=k), rng.integers(n // 2, n, size=k)
    flips = np.zeros(k, dtype=np.int64)
    for _ in range(3):
        flips ^= np.left_shift(np.int64(1), rng.integers(0, 63, size=k).astype(np.int64))
    phash[near_at] = phash[near_src] ^ flips
    exact_src, exact_at = rng.integers(0, n // 2, size=k), rng.integers(n // 2, n, size=k)
    sha[exact_at] = sha[exact_src]
    ids = pa.array([f"{i:064x}" for i in range(n)], pa.string())
    shas = pa.array([f"sha{s:061x}" for s in sha.tolist()], pa.string())
    wh = Warehouse(home)
    step = 250_000
    for lo in range(0, n, step):
        wh.write("samples", pa.table({"sample_id": ids[lo:lo + step], "content_sha256": shas[lo:lo + step],
                                      "phash": pa.array(phash[lo:lo + step])}))
    out = Path(home) / "staging" / RUN
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, lo in enumerate(range(0, n, SHARD)):
        m = min(SHARD, n - lo)
        path = out / f"shard-{s:06d}.ids.parquet"
        pq.write_table(pa.table({"sample_id": ids[lo:lo + m],
                                 "ordinal": pa.array([s * SHARD_SPAN + i for i in range(m)], pa.int64())}), path)
        paths.append(str(path))
    return paths


def run_sql(home: str, sidecars: list[str], write: bool = True) -> dict:
    """The SQL path as tasks.curate.dedup_run runs it: per ordinal range, compute and commit."""
    from warehouse import Warehouse
    from warehouse.dedup_queries import chunk_bounds, dedup_decisions

    wh = Warehouse(home)
    dropped = 0
    for lo, hi in chunk_bounds(wh, sidecars):
        got = dedup_decisions(wh, sidecars, RUN, True, 4, lo, hi)
        if write:
            wh.write("decisions", got, RUN)
        dropped += got.num_rows - sum(got["keep"].to_pylist())
    return {"dropped": dropped}


def run_memory(home: str, sidecars: list[str]) -> dict:
    """The in-memory path (the code tasks.curate.dedup_run ran before): every candidate in one process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmpipe.stages.dedup import Dedup, DedupConfig
    from tasks.record import record_decisions
    from warehouse import Warehouse
    from warehouse.queries import content_keys

    wh = Warehouse(home)
    ids = pa.concat_tables([pq.read_table(p) for p in sidecars])
    ids = ids.group_by("sample_id").aggregate([("ordinal", "min")]).rename_columns(["sample_id", "ordinal"])
    batch = ids.sort_by("ordinal").join(content_keys(wh, ids["sample_id"].to_pylist()), "sample_id")
    n = batch.num_rows
    for col, arr in (("keep", pa.array([True] * n)), ("drop_reason", pa.nulls(n, pa.string())),
                     ("drop_detail", pa.nulls(n, pa.string())), ("drop_stage", pa.nulls(n, pa.string()))):
        batch = batch.append_column(col, arr)
    stage = Dedup(DedupConfig(True, 4))
    out = stage(batch)
    record_decisions(wh, out, [stage], RUN)
    return {"dropped": stage.counts.get("duplicate", 0) + stage.counts.get("near_duplicate", 0)}


def worker(args) -> None:
    import resource

    sys.path.insert(0, str(ROOT))
    from warehouse import Warehouse

    # DuckDB spills under the bench's own folder, not the working directory's .tmp
    Warehouse(args.home).sql(f"SET temp_directory = '{Path(args.home).parent / 'duckdb-spill'}'")
    if args.memory_limit:  # DuckDB's own cap (it spills joins and aggregates past it); this process only
        Warehouse(args.home).sql(f"SET memory_limit = '{args.memory_limit}'")
    if args.worker == "make":
        paths = make_run(args.home, args.n)
        Path(args.home, "sidecars.json").write_text(json.dumps(paths))
        print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        return
    sidecars = json.loads(Path(args.home, "sidecars.json").read_text())
    t0 = time.perf_counter()
    got = run_sql(args.home, sidecars, not args.compute_only) if args.worker == "sql" else \
        run_memory(args.home, sidecars)
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({**got, "seconds": time.perf_counter() - t0, "cpu_s": use.ru_utime + use.ru_stime,
                      "peak_rss_mb": peak_rss_mb()}))


def child(kind: str, home: str, n: int, memory_limit: str | None = None, compute_only: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--home", home, "--n", str(n)]
    cmd += ["--compute-only"] if compute_only else []
    cmd += ["--memory-limit", memory_limit] if memory_limit and kind == "sql" else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--baseline-n", type=int, default=20_000)
    p.add_argument("--worker", choices=["make", "sql", "memory"])
    p.add_argument("--home")
    p.add_argument("--compute-only", action="store_true", help="the SQL path at --n decides without committing")
    p.add_argument("--memory-limit", help="DuckDB memory_limit for the SQL path, e.g. 512MB (default: DuckDB's)")
    args = p.parse_args()
    if args.worker:
        return worker(args)
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="mmpipe-dedup-bench-"))
    small, big = str(tmp / "small"), str(tmp / "big")
    print(f"near radius 4 (5 bands), 5% exact + 5% near copies, shards of {SHARD}, "
          f"DuckDB memory_limit {args.memory_limit or 'default (80% of RAM)'}")
    for home, n in ((small, args.baseline_n), (big, args.n)):
        t0 = time.perf_counter()
        child("make", home, n)
        print(f"wrote {n} candidates' hashes in {time.perf_counter() - t0:.1f} s")
    base = child("memory", small, args.baseline_n)
    # the SQL path on the same run: a fresh copy of the warehouse, so both decide from scratch
    shutil.copytree(small, small + "-sql")
    Path(small + "-sql", "sidecars.json").write_text(
        Path(small, "sidecars.json").read_text().replace(small + "/", small + "-sql/"))
    ours_small = child("sql", small + "-sql", args.baseline_n, args.memory_limit)
    ours_big = child("sql", big, args.n, args.memory_limit, args.compute_only)
    for name, n, r in (("in-memory Dedup", args.baseline_n, base), ("SQL", args.baseline_n, ours_small),
                       ("SQL", args.n, ours_big)):
        print(f"{name:16s} n={n:>9,d}: {r['seconds']:8.1f} s ({r['cpu_s']:6.1f} s CPU)  "
              f"{n / r['seconds']:9.0f} candidates/s  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MiB  dropped {r['dropped']:,d}")
    assert base["dropped"] == ours_small["dropped"], (base, ours_small)
    print(f"ratio = ours/baseline (seconds at n={args.baseline_n:,d}) = {ours_small['seconds'] / base['seconds']:.2f}")
    print(f"peak RSS SQL at n={args.n:,d} / SQL at n={args.baseline_n:,d} = "
          f"{ours_big['peak_rss_mb'] / ours_small['peak_rss_mb']:.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
