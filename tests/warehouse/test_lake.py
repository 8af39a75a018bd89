"""The lake under real stress: processes writing at once (SQLite and PostgreSQL catalogs), a writer
killed mid-write, and migration of a home made by the pre-DuckLake catalog."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from warehouse import Warehouse

FIXTURE = Path(__file__).parent.parent / "fixtures" / "pre-ducklake-home"

# A writer process: batches of `n` samples + their decisions, one transaction each.
WRITER = r"""
import sys, pyarrow as pa
from warehouse import Warehouse
home, tag, start, batches, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
wh = Warehouse(home)
for b in range(batches):
    ids = [f"s{start + b * n + i:08d}" for i in range(n)]
    wh.write_many({
        "samples": pa.table({"sample_id": ids, "text": [tag] * n, "first_run_id": [tag] * n}),
        "decisions": pa.table({"sample_id": ids, "run_id": [tag] * n, "stage": ["decode"] * n, "keep": [True] * n}),
    })
    print(b, flush=True)
"""


def _writer(home, tag, start, batches, n=500, env=None):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(home), tag, str(start), str(batches), str(n)],
                            env=env or os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _pg_database(dsn: str, name: str) -> str:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}"')
        con.execute(f'CREATE DATABASE "{name}"')
    return dsn.replace("dbname=mmpipe", f"dbname={name}")


@pytest.mark.parametrize("catalog", ["sqlite", "postgres"])
def test_processes_writing_overlapping_keys_lose_nothing_and_duplicate_nothing(tmp_path, catalog, request):
    env = os.environ.copy()
    home = tmp_path / "home"
    if catalog == "postgres":
        dsn = _pg_database(request.getfixturevalue("postgres_dsn"), "overlap")
        env["MMPIPE_CATALOG"] = f"postgres:{dsn}"
        Warehouse(home, catalog=env["MMPIPE_CATALOG"])
    # a and b write the same 4,000 sample ids (first sighting must win once), c its own 2,000.
    procs = [_writer(home, "a", 0, 8, env=env), _writer(home, "b", 0, 8, env=env), _writer(home, "c", 10_000, 4, env=env)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    wh = Warehouse(home)
    assert wh.catalog.kind == catalog
    got = wh.sql("SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM samples").to_pylist()[0]
    assert got == {"n": 6000, "d": 6000}
    dec = wh.sql("SELECT run_id, count(*) AS n, count(DISTINCT sample_id) AS d FROM decisions GROUP BY 1 "
                 "ORDER BY 1").to_pylist()
    assert dec == [{"run_id": r, "n": n, "d": n} for r, n in (("a", 4000), ("b", 4000), ("c", 2000))]


def test_a_writer_killed_mid_write_leaves_whole_batches_only(tmp_path):
    from warehouse.maintenance import check

    home = tmp_path / "home"
    Warehouse(home)
    for attempt in range(3):
        proc = _writer(home, f"k{attempt}", attempt * 1_000_000, 400, n=1000)
        for _ in range(attempt + 1):  # killed after its first few commits, mid-way through a later one
            assert proc.stdout.readline(), proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wh = Warehouse(home)
    for tag in ("k0", "k1", "k2"):
        s = wh.sql("SELECT count(*) AS n FROM samples WHERE text = ?", [tag]).column("n")[0].as_py()
        d = wh.sql("SELECT count(*) AS n FROM decisions WHERE run_id = ?", [tag]).column("n")[0].as_py()
        assert s == d and s % 1000 == 0 and s > 0, (tag, s, d)  # a batch is there whole, with its decisions
    health = check(wh)
    assert health["ok"] and health["missing"] == []
    before = wh.sql("SELECT count(*) AS n FROM samples").column("n")[0].as_py()
    assert wh.delete_orphans() == len(health["orphans"])  # what killed writers left mid-commit
    assert check(wh)["orphans"] == [] and wh.sql("SELECT count(*) AS n FROM samples").column("n")[0].as_py() == before


def test_a_pre_ducklake_home_migrates_in_place(tmp_path):
    from mmpipe.cli import app

    home = tmp_path / "old"
    shutil.copytree(FIXTURE, home)
    out = CliRunner().invoke(app, ["warehouse", "migrate", "--home", str(home)])
    assert out.exit_code == 0, out.output
    assert not (home / "warehouse.duckdb").exists() and (home / "warehouse.duckdb.migrated").exists()
    wh = Warehouse(home, create=False)
    assert wh.table_counts()["samples"] == 4
    reasons = {r["sample_id"]: (r["drop_reason"], r["detail"]) for r in wh.query_readonly(
        "SELECT sample_id, drop_reason, detail FROM outcomes").to_pylist()}
    assert reasons == {"s1": (None, None), "s2": ("clip_score_low", "clip_score_below:0.2"),
                       "s3": ("duplicate", "s1"), "s4": ("caption_too_short", None)}
    run = wh.query_readonly("SELECT status, ingested, kept FROM run_summary").to_pylist()
    assert run == [{"status": "completed", "ingested": 4, "kept": 1}]
    assert wh.query_readonly("SELECT version FROM datasets").column("version").to_pylist() == ["v1"]
    again = CliRunner().invoke(app, ["warehouse", "migrate", "--home", str(home)])
    assert again.exit_code == 1 and "no pre-DuckLake catalog" in again.output


def test_the_compact_and_check_commands_merge_files_and_keep_every_row(tmp_path):
    """`mmpipe warehouse compact` writes (it merges files), so it opens the warehouse writable; the rows and
    an earlier dataset snapshot read the same afterwards, and `warehouse check` finds nothing amiss."""
    import pyarrow as pa

    from mmpipe.cli import app

    home = tmp_path / "home"
    wh = Warehouse(home)
    for b in range(6):  # six commits: six small files per table
        ids = [f"s{b}-{i}" for i in range(50)]
        wh.write_many({"samples": pa.table({"sample_id": ids, "text": ["t"] * 50, "first_run_id": ["r"] * 50})})
    wh.register_dataset({"dataset_id": "d1", "name": "ds", "version": "v1", "modality": "image", "n_samples": 300})
    rows = "SELECT count(*) AS n, count(DISTINCT sample_id) AS ids FROM samples"
    before = wh.sql(rows).to_pylist()
    runner = CliRunner()
    out = runner.invoke(app, ["warehouse", "compact", "--home", str(home)])
    assert out.exit_code == 0, out.output
    files_before, files_after = (int(x) for x in out.output.split("live data files ")[1].split(";")[0].split(" -> "))
    assert files_after < files_before
    assert Warehouse(home).sql(rows).to_pylist() == before == [{"n": 300, "ids": 300}]
    out = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM samples", "--as-of", "ds@v1", "--format", "json",
                              "--home", str(home)])
    assert out.exit_code == 0 and '"n": 300' in out.output, out.output
    out = runner.invoke(app, ["warehouse", "check", "--home", str(home)])
    assert out.exit_code == 0 and "orphan" not in out.output, out.output
