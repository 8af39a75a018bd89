"""Shared fixtures: offline Prefect settings, one Prefect test harness, demo data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never reach a hub: make any attempt fail at once instead of waiting on the network.
os.environ["HF_HUB_OFFLINE"] = "1"
# One thread per torch/BLAS process: two test workers (and their subprocesses) on 2 cores each spinning two
# OpenMP threads spent 4x the CPU for the same training steps (a 30-step filter training: 62 CPU-s with 2
# threads, 16 with 1, on a loaded machine). Set before anything imports torch; subprocesses inherit it.
# DuckDB likewise (MMPIPE_DUCKDB_THREADS): the warehouse and user-SQL tests spent 66 CPU-s with a thread per
# core and 53.5 with one, each file alone.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MMPIPE_DUCKDB_THREADS"):
    os.environ.setdefault(_var, "1")
_PREFECT_HOME = tempfile.mkdtemp(prefix="mmpipe-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)
from mmpipe.home import SHORT_LIVED_SERVER_SERVICES_OFF, configure_prefect  # noqa: E402

configure_prefect(_PREFECT_HOME)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The harness's API server, as a flow command's private server, runs none of Prefect's background services
# (mmpipe/home.py): flows and tasks run and report the same. With them, the server spent 24 of 106 CPU-s of
# the curate and accounting tests; without, 11 of 88. The deployment tests run a full `prefect server start`.
for _name, _value in SHORT_LIVED_SERVER_SERVICES_OFF.items():
    os.environ.setdefault(_name, _value)


# The slowest test files, slowest first (durations: bench/RESULTS.md, "Test suite"). `make test` sends
# whole files to two workers in collection order (--dist loadfile --no-loadscope-reorder; xdist's own
# reorder puts files with few tests, the long single-test ones among them, last), so starting these
# first keeps one long file from running alone at the end. Files not listed keep pytest's order.
SLOW_FIRST = ("flows/test_filter_flow.py", "demo/test_demo.py", "deployments/test_deployments.py",
              "flows/test_speech_training.py", "deployments/test_schedule.py",
              "flows/test_accounting.py", "flows/test_curate_flow.py", "mmpipe/test_train_contrastive.py",
              "flows/test_dask.py", "flows/test_failures.py")


def pytest_collection_modifyitems(config, items):
    """Puts the files of SLOW_FIRST first, in that order (a stable sort: tests keep their order in a file)."""
    root = Path(__file__).parent
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}

    def key(item) -> int:
        try:
            return rank.get(Path(str(item.path)).relative_to(root).as_posix(), len(rank))
        except ValueError:
            return len(rank)

    items.sort(key=key)


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (a temporary local API) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.runners import short_lived_api

    with prefect_test_harness(server_startup_timeout=600), short_lived_api():  # a ceiling for busy machines
        from prefect.settings import PREFECT_API_URL

        # Flow commands run in-process (CliRunner) use this API, as they would a `mmpipe server` the user
        # exported, instead of each starting a private server: a start costs many seconds, and minutes on a
        # busy machine, past the private server's own start-up limit. Subprocess commands use it too, through
        # `cli_env`, unless the private server is what the test is about (then they drop PREFECT_* variables).
        before = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = before


@pytest.fixture
def cli_env(prefect_harness) -> dict[str, str]:
    """The environment for an `mmpipe` flow command run as a subprocess: PREFECT_API_URL names the harness's
    API, as a user's exported `mmpipe server` would, so the command uses it instead of starting its own
    private server (`start_for_command` in mmpipe/cli/prefect_server.py; a start costs ~14 CPU-s on 2
    cores); PREFECT_HOME and the other PREFECT_* variables as set here. A test whose point is the private
    server (its start, its death with the command) drops the PREFECT_* variables instead."""
    env = dict(os.environ)
    assert env.get("PREFECT_API_URL"), "prefect_harness exports PREFECT_API_URL"
    return env


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


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory) -> str:
    """A real mmpipe-tiny-clip (seeded random init) saved as a safetensors checkpoint."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from mmpipe.models.clip import TINY_MODEL, register_configs

    register_configs()
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_MODEL, pretrained=None, pretrained_text=False)
    path = tmp_path_factory.mktemp("clip") / "tiny.safetensors"
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """A small synthetic shapes set as WebDataset shards, with its ground truth."""
    from mmpipe.demo.shapes import write_shapes

    return write_shapes(tmp_path_factory.mktemp("shapes"), n=160, n_seed=64, n_holdout=32, shard_size=50)


@pytest.fixture(scope="session")
def http_server(tmp_path_factory):
    """A real HTTP server on 127.0.0.1 serving images, errors, slow and flaky responses."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    files: dict[str, bytes] = {}
    state = {"active": 0, "max_active": 0, "flaky": {}}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            with lock:
                state["active"] += 1
                state["max_active"] = max(state["max_active"], state["active"])
            try:
                code, body = self._route()
            finally:
                # counted as served before the reply goes out, so a client that reuses its slot
                # for the next request is never counted twice
                with lock:
                    state["active"] -= 1
            self._send(code, body)

        def _route(self) -> tuple[int, bytes]:
            time.sleep(0.05)
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[0] == "img" and parts[1] in files:
                return 200, files[parts[1]]
            if parts[0] == "status":
                return int(parts[1]), b"error"
            if parts[0] == "slow":
                time.sleep(3)
                return 200, b"late"
            if parts[0] == "flaky":
                with lock:
                    n = state["flaky"].get(parts[1], 0)
                    state["flaky"][parts[1]] = n + 1
                return (503, b"try again") if n == 0 else (200, files[parts[1]])
            return 404, b"not found"

        def _send(self, code: int, body: bytes):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"base": base, "files": files, "state": state}
    server.shutdown()


@pytest.fixture(scope="session")
def postgres_dsn():
    """A real PostgreSQL server on 127.0.0.1 with a temporary data folder, stopped at the end."""
    from pgserver import temporary_postgres

    with temporary_postgres() as dsn:
        yield dsn


if os.environ.get("MMPIPE_TEST_PROFILE"):  # opt-in: one JSON line per test with its wall and CPU seconds

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        import json
        import resource
        import time

        def cpu() -> float:
            own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

        wall, used = time.monotonic(), cpu()
        yield
        with open(os.environ["MMPIPE_TEST_PROFILE"], "a") as out:
            out.write(json.dumps({"test": item.nodeid, "wall_s": round(time.monotonic() - wall, 2),
                                  "cpu_s": round(cpu() - used, 2), "worker": os.environ.get("PYTEST_XDIST_WORKER"),
                                  "ended": round(time.time(), 1)}) + "\n")
