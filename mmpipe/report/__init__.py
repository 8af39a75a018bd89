"""The report of a dataset version: one self-contained HTML page (data card, CLIP score plots,
galleries, audio, trained models, comparison with another version) plus its PNG plots, built from
the plain data `warehouse.report_queries` hands over. Pure Python + matplotlib (Agg)."""

from __future__ import annotations

import os
from pathlib import Path

from mmpipe.report.page import build_html, write_report


def report_dir(home: str | os.PathLike, name: str, version: str, compare: str | None = None) -> Path:
    """Where a version's report goes: <home>/reports/<name>/<version>[-vs-<other>]/."""
    leaf = version if not compare else f"{version}-vs-{compare.replace('@', '-').replace('/', '-')}"
    return Path(home) / "reports" / name / leaf


__all__ = ["build_html", "report_dir", "write_report"]
