"""One live run per command: a run holds a lease in the warehouse; an identical command finds it live
and stops with one line (or waits for it, within a bound), and resumes the unfinished run only once
its holder is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tasks import runs
from warehouse import Warehouse, leases

PARAMS = {"source": "nightly", "name": "images"}
CEILING = 600  # generous: the waits below end on events


def _hold(home: str, inside: threading.Event, leave: threading.Event, out: dict) -> None:
    try:
        with runs.tracked_run(home, "lease-test", PARAMS) as run:
            out["run_id"] = run.run_id
            inside.set()
            assert leave.wait(CEILING)
    except BaseException as e:  # noqa: BLE001 - reported to the test thread
        out["error"] = e
        inside.set()


def test_an_identical_command_stops_or_waits_while_a_run_is_live(prefect_harness, tmp_path, monkeypatch):
    home = str(tmp_path / "home")
    inside, leave, first = threading.Event(), threading.Event(), {}
    holder = threading.Thread(target=_hold, args=(home, inside, leave, first))
    holder.start()
    assert inside.wait(CEILING) and "error" not in first
    with pytest.raises(runs.RunInProgress, match=f"identical lease-test run is in progress .{first['run_id']}"):
        with runs.tracked_run(home, "lease-test", PARAMS):
            pytest.fail("a second identical run must not start")
    with runs.tracked_run(home, "lease-test", {**PARAMS, "name": "other"}) as other:  # another command runs
        assert other.run_id != first["run_id"]

    # With a wait bound the second command waits until the first ends, then runs (a new run: the first
    # one completed). It is released only once it has found the lease held.
    found_held = threading.Event()
    real_claim = leases.claim

    def claim(*args, **kwargs):
        held = real_claim(*args, **kwargs)
        if held is not None:
            found_held.set()
        return held

    monkeypatch.setattr(leases, "claim", claim)
    monkeypatch.setenv("MMPIPE_RUN_WAIT_S", str(CEILING))
    second_inside, second_leave, second = threading.Event(), threading.Event(), {}
    waiter = threading.Thread(target=_hold, args=(home, second_inside, second_leave, second))
    waiter.start()
    assert found_held.wait(CEILING)
    assert not second_inside.is_set()  # still waiting: the first run holds the lease
    leave.set()
    holder.join(CEILING)
    assert second_inside.wait(CEILING) and "error" not in second
    second_leave.set()
    waiter.join(CEILING)
    wh = Warehouse(home)
    status = {r["run_id"]: r["status"] for r in wh.sql("SELECT run_id, status FROM runs").to_pylist()}
    assert second["run_id"] != first["run_id"]
    assert status[first["run_id"]] == status[second["run_id"]] == "completed"
    assert leases.holder(wh, runs.lease_key("lease-test", PARAMS)) is None  # released at the end


def test_a_run_whose_holder_died_is_resumed_at_once(prefect_harness, tmp_path):
    """A command killed with SIGKILL leaves its lease and its running run: the same command takes the
    lease over (its holder, a process of this host, is gone) and resumes that run."""
    home = tmp_path / "home"
    script = (
        "import os, signal, sys\n"
        "from mmpipe.lease import lease_key, owner_id\n"
        "from warehouse import Warehouse, leases\n"
        f"params = {PARAMS!r}\n"
        "wh = Warehouse(sys.argv[1])\n"
        "key = lease_key('lease-test', params)\n"
        "assert leases.claim(wh, key, owner_id(), 'lease-test', 3600) is None\n"
        "wh.record_run('lease-test-killed', 'lease-test', 'running', params=params)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(home)], cwd=Path(__file__).parents[2],
                          capture_output=True, text=True, timeout=CEILING)
    assert proc.returncode == -9, proc.stderr[-2000:]
    wh = Warehouse(home)
    held = leases.holder(wh, runs.lease_key("lease-test", PARAMS))
    assert held and held["owner"].split("/")[1] != str(os.getpid())
    with runs.tracked_run(str(home), "lease-test", PARAMS) as run:
        assert run.run_id == "lease-test-killed"  # resumed, not a second run beside it


def test_a_lease_from_another_machine_holds_until_it_expires(prefect_harness, tmp_path):
    home = str(tmp_path / "home")
    wh = Warehouse(home)
    key = runs.lease_key("lease-test", PARAMS)
    assert leases.claim(wh, key, "elsewhere/1/1/x", "lease-test", 3600) is None
    with pytest.raises(runs.RunInProgress, match="pid 1 on elsewhere"):
        with runs.tracked_run(home, "lease-test", PARAMS):
            pass
    assert leases.claim(wh, key, "elsewhere/1/1/x", "lease-test", -1) is None  # it stopped renewing: expired
    with runs.tracked_run(home, "lease-test", PARAMS) as run:
        assert run.run_id.startswith("lease-test-")
