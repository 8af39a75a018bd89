"""Orchestration overhead: curation of N synthetic samples through Prefect (local threads, and a Dask
LocalCluster) against the same task bodies called directly (no Prefect), on the same data, in one run.

    .venv/bin/python bench/orchestration.py [--n 5000] [--shard-size 500] [--dask-workers 2] [--rounds 2]

Every path curates the same shards into a fresh home with the same stages (decode, basic filters,
dedup, tiny CLIP with random weights, CLIP filter, export, publish); loaded models are dropped between
paths. Prints wall seconds per path and round (with the CPU seconds of this process, Prefect's API
server and the Dask workers), the direct path's stages, the fixed costs (Prefect's temporary server,
an empty Dask flow) and ratio = prefect / direct over the best round of each. Goal: <= 1.10. A
further path runs the local flow with a `gpu` concurrency limit on the server (as `mmpipe deploy`
makes one), so the model tasks keep their `gpu` tag and ask for a slot each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLIP = {"clip_model": "mmpipe-tiny-clip", "clip_pretrained": None, "keep_fraction": 0.8, "clip_workers": 0}
FILTERS = {"min_side": 64}
# (label, runner, on the Dask workers, a `gpu` concurrency limit exists)
PATHS = (("prefect local", "local", False, False), ("prefect dask", "dask", True, False),
         ("prefect local, gpu limit", "local", False, True))


def direct(source: str, home: str, shard_size: int) -> tuple[float, dict, dict]:
    """The curate flow's recipe with each task's body (`.fn`) called in plain Python, same thread count,
    down to the report page the flow writes last."""
    from mmpipe.home import stored_path
    from mmpipe.schema import MAX_PIXELS
    from mmpipe.sources import SourceSpec
    from mmpipe.stages.basic import BasicFilterConfig
    from mmpipe.stages.clip_filter import ClipFilterConfig
    from mmpipe.stages.clip_score import ClipScoreConfig
    from mmpipe.stages.decode import DecodeConfig
    from mmpipe.stages.dedup import DedupConfig
    from mmpipe.sources import plan_shards
    from tasks.clip import ensure_clip, score_staged_shard
    from tasks.curate import clip_filter_run, dedup_run, prepare_shard, remove_staging, staged_path, staging_dir
    from tasks.dataset import choose_version, export_staged_shard, plan_export, publish_dataset
    from tasks.record import settle_samples
    from warehouse import Warehouse
    from mmpipe.report import report_dir, write_report
    from warehouse.queries import outcome_counts, score_quantiles
    from warehouse.report_queries import report_inputs

    stages: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        stages[name] = now - since
        return now

    wh = Warehouse(home)
    run_id = "direct-run"
    wh.record_run(run_id, "curate", "running", params={}, flow_run_id="", code_version="", warnings=[])
    spec = SourceSpec(source, shard_size=shard_size)
    config = ClipScoreConfig(CLIP["clip_model"], CLIP["clip_pretrained"], 128, CLIP["clip_workers"], None, MAX_PIXELS)
    key = stored_path(home, CLIP["clip_pretrained"])
    ensure_clip.fn(config)
    t = lap("load CLIP", t0)
    shards = plan_shards(spec, staging_dir(home, run_id) / "input")
    basic = BasicFilterConfig(2, 5, FILTERS["min_side"], 3.0, None)
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(lambda s: prepare_shard.fn(spec, s, run_id, home, "bench", DecodeConfig(max_pixels=MAX_PIXELS),
                                                 basic), shards))
        t = lap("read+decode+filter+record", t)
        staged = [str(staged_path(home, run_id, s.index)) for s in shards]
        settle_samples.fn(home, run_id)
        dedup_run.fn(home, run_id, staged, DedupConfig(True, 4))
        t = lap("dedup", t)
        n_scored = sum(score_staged_shard.fn(home, run_id, p, config, key) for p in staged)
        t = lap("CLIP score", t)
        clip_filter_run.fn(home, run_id, staged, ClipFilterConfig(None, CLIP["keep_fraction"]), CLIP["clip_model"], key)
        t = lap("CLIP filter", t)
        version = choose_version.fn(home, "bench", run_id)
        out_dir = str(Path(home) / "datasets" / "bench" / version)
        plan = plan_export.fn(home, run_id, CLIP["clip_model"], key)
        sizes = dict(pool.map(lambda p: export_staged_shard.fn(home, run_id, p, out_dir, CLIP["clip_model"], key,
                                                               MAX_PIXELS, plan), staged))
    dataset = publish_dataset.fn(home, run_id, "bench", version, out_dir, sizes, {}, {"model": CLIP["clip_model"],
                                                                                     "pretrained": key}, plan=plan)
    counts = outcome_counts(wh, run_id)
    score_quantiles(wh, run_id, CLIP["clip_model"], key or "")  # what announce_dataset reports
    remove_staging.fn(home, run_id)
    wh.record_run(run_id, "curate", "completed", warnings=[])
    t = lap("export+publish", t)
    inputs = report_inputs(wh, f"bench@{version}")  # the flow's last step: the report page
    write_report(inputs, report_dir(home, "bench", version))
    lap("report", t)
    return time.perf_counter() - t0, {"kept": counts.get("kept", 0), "scored": n_scored,
                                      "n_samples": dataset["n_samples"]}, stages


def through_prefect(source: str, home: str, shard_size: int, runner: str, workers: int | None,
                    gpu_limit: bool = False) -> tuple[float, dict]:
    """The curate flow; gpu_limit=True runs it with a `gpu` concurrency limit (of 100 slots, so it never
    waits) on the server: the model tasks then keep their tag and ask the API for a slot each."""
    from prefect.client.orchestration import get_client

    from flows.curate import curate_flow
    from flows.runners import run_with

    if gpu_limit:
        with get_client(sync_client=True) as client:
            client.create_concurrency_limit(tag="gpu", concurrency_limit=100)
    try:
        t = time.perf_counter()
        r = run_with(curate_flow, runner, workers=workers, source=source, name="bench", home=home,
                     shard_size=shard_size, **FILTERS, **CLIP)
        seconds = time.perf_counter() - t
    finally:
        if gpu_limit:
            with get_client(sync_client=True) as client:
                client.delete_concurrency_limit_by_tag("gpu")
    return seconds, {"kept": r["kept"], "scored": r["n_scored"], "n_samples": r["dataset"]["n_samples"]}


def empty_flows(workers: int) -> tuple[float, float, float]:
    """Seconds of an empty flow with 2 trivial tasks: locally (starting Prefect's temporary server the
    first time, then again with it up, best of 3), and on a fresh Dask LocalCluster (start, workers importing
    Prefect, teardown)."""
    from prefect import flow, task

    from flows.runners import run_with

    @task
    def nothing(i: int) -> int:
        return i

    @flow(name="empty")
    def empty() -> list[int]:
        return nothing.map([0, 1]).result()

    t = time.perf_counter()
    run_with(empty, "local")
    t1 = time.perf_counter()
    again = []
    for _ in range(3):  # the server is up: what any flow run costs (best of 3; the first drains the events
        s = time.perf_counter()  # of the server's start-up)
        run_with(empty, "local")
        again.append(time.perf_counter() - s)
    t2 = time.perf_counter()
    run_with(empty, "dask", workers=workers)
    return t1 - t, min(again), time.perf_counter() - t2


def _server_cpu() -> float:
    """CPU seconds used so far by our child processes running Prefect's temporary API server (uvicorn)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and b"uvicorn" in cmd:
            total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _cpu() -> tuple[float, float, float]:
    """CPU seconds of this process, of the API server, and of finished child processes (Dask workers)."""
    t = os.times()
    return t.user + t.system, _server_cpu(), t.children_user + t.children_system


