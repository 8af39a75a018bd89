"""Report timing on the demo's data, and what capturing previews adds to a curation shard.

    .venv/bin/python bench/report.py [--home mmpipe-data] [--dataset demo-shapes] [--repeat 3]

(1) `mmpipe report NAME` end to end (a fresh process: imports, read-only warehouse, queries, plots,
page), its query and render parts in this process, for each dataset version of the home; ratio =
command / the 10 s the issue allows. (2) On the demo's shapes pool: the shard stages (decode +
basic filters) vs the previews made for the same shard; ratio = previews / stages.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 10.0


def time_command(home: Path, spec: str, out: Path, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mmpipe.cli", "--home", str(home), "report", spec, "--output", str(out)],
                       check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def time_parts(home: Path, spec: str, out: Path) -> tuple[float, float]:
    from mmpipe.report import write_report
    from warehouse import Warehouse
    from warehouse.report_queries import report_inputs

    wh = Warehouse(home, create=False, read_only=True)
    start = time.perf_counter()
    inputs = report_inputs(wh, spec)
    mid = time.perf_counter()
    write_report(inputs, out)
    return mid - start, time.perf_counter() - mid


def preview_cost(home: Path) -> None:
    from mmpipe.report.previews import IMAGES_PER_SHARD, image_previews
    from mmpipe.sources import SourceSpec, plan_shards, read_shard
    from mmpipe.stages.basic import BasicFilter, BasicFilterConfig
    from mmpipe.stages.decode import DecodeConfig, DecodeImages

    pool = sorted((home / "demo" / "shapes" / "pool").glob("*.tar"))
    if not pool:
        print("(no demo shapes pool in this home: preview cost not measured)")
        return
    spec = SourceSpec(str(pool[0]))
    shard = plan_shards(spec, Path(tempfile.mkdtemp()))[0]
    batch, _ = read_shard(spec, shard, "bench")
    stages = [DecodeImages(DecodeConfig()), BasicFilter(BasicFilterConfig(min_side=64))]
    start = time.perf_counter()
    for stage in stages:
        batch = stage(batch)
    t_stages = time.perf_counter() - start
    start = time.perf_counter()
    previews = image_previews(batch, "bench", IMAGES_PER_SHARD)
    t_prev = time.perf_counter() - start
    size = sum(len(d) for d in previews["data"].to_pylist())
    print(f"shard {pool[0].name}: {batch.num_rows} samples; decode + basic filters {t_stages * 1000:.0f} ms; "
          f"{previews.num_rows} previews ({size / 1024:.0f} KiB) {t_prev * 1000:.0f} ms")
    print(f"ratio = previews/stages = {t_prev / t_stages:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default="mmpipe-data")
    ap.add_argument("--dataset", action="append", help="NAME[@V] (default: every version in the home)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    home = Path(args.home).resolve()
    if not (home / "lake").is_dir():
        sys.exit(f"no warehouse at {home}: run `make demo` first, or pass --home")
    from warehouse import Warehouse

    wh = Warehouse(home, create=False, read_only=True)
    specs = args.dataset or [f"{r['name']}@{r['version']}" for r in
                             wh.sql("SELECT name, version FROM datasets ORDER BY created_at").to_pylist()]
    out = Path(tempfile.mkdtemp(prefix="mmpipe-bench-report-"))
    for spec in specs:
        query_s, render_s = time_parts(home, spec, out / "parts")
        command_s = time_command(home, spec, out / "cmd", args.repeat)
        print(f"{spec:<22} queries {query_s:5.2f} s  render {render_s:5.2f} s  `mmpipe report` {command_s:5.2f} s "
              f"(median of {args.repeat})  ratio = command/{BUDGET_S:.0f} s = {command_s / BUDGET_S:.2f}")
    preview_cost(home)


if __name__ == "__main__":
    main()
