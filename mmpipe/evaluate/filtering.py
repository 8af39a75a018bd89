"""How good is a filter: precision/recall against known-bad samples, and thresholds from trusted data."""

from __future__ import annotations

import numpy as np


def precision_recall(dropped: set[str], bad: set[str], universe: set[str]) -> dict[str, float]:
    """Precision and recall of `dropped` at catching `bad`, both restricted to `universe`."""
    dropped, bad = dropped & universe, bad & universe
    tp = len(dropped & bad)
    precision = tp / len(dropped) if dropped else 0.0
    recall = tp / len(bad) if bad else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_positives": tp,
            "dropped": len(dropped), "bad": len(bad), "evaluated": len(universe)}


def calibrate_min_score(trusted_scores: list[float], quantile: float = 0.05) -> float:
    """A CLIP-score threshold that drops only `quantile` of pairs known to be good."""
    if not trusted_scores:
        raise ValueError("no trusted scores to calibrate on")
    return float(np.quantile(np.asarray(trusted_scores, dtype=np.float64), quantile))
