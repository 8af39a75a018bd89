"""A throwaway PostgreSQL server on 127.0.0.1 (Debian's binaries), for the tests and the benchmarks."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextmanager
def temporary_postgres() -> Iterator[str]:
    """Start a server with a temporary data folder and a database `mmpipe`; yield its libpq DSN; stop it.

    Debian's `postgresql` package is installed first when missing (CI machines start without it).
    As root, the server runs as the `postgres` user (initdb refuses root).
    """
    if pg_bin() is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, capture_output=True,
                       timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    pg = pg_bin()
    assert pg is not None, "PostgreSQL binaries not found after installing Debian's postgresql package"
    # Outside pytest's root-only temp tree: the server runs as `postgres` when we are root.
    data = Path(tempfile.mkdtemp(prefix="mmpipe-pg-")) / "data"
    data.mkdir()
    run_as = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(data.parent, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*run_as, str(pg / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                   check=True, capture_output=True, timeout=300)
    subprocess.run([*run_as, str(pg / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                    "start"], check=True, capture_output=True, timeout=120)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        subprocess.run([*run_as, "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-qc",
                        "CREATE DATABASE mmpipe"], check=True, capture_output=True, timeout=60)
        yield f"dbname=mmpipe host=127.0.0.1 port={port} user=postgres"
    finally:
        try:
            os.kill(pid, signal.SIGINT)  # fast shutdown
        except ProcessLookupError:
            pass
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(data.parent, ignore_errors=True)
