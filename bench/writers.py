"""Many writers at once: commits per second with 1, 2, 4 and 8 writer processes on one home, each writing
its own run's shard batches (keys that cannot collide), with the lake's keyed locks (ours) against every
commit under one global lock (how every write was serialised before), for the SQLite and PostgreSQL catalogs.

    .venv/bin/python bench/writers.py [--writers 1 2 4 8] [--batches 40] [--rows 1000] [--catalog sqlite postgres]

Each writer opens the warehouse, waits for a common start, then commits `--batches` batches of `--rows`
samples (sightings + occurrences + decisions, one transaction each, as a curate shard writes them).
Prints commits/s per setting and ratio = keyed / global. PostgreSQL: a temporary server (Debian's
binaries, as the tests start one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WRITER = r"""
import os, sys, time, pyarrow as pa
from warehouse import Warehouse
from warehouse.catalog import write_lock
home, run, batches, rows, mode, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
wh = Warehouse(home)
while not os.path.exists(go):
    time.sleep(0.01)
t0 = time.time()
for b in range(batches):
    ids = [f"{run}-{b:05d}-{i:05d}" for i in range(rows)]
    tables = {
        "samples": pa.table({"sample_id": ids, "text": ["t"] * rows, "first_run_id": [run] * rows,
                             "ordinal": [b * 2**32 + i for i in range(rows)]}),
        "occurrences": pa.table({"run_id": [run] * rows, "ordinal": [b * 2**32 + i for i in range(rows)], "sample_id": ids}),
        "decisions": pa.table({"sample_id": ids, "run_id": [run] * rows, "stage": ["decode"] * rows, "keep": [True] * rows}),
    }
    if mode == "global":
        with write_lock(wh.catalog):  # every commit under the one lake-wide lock
            wh.write_many(tables, batch=f"{run}/prepare/{b}")
    else:
        wh.write_many(tables, batch=f"{run}/prepare/{b}")
print(t0, time.time(), flush=True)
"""


def measure(home: Path, writers: int, batches: int, rows: int, mode: str, env: dict) -> float:
    go = home / f".go-{mode}-{writers}"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(home), f"{mode}{writers}w{i}", str(batches),
                               str(rows), mode, str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(writers)]
    time.sleep(2.0)  # let every writer open the warehouse before the common start
    go.touch()
    spans = []
    for p in procs:
        out, err = p.communicate(timeout=3600)
        if p.returncode:
            raise RuntimeError(err[-2000:])
        spans.append([float(x) for x in out.split()])
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return writers * batches / wall


def run_catalog(catalog: str, dsn: str | None, args) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"\n{catalog} catalog: {args.batches} commits of {args.rows} samples per writer")
    print("writers   keyed commits/s   global-lock commits/s   ratio")
    for n in args.writers:
        rates = {}
        for mode in ("keyed", "global"):
            home = Path(tempfile.mkdtemp(prefix="mmpipe-writers-")) / "home"
            if dsn:
                import psycopg

                db = f"w_{mode}_{n}"
                with psycopg.connect(dsn, autocommit=True) as con:
                    con.execute(f'DROP DATABASE IF EXISTS "{db}"')
                    con.execute(f'CREATE DATABASE "{db}"')
                env["MMPIPE_CATALOG"] = "postgres:" + dsn.replace("dbname=mmpipe", f"dbname={db}")
            from warehouse import Warehouse

            Warehouse(home, catalog=env.get("MMPIPE_CATALOG"))
            rates[mode] = measure(home, n, args.batches, args.rows, mode, env)
        print(f"{n:7d} {rates['keyed']:17.1f} {rates['global']:23.1f} {rates['keyed'] / rates['global']:7.2f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--catalog", nargs="+", default=["sqlite", "postgres"])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    print(f"{os.cpu_count()} cores")
    for catalog in args.catalog:
        if catalog == "postgres":
            sys.path.insert(0, str(ROOT / "tests"))
            from pgserver import temporary_postgres

            with temporary_postgres() as dsn:
                run_catalog(catalog, dsn, args)
        else:
            run_catalog(catalog, None, args)


if __name__ == "__main__":
    main()
