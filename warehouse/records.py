"""The pipeline's own rows: dataset versions, models, evaluations and runs (a mixin of Warehouse,
written through its keyed, atomic `write`/`write_many`)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa


class Records:
    """Row writers for `datasets`, `models`, `evals` and `runs`."""

    def register_dataset(self, row: dict[str, Any], run_id: str | None = None) -> None:
        """Record a dataset version (one row of `datasets`); its snapshot is the dataset's version in time."""
        self.write_many({"datasets": _row_table(row)},
                        {"message": f"dataset {row['name']}@{row['version']}", "dataset": row["name"],
                         "version": row["version"], "run_id": row.get("run_id")})

    def register_model(self, row: dict[str, Any], run_id: str | None = None) -> None:
        """Record a trained model (one row of `models`)."""
        self.write("models", _row_table(row), run_id)

    def record_eval(self, rows: list[dict[str, Any]], run_id: str | None = None) -> None:
        """Record evaluation metrics (rows of `evals`)."""
        self.write("evals", pa.Table.from_pylist([_jsonable(r) for r in rows]), run_id)

    def record_run(self, run_id: str, flow: str, status: str, params: dict | None = None,
                   flow_run_id: str | None = None, code_version: str | None = None,
                   started_at: datetime | None = None, warnings: list | None = None) -> None:
        """Insert or update a row of `runs` (the newest status wins)."""
        now = utcnow()
        prev = self.sql("SELECT started_at, params, flow_run_id, code_version, warnings FROM runs WHERE run_id = ?",
                        [run_id]).to_pylist()
        old = prev[0] if prev else {}
        row = {
            "run_id": run_id, "flow": flow, "status": status,
            "flow_run_id": flow_run_id or old.get("flow_run_id"),
            "params": json.dumps(params, sort_keys=True, default=str) if params is not None else old.get("params"),
            "code_version": code_version or old.get("code_version"),
            "started_at": started_at or old.get("started_at") or now,
            "finished_at": now if status != "running" else None,
            "warnings": json.dumps(warnings) if warnings is not None else old.get("warnings"),
        }
        self.write_many({"runs": _row_table(row)}, {"message": f"run {run_id} {status}", "run_id": run_id,
                                                     "status": status})


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for k, v in row.items()}


def _row_table(row: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([_jsonable(row)])


def utcnow() -> datetime:
    """Naive UTC now, as stored in TIMESTAMP columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
