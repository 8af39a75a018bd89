"""Threshold and filter-model sweeps: which samples a setting keeps, which setting wins, and its plot.

DataComp's lesson: judge a curation choice by the model trained on its output at fixed compute.
A setting only selects from scores already stored, so a sweep never rescores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    """One curation choice: a CLIP filter model and a rule (min_clip_score or keep_fraction)."""

    model: str
    pretrained: str
    rule: str
    value: float

    def __post_init__(self) -> None:
        if self.rule not in ("min_clip_score", "keep_fraction"):
            raise ValueError(f"unknown rule {self.rule!r}: min_clip_score or keep_fraction")
        if self.rule == "keep_fraction" and not 0 < self.value <= 1:
            raise ValueError("keep fractions are in (0, 1]")

    @property
    def label(self) -> str:
        return f"{self.rule}={self.value:g}"

    def select(self, candidates: list[tuple[str, float]]) -> list[str]:
        """The sample ids this setting keeps, from (sample id, score) pairs (order kept)."""
        scored = [(s, v) for s, v in candidates if v is not None and not math.isnan(v)]
        if self.rule == "min_clip_score":
            return [s for s, v in scored if v >= self.value]
        k = max(1, round(self.value * len(scored)))
        threshold = sorted((v for _, v in scored), reverse=True)[k - 1] if scored else math.inf
        return [s for s, v in scored if v >= threshold]


def choose(results: list[dict], metric: str, n_eval: int | None = None) -> tuple[dict, str]:
    """The chosen setting and the reason in words, by the one-standard-error rule: among the settings
    whose `metric` is within one standard error of the best, the one that keeps the most samples
    (filtering away less for no measurable gain). For a metric in [0, 1] measured on `n_eval`
    evaluation pairs the standard error is that of a proportion, sqrt(p (1 - p) / n); otherwise
    (or without n_eval) the best metric wins, an exact tie going to the larger dataset."""
    ranked = sorted(results, key=lambda r: (-r["metrics"][metric], r["n_samples"]))
    top = ranked[0]
    p = top["metrics"][metric]
    se = math.sqrt(p * (1 - p) / n_eval) if n_eval and 0 <= p <= 1 else 0.0
    close = [r for r in ranked if r["metrics"][metric] >= p - se]
    best = max(close, key=lambda r: (r["n_samples"], r["metrics"][metric]))
    seen = f"on the fixed evaluation set at {best['samples_seen']} samples seen"
    if best is top:
        runner_up = ranked[1] if len(ranked) > 1 else None
        margin = f", {p - runner_up['metrics'][metric]:+.4f} over {runner_up['setting']}" if runner_up else ""
        within = f" (no setting keeping more samples within one standard error, {se:.4f})" if se else ""
        return best, f"highest {metric} {p:.4f} {seen}{margin}{within}"
    return best, (f"{metric} {best['metrics'][metric]:.4f} {seen}, within one standard error ({se:.4f} on {n_eval} "
                  f"evaluation pairs) of the highest, {p:.4f} ({top['setting']}), keeping the most samples "
                  f"({best['n_samples']} vs {top['n_samples']})")


def plot(results: list[dict], metric: str, path: str | Path, chance: float | None = None) -> Path:
    """Metric against the setting, one line per filter model and rule (matplotlib, Agg)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["model"], r["rule"]), []).append(r)
    for (model, rule), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r["value"])
        ax.plot([r["value"] for r in rows], [r["metrics"][metric] for r in rows], marker="o", label=f"{model} ({rule})")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("setting")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against the curation setting, same recipe and samples seen")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
