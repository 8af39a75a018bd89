"""The commands `mmpipe demo` prints next are whole and paste into a shell as printed: each one runs,
open_clip_train's one-epoch run included (on a small curated version named as the demo's)."""

from __future__ import annotations

import os
import subprocess

import pytest


@pytest.mark.timeout(900)
def test_every_printed_command_runs_in_bash(prefect_harness, tmp_path):
    from flows.curate import curate_flow
    from mmpipe.cli.demo import next_commands
    from mmpipe.demo.shapes import write_shapes

    shapes = write_shapes(tmp_path / "src", n=64, n_seed=8, n_holdout=8, shard_size=32)
    home = tmp_path / "a home"  # a space: the paths must come out quoted
    result = curate_flow(shapes.pattern, "demo-shapes", home=str(home), clip_model="none", min_side=64)
    look, train = next_commands(home, result["dataset"])
    assert not any(c.endswith("...") for c in [*look, train])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    for command in [*look, train]:
        # run from where they were printed for (.venv/bin/... is relative to it)
        ran = subprocess.run(["bash", "-c", command], cwd=os.getcwd(), env=env, capture_output=True, text=True,
                             timeout=600)
        assert ran.returncode == 0, (command, ran.stdout[-2000:], ran.stderr[-2000:])
        if " sql " in command:
            assert "row" in ran.stdout, command  # a result table, e.g. "(3 rows)"
    assert list((home / "open_clip").glob("demo-shapes-v1/checkpoints/epoch_1.pt")), train
