"""Progress at the terminal: a tqdm bar with counts, rates and time left, shown only where a person watches.

Shown when stderr is a terminal and `MMPIPE_QUIET` is unset (`mmpipe --quiet` sets it); in logs, pipes
and CI nothing is written, so a long run never floods a log file. Prefect's progress artifacts are
kept separately by the flows (flows/runners.py); this module stays free of Prefect.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any

from tqdm import tqdm

QUIET_ENV = "MMPIPE_QUIET"


def shown() -> bool:
    """Whether progress goes to the terminal: stderr is a TTY and nobody asked for quiet."""
    if os.environ.get(QUIET_ENV, "") not in ("", "0"):
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def samples_in(result: Any) -> int:
    """How many samples a shard task's result says it handled: an int, a dict's `read`/`n`/`samples`
    entry, or the count of a (name, count) pair; 0 when it does not say."""
    if isinstance(result, bool):
        return 0
    if isinstance(result, int):
        return result
    if isinstance(result, dict):
        for key in ("read", "n", "samples", "n_samples"):
            if isinstance(result.get(key), int):
                return result[key]
    if isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], int):
        return result[1]
    return 0


class Bar:
    """One step's bar on stderr: `Reading shards: 3/10 shards [00:12<00:28, 4.0s/shard, 3,000 samples, 250/s]`.

    Redrawn at most once a second in place (a carriage return, not new lines) and left on screen when done.
    """

    def __init__(self, total: int | None, description: str, unit: str = "shard") -> None:
        self.samples, self.started = 0, time.monotonic()
        # A terminal that reports no size (a bare pseudo-terminal, some CI consoles) gets nothing from
        # tqdm (it reads -1 rows); shutil falls back to a usual size there.
        size = shutil.get_terminal_size((100, 24))
        self.bar = tqdm(total=total, desc=description, unit=unit, disable=not shown(), mininterval=1.0,
                        ncols=min(size.columns, 160), nrows=size.lines, file=sys.stderr, leave=True)

    def update(self, n: int = 1, samples: int = 0) -> None:
        """`n` more units done, holding `samples` more samples."""
        self._samples(samples)
        self.bar.update(n)

    def advance_to(self, done: int, samples: int | None = None) -> None:
        """Move the bar to `done` units (training reports its step), with `samples` seen in all."""
        if samples is not None:
            self._samples(samples - self.samples)
        self.bar.update(max(0, done - self.bar.n))

    def _samples(self, more: int) -> None:
        if more:
            self.samples += more
            rate = self.samples / max(1e-9, time.monotonic() - self.started)
            self.bar.set_postfix_str(f"{self.samples:,} samples, {rate:,.0f}/s", refresh=False)

    def close(self) -> None:
        """Draw the final state and end the line."""
        self.bar.close()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
