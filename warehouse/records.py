"""The pipeline's own rows: dataset versions, models, evaluations and runs (a mixin of Warehouse,
written through its keyed, atomic `write`/`write_many`)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import pyarrow as pa

from warehouse.catalog import commit_lock, retrying, write_lock

T = TypeVar("T")


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

    def record_run(self, run_id: str, flow: str, status: str | None, params: dict | None = None,
                   flow_run_id: str | None = None, code_version: str | None = None,
                   started_at: datetime | None = None, warnings: list | None = None) -> None:
        """Insert or update a row of `runs`: what is given replaces the stored value, the rest is kept
        (status None keeps the stored status). Read and write are one transaction under the write
        lock, so concurrent updates of one run cannot overwrite each other with stale fields."""
        now = utcnow()
        given = {"flow_run_id": flow_run_id, "code_version": code_version,
                 "params": json.dumps(params, sort_keys=True, default=str) if params is not None else None,
                 "warnings": json.dumps(warnings) if warnings is not None else None}

        def update(cur) -> None:
            old = cur.execute("SELECT status, started_at, params, flow_run_id, code_version, warnings FROM runs "
                              "WHERE run_id = ?", [run_id]).fetchall()
            prev = dict(zip(("status", "started_at", "params", "flow_run_id", "code_version", "warnings"),
                            old[0])) if old else {}
            state = status or prev.get("status") or "running"
            row = {"run_id": run_id, "flow": flow, "status": state,
                   **{k: v if v is not None else prev.get(k) for k, v in given.items()},
                   "started_at": started_at or prev.get("started_at") or now,
                   "finished_at": now if state != "running" else None}
            cols = list(row)
            if old:
                cur.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in cols[1:])} WHERE run_id = ?",
                            [row[c] for c in cols[1:]] + [run_id])
            else:
                cur.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                            [row[c] for c in cols])
            cur.execute("CALL lake.set_commit_message('mmpipe', ?, extra_info => ?)",
                        [f"run {run_id} {state}", json.dumps({"run_id": run_id, "status": state})])

        self.locked_transaction(update, [f"merge:runs:{run_id}"])  # the key write_many's MERGE of this run takes

    def forget_train_steps(self, model_id: str, from_step: int) -> None:
        """Delete a model's `train_steps` rows from `from_step` on: a resumed training run records
        those steps again, from the checkpoint it resumed, exactly once."""
        self.locked_transaction(lambda cur: cur.execute("DELETE FROM train_steps WHERE model_id = ? AND step >= ?",
                                                        [model_id, from_step]), ["merge:train_steps:*"])

    def locked_transaction(self, body: Callable[[Any], T], keys: list[str]) -> T:
        """Run body(cursor) as one transaction holding the write locks of `keys` (retried whole when it
        loses a race): a read-modify-write no writer of those keys can interleave with; returns its value."""
        if self.read_only:
            raise PermissionError("this warehouse was opened read-only")

        def attempt() -> T:
            cur = self._cursor()
            try:
                cur.execute("BEGIN")
                value = body(cur)
                cur.execute("COMMIT")
                return value
            except BaseException:
                try:
                    cur.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - the original error is the one to raise
                    pass
                raise
            finally:
                cur.close()

        with write_lock(self.catalog, keys), commit_lock(self.catalog):
            return retrying(attempt)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for k, v in row.items()}


def _row_table(row: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([_jsonable(row)])


def utcnow() -> datetime:
    """Naive UTC now, as stored in TIMESTAMP columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
