"""The warehouse: round trip, idempotence, atomic writes, read-only user SQL."""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
import pytest

from mmpipe.schema import SAMPLE_COLUMNS
from warehouse import QueryError, ReadOnlyError, Warehouse


def _samples(ids, texts=None):
    return pa.table({
        "sample_id": ids,
        "modality": ["image"] * len(ids),
        "text": texts or [f"caption {i}" for i in ids],
        "width": [64] * len(ids),
        "height": [48] * len(ids),
        "first_run_id": ["r1"] * len(ids),
    })


def _parquet_files(home):
    return sorted(p for p in (home / "tables").rglob("*") if p.is_file())


def test_round_trip_and_hive_layout(home):
    wh = Warehouse(home)
    assert wh.write("samples", _samples(["a", "b"]), "r1") == 2
    got = wh.query_readonly("SELECT sample_id, text, width FROM samples ORDER BY sample_id").to_pylist()
    assert got == [{"sample_id": "a", "text": "caption a", "width": 64},
                   {"sample_id": "b", "text": "caption b", "width": 64}]
    files = _parquet_files(home)
    assert len(files) == 1 and files[0].parent.name == "run_id=r1" and files[0].suffix == ".parquet"


def test_samples_table_columns_match_the_library_schema(home):
    cols = Warehouse(home).query_readonly("SELECT * FROM samples LIMIT 0").column_names
    assert cols == SAMPLE_COLUMNS + ["first_run_id"]


def test_writing_the_same_samples_twice_leaves_one_row_each(home):
    wh = Warehouse(home)
    assert wh.write("samples", _samples(["a", "b"]), "r1") == 2
    assert wh.write("samples", _samples(["a", "b", "c"]), "r2") == 1
    assert wh.write("samples", _samples(["a", "a", "c"]), "r3") == 0
    rows = wh.query_readonly("SELECT sample_id, count(*) AS n FROM samples GROUP BY 1 ORDER BY 1").to_pylist()
    assert rows == [{"sample_id": s, "n": 1} for s in "abc"]


def test_first_sighting_wins_for_samples_latest_status_for_runs(home):
    wh = Warehouse(home)
    wh.write("samples", _samples(["a"], ["first"]), "r1")
    wh.write("samples", _samples(["a"], ["second"]), "r2")
    assert wh.query_readonly("SELECT text FROM samples").column("text").to_pylist() == ["first"]
    wh.record_run("r1", "ingest", "running", params={"name": "x"})
    wh.record_run("r1", "ingest", "completed")
    runs = wh.query_readonly("SELECT status, finished_at IS NOT NULL AS done, params->>'name' AS name FROM runs")
    assert runs.to_pylist() == [{"status": "completed", "done": True, "name": "x"}]


def test_a_write_that_fails_at_rename_leaves_nothing_visible(home, monkeypatch):
    wh = Warehouse(home)
    wh.write("samples", _samples(["a"]), "r1")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        wh.write("samples", _samples(["b", "c"]), "r2")
    monkeypatch.undo()
    assert wh.query_readonly("SELECT sample_id FROM samples").column("sample_id").to_pylist() == ["a"]
    assert [p.name.endswith(".tmp") for p in _parquet_files(home)] == [False]


def test_a_write_that_fails_midway_through_casting_leaves_nothing_visible(home):
    wh = Warehouse(home)
    bad = pa.table({"sample_id": ["x", "y"], "width": ["12", "not a number"]})
    with pytest.raises(Exception):
        wh.write("samples", bad, "r1")
    assert wh.table_counts()["samples"] == 0
    assert _parquet_files(home) == []


def test_unknown_table_and_columns_are_clear_errors(home):
    wh = Warehouse(home)
    with pytest.raises(KeyError, match="unknown warehouse table"):
        wh.write("nope", _samples(["a"]), "r1")
    with pytest.raises(ValueError, match="no columns"):
        wh.write("samples", pa.table({"sample_id": ["a"], "colour": ["red"]}), "r1")


@pytest.mark.parametrize("query", [
    "INSERT INTO _files VALUES ('samples', 'x', 'r', 1, now())",
    "DELETE FROM _files",
    "DROP VIEW samples",
    "CREATE TABLE t AS SELECT 1",
    "UPDATE _meta SET value = 'x'",
    "COPY (SELECT 1) TO '/tmp/mmpipe-should-not-exist.csv'",
    "ATTACH '/tmp/mmpipe-other.db' AS other",
    "SELECT 1; DELETE FROM _files",
])
def test_user_sql_refuses_writes(home, query):
    wh = Warehouse(home)
    wh.write("samples", _samples(["a"]), "r1")
    with pytest.raises(ReadOnlyError, match="read-only"):
        wh.query_readonly(query)
    assert wh.table_counts()["samples"] == 1
    assert not os.path.exists("/tmp/mmpipe-should-not-exist.csv")


def test_bad_user_sql_is_duckdbs_error(home):
    wh = Warehouse(home)
    with pytest.raises(QueryError, match="nope"):
        wh.query_readonly("SELECT nope FROM samples")
    with pytest.raises(QueryError, match="(?i)syntax"):
        wh.query_readonly("SELEKT 1")


def test_reading_a_missing_warehouse_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no warehouse"):
        Warehouse(tmp_path / "nothing", create=False)


def test_the_warehouse_folder_can_be_moved(home, tmp_path):
    Warehouse(home).write("samples", _samples(["a", "b"]), "r1")
    moved = tmp_path / "moved"
    shutil.move(str(home), moved)
    assert Warehouse(moved).table_counts()["samples"] == 2


def test_every_design_table_exists(home):
    names = set(Warehouse(home).table_counts())
    assert {"runs", "samples", "decisions", "clip_scores", "transcripts", "datasets", "models", "evals"} <= names
