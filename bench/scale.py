"""Scale: N synthetic image-text pairs curated through the real curate flow, then the README's query
and the report on the warehouse it leaves.

    .venv/bin/python bench/scale.py --n 1000000 [--shard-size 1000] [--clip-model none|tiny] [--workers 2]

Generates N small JPEGs (64 px, each a different random colour field; a known 2% exact copies under
another caption and 2% near copies: the same picture re-encoded at another size), as WebDataset shards
(generation is not timed), curates them with `curate_flow` under a temporary Prefect API, and prints:
per-stage throughput from the flow's own task runs; per-shard write time (the shard pass's
`write_many`) for the first and last 10% of shards and their ratio (goal <= 1.2); samples/s end to end
(goal >= 1,000/s with --clip-model none); peak RSS of the process; the drop-reason counts against the
planted copies; then the README query `SELECT drop_reason, count(*) FROM outcomes GROUP BY 1` (goal < 2 s)
and `mmpipe report` in a child process (goal < 30 s, peak RSS < 1 GB).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

WORDS = ("red green blue small large round square striped dotted bright dark soft warm cold field pattern "
         "tile cloud wave grid glow mist stone leaf").split()
EXACT, NEAR = 0.02, 0.02


def _image(rng: np.random.Generator, size: int = 64) -> bytes:
    from PIL import Image

    grid = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    img = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _resized(content: bytes) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(content)).convert("RGB").resize((72, 72), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, 4))


def write_shard(args: tuple[str, int, int, int]) -> dict[str, int]:
    """One shard: fresh pictures, plus exact and near copies of this shard's earlier pictures."""
    import webdataset as wds

    path, index, size, seed = args
    rng = np.random.default_rng(seed + index)
    made: list[bytes] = []
    counts = {"fresh": 0, "exact": 0, "near": 0}
    with wds.TarWriter(path) as sink:
        for i in range(size):
            roll = rng.random()
            if made and roll < EXACT:
                content, kind = made[int(rng.integers(len(made)))], "exact"
            elif made and roll < EXACT + NEAR:
                content, kind = _resized(made[int(rng.integers(len(made)))]), "near"
            else:
                content, kind = _image(rng), "fresh"
                made.append(content)
            counts[kind] += 1
            sink.write({"__key__": f"{index:06d}{i:05d}", "jpg": content, "txt": _caption(rng)})
    return counts


