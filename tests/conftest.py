"""Shared fixtures: offline Prefect settings, one Prefect test harness, demo data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="mmpipe-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)
from mmpipe.home import configure_prefect  # noqa: E402

configure_prefect(_PREFECT_HOME)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (a temporary local API) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The demo photo folder and each file's expected outcome."""
    from mmpipe.demo.photos import write_demo_folder

    folder = tmp_path_factory.mktemp("demo") / "photos"
    expected = write_demo_folder(folder)
    return folder, expected


@pytest.fixture
def home(tmp_path) -> Path:
    """A fresh, empty mmpipe home."""
    return tmp_path / "home"
