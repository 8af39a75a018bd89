"""The filter claims' size: the demo's data, a bootstrapped filter of a given architecture and steps, the
pool curated with it, and the demo's threshold sweep (tiny or micro CLIPs trained per setting), as
tests/flows/test_filter_flow.py runs them; prints the filter's and the sweep choice's precision and recall
against the planted mismatches, each setting's mean R@5, and the CPU seconds of each part.

    OMP_NUM_THREADS=1 .venv/bin/python bench/filter_claims.py FILTER_MODEL FILTER_STEPS SWEEP_MODEL SWEEP_SAMPLES
    e.g. bench/filter_claims.py mmpipe-micro-clip 300 mmpipe-tiny-clip 3200   (what CLAIMS tests)
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(model: str, steps: int, sweep_model: str, samples: int) -> None:
    prefect_home = tempfile.mkdtemp(prefix="filter-claims-prefect-")
    os.environ["PREFECT_HOME"] = prefect_home
    from mmpipe.home import SHORT_LIVED_SERVER_SERVICES_OFF, configure_prefect

    configure_prefect(prefect_home)
    os.environ.update(SHORT_LIVED_SERVER_SERVICES_OFF)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    root = tempfile.mkdtemp(prefix="filter-claims-")
    home = root + "/home"
    with prefect_test_harness():
        from flows.bootstrap_filter import bootstrap_filter_flow
        from flows.curate import curate_flow
        from flows.demo import SWEEP_SCORES
        from flows.sweep import sweep_flow
        from mmpipe.demo.shapes import write_shapes
        from mmpipe.demo.sizes import CLAIMS
        from tasks.demo import evaluate_demo, evaluate_sweep_choice

        shapes = write_shapes(root + "/shapes", **CLAIMS.shapes_kwargs())
        curate_flow(str(shapes.seed_shard.parent), "trusted", home=home, min_side=64, clip_model="none")
        c1 = cpu()
        filt = bootstrap_filter_flow("trusted", home=home, steps=steps, model_name=model)
        c2 = cpu()
        pool = curate_flow(shapes.pattern, "pool", home=home, min_side=64, clip_model=filt["model_name"],
                           clip_pretrained=filt["checkpoint"], min_clip_score=filt["min_score"])
        clip = evaluate_demo.fn(home, pool["run_id"], shapes, filt["model_id"])["clip_filter"]
        print(f"filter {model} {steps} steps: precision {clip['precision']:.3f} recall {clip['recall']:.3f} "
              f"({clip['bad']} planted), {c2 - c1:.0f} CPU-s to train", flush=True)
        curate_flow(str(shapes.holdout_shard), "heldout", home=home, min_side=64, clip_model="none")
        c3 = cpu()
        result = sweep_flow(shapes.pattern, "swept", "heldout", home=home, keep_fractions=[1.0],
                            min_clip_scores=list(SWEEP_SCORES), clip_models=[[filt["model_name"], filt["checkpoint"]]],
                            samples_seen=samples, model_name=sweep_model, batch_size=64, lr=3e-3,
                            curate={"min_side": 64})
        c4 = cpu()
        r5 = {r["setting"]: round(r["metrics"]["mean_R@5"], 3) for r in result["results"]}
        choice = evaluate_sweep_choice.fn(home, "swept-pool", f"swept@{result['best']['version']}", shapes)
        print(f"sweep {sweep_model} {samples} samples: mean R@5 {r5}; chose {result['best']['setting']}: "
              f"precision {choice['precision']:.3f} recall {choice['recall']:.3f}; {c4 - c3:.0f} CPU-s", flush=True)
        print(f"all: {cpu():.0f} CPU-s")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