def generate(out: Path, n: int, shard_size: int, workers: int, seed: int = 0) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    shards = [(str(out / f"shard-{i:06d}.tar"), i, min(shard_size, n - i * shard_size), seed)
              for i in range(-(-n // shard_size))]
    record = out / "planted.json"
    if record.exists() and all(Path(s[0]).exists() for s in shards):
        return json.loads(record.read_text())
    totals = {"fresh": 0, "exact": 0, "near": 0}
    with ProcessPoolExecutor(workers) as pool:
        for got in pool.map(write_shard, shards, chunksize=8):
            for k, v in got.items():
                totals[k] += v
    record.write_text(json.dumps(totals))
    return totals


class WriteTimer:
    """Times every batch write of the shard pass (Warehouse.write_many with a `prepare/` batch key)."""

    def __init__(self):
        from warehouse import Warehouse

        self.times: dict[int, float] = {}
        original = Warehouse.write_many

        def timed(wh, tables, message=None, batch=None):
            t0 = time.perf_counter()
            try:
                return original(wh, tables, message, batch)
            finally:
                if batch and "/prepare/" in batch:
                    self.times[int(batch.split("/")[2])] = time.perf_counter() - t0

        Warehouse.write_many = timed

    def ratio(self) -> tuple[float, float, float]:
        ordered = [self.times[k] for k in sorted(self.times)]
        tenth = max(1, len(ordered) // 10)
        first, last = statistics.median(ordered[:tenth]), statistics.median(ordered[-tenth:])
        return first, last, last / first


def stage_spans(flow_run_id: str) -> dict[str, tuple[int, float]]:
    """Task-run name prefix -> (task runs, wall seconds from the first start to the last end)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as client:
            runs, offset = [], 0
            while True:
                got = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                                  offset=offset, limit=200)
                runs += got
                offset += len(got)
                if len(got) < 200:
                    return runs

    spans: dict[str, list] = {}
    for r in asyncio.run(read()):
        if r.start_time is None or r.end_time is None:
            continue
        head, _, tail = r.name.rpartition("-")
        stage = head if tail.isdigit() or (len(tail) == 3 and all(c in "0123456789abcdef" for c in tail)) else r.name
        stage = stage.split("-/")[0]
        s = spans.setdefault(stage, [0, r.start_time, r.end_time])
        s[0] += 1
        s[1], s[2] = min(s[1], r.start_time), max(s[2], r.end_time)
    return {k: (v[0], (v[2] - v[1]).total_seconds()) for k, v in spans.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--clip-model", default="none", help="none, or tiny (mmpipe-tiny-clip, random weights)")
    parser.add_argument("--workers", type=int, default=2, help="processes generating the shards")
    parser.add_argument("--data", default=None, help="where the shards go (reused when present)")
    parser.add_argument("--home", default=None)
    parser.add_argument("--generate-only", action="store_true", help="write the shards and stop")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mmpipe-scale-"))
    data = Path(args.data) if args.data else root / "shards"
    home = Path(args.home) if args.home else root / "home"
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    t0 = time.perf_counter()
    planted = generate(data, args.n, args.shard_size, args.workers)
    print(f"generated {args.n:,} samples in {len(list(data.glob('*.tar')))} shards in "
          f"{time.perf_counter() - t0:.0f} s (not timed below): {planted}", flush=True)
    if args.generate_only:
        return

    from mmpipe.home import configure_prefect

    configure_prefect(os.environ["PREFECT_HOME"])
    from prefect.testing.utilities import prefect_test_harness

    from flows.curate import curate_flow
    from flows.runners import short_lived_api

    timer = WriteTimer()
    clip = {"clip_model": "none"} if args.clip_model == "none" else {
        "clip_model": "mmpipe-tiny-clip", "clip_pretrained": None, "keep_fraction": 0.9, "clip_workers": 0}
    with prefect_test_harness(server_startup_timeout=300), short_lived_api():
        t0 = time.perf_counter()
        pattern = "shard-{000000.." + f"{-(-args.n // args.shard_size) - 1:06d}" + "}.tar"
        state = curate_flow(source=str(data / pattern),
                            name="scale", home=str(home), kind="webdataset", shard_size=args.shard_size, min_side=32,
                            return_state=True, **clip)
        wall = time.perf_counter() - t0
        result = state.result()
        spans = stage_spans(str(state.state_details.flow_run_id))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\ncurated {result['ingested']:,} samples in {wall:.0f} s: {result['ingested'] / wall:,.0f} samples/s "
          f"end to end (goal >= 1,000/s with --clip-model none); peak RSS {peak:,.0f} MB")
    print("outcomes:", json.dumps(result["outcomes"]), f"(planted: {planted})")
    print("\nstage                          task runs   wall s   samples/s")
    for stage, (count, secs) in sorted(spans.items(), key=lambda kv: -kv[1][1]):
        print(f"{stage[:30]:30s} {count:9d} {secs:8.1f} {args.n / secs if secs else 0:11,.0f}")
    first, last, ratio = timer.ratio()
    print(f"\nshard-pass write (median): first 10% {first * 1000:.0f} ms, last 10% {last * 1000:.0f} ms, "
          f"ratio last/first = {ratio:.2f} (goal <= 1.2) over {len(timer.times)} shards")

    from warehouse import Warehouse

    wh = Warehouse(home, read_only=True)
    t0 = time.perf_counter()
    rows = wh.query_readonly("SELECT drop_reason, count(*) AS n FROM outcomes GROUP BY 1 ORDER BY 2 DESC").to_pylist()
    print(f"\nREADME query over {args.n:,} samples: {time.perf_counter() - t0:.2f} s (goal < 2 s): {rows}")
    # the report in a fresh process of its own, which reports its own peak RSS
    child = ("import resource, sys; from mmpipe.cli import app\n"
             "try:\n    app(['report', 'scale', '--home', sys.argv[1]])\n"
             "except SystemExit as e:\n    code = e.code\n"
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
             "print('peak_rss_mb', int(hwm) / 1024)\n")  # VmHWM: ru_maxrss survives exec on Linux
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", child, str(home)], capture_output=True, text=True)
    took = time.perf_counter() - t0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    rss = next((float(x.split()[1]) for x in lines if x.startswith("peak_rss_mb")), float("nan"))
    print(f"mmpipe report: {took:.1f} s (goal < 30 s), peak RSS {rss:,.0f} MB (goal < 1,024 MB): "
          f"{[x for x in lines if not x.startswith('peak_rss_mb')][-1:]}")
    print(f"\nhome: {home} ({sum(f.stat().st_size for f in home.rglob('*') if f.is_file()) / 1e6:,.0f} MB)")


if __name__ == "__main__":
    main()
