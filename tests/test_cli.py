"""The `mmpipe` command line as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmpipe.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def ingested_home(prefect_harness, demo_folder, tmp_path_factory):
    """The demo photos ingested once for the module's tests, which only read the home."""
    folder, _ = demo_folder
    home = tmp_path_factory.mktemp("cli") / "home"
    result = runner.invoke(app, ["ingest", str(folder), "--name", "demo", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "decompression_bomb" in result.output
    return home


def test_sql_tables_runs(ingested_home):
    home = ["--home", str(ingested_home)]
    out = runner.invoke(app, ["sql", "SELECT drop_reason, count(*) AS n FROM decisions GROUP BY 1", *home])
    assert out.exit_code == 0 and "truncated" in out.output and "unsupported_format" in out.output
    out = runner.invoke(app, ["tables", *home])
    assert out.exit_code == 0 and "samples" in out.output and "24" in out.output
    assert "caption_too_short" in out.output and "detail" in out.output
    out = runner.invoke(app, ["runs", *home])
    assert out.exit_code == 0 and "completed" in out.output


def test_sql_formats(ingested_home, tmp_path):
    home = ["--home", str(ingested_home)]
    q = "SELECT source_key, width FROM samples WHERE format = 'png' ORDER BY 1"
    out = runner.invoke(app, ["sql", q, "--format", "json", *home])
    rows = json.loads(out.stdout)  # one JSON array
    assert out.exit_code == 0 and rows[0]["source_key"] == "chelsea.png"
    out = runner.invoke(app, ["sql", q, "--format", "jsonl", *home])
    assert [json.loads(line) for line in out.stdout.splitlines()] == rows
    out = runner.invoke(app, ["sql", q, "--format", "csv", *home])
    assert out.stdout.splitlines()[0] == '"source_key","width"'
    dest = tmp_path / "out.parquet"
    out = runner.invoke(app, ["sql", q, "--format", "parquet", "--output", str(dest), *home])
    import pyarrow.parquet as pq

    assert out.exit_code == 0 and pq.read_table(dest).num_rows == len(rows)


def test_writes_and_bad_queries_get_clear_messages(ingested_home):
    home = ["--home", str(ingested_home)]
    out = runner.invoke(app, ["sql", "DELETE FROM samples", *home])
    assert out.exit_code == 1 and "read-only" in out.output and "Traceback" not in out.output
    out = runner.invoke(app, ["sql", "SELECT nope FROM samples", *home])
    assert out.exit_code == 1 and "Binder Error" in out.output and "Traceback" not in out.output
    out = runner.invoke(app, ["sql", "SELECT 1", "--home", str(ingested_home / "missing")])
    assert out.exit_code == 1 and "no warehouse" in out.output


def test_home_from_environment(ingested_home):
    out = runner.invoke(app, ["tables"], env={"MMPIPE_HOME": str(ingested_home)})
    assert out.exit_code == 0 and "decisions" in out.output


def test_ingest_of_a_missing_folder_is_a_clear_error(home):
    out = runner.invoke(app, ["ingest", str(home / "nope"), "--name", "x", "--home", str(home)])
    assert out.exit_code == 1 and "not a folder" in out.output


def test_help_groups_the_commands_with_whole_descriptions():
    """`mmpipe --help`: the commands under Curate, Train, Look and Operate, each once, each with its whole
    first sentence (click cuts them at 45 characters with '...' otherwise)."""
    import re

    import typer.main

    from mmpipe.cli import PANELS

    out = runner.invoke(app, ["--help"], terminal_width=100)
    assert out.exit_code == 0
    text = out.output
    heads = [text.index(f"\n{panel}:\n") for panel in ("Curate", "Train", "Look", "Operate")]
    assert heads == sorted(heads) and "\nCommands:\n" not in text
    group = typer.main.get_command(app)
    flat = "".join(text.split())  # wrapping may break a line at a hyphen
    for panel, names in PANELS.items():
        section = text[text.index(f"\n{panel}:\n"):]
        for name in names:
            assert re.search(rf"^  {re.escape(name)} ", section, re.M), (panel, name)
            sentence = group.get_command(None, name).get_short_help_str(limit=1000)
            assert "".join(sentence.split()) in flat and not sentence.endswith("..."), name
    registered = set(group.list_commands(None))
    assert registered == {n for names in PANELS.values() for n in names}  # none left out of the panels
