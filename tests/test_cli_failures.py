"""Command-line failures that must come at once, in one line (issue 22)."""

from __future__ import annotations

import time

from typer.testing import CliRunner

from mmpipe.cli import app


def test_serve_only_an_unknown_deployment_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens: it must not get that far
    start = time.monotonic()
    out = CliRunner().invoke(app, ["serve", "--only", "nonexistent", "--home", str(tmp_path / "h")])
    assert out.exit_code == 1 and len(out.output.strip().splitlines()) == 1
    assert "no deployment nonexistent" in out.output and "curate-images" in out.output
    assert time.monotonic() - start < 60  # a ceiling: it used to serve on silently
