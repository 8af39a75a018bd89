"""Scheduled incremental curation for real: `mmpipe serve` runs the curate-images deployment on an
interval schedule against a real Prefect server; the source folder gains a shard between runs, and
the run after that processes only the new shard's samples and makes v2 = v1 + what it kept."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmpipe.train.synthetic import write_shape_shards
from warehouse import Warehouse

EXE = str(Path(sys.executable).with_name("mmpipe"))


def _curations(home: Path) -> list[dict]:
    if not (home / "lake").exists():
        return []
    return Warehouse(home).sql(
        "SELECT r.run_id, r.status, r.started_at, (SELECT count(*) FROM occurrences o WHERE o.run_id = r.run_id) "
        "AS met, (SELECT any_value(d.version) FROM datasets d WHERE d.run_id = r.run_id) AS version FROM runs r "
        "WHERE r.flow = 'curate' ORDER BY r.started_at").to_pylist()


def _until(predicate, timeout: float, what: str, log: Path, served: subprocess.Popen):
    """Waits for the event (`predicate` true) while `mmpipe serve` runs; `timeout` is a generous ceiling."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert served.poll() is None, "mmpipe serve exited\n" + log.read_text()[-4000:]
        time.sleep(2)
    raise AssertionError(f"{what} within {timeout:.0f} s\n" + log.read_text()[-4000:])


@pytest.mark.timeout(2400)
def test_scheduled_curation_of_a_growing_folder_processes_only_new_files(server_env, tmp_path):
    env, procs = server_env
    home = Path(env["MMPIPE_HOME"])
    src = tmp_path / "src"
    write_shape_shards(src, 80, shard_size=40, seed=1)
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")
    served = subprocess.Popen(
        [EXE, "serve", "--only", "curate-images", "--schedule-interval", "20",
         "--param", f"curate-images.source={src}",  # models: the offline defaults (no CLIP filter here)
         "--param", "curate-images.min_side=32", "--param", "curate-images.shard_size=40"],
        env={**env, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}, cwd=tmp_path, start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT)
    procs.append(served)

    def finished() -> list[dict]:
        return [r for r in _curations(home) if r["status"] in ("completed", "completed_with_warnings")]

    first = _until(finished, 900, "no scheduled curation completed", log_path, served)[0]
    assert first["met"] == 80 and first["version"] == "v1"
    v1 = Warehouse(home).sql("SELECT n_samples FROM datasets WHERE version = 'v1'").column("n_samples")[0].as_py()

    added = write_shape_shards(tmp_path / "more", 40, shard_size=40, seed=2)
    shutil.move(added[0], src / "shapes-night2.tar")  # the folder gained a file

    def grown() -> dict | None:
        return next((r for r in finished() if r["version"] == "v2"), None)

    second = _until(grown, 900, "no scheduled curation made v2", log_path, served)
    assert second["met"] == 120  # every input met is an occurrence: the 80 met before are recorded as such
    again = Warehouse(home).sql("SELECT count(*) AS n FROM outcomes WHERE run_id = ? AND drop_reason = 'duplicate' "
                                "AND detail LIKE 'repeat of %'", [second["run_id"]]).column("n")[0].as_py()
    assert again == 80  # ... and not processed again: only the new file's 40 samples were
    runs = finished()
    between = [r for r in runs if first["started_at"] < r["started_at"] < second["started_at"]]
    assert all(r["version"] is None and r["met"] == 80 for r in between)  # unchanged source: met again, no version
    wh = Warehouse(home)
    kept_now = wh.sql("SELECT count(*) AS n FROM outcomes WHERE run_id = ? AND keep",
                      [second["run_id"]]).column("n")[0].as_py()
    v2 = wh.sql("SELECT n_samples, parent_id FROM datasets WHERE version = 'v2'").to_pylist()[0]
    assert v2["n_samples"] == v1 + kept_now and v2["parent_id"] is not None
    assert wh.sql("SELECT count(*) AS n FROM datasets").column("n")[0].as_py() == 2
