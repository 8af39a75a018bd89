"""A flow command's private Prefect API server is no silent point of failure: one that cannot start, or
that dies while the command runs, ends the command at once with one line, leaving no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from mmpipe.processes import alive, children

REPO = Path(__file__).parents[1]
CEILING = 600

# A command that starts its private server the way every flow command does, then runs a flow that
# works until it is stopped.
_COMMAND = """
import os, pathlib, sys, time
from mmpipe.cli.common import start_flows
home = pathlib.Path(sys.argv[1])
start_flows(home)
from prefect import flow

@flow
def working(marker: str) -> None:
    pathlib.Path(marker).write_text("running")
    while True:
        time.sleep(0.2)

working(str(home / "flow-started"))
"""


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_LOGGING_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO)}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_private_server_that_dies_ends_the_command_with_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _COMMAND, str(home)], cwd=REPO, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + CEILING
    while not (home / "flow-started").is_file():  # the event: the flow runs against the private server
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the flow never started"
        time.sleep(0.2)
    servers = [pid for pid in children(proc.pid) if any("uvicorn" in a for a in psutil.Process(pid).cmdline())]
    assert len(servers) == 1
    from mmpipe.home import SHORT_LIVED_SERVER_SERVICES_OFF  # a server for one command: no background services

    server_env = psutil.Process(servers[0]).environ()
    assert {k: server_env.get(k) for k in SHORT_LIVED_SERVER_SERVICES_OFF} == SHORT_LIVED_SERVER_SERVICES_OFF
    os.kill(servers[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=CEILING)  # it ends by itself: no hang once the server is gone
    assert proc.returncode == 1, stderr[-3000:]
    assert _error_lines(stderr) == [f"error: the private Prefect API server (pid {servers[0]}) exited (code -9) "
                                    "while the command ran: run the same command again to resume the run"]
    assert "Traceback" not in stderr
    assert not alive(servers[0])


def test_a_private_server_that_cannot_start_fails_the_command_at_once(tmp_path):
    from PIL import Image

    source = tmp_path / "source"  # one real pair: the command gets as far as starting its server
    source.mkdir()
    Image.new("RGB", (96, 96), "red").save(source / "a.png")
    (source / "a.txt").write_text("a red square")
    env = {**_env(tmp_path), "PREFECT_API_DATABASE_CONNECTION_URL":
           f"sqlite+aiosqlite:///{tmp_path}/no-such-folder/prefect.db"}
    out = subprocess.run([sys.executable, "-m", "mmpipe.cli", "curate", str(source), "--name", "x",
                          "--clip-model", "none", "--home", str(tmp_path / "home")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=CEILING)
    assert out.returncode == 1
    errors = _error_lines(out.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: the private Prefect API server exited at start"), \
        out.stderr[-3000:]
    assert "Traceback" not in out.stderr
