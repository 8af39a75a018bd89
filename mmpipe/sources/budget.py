"""Decompressed-bytes budgets: how much a tar may expand to, alone and with the run's other tars.

A tar.gz of a few MB can hold gigabytes of zeros; every member under the per-member cap still adds
up. Each tar gets a budget (a multiple of its size on disk, at least a floor, at most a ceiling),
and all tars a reader meets for one source spec share a run budget. Budgets count member sizes from
the tar headers before a member is read, so what is held in memory never passes them. Kept in small
functions so the one tar reader (mmpipe.sources.tars) charges them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

MAX_TAR_BYTES = 2 * 1024**3  # a WebDataset shard is typically 0.5-1 GB; reading holds about 3x this
MAX_RUN_BYTES = 4 * 1024**4
MAX_EXPANSION = 100  # decompressed / on-disk size: JPEG and audio tars compress barely at all
MIN_TAR_BUDGET = 64 * 1024**2

_run_used: dict[object, int] = {}
_lock = threading.Lock()


class BudgetExceeded(Exception):
    """Reading on would pass a decompressed-bytes budget; the message says which."""


@dataclass
class TarBudget:
    """What one tar may still decompress, and the run it charges too."""

    limit: int
    run_key: object
    run_limit: int
    used: int = 0
    notes: list[str] = field(default_factory=list)

    def charge(self, size: int) -> None:
        """Count `size` more decompressed bytes, or raise BudgetExceeded (counting nothing)."""
        if self.used + size > self.limit:
            raise BudgetExceeded(f"the tar's decompressed-bytes budget of {_mb(self.limit)} "
                                 f"({_mb(self.used)} read, next member {_mb(size)})")
        with _lock:
            run_used = _run_used.get(self.run_key, 0)
            if run_used + size > self.run_limit:
                raise BudgetExceeded(f"the run's decompressed-bytes budget of {_mb(self.run_limit)} "
                                     f"({_mb(run_used)} read)")
            _run_used[self.run_key] = run_used + size
        self.used += size


def _mb(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def tar_budget(path: Path, run_key: object, max_tar_bytes: int = MAX_TAR_BYTES,
               max_run_bytes: int = MAX_RUN_BYTES) -> TarBudget:
    """The budget of one tar: MAX_EXPANSION times its size on disk, at least MIN_TAR_BUDGET, at most
    `max_tar_bytes`; charging also the run budget of `run_key`."""
    on_disk = path.stat().st_size if path.is_file() else 0
    limit = min(max_tar_bytes, max(MIN_TAR_BUDGET, MAX_EXPANSION * on_disk))
    return TarBudget(limit, run_key, max_run_bytes)


def reset_run(run_key: object) -> None:
    """Start a run's budget afresh (planning a run does this)."""
    with _lock:
        _run_used.pop(run_key, None)
