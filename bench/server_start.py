"""How long a flow command's private Prefect API server takes to answer, cold (a new PREFECT_HOME: its
database is created and migrated) and warm (a home an earlier command used), best of N each.

    PYTHONPATH=$PWD .venv/bin/python bench/server_start.py [--repeat 3] [--variant baseline|ours]

`baseline` starts the server as mmpipe did before (the migration check and block registration at every
start, forced through Prefect's settings); `ours` with mmpipe's current settings. Both run in one
session, interleaved per repeat, as the machine's load changes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _once(prefect_home: Path, variant: str) -> float:
    import subprocess
    import sys

    code = ("import time; from mmpipe.cli_server import private_server; t = time.perf_counter(); "
            "private_server(); print(time.perf_counter() - t)")
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    env.pop("PREFECT_API_URL", None)
    if variant == "baseline":  # what every start did before: check the migrations, consider block registration
        env.update({"PREFECT_API_DATABASE_MIGRATE_ON_START": "true", "PREFECT_API_BLOCKS_REGISTER_ON_START": "true"})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
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
