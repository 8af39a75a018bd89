"""CLIP filter: keep pairs above an absolute score, or the top fraction of a run (DataComp style)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mmpipe.stages.base import Filter


@dataclass
class ClipFilterConfig:
    """Exactly one of min_score and keep_fraction."""

    min_score: float | None = None
    keep_fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.min_score is None) == (self.keep_fraction is None):
            raise ValueError("give exactly one of --min-clip-score and --keep-fraction")
        if self.keep_fraction is not None and not 0 < self.keep_fraction <= 1:
            raise ValueError("--keep-fraction must be in (0, 1]")


class ClipFilter(Filter):
    """Decides on a whole run's scores at once (the top fraction needs all of them)."""

    name = "clip_filter"
    version = "1"

    def __init__(self, config: ClipFilterConfig):
        super().__init__()
        self.config = config
        self.threshold: float | None = None

    def decide(self, batch: pa.Table):
        scores = np.array([np.nan if s is None else s for s in batch["clip_score"].to_pylist()], dtype=np.float64)
        c = self.config
        if c.min_score is not None:
            self.threshold = c.min_score
            rule = f"min_clip_score={c.min_score:g}"
        else:
            valid = np.sort(scores[~np.isnan(scores)])[::-1]
            k = max(1, int(round(c.keep_fraction * len(valid))))
            self.threshold = float(valid[k - 1]) if len(valid) else np.inf
            rule = f"keep_fraction={c.keep_fraction:g}"
        reasons = [None if (not np.isnan(s) and s >= self.threshold)
                   else ("clip_score_low", f"{s:.4f} < {self.threshold:.4f} ({rule})") for s in scores]
        return reasons, scores.tolist()
