"""Naming why a run failed, and keeping room to say so: a full disk is recognised whatever layer
reports it (Python's ENOSPC, SQLite's "disk I/O error", DuckLake's "Failed to commit"), and a small
reserve file under the home is given back when it happens, so the run can still be marked failed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

RESERVE_NAME = ".mmpipe-reserve"
RESERVE_BYTES = 4 * 1024 * 1024
LOW_SPACE_BYTES = 2 * 1024 * 1024
DISK_FULL = ("the disk is full: free space, then run the same command again to resume the run")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes free to us on the filesystem of `path` (its nearest existing parent), or None."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def disk_full(exc: BaseException, home: str | os.PathLike | None = None) -> bool:
    """Whether `exc` means the disk is full: ENOSPC anywhere in its chain, the words for it, or (for
    errors that do not say, like DuckLake's) almost no space left where the home is."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "no space left on device" in str(e).lower() or "disk is full" in str(e).lower():
            return True
    if isinstance(exc, (LookupError, TypeError)) or type(exc) is ValueError:
        return False  # a mistake of ours or the user's, whatever the disk holds
    left = free_bytes(home) if home is not None else None
    return left is not None and left < LOW_SPACE_BYTES


def failure_reason(exc: BaseException, home: str | os.PathLike | None = None) -> str:
    """One line saying why a run failed."""
    if disk_full(exc, home):
        return DISK_FULL
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def reserve(home: str | os.PathLike) -> None:
    """Hold RESERVE_BYTES under the home (once), to give back when the disk fills."""
    path = Path(home) / RESERVE_NAME
    try:
        if not path.is_file() or path.stat().st_size < RESERVE_BYTES:
            with path.open("wb") as f:
                f.write(b"\0" * RESERVE_BYTES)
    except OSError:
        path.unlink(missing_ok=True)  # no room even for the reserve: the run will say the disk is full


def release(home: str | os.PathLike) -> None:
    """Give the reserve back (a full disk): room to mark the run failed."""
    try:
        (Path(home) / RESERVE_NAME).unlink(missing_ok=True)
    except OSError:
        pass
