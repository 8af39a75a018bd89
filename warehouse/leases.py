"""Run leases: at most one live run per command (flow + params). A run claims its command's lease,
renews it while it works and releases it when it ends; an identical command finds the lease live and
waits or stops. A lease whose holder stopped renewing expires; one whose holder the caller knows to be
dead (a process on this host that is gone) is taken over at once by naming that holder.

Leases live in the lake (mmpipe_internal.run_leases), so they work across machines with the PostgreSQL
catalog; every change is one transaction under the warehouse's write lock.
"""

from __future__ import annotations

from datetime import timedelta

from warehouse.records import utcnow
from warehouse.store import Warehouse

_TABLE = "mmpipe_internal.run_leases"
_COLUMNS = ("lease_key", "owner", "flow", "run_id", "claimed_at", "renewed_at", "expires_at")


def _ensure(cur) -> None:
    cur.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (lease_key VARCHAR, owner VARCHAR, flow VARCHAR, "
                "run_id VARCHAR, claimed_at TIMESTAMP, renewed_at TIMESTAMP, expires_at TIMESTAMP)")


def _holder(cur, key: str) -> dict | None:
    rows = cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM {_TABLE} WHERE lease_key = ?", [key]).fetchall()
    return dict(zip(_COLUMNS, rows[0])) if rows else None


def claim(wh: Warehouse, key: str, owner: str, flow: str, ttl_s: float, replace: str | None = None) -> dict | None:
    """Take the lease `key` for `owner` when it is free, expired, already ours, or held by `replace`
    (a holder the caller found dead); returns None when taken, else the live holder's row."""
    found: list[dict | None] = [None]

    def body(cur) -> None:
        _ensure(cur)
        now = utcnow()
        held = _holder(cur, key)
        if held and held["owner"] not in (owner, replace) and held["expires_at"] > now:
            found[0] = held
            return
        cur.execute(f"DELETE FROM {_TABLE} WHERE lease_key = ?", [key])
        cur.execute(f"INSERT INTO {_TABLE} VALUES (?, ?, ?, NULL, ?, ?, ?)",
                    [key, owner, flow, now, now, now + timedelta(seconds=ttl_s)])

    wh.locked_transaction(body, [f"lease:{key}"])
    return found[0]


def renew(wh: Warehouse, key: str, owner: str, ttl_s: float, run_id: str | None = None) -> bool:
    """Extend our lease (and name the run it guards); False when it is no longer ours."""
    ours = [False]

    def body(cur) -> None:
        _ensure(cur)
        held = _holder(cur, key)
        ours[0] = bool(held and held["owner"] == owner)
        if ours[0]:
            now = utcnow()
            cur.execute(f"UPDATE {_TABLE} SET renewed_at = ?, expires_at = ?, run_id = coalesce(?, run_id) "
                        "WHERE lease_key = ? AND owner = ?", [now, now + timedelta(seconds=ttl_s), run_id, key, owner])

    wh.locked_transaction(body, [f"lease:{key}"])
    return ours[0]


def release(wh: Warehouse, key: str, owner: str) -> None:
    """Give the lease up (only if it is still ours)."""
    def body(cur) -> None:
        _ensure(cur)
        cur.execute(f"DELETE FROM {_TABLE} WHERE lease_key = ? AND owner = ?", [key, owner])

    wh.locked_transaction(body, [f"lease:{key}"])


def holder(wh: Warehouse, key: str) -> dict | None:
    """The lease's current row (live or expired), or None."""
    rows = wh.sql(f"SELECT {', '.join(_COLUMNS)} FROM {_TABLE} WHERE lease_key = ?", [key]).to_pylist() \
        if wh.sql("SELECT count(*) AS n FROM duckdb_tables() WHERE database_name = 'lake' "
                  "AND schema_name = 'mmpipe_internal' AND table_name = 'run_leases'").column("n")[0].as_py() else []
    return rows[0] if rows else None
