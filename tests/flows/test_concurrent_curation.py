"""Two `mmpipe curate` processes at once into one warehouse, with the local SQLite catalog and with a
PostgreSQL catalog (the many-machines setup): nothing lost, nothing duplicated.

With SQLite each command starts its own private Prefect server, both at once in one home (the first
migrates the Prefect database, the other waits for it: mmpipe/cli/prefect_server.py); with PostgreSQL
both use one shared Prefect API (the test harness's), as the commands of many machines use one server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from warehouse import Warehouse


def _shard(path: Path, seeds: list[int]) -> None:
    with tarfile.open(path, "w") as tf:
        for s in seeds:
            rng = np.random.default_rng(s)
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((96, 96)).save(buf, "JPEG")
            for name, data in ((f"{s:05d}.jpg", buf.getvalue()), (f"{s:05d}.txt", f"noise picture {s}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("catalog", ["sqlite", "postgres"])
def test_two_curations_at_once_into_one_warehouse(tmp_path, catalog, request):
    for name, seeds in (("a", range(0, 120)), ("b", range(60, 180))):  # 60 samples in both sources
        (tmp_path / name).mkdir()
        for k in range(3):
            _shard(tmp_path / name / f"{k:02d}.tar", list(seeds)[k * 40:(k + 1) * 40])
    if catalog == "sqlite":
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    else:
        env = dict(request.getfixturevalue("cli_env"))
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    home = tmp_path / "home"
    if catalog == "postgres":
        import psycopg

        dsn = request.getfixturevalue("postgres_dsn")
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute('DROP DATABASE IF EXISTS "curations"')
            con.execute('CREATE DATABASE "curations"')
        env["MMPIPE_CATALOG"] = "postgres:" + dsn.replace("dbname=mmpipe", "dbname=curations")
    exe = str(Path(sys.executable).with_name("mmpipe"))
    procs = [subprocess.Popen([exe, "curate", str(tmp_path / name), "--name", name, "--clip-model", "none",
                               "--min-side", "64", "--dedup-hamming", "-1", "--home", str(home)],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out[-2000:] + err[-2000:]
    wh = Warehouse(home)
    assert wh.catalog.kind == catalog
    assert wh.sql("SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM samples").to_pylist()[0] == \
        {"n": 180, "d": 180}
    runs = wh.query_readonly("SELECT name, status, ingested, kept FROM run_summary ORDER BY name").to_pylist()
    assert runs == [{"name": n, "status": "completed", "ingested": 120, "kept": 120} for n in ("a", "b")]
    dup = wh.sql("SELECT count(*) AS n FROM (SELECT sample_id, run_id, stage FROM decisions "
                 "GROUP BY ALL HAVING count(*) > 1)").column("n")[0].as_py()
    assert dup == 0
    sizes = wh.query_readonly("SELECT name, n_samples FROM datasets ORDER BY name").to_pylist()
    assert sizes == [{"name": "a", "n_samples": 120}, {"name": "b", "n_samples": 120}]
