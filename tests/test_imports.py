"""The library stays light: importing it pulls in neither prefect nor duckdb."""

import subprocess
import sys


def test_import_mmpipe_leaves_prefect_and_duckdb_out():
    code = (
        "import sys, mmpipe, mmpipe.schema, mmpipe.cli, mmpipe.cli_output, mmpipe.cli_common, mmpipe.cli_query, "
        "mmpipe.cli_curate, mmpipe.sources.folder, mmpipe.stages.decode, "
        "mmpipe.demo.photos, mmpipe.home\n"
        "bad = [m for m in ('prefect', 'duckdb') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mmpipe_source_never_imports_prefect_or_duckdb():
    from pathlib import Path

    import mmpipe

    root = Path(mmpipe.__file__).parent
    for path in root.rglob("*.py"):
        if path.name.startswith("cli"):  # the command line (cli.py + its cli_*.py parts) is the front door
            continue
        text = path.read_text()
        for mod in ("prefect", "duckdb", "warehouse", "flows", "tasks"):
            assert f"import {mod}" not in text and f"from {mod}" not in text, f"{path} imports {mod}"
