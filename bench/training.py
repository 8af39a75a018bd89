"""Contrastive training: our loop vs open_clip_train, and peak RSS at 2k vs 20k samples.

    .venv/bin/python bench/training.py [--model mmpipe-tiny-clip] [--steps 60] [--batch-size 64]

1. Throughput: our loop (mmpipe.train.recipes.train_contrastive) and `open_clip_train.main`
   (through mmpipe.train.open_clip_main, which registers the tiny configs) train the same model
   config on the same WebDataset shards with the same batch size, step count, gradient clipping
   (1.0), fp32 and one data worker, each in its own process. Steady-state samples/s counts the
   steps after the first 10 but the last (both measure a step from the end of the previous one,
   data wait included).
   The two alternate for --rounds rounds, so a change in the machine's load hits both; prints the
   median of the per-round ratios, ratio = ours / open_clip_train. Goal: >= 0.9.
2. Memory: our loop trains the micro model over the same number of samples (one epoch of the
   large set) on a 2k-sample and a 20k-sample dataset, each in its own process (data in the main
   process, so one RSS covers it). Prints ratio = peak(20k) / peak(2k). Goal: <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WARMUP = 10

OURS = r"""
import json, resource, sys, time
from mmpipe.train.recipes import train_contrastive
shards, out, model, steps, batch, workers, samples = json.loads(sys.argv[1])
stamps = []
result = train_contrastive(shards, out, model, steps=steps, samples=samples, batch_size=batch, lr=1e-3,
                           warmup_steps=2, num_workers=workers, checkpoint_every=10**9, progress=False,
                           on_step=lambda step, m: stamps.append(time.perf_counter()))
print(json.dumps({"stamps": stamps, "steps": result["step"], "loss": result["history"][-1]["contrastive_loss"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


def ours(shards: list[str], out: str, model: str, steps: int, batch: int, workers: int,
         samples: int | None = None) -> dict:
    args = json.dumps([shards, out, model, steps, batch, workers, samples])
    run = subprocess.run([sys.executable, "-c", OURS, args], env=_env(), capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def open_clip_train(pattern: str, logs: str, model: str, steps: int, batch: int, workers: int) -> dict:
    cmd = [sys.executable, "-m", "mmpipe.train.open_clip_main", "--model", model, "--train-data", pattern,
           "--dataset-type", "webdataset", "--train-num-samples", str(steps * batch), "--batch-size", str(batch),
           "--epochs", "1", "--workers", str(workers), "--precision", "fp32", "--device", "cpu", "--lr", "1e-3",
           "--warmup", "2", "--logs", logs, "--name", "bench", "--seed", "0", "--log-every-n-steps", "1",
           "--save-frequency", "0", "--grad-clip-norm", "1.0"]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    log = (Path(logs) / "bench" / "out.log").read_text()
    # per step: "Batch (t): <avg>, <batch / this step's time>/s"
    rates = [float(x) for x in re.findall(r"Batch \(t\): [\d.]+, ([\d.]+)/s", log)]
    loss = float(re.findall(r"Contrastive_loss: ([\d.]+)", log)[-1])
    return {"rates": rates, "loss": loss}


def throughput(args, shards: list[str], pattern: str, root: str) -> None:
    print(f"model {args.model}, batch {args.batch_size}, {args.steps} steps, {args.workers} data worker(s), "
          f"fp32 CPU ({os.cpu_count()} cores), {args.rounds} rounds alternating the two")
    ratios = []
    for r in range(args.rounds):
        a = ours(shards, f"{root}/ours-{r}", args.model, args.steps, args.batch_size, args.workers)
        # the last step of each is left out: ours writes its final checkpoint inside it
        stamps = a["stamps"][:-1]
        ours_sps = (len(stamps) - WARMUP) * args.batch_size / (stamps[-1] - stamps[WARMUP - 1])
        b = open_clip_train(pattern, f"{root}/oct-{r}", args.model, args.steps, args.batch_size, args.workers)
        times = [args.batch_size / rate for rate in b["rates"][WARMUP:-1]]
        theirs_sps = len(times) * args.batch_size / sum(times)
        ratios.append(ours_sps / theirs_sps)
        print(f"  round {r + 1}: ours {ours_sps:7.1f} samples/s (final loss {a['loss']:.3f}), open_clip_train "
              f"{theirs_sps:7.1f} samples/s (final loss {b['loss']:.3f}, {len(b['rates'])} steps)  "
              f"ratio {ours_sps / theirs_sps:.2f}")
    print(f"  ratio = ours / open_clip_train = {statistics.median(ratios):.2f} (median of the rounds)")


def memory(args, root: str) -> None:
    from mmpipe.train.synthetic import write_shape_shards

    small = write_shape_shards(f"{root}/small", args.small, shard_size=500, side=32)
    large = write_shape_shards(f"{root}/large", args.large, shard_size=500, side=32)
    runs = {}
    for name, shards in (("small", small), ("large", large)):
        t = time.perf_counter()
        runs[name] = ours(shards, f"{root}/mem-{name}", "mmpipe-micro-clip", 0, 64, 0, samples=args.large)
        runs[name]["seconds"] = time.perf_counter() - t
    for name, n in (("small", args.small), ("large", args.large)):
        r = runs[name]
        print(f"  dataset {n:>6} samples: peak RSS {r['peak_rss_mb']:7.1f} MB  ({r['steps']} steps x 64, "
              f"{r['seconds']:.0f} s)")
    print(f"  ratio = peak({args.large}) / peak({args.small}) = "
          f"{runs['large']['peak_rss_mb'] / runs['small']['peak_rss_mb']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mmpipe-tiny-clip")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (the machine's load varies)")
    ap.add_argument("--samples", type=int, default=2000, help="dataset size for the throughput runs")
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large", type=int, default=20000)
    args = ap.parse_args()
    from mmpipe.models.clip import TINY_MODEL
    from mmpipe.train.synthetic import write_shape_shards

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        side = 64 if args.model == TINY_MODEL else 32
        shards = write_shape_shards(f"{root}/data", args.samples, shard_size=250, side=side)
        pattern = str(Path(shards[0]).parent / f"shapes-{{000000..{len(shards) - 1:06d}}}.tar")
        print("1. throughput, same config, shards, batch size and steps")
        throughput(args, shards, pattern, root)
        print("2. peak RSS of our training (micro model, one epoch of the large set)")
        memory(args, root)
    print(f"(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
