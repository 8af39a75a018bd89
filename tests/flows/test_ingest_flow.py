"""The ingest flow on real files under the Prefect harness."""

from __future__ import annotations

import pytest

from warehouse import Warehouse


@pytest.fixture
def ingest_flow(prefect_harness):
    from flows.ingest import ingest_flow

    return ingest_flow


def _outcomes(home, run_id):
    rows = Warehouse(home).query_readonly(
        "SELECT s.source_key, coalesce(o.drop_reason, 'kept') AS outcome FROM outcomes o "
        "JOIN samples s USING (sample_id) WHERE o.run_id = ?", [run_id]).to_pylist()
    return {r["source_key"]: r["outcome"] for r in rows}


def test_every_file_is_accounted_for_with_its_reason(ingest_flow, demo_folder, home):
    folder, expected = demo_folder
    result = ingest_flow(str(folder), "demo", home=str(home), batch_size=5)
    assert _outcomes(home, result["run_id"]) == expected
    wh = Warehouse(home)
    summary = wh.query_readonly("SELECT * FROM run_summary WHERE run_id = ?", [result["run_id"]]).to_pylist()[0]
    assert summary["status"] == "completed"
    assert summary["ingested"] == len(expected) == summary["kept"] + summary["dropped"]
    assert summary["kept"] == sum(v == "kept" for v in expected.values())
    dims = wh.query_readonly("SELECT width, height, format FROM samples WHERE source_key = 'rocket_rotated.jpg'")
    assert dims.to_pylist() == [{"width": 320, "height": 214, "format": "jpeg"}]  # EXIF applied


def test_reingest_records_no_new_samples_and_no_duplicates(ingest_flow, demo_folder, home):
    folder, expected = demo_folder
    first = ingest_flow(str(folder), "demo", home=str(home))
    second = ingest_flow(str(folder), "demo", home=str(home))
    assert first["new_samples"] == len(expected) and second["new_samples"] == 0
    assert second["run_id"] != first["run_id"]
    wh = Warehouse(home)
    dup = wh.query_readonly("SELECT count(*) - count(DISTINCT sample_id) AS d FROM samples").column("d")[0].as_py()
    assert dup == 0
    per_run = wh.query_readonly("SELECT run_id, count(*) AS n FROM decisions GROUP BY 1").column("n").to_pylist()
    assert per_run == [len(expected)] * 2


def test_a_crashed_run_resumes_and_finishes_without_duplicates(ingest_flow, demo_folder, home, monkeypatch):
    import tasks.ingest as ingest_tasks

    folder, expected = demo_folder
    real = ingest_tasks.read_entries
    calls = {"n": 0}

    def crash_on_third_batch(entries, source, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker killed")
        return real(entries, source, **kw)

    monkeypatch.setattr(ingest_tasks, "read_entries", crash_on_third_batch)
    with pytest.raises(Exception):
        ingest_flow(str(folder), "demo", home=str(home), batch_size=4)
    wh = Warehouse(home)
    failed = wh.query_readonly("SELECT run_id, status FROM runs").to_pylist()
    assert [r["status"] for r in failed] == ["failed"]
    partial = wh.query_readonly("SELECT count(*) AS n FROM decisions").column("n")[0].as_py()
    assert 0 < partial < len(expected)

    monkeypatch.setattr(ingest_tasks, "read_entries", real)
    result = ingest_flow(str(folder), "demo", home=str(home), batch_size=4)
    assert result["run_id"] == failed[0]["run_id"]  # the same run, finished
    assert _outcomes(home, result["run_id"]) == expected
    n = wh.query_readonly("SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM decisions").to_pylist()[0]
    assert n["n"] == n["d"] == len(expected)
    assert wh.query_readonly("SELECT status FROM runs").column("status").to_pylist() == ["completed"]


def test_artifacts_show_counts_by_reason(ingest_flow, demo_folder, home):
    from prefect.artifacts import Artifact

    folder, _ = demo_folder
    ingest_flow(str(folder), "artifact-check", home=str(home))
    table = Artifact.get("ingest-artifact-check-outcomes")
    assert table is not None and "decompression_bomb" in str(table.data)
    summary = Artifact.get("ingest-artifact-check-summary")
    assert summary is not None and "mmpipe sql" in str(summary.data)
