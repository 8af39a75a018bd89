"""Writes whose cost does not depend on what the lake holds: a shard's batch touches only its own rows
(proved by hiding every other file: a write that opened one would fail), reruns add nothing, writers of
different keys do not wait on each other, and first sighting still wins across runs."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from warehouse import Warehouse
from warehouse.catalog import write_lock


def _batch(run: str, start: int, n: int = 300, text: str = "t") -> dict[str, pa.Table]:
    ids = [f"s{start + i:08d}" for i in range(n)]
    return {
        "samples": pa.table({"sample_id": ids, "text": [text] * n, "first_run_id": [run] * n,
                             "ordinal": list(range(start, start + n))}),
        "occurrences": pa.table({"run_id": [run] * n, "ordinal": list(range(start, start + n)), "sample_id": ids}),
        "decisions": pa.table({"sample_id": ids, "run_id": [run] * n, "stage": ["decode"] * n, "keep": [True] * n}),
    }


def _count(wh: Warehouse, query: str, params: list | None = None) -> int:
    return wh.sql(query, params).column(0)[0].as_py()


def _hide(data: Path, keep_run: str, to: Path) -> list[tuple[Path, Path]]:
    """Move every data file away except those of `keep_run`'s partitions (ledger included)."""
    moved = []
    for f in sorted(data.rglob("*.parquet")):
        rel = f.relative_to(data)
        if f"run_id={keep_run}" in rel.parts:
            continue
        dest = to / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(f, dest)
        moved.append((dest, f))
    return moved


def test_a_shard_write_opens_no_data_file_but_its_own_run_s(tmp_path):
    home = tmp_path / "home"
    wh = Warehouse(home)
    for b in range(3):  # an earlier run, settled: samples, occurrences and decisions on disk
        wh.write_many(_batch("r1", b * 300), batch=f"r1/prepare/{b}")
    assert wh.settle("r1") == 900
    wh.write_many(_batch("r2", 10_000), batch="r2/prepare/0")
    moved = _hide(wh.catalog.data_path, "r2", tmp_path / "hidden")
    assert any("samples" in str(d) for d, _ in moved) and any("run_id=r1" in str(d) for d, _ in moved)
    with pytest.raises(duckdb.Error):  # hiding works: a read of the whole table now fails
        wh.sql("SELECT count(DISTINCT sample_id) FROM decisions")
    # An append of the same run's next shard, and a keyed MERGE of the run's decisions, succeed:
    # neither opened a file of another run nor of `samples`.
    got = wh.write_many(_batch("r2", 10_300), batch="r2/prepare/1")
    assert got == {"occurrences": 300, "decisions": 300}
    assert wh.write("decisions", pa.table({"sample_id": ["s00010000", "x"], "run_id": ["r2", "r2"],
                                           "stage": ["dedup", "dedup"], "keep": [True, False]})) == 2
    for dest, src in moved:
        shutil.move(dest, src)
    assert wh.settle("r2") == 600
    assert _count(wh, "SELECT count(*) FROM samples") == 1500
    assert _count(wh, "SELECT count(*) FROM decisions WHERE run_id = 'r2'") == 602


def test_rerunning_a_batch_adds_nothing_and_a_repeat_in_a_run_is_one_row(tmp_path):
    wh = Warehouse(tmp_path / "home")
    first = wh.write_many(_batch("r1", 0), batch="r1/prepare/0")
    assert first == {"occurrences": 300, "decisions": 300}
    assert wh.write_many(_batch("r1", 0), batch="r1/prepare/0") == {}  # the same batch again
    # shard 1 meets 100 of shard 0's samples again (a repeat within the run): other ordinals
    repeat = _batch("r1", 0, n=100)
    repeat["occurrences"] = repeat["occurrences"].set_column(1, "ordinal", pa.array(range(500, 600), pa.int64()))
    wh.write_many(repeat, batch="r1/prepare/1")
    assert wh.settle("r1") == 300
    assert wh.settle("r1") == 0  # idempotent
    assert _count(wh, "SELECT count(*) FROM samples") == 300
    assert _count(wh, "SELECT count(*) FROM occurrences WHERE run_id = 'r1'") == 400
    assert _count(wh, "SELECT count(*) FROM decisions WHERE run_id = 'r1'") == 300  # one per (sample, stage)


def test_first_sighting_wins_across_runs(tmp_path):
    wh = Warehouse(tmp_path / "home")
    wh.write_many(_batch("r1", 0, text="from r1"), batch="r1/prepare/0")
    wh.write_many(_batch("r2", 100, text="from r2"), batch="r2/prepare/0")  # 200 shared with r1
    assert wh.settle("r1") == 300
    assert wh.settle("r2") == 100
    rows = wh.sql("SELECT first_run_id, text, count(*) AS n FROM samples GROUP BY ALL ORDER BY 1").to_pylist()
    assert rows == [{"first_run_id": "r1", "text": "from r1", "n": 300}, {"first_run_id": "r2", "text": "from r2", "n": 100}]


@pytest.mark.parametrize("catalog", ["sqlite", "postgres"])
def test_writers_of_disjoint_keys_do_not_wait_and_colliding_ones_do(tmp_path, catalog, request):
    spec = None
    if catalog == "postgres":
        import psycopg

        dsn = request.getfixturevalue("postgres_dsn")
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute('DROP DATABASE IF EXISTS "disjoint"')
            con.execute('CREATE DATABASE "disjoint"')
        spec = "postgres:" + dsn.replace("dbname=mmpipe", "dbname=disjoint")
    wh = Warehouse(tmp_path / "home", catalog=spec)
    assert wh.catalog.kind == catalog
    done = {"a": threading.Event(), "b": threading.Event()}
    errors = []

    def write(name: str, start: int):
        try:
            Warehouse(tmp_path / "home").write_many(_batch("r1", start), batch=f"r1/prepare/{name}")
        except BaseException as e:  # reported below, not swallowed
            errors.append(e)
        done[name].set()

    with write_lock(wh.catalog, ["batch:r1/prepare/a"]):  # another writer is mid-commit on key a
        other = threading.Thread(target=write, args=("b", 1000))
        other.start()
        assert done["b"].wait(timeout=300), "a writer of another key waited on the held key"
        same = threading.Thread(target=write, args=("a", 0))
        same.start()
        assert not done["a"].wait(timeout=2), "a writer of the held key did not wait for it"
    assert done["a"].wait(timeout=300)
    other.join(), same.join()
    assert not errors, errors
    assert _count(wh, "SELECT count(*) FROM occurrences") == 600
    assert _count(wh, "SELECT count(DISTINCT batch_key) FROM mmpipe_internal.batches") == 2
