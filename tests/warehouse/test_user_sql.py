"""User SQL sees the warehouse and nothing else, and ends within its time and memory limits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from warehouse import QueryError, ReadOnlyError, Warehouse

REPO = Path(__file__).parents[2]
# A query that runs for ages in constant memory (10^12 pairs, none kept): only the time limit can end it.
ENDLESS = "SELECT 'x' AS sample_id FROM range(1000000) a, range(1000000) b WHERE a.range + b.range < 0"

LEAKS = [
    "SELECT path FROM duckdb_databases",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM system.main.duckdb_databases",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_columns",
    "PRAGMA database_list",
    "  pRaGmA   database_list",
    "pragma show_tables",
    "SELECT * FROM pragma_database_list()",
    "SELECT * FROM pragma_database_list",
    "CALL pragma_database_list()",
    "SELECT * FROM pg_catalog.pg_settings",
    "SELECT * FROM pg_settings",
    "DESCRIBE pg_catalog.pg_settings",
    "SELECT * FROM information_schema.tables",
    "SELECT current_setting('allowed_directories')",
    "SELECT getvariable('x')",
    "SHOW ALL TABLES",
    "SHOW DATABASES",
    "SHOW TABLES FROM __ducklake_metadata_lake",
    "SHOW TABLES FROM pg_catalog",
    "WITH pg_settings AS (SELECT 1) SELECT * FROM pg_settings",
    "SELECT (WITH duckdb_settings AS (SELECT 1) SELECT 1) AS a, * FROM duckdb_settings",
    "SELECT * FROM __ducklake_metadata_lake.main.ducklake_metadata",
    "SELECT * FROM __ducklake_metadata_lake.ducklake_data_file",
    "SELECT * FROM memory.main.x",
    "SELECT * FROM query_table('duckdb_settings')",
    "SELECT * FROM query('SELECT * FROM duckdb_settings()')",
]


@pytest.fixture(scope="module")
def small_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("user-sql") / "home"
    Warehouse(home).record_run("r1", "curate", "completed", params={"name": "x"})
    return home


@pytest.mark.parametrize("query", LEAKS)
def test_user_sql_names_nothing_but_the_warehouse(small_home, query):
    with pytest.raises((ReadOnlyError, QueryError)) as got:
        Warehouse(small_home, read_only=True).query_readonly(query)
    assert str(small_home) not in str(got.value)


def test_the_warehouse_stays_fully_queryable(home):
    wh = Warehouse(home)
    wh.record_run("r1", "curate", "completed", params={"name": "x"})
    for query in ("SELECT count(*) FROM lake.main.runs", "SELECT count(*) FROM main.runs", "FROM lake.runs",
                  "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SELECT * FROM t",
                  "SELECT * FROM run_summary", "SHOW TABLES",
                  "SELECT count(*) FROM lake.snapshots()"):
        wh.query_readonly(query)


def _pg(dsn: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(sql)


def test_postgres_catalog_neighbours_and_password_stay_hidden(tmp_path, postgres_dsn, monkeypatch):
    """A table beside the catalog in the same PostgreSQL database cannot be read, nor the DSN printed."""
    from mmpipe.cli import app

    _pg(postgres_dsn, "DROP DATABASE IF EXISTS neighbours")
    _pg(postgres_dsn, "CREATE DATABASE neighbours")
    dsn = postgres_dsn.replace("dbname=mmpipe", "dbname=neighbours")
    _pg(dsn, "CREATE TABLE app_secrets (secret text); INSERT INTO app_secrets VALUES ('TOPSECRET-ROW'); "
             "CREATE SCHEMA hr; CREATE TABLE hr.salaries (pay int); INSERT INTO hr.salaries VALUES (987654)")
    password = "pw-Xq7-never-printed"
    home = tmp_path / "home"
    monkeypatch.setenv("MMPIPE_CATALOG", f"postgres:{dsn} password={password}")
    Warehouse(home).record_run("r1", "curate", "completed", params={"name": "x"})
    assert password not in (home / "lake" / "catalog.json").read_text()
    runner = CliRunner()
    assert runner.invoke(app, ["sql", "SELECT status FROM runs", "--home", str(home)]).exit_code == 0
    for query in ("SELECT * FROM __ducklake_metadata_lake.public.app_secrets",
                  "SELECT * FROM __ducklake_metadata_lake.hr.salaries",
                  "SELECT * FROM __ducklake_metadata_lake.pg_catalog.pg_authid",
                  "SELECT * FROM __ducklake_metadata_lake.pg_catalog.pg_stat_activity",
                  "SELECT * FROM __ducklake_metadata_lake.public.ducklake_metadata",
                  "SELECT path FROM duckdb_databases", "SELECT * FROM duckdb_databases()",
                  "SELECT * FROM postgres_query('__ducklake_metadata_lake', 'SELECT * FROM app_secrets')",
                  "SELECT * FROM duckdb_tables()", "SHOW ALL TABLES", "PRAGMA database_list"):
        out = runner.invoke(app, ["sql", query, "--format", "csv", "--home", str(home)])
        assert out.exit_code == 1, (query, out.output)
        for secret in ("TOPSECRET", "987654", password, "app_secrets" if "app_secrets" not in query else "\0"):
            assert secret not in out.output, (query, out.output)
    out = runner.invoke(app, ["warehouse", "attach", "--home", str(home)])
    assert out.exit_code == 0 and "dbname=neighbours" in out.output and password not in out.output


# Runs a command and writes its peak RSS (KiB, its waited-for descendants included) to argv[1]. A process
# forked from a big one (a test worker holding GBs) keeps that one's peak in its own figure, so the command
# is started from this small launcher instead of from the worker.
_PEAK_OF = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


@pytest.mark.parametrize("query, limit", [
    ("WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT max(n) FROM t", "(time|memory)"),
    ("SELECT count(*) FROM range(1000000) a, range(1000000) b", "time"),
    ("SELECT length(repeat('a', 2000000000)) AS n", "memory"),
    ("SELECT length(string_agg('a', '')) FROM range(2000000000)", "(time|memory)"),
    ("SELECT range AS n FROM range(100000000)", "(time|memory)"),
])
def test_a_runaway_query_ends_at_its_limit_in_one_line(small_home, query, limit, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # 1 s is enough for a limit to fire (and each second of a runaway query is CPU burnt on every core);
    # a memory-only case ends at once at its cap, and keeps 3 s so a busy machine cannot make it a timeout
    timeout = "3" if limit == "memory" else "1"
    peak_file = tmp_path / "peak"
    out = subprocess.run([sys.executable, "-c", _PEAK_OF, str(peak_file), sys.executable, "-m", "mmpipe.cli", "sql",
                          query, "--timeout", timeout, "--memory", "256MB", "--home", str(small_home)], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert out.returncode == 1, out.stdout
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and re.search(f"query stopped: .* the {limit} limit", lines[0]), out.stdout
    peak_mb = int(peak_file.read_text()) / 1024
    print(json.dumps({"query": query, "line": lines[0], "peak_rss_mb": round(peak_mb)}))
    assert peak_mb < 256 + 1500  # the child's cap: the interpreter, DuckDB and the query's 256 MB


def test_limits_apply_to_export_queries_too(home, monkeypatch):
    from warehouse.search_queries import user_sample_ids

    wh = Warehouse(home)
    wh.write("samples", pa.table({"sample_id": ["a"], "modality": ["image"]}))
    assert user_sample_ids(wh, "SELECT sample_id FROM samples") == ["a"]
    monkeypatch.setenv("MMPIPE_QUERY_TIMEOUT", "1")
    with pytest.raises(QueryError, match="time limit of 1 s"):
        user_sample_ids(wh, ENDLESS)


def test_export_query_limits_from_the_command_line(small_home):
    from mmpipe.cli import app

    out = CliRunner().invoke(app, ["export", "whatever", "--query", ENDLESS, "--query-timeout", "1",
                                   "--home", str(small_home)])
    assert out.exit_code == 1 and "time limit of 1 s" in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1
    assert "MMPIPE_QUERY_TIMEOUT" not in os.environ  # the flag does not outlive the command