def _cpu_note(before: tuple[float, float, float]) -> str:
    used = [now - then for now, then in zip(_cpu(), before)]
    workers = f", Dask workers {used[2]:.1f}s" if used[2] > 0.05 else ""
    return f"[cpu: this process {used[0]:.1f}s, API server {used[1]:.1f}s{workers}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="Each path this many times; the best counts.")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="mmpipe-bench-orch-")
    os.environ["PREFECT_HOME"] = f"{root}/prefect"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    os.environ.pop("PREFECT_API_URL", None)  # Prefect's temporary server, as the command line uses it
    import flows  # noqa: F401  (offline Prefect settings)
    from flows.runners import short_lived_api

    # As the command line runs flows on its private server: no heartbeats (held until the process ends).
    settings = contextlib.ExitStack()
    settings.enter_context(short_lived_api())
    from mmpipe.demo.shapes import write_shapes
    from mmpipe.models import cache
    import open_clip  # noqa: F401  (imported before any timing: every path then pays only its model loads)

    shapes = write_shapes(f"{root}/data", n=args.n, n_seed=8, n_holdout=8, shard_size=args.shard_size)
    print(f"{args.n} synthetic pairs in {len(list(Path(shapes.pattern).parent.glob('*.tar')))} shards; "
          f"{os.cpu_count()} CPU cores; tiny CLIP (random weights) on cpu")
    server_s, empty_s, dask_fixed_s = empty_flows(args.dask_workers)
    print(f"fixed: Prefect temporary server + first flow {server_s:.1f}s; an empty flow {empty_s:.2f}s; empty flow on "
          f"a fresh Dask LocalCluster ({args.dask_workers} workers) {dask_fixed_s:.1f}s")

    best: dict[str, float] = {}
    for round_ in range(1, args.rounds + 1):  # round 1 also warms torch's kernels and the page cache
        print(f"round {round_}")
        cache.clear()
        before = _cpu()
        seconds, facts, stages = direct(shapes.pattern, f"{root}/r{round_}-direct", args.shard_size)
        best["direct"] = min(best.get("direct", seconds), seconds)
        print(f"  direct (no Prefect)      {seconds:6.1f}s  {_cpu_note(before)}  {facts}")
        print("    " + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()))
        for path, runner, workers, tag in PATHS:
            cache.clear()
            before = _cpu()
            seconds, facts = through_prefect(shapes.pattern, f"{root}/r{round_}-{path}", args.shard_size, runner,
                                             args.dask_workers if workers else None, tag)
            best[path] = min(best.get(path, seconds), seconds)
            print(f"  {path:24s} {seconds:6.1f}s  {_cpu_note(before)}  {facts}")
    print(f"best of {args.rounds}: " + ", ".join(f"{k} {v:.1f}s" for k, v in best.items()))
    for path, *_ in PATHS:
        print(f"ratio = {path} / direct = {best[path] / best['direct']:.3f}")

if __name__ == "__main__":  # Dask's worker processes import this module: start nothing there
    main()
