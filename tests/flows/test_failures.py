"""Clean failures: SIGTERM and Ctrl-C end a run promptly as cancelled, a full disk is one clear line and
a rerun resumes, a read-only home can still be queried, an empty source is an empty dataset."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import psutil
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from warehouse import Warehouse


@pytest.fixture
def trickle_server():
    """Serves one byte every half second, forever: a server that would hold a run."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("sig, server", [(signal.SIGTERM, "private"), (signal.SIGINT, "shared")])
def test_a_signal_ends_the_run_promptly_as_cancelled(tmp_path, trickle_server, request, sig, server):
    """SIGTERM to a command on its own private Prefect server, which it stops too; Ctrl-C to a command on a
    shared Prefect API (the test harness's, as a user's `mmpipe server`)."""
    pq.write_table(pa.table({"url": [f"{trickle_server}/{i}.jpg" for i in range(8)],
                             "caption": [f"caption number {i}" for i in range(8)]}), tmp_path / "urls.parquet")
    if server == "private":
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    else:
        env = request.getfixturevalue("cli_env")
    home = tmp_path / "home"
    exe = str(Path(sys.executable).with_name("mmpipe"))
    # SIGINT as at a terminal, even when pytest itself was started with it ignored (`cmd &` in a script)
    proc = subprocess.Popen([exe, "curate", str(tmp_path / "urls.parquet"), "--name", "t", "--clip-model", "none",
                             "--home", str(home)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # wait until the run is open and fetching
        if (home / "lake" / "catalog.json").exists() and Warehouse(home).sql(
                "SELECT count(*) AS n FROM runs WHERE status = 'running'").column("n")[0].as_py():
            break
        time.sleep(0.5)
    time.sleep(2)
    children = _children(proc.pid)
    if server == "private":
        assert children, "the command runs its Prefect API server as a child"
    sent = time.monotonic()
    proc.send_signal(sig)
    # Promptly: each trickled fetch would hold the run for minutes (a 60 s deadline per attempt, 3
    # attempts); the bound is generous so a busy machine does not fail it.
    out, err = proc.communicate(timeout=150)
    assert time.monotonic() - sent < 120
    assert proc.returncode == 130, err[-2000:]
    assert "marked cancelled" in err and "Traceback" not in err
    assert Warehouse(home).sql("SELECT status FROM runs").column("status").to_pylist() == ["cancelled"]
    deadline = time.monotonic() + 60  # the command's children (its private server) were sent SIGTERM
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    assert not any(_alive(c) for c in children)


def test_a_full_disk_is_one_clear_line_and_a_rerun_resumes(prefect_harness, tmp_path, monkeypatch):
    import io
    import tarfile

    from PIL import Image

    from mmpipe.cli import app

    with tarfile.open(tmp_path / "s.tar", "w") as tf:
        for i in range(6):
            buf = io.BytesIO()
            Image.new("RGB", (96, 96), (40 * i, 10, 10)).save(buf, "JPEG")
            for name, data in ((f"{i}.jpg", buf.getvalue()), (f"{i}.txt", f"a red picture {i}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    real = Warehouse.write_many
    calls = {"n": 0}

    def full(self, tables, message=None, batch=None):
        calls["n"] += 1
        if "decisions" in tables:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, tables, message, batch)

    monkeypatch.setattr(Warehouse, "write_many", full)
    args = ["curate", str(tmp_path / "s.tar"), "--name", "d", "--clip-model", "none", "--min-side", "64",
            "--dedup-hamming", "-1", "--home", str(tmp_path / "home")]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 1 and "the disk is full" in out.output and "Traceback" not in out.output
    monkeypatch.setattr(Warehouse, "write_many", real)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    wh = Warehouse(tmp_path / "home")
    assert wh.sql("SELECT status FROM runs").column("status").to_pylist() == ["completed"]
    assert wh.query_readonly("SELECT kept FROM run_summary").column("kept").to_pylist() == [6]


def test_a_really_full_disk_is_named_and_the_run_marked_failed_then_resumed(prefect_harness, tmp_path, monkeypatch):
    import io
    import json
    import tarfile

    from PIL import Image

    from mmpipe.cli import app

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("filling a small filesystem needs root in a container that allows mount")
    try:
        with tarfile.open(tmp_path / "s.tar", "w") as tf:
            for i in range(6):
                buf = io.BytesIO()
                Image.new("RGB", (96, 96), (40 * i, 10, 10)).save(buf, "JPEG")
                for name, data in ((f"{i}.jpg", buf.getvalue()), (f"{i}.txt", f"a red picture {i}".encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        real = Warehouse.write_many
        filler = mnt / "filler"

        def fill_then_write(self, tables, message=None, batch=None):
            if "decisions" in tables and not filler.exists():  # the disk fills up mid-run, for real
                with filler.open("wb") as f:
                    try:
                        while True:
                            f.write(b"\0" * 65536)
                    except OSError:
                        pass
            return real(self, tables, message, batch)

        monkeypatch.setattr(Warehouse, "write_many", fill_then_write)
        home = mnt / "home"
        args = ["curate", str(tmp_path / "s.tar"), "--name", "d", "--clip-model", "none", "--min-side", "64",
                "--dedup-hamming", "-1", "--home", str(home)]
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 1 and "the disk is full" in out.output, out.output
        assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
        filler.unlink()
        row = Warehouse(home).sql("SELECT status, warnings FROM runs").to_pylist()
        assert [r["status"] for r in row] == ["failed"]
        assert any("the disk is full" in w["message"] for w in json.loads(row[0]["warnings"]))
        monkeypatch.setattr(Warehouse, "write_many", real)
        again = CliRunner().invoke(app, args)
        assert again.exit_code == 0, again.output
        runs = Warehouse(home).sql("SELECT status, warnings FROM runs").to_pylist()
        assert [r["status"] for r in runs] == ["completed"] and json.loads(runs[0]["warnings"] or "[]") == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_an_empty_source_fails_in_one_line_and_makes_no_version(prefect_harness, tmp_path):
    from flows.curate import curate_flow
    from mmpipe.cli import app
    from mmpipe.sources import EmptySource

    (tmp_path / "empty").mkdir()
    out = CliRunner().invoke(app, ["curate", str(tmp_path / "empty"), "--name", "e", "--clip-model", "none",
                                   "--home", str(tmp_path / "home")])
    assert out.exit_code == 1 and len(out.output.strip().splitlines()) == 1 and "holds no files" in out.output
    (tmp_path / "t.csv").write_text("url,caption\n")  # a table with no rows: found once the run plans it
    with pytest.raises(EmptySource, match="holds no samples"):
        curate_flow(str(tmp_path / "t.csv"), "e", home=str(tmp_path / "home"), clip_model="none")
    wh = Warehouse(tmp_path / "home")
    assert wh.sql("SELECT count(*) AS n FROM datasets").column("n").to_pylist() == [0]
    assert wh.sql("SELECT status FROM runs").column("status").to_pylist() == ["failed"]


def test_a_read_only_home_can_be_queried(tmp_path):
    from mmpipe.cli import app

    home = tmp_path / "mnt"
    home.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(home)], capture_output=True).returncode:
        pytest.skip("mounting a read-only filesystem needs root in a container that allows mount")
    try:
        wh = Warehouse(home / "h")
        wh.record_run("r1", "curate", "completed", params={"name": "x"})
        del wh
        subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
        runner = CliRunner()
        out = runner.invoke(app, ["sql", "SELECT status FROM runs", "--format", "csv", "--home", str(home / "h")])
        assert out.exit_code == 0 and "completed" in out.output, out.output
        out = runner.invoke(app, ["runs", "--home", str(home / "h")])
        assert out.exit_code == 0 and "r1" in out.output
        out = runner.invoke(app, ["curate", str(tmp_path), "--name", "x", "--home", str(home / "h")])
        assert out.exit_code == 1 and "must be writable" in out.output
    finally:
        subprocess.run(["umount", "-l", str(home)], capture_output=True)


def _children(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_of_a_flow_command_leaves_no_process_behind(tmp_path, trickle_server):
    pq.write_table(pa.table({"url": [f"{trickle_server}/{i}.jpg" for i in range(4)],
                             "caption": [f"caption number {i}" for i in range(4)]}), tmp_path / "urls.parquet")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    home = tmp_path / "home"
    exe = str(Path(sys.executable).with_name("mmpipe"))
    proc = subprocess.Popen([exe, "curate", str(tmp_path / "urls.parquet"), "--name", "k", "--clip-model", "none",
                             "--home", str(home)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # until the run is open, with its API server started as a child
    while time.monotonic() < deadline and not ((home / "lake" / "catalog.json").exists() and _children(proc.pid)):
        assert proc.poll() is None, "the command ended before the test could kill it"
        time.sleep(0.5)
    children = _children(proc.pid)
    assert children, "the command runs its Prefect API server as a child"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    assert not any(_alive(c) for c in children)
