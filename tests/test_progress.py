"""Progress at the terminal: `mmpipe curate` on a pseudo-terminal shows bars with counts before its summary,
and nothing of them when its output is not a terminal or with --quiet."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from mmpipe.progress import Bar, samples_in


def _run_on_a_pty(args: list[str], env: dict, cwd: Path, ceiling_s: float = 900) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pseudo-terminal (as at a user's terminal); all it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal's rows, columns
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env, cwd=cwd,
                            close_fds=True)
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], ceiling_s)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=60), out.decode(errors="replace")


def _env(base: dict, home: Path) -> dict:
    env = {**base, "MMPIPE_HOME": str(home)}
    env.pop("MMPIPE_QUIET", None)
    return env


@pytest.mark.timeout(1200)
def test_curate_on_a_terminal_shows_progress_with_counts_before_the_summary(shapes, cli_env, tmp_path):
    exe = Path(sys.executable).with_name("mmpipe")
    args = [str(exe), "curate", shapes.pattern, "--name", "shapes", "--clip-model", "none", "--min-side", "64"]
    code, out = _run_on_a_pty(args, _env(cli_env, tmp_path / "home"), tmp_path)
    assert code == 0, out[-3000:]
    summary = re.search(r"run \S+: (\d+) inputs", out)
    assert summary, out[-3000:]
    n_shards = len(shapes.shards)
    # tqdm's line, redrawn in place: "Reading shards: 100%|...| 4/4 [00:01<00:00, 2.9shard/s, 160 samples, 115/s]"
    done = re.search(rf"Reading shards:.*?{n_shards}/{n_shards} \[[\d:]+<[\d:]+.*?shard.*?([\d,]+) samples", out)
    assert done and done.start() < summary.start(), out[-3000:]
    assert int(done.group(1).replace(",", "")) == int(summary.group(1))  # every input read is counted
    assert re.search(rf"Exporting:.*?{n_shards}/{n_shards}", out[:summary.start()]), out[-3000:]
    # quiet: on a terminal with --quiet, and when the output is a pipe
    env = _env(cli_env, tmp_path / "home")
    code, quiet = _run_on_a_pty([str(exe), "--quiet", *args[1:], "--name", "shapes-quiet"], env, tmp_path)
    assert code == 0 and "Reading shards" not in quiet and re.search(r"run \S+: \d+ inputs", quiet), quiet[-3000:]
    piped = subprocess.run([*args[:3], "--name", "shapes-piped", *args[5:]], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert piped.returncode == 0 and "Reading shards" not in piped.stdout + piped.stderr, piped.stderr[-3000:]


def test_bar_counts_samples_and_stays_silent_off_a_terminal(capsys):
    with Bar(3, "Scoring") as bar:
        for result in (50, {"read": 50}, ("shard-2.tar", 20)):
            bar.update(1, samples_in(result))
    assert bar.samples == 120
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
    assert samples_in(None) == 0 and samples_in(True) == 0 and samples_in({"error": "x"}) == 0
