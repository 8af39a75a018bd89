"""How long a flow command takes until it can run a flow (its private Prefect API server answers, Prefect
and the warehouse are imported), cold (a new home: the Prefect database is created and migrated) and
warm (a home an earlier command used), best of N each.

    PYTHONPATH=$PWD .venv/bin/python bench/server_start.py [--repeat 3] [--variant baseline|ours]

`baseline` does what mmpipe did before: start the server (the migration check and block registration at
every start), wait for it, then import; `ours` is `start_flows` now: the server starts while the
command imports, and a ready home skips the migration check and block registration. Both run in one
session, interleaved per repeat, as the machine's load changes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


_BASELINE = """
import os, sys, time
t = time.perf_counter()
from mmpipe.home import configure_prefect
configure_prefect(sys.argv[1])
from mmpipe.cli.prefect_server import private_server
os.environ["PREFECT_API_URL"] = private_server()  # as before: wait for the server, then import
import flows
from flows.runners import short_lived_api
from tasks.runs import CANCEL_HOOKS
print(time.perf_counter() - t)
"""
_OURS = """
import sys, time
t = time.perf_counter()
from mmpipe.cli.common import start_flows
start_flows(sys.argv[1])
print(time.perf_counter() - t)
"""


def _once(prefect_home: Path, variant: str) -> float:
    """Seconds from a command's start until it can run a flow: its private server answers and Prefect,
    the flows package and the warehouse are imported."""
    import subprocess
    import sys

    env = {**os.environ, "PREFECT_HOME": str(prefect_home / "prefect")}
    env.pop("PREFECT_API_URL", None)
    if variant == "baseline":  # what every start did before: check the migrations, consider block registration
        env.update({"PREFECT_API_DATABASE_MIGRATE_ON_START": "true", "PREFECT_API_BLOCKS_REGISTER_ON_START": "true"})
    out = subprocess.run([sys.executable, "-c", _BASELINE if variant == "baseline" else _OURS, str(prefect_home)],
                         env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variant", action="append", choices=["baseline", "ours"])
    args = parser.parse_args()
    from mmpipe.home import configure_prefect

    root = Path(tempfile.mkdtemp(prefix="mmpipe-server-bench-"))
    configure_prefect(root)
    variants = args.variant or ["baseline", "ours"]
    times = {v: ([], []) for v in variants}
    for k in range(args.repeat):
        for variant in variants:
            home = root / f"{variant}-{k}"
            times[variant][0].append(_once(home, variant))
            times[variant][1].append(_once(home, variant))
    results = {}
    for variant, (cold, warm) in times.items():
        results[variant] = (min(cold), min(warm))
        print(f"{variant}: cold {min(cold):.2f} s, warm {min(warm):.2f} s (best of {args.repeat}; "
              f"cold {', '.join(f'{c:.2f}' for c in cold)}; warm {', '.join(f'{w:.2f}' for w in warm)})", flush=True)
    if len(results) == 2:
        (bc, bw), (oc, ow) = results["baseline"], results["ours"]
        print(f"ratio = ours/baseline: cold {oc / bc:.2f}, warm {ow / bw:.2f}")


if __name__ == "__main__":
    main()
