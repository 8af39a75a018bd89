"""The warehouse on DuckLake: round trip, keyed idempotent writes, atomic multi-table writes,
relocation, time travel, and user SQL that can only read the warehouse."""

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


def _data_files(home):
    return sorted(p for p in (home / "lake" / "data").rglob("*.parquet"))


def test_round_trip_into_the_lake(home):
    wh = Warehouse(home)
    assert wh.write("samples", _samples(["a", "b"]), "r1") == 2
    got = wh.query_readonly("SELECT sample_id, text, width FROM samples ORDER BY sample_id").to_pylist()
    assert got == [{"sample_id": "a", "text": "caption a", "width": 64},
                   {"sample_id": "b", "text": "caption b", "width": 64}]
    assert (home / "lake" / "catalog.sqlite").is_file()
    tables = wh.query_readonly("SHOW TABLES").column("name").to_pylist()
    assert "samples" in tables and "outcomes" in tables and not any(t.startswith("_") for t in tables)


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


def test_a_multi_table_write_is_all_or_nothing(home):
    wh = Warehouse(home)
    good = pa.table({"run_id": ["r"], "ordinal": [0], "sample_id": ["a"]})
    bad = pa.table({"sample_id": ["x"], "width": ["not a number"]})
    with pytest.raises(Exception):
        wh.write_many({"occurrences": good, "samples": bad})
    assert wh.table_counts()["occurrences"] == 0 and wh.table_counts()["samples"] == 0
    assert wh.write_many({"occurrences": good, "samples": _samples(["a"])}) == {"occurrences": 1, "samples": 1}


def test_unknown_table_and_columns_are_clear_errors(home):
    wh = Warehouse(home)
    with pytest.raises(KeyError, match="unknown warehouse table"):
        wh.write("nope", _samples(["a"]), "r1")
    with pytest.raises(ValueError, match="no columns"):
        wh.write("samples", pa.table({"sample_id": ["a"], "colour": ["red"]}), "r1")


@pytest.mark.parametrize("query", [
    "DELETE FROM samples",
    "DROP VIEW outcomes",
    "CREATE TABLE t AS SELECT 1",
    "UPDATE runs SET status = 'x'",
    "COPY (SELECT 1) TO '/tmp/mmpipe-should-not-exist.csv'",
    "EXPLAIN ANALYZE COPY (SELECT * FROM samples) TO '/tmp/mmpipe-should-not-exist.csv'",
    "ATTACH '/tmp/mmpipe-other.db' AS other",
    "SELECT 1; DELETE FROM samples",
    "PRAGMA threads = 1",
    "SET threads = 1",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    "SELECT * FROM 'https://example.com/x.parquet'",
    "SELECT * FROM ducklake_cleanup_old_files('lake', cleanup_all => true)",
    "SELECT * FROM sqlite_scan('x.sqlite', 'ducklake_metadata')",
    "INSTALL httpfs",
    "LOAD httpfs",
])
def test_user_sql_cannot_write_or_reach_outside_the_warehouse(home, query):
    wh = Warehouse(home)
    wh.write("samples", _samples(["a"]), "r1")
    before = _data_files(home)
    with pytest.raises((ReadOnlyError, QueryError), match="(?i)refused|read-only|disabled|permission"):
        wh.query_readonly(query)
    assert wh.table_counts()["samples"] == 1 and _data_files(home) == before
    assert not os.path.exists("/tmp/mmpipe-should-not-exist.csv")


def test_user_sql_reads_tables_views_snapshots_and_describes(home):
    wh = Warehouse(home)
    wh.write("samples", _samples(["a"]), "r1")
    for query in ("SELECT count(*) FROM samples", "WITH x AS (SELECT 1) SELECT * FROM x", "DESCRIBE samples",
                  "SHOW TABLES", "SUMMARIZE samples", "EXPLAIN SELECT * FROM samples",
                  "SELECT count(*) FROM lake.snapshots()", "SELECT * FROM outcomes"):
        wh.query_readonly(query)


def test_bad_user_sql_is_duckdbs_error(home):
    wh = Warehouse(home)
    with pytest.raises(QueryError, match="nope"):
        wh.query_readonly("SELECT nope FROM samples")
    with pytest.raises(QueryError, match="(?i)syntax"):
        wh.query_readonly("SELEKT 1")


def test_reading_a_missing_warehouse_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no warehouse"):
        Warehouse(tmp_path / "nothing", create=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        Warehouse(tmp_path / "file")


def test_a_copied_home_answers_alone_after_the_original_is_deleted(home, tmp_path):
    wh = Warehouse(home)
    wh.write("samples", _samples(["a", "b"]), "r1")
    wh.write("samples", _samples(["c"]), "r2")
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(home, copy)
    shutil.rmtree(home)
    moved = Warehouse(copy)
    assert moved.query_readonly("SELECT string_agg(text, ',' ORDER BY text) AS t FROM samples").column(
        "t")[0].as_py() == "caption a,caption b,caption c"
    assert moved.write("samples", _samples(["d"]), "r3") == 1
    assert not home.exists()  # writes go to the copy, never recreate the old folder
    assert moved.query_readonly("SELECT count(*) AS n FROM samples").column("n")[0].as_py() == 4


def test_time_travel_to_a_dataset_version(home):
    wh = Warehouse(home)
    wh.write("samples", _samples(["a"]), "r1")
    wh.register_dataset({"dataset_id": "d1", "name": "x", "version": "v1", "n_samples": 1, "run_id": "r1"})
    wh.write("samples", _samples(["b", "c"]), "r2")
    wh.register_dataset({"dataset_id": "d2", "name": "x", "version": "v2", "n_samples": 3, "run_id": "r2"})
    v1 = wh.snapshot_of("x", "v1")
    assert wh.query_readonly("SELECT count(*) AS n FROM samples", snapshot=v1).column("n")[0].as_py() == 1
    assert wh.query_readonly("SELECT count(*) AS n FROM datasets", snapshot=v1).column("n")[0].as_py() == 1
    assert wh.query_readonly("SELECT count(*) AS n FROM samples").column("n")[0].as_py() == 3
    with pytest.raises(LookupError):
        wh.snapshot_of("x", "v9")


def test_every_design_table_exists_with_column_comments(home):
    wh = Warehouse(home)
    names = set(wh.table_counts())
    assert {"runs", "samples", "occurrences", "decisions", "clip_scores", "transcripts", "datasets", "models",
            "evals"} <= names
    missing = wh.sql("SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'lake' "
                     "AND schema_name = 'main' AND comment IS NULL AND table_name IN "
                     "(SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake')").to_pylist()
    assert missing == []
