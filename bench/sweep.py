"""A 4-setting filter sweep against 4 separate curate+train runs on the same data, in one run.

    .venv/bin/python bench/sweep.py [--n 3000] [--samples-seen 3200] [--fractions 1.0,0.8,0.6,0.4]
                                    [--filter-model ViT-B-32 | mmpipe-tiny-clip]

Both paths score the same pool with the same filter CLIP (by default ViT-B-32, the production filter's
architecture, with random weights: nothing is downloaded; or the tiny config, seeded), keep
the same fractions, train the same recipe (tiny contrastive, same samples seen) and evaluate on the
same held-out set. The sweep curates and scores the pool once and derives each setting's version
from the stored scores; the baseline is what people do by hand: one `curate --keep-fraction F` plus
one `train contrastive` per setting, each in its own home. Prints wall seconds per path, the time
spent scoring and training, and ratio = separate / sweep (goal >= 2).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--samples-seen", type=int, default=3200)
    ap.add_argument("--fractions", default="1.0,0.8,0.6,0.4")
    ap.add_argument("--filter-model", default="ViT-B-32", help="open_clip config that scores the pool; "
                    "mmpipe-tiny-clip for the trained model's own tiny config")
    args = ap.parse_args()
    fractions = [float(x) for x in args.fractions.split(",")]
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    from mmpipe.home import configure_prefect

    configure_prefect(root / "prefect-home")
    import open_clip
    import torch
    from prefect.testing.utilities import prefect_test_harness
    from safetensors.torch import save_file

    from flows.curate import curate_flow
    from flows.sweep import sweep_flow
    from flows.train import train_contrastive_flow
    from mmpipe.demo.shapes import write_shapes
    from mmpipe.models.clip import TINY_MODEL, register_configs

    shapes = write_shapes(root / "data", n=args.n, n_seed=10, n_holdout=200, shard_size=500)
    register_configs()
    torch.manual_seed(0)
    clip = open_clip.create_model(TINY_MODEL, pretrained=None, pretrained_text=False)
    ckpt = root / "tiny.safetensors"
    save_file({k: v.contiguous().clone() for k, v in clip.state_dict().items()}, str(ckpt))
    # Random weights either way: the tiny one from a seeded checkpoint, a production config built bare.
    filter_model, filter_weights = (TINY_MODEL, str(ckpt)) if args.filter_model == TINY_MODEL else (args.filter_model, None)
    train = {"samples": args.samples_seen, "batch_size": 64, "lr": 3e-3}
    print(f"{args.n} candidates, {len(fractions)} settings {fractions}, {args.samples_seen} samples seen each, "
          f"{os.cpu_count()} CPU cores; filter {filter_model} (random weights), trained {TINY_MODEL}")
    with prefect_test_harness(server_startup_timeout=180):
        home = str(root / "sweep")
        curate_flow(str(shapes.holdout_shard), "heldout", home=home, min_side=64, clip_model="none")
        t = time.perf_counter()
        result = sweep_flow(shapes.pattern, "swept", "heldout", home=home, keep_fractions=fractions,
                            clip_models=[[filter_model, filter_weights]], samples_seen=args.samples_seen,
                            batch_size=64, lr=3e-3, curate={"min_side": 64})
        sweep_s = time.perf_counter() - t
        print(f"sweep      {sweep_s:7.1f}s  " + ", ".join(
            f"{r['setting']}: {r['n_samples']} samples R@5 {r['metrics']['mean_R@5']:.3f}" for r in result["results"]))

        separate_s, curate_s = 0.0, 0.0
        for i, f in enumerate(fractions):
            home = str(root / f"separate-{i}")
            curate_flow(str(shapes.holdout_shard), "heldout", home=home, min_side=64, clip_model="none")
            t = time.perf_counter()
            cur = curate_flow(shapes.pattern, "run", home=home, min_side=64, clip_model=filter_model,
                              clip_pretrained=filter_weights, keep_fraction=f)
            curate_s += time.perf_counter() - t
            trained = train_contrastive_flow(f"run@{cur['dataset']['version']}", home=home, eval_dataset="heldout",
                                             **train)
            separate_s += time.perf_counter() - t
            print(f"separate {f:g}: {cur['dataset']['n_samples']} samples R@5 "
                  f"{trained['evals']['metrics']['mean_R@5']:.3f}")
        print(f"separate   {separate_s:7.1f}s  (curation {curate_s:.1f}s, training {separate_s - curate_s:.1f}s)")
    print(f"ratio = separate / sweep = {separate_s / sweep_s:.2f}")


if __name__ == "__main__":
    main()
