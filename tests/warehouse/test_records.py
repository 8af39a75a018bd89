"""`record_run` is one read-modify-write under the write lock: concurrent updates of a run keep each
other's fields."""

from __future__ import annotations

import json
import threading

from warehouse import Warehouse

CEILING = 600


class _PausingCursor:
    """A cursor that, in the thread named `slow`, stops right after reading the run's row."""

    def __init__(self, cur, read: threading.Event, go: threading.Event):
        self.cur, self.read, self.go = cur, read, go

    def execute(self, query, params=None):
        result = self.cur.execute(query, params or [])
        if "FROM runs WHERE run_id" in query and threading.current_thread().name == "slow":
            self.read.set()
            assert self.go.wait(CEILING)
        return result

    def __getattr__(self, name):
        return getattr(self.cur, name)


def test_a_warnings_update_racing_the_final_status_loses_neither(tmp_path):
    wh = Warehouse(tmp_path / "home")
    wh.record_run("r1", "curate", "running", params={"name": "x"}, flow_run_id="f", code_version="c", warnings=[])
    read, go = threading.Event(), threading.Event()
    real = wh._cursor
    wh._cursor = lambda: _PausingCursor(real(), read, go)
    slow = threading.Thread(name="slow", target=wh.record_run,
                            args=("r1", "curate", None), kwargs={"warnings": [{"what": "broken_shard"}]})
    slow.start()
    assert read.wait(CEILING)  # the warnings update has read the row and not written yet
    fast = threading.Thread(name="fast", target=wh.record_run, args=("r1", "curate", "completed"))
    fast.start()
    fast.join(5)  # with the read outside the lock, the status update would commit here, then be overwritten
    go.set()
    slow.join(CEILING)
    fast.join(CEILING)
    row = wh.sql("SELECT * FROM runs WHERE run_id = 'r1'").to_pylist()
    assert len(row) == 1
    assert row[0]["status"] == "completed" and json.loads(row[0]["warnings"]) == [{"what": "broken_shard"}]
    assert (row[0]["params"], row[0]["flow_run_id"], row[0]["code_version"]) == ('{"name": "x"}', "f", "c")
    assert row[0]["finished_at"] is not None


def test_a_status_of_none_keeps_the_stored_one(tmp_path):
    wh = Warehouse(tmp_path / "home")
    wh.record_run("r1", "curate", "completed", params={})
    wh.record_run("r1", "curate", None, warnings=[{"what": "late"}])  # a retried warnings write reopens nothing
    row = wh.sql("SELECT status, warnings FROM runs").to_pylist()
    assert row == [{"status": "completed", "warnings": '[{"what": "late"}]'}]
    assert wh.snapshot_of(run_id="r1")  # the closing commit is found as before
