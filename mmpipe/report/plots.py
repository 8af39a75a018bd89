"""The report's plots (matplotlib's object API, no pyplot: no global figure state, safe in the task runner's
threads, and imported only when a plot is drawn): each function returns PNG bytes."""

from __future__ import annotations

import io

import numpy as np

KEPT, DROPPED = "#2e8b57", "#c0392b"
PALETTE = ["#2e8b57", "#c0392b", "#e67e22", "#8e44ad", "#2980b9", "#7f8c8d", "#d35400", "#16a085", "#f1c40f"]


def _subplots(*grid: int, figsize: tuple[float, float], squeeze: bool = True):
    """(figure, axes) like pyplot.subplots, on a Figure of its own (drawn by the Agg canvas)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, squeeze=squeeze)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def score_histograms(groups: dict[str, tuple[list[float], list[bool]]], threshold: float | None,
                     rule: str = "") -> bytes:
    """CLIP score histogram per source: kept and dropped stacked, the threshold as a dashed line."""
    n = max(1, len(groups))
    fig, axes = _subplots(n, 1, figsize=(8, 2.6 * n), squeeze=False)
    every = [s for scores, _ in groups.values() for s in scores]
    bins = np.linspace(min(every, default=0.0), max(every, default=1.0) + 1e-9, 41)
    for ax, (source, (scores, keep)) in zip(axes[:, 0], groups.items()):
        s, k = np.asarray(scores, float), np.asarray(keep, bool)
        ax.hist([s[k], s[~k]], bins=bins, stacked=True, color=[KEPT, DROPPED],
                label=[f"kept ({k.sum()})", f"dropped ({(~k).sum()})"])
        if threshold is not None:
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2,
                       label=f"threshold {threshold:.4f} {rule}".strip())
        ax.set_title(source, fontsize=10, loc="left")
        ax.set_ylabel("samples")
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("CLIP score (cosine similarity)")
    fig.tight_layout()
    return _png(fig)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of the rows, and the variance share each explains."""
    x = vectors.astype(np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if len(x) < 2:
        return np.zeros((len(x), 2)), np.zeros(2)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros_like(comps)])
    var = (s ** 2) / max(float((s ** 2).sum()), 1e-12)
    return x @ comps.T, np.pad(var[:2], (0, max(0, 2 - len(var[:2]))))


def projection(points: np.ndarray, labels: list[str], explained: np.ndarray, title: str) -> bytes:
    """A 2-D scatter coloured by outcome (kept first in the legend)."""
    fig, ax = _subplots(figsize=(7.5, 5.5))
    names = sorted(set(labels), key=lambda v: (v != "kept", v))
    lab = np.asarray(labels)
    for i, name in enumerate(names):
        m = lab == name
        ax.scatter(points[m, 0], points[m, 1], s=9, alpha=0.75, color=PALETTE[i % len(PALETTE)],
                   label=f"{name} ({int(m.sum())})", linewidths=0)
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
    ax.set_title(title, fontsize=10, loc="left")
    ax.legend(fontsize=8, markerscale=2)
    return _png(fig)


def audio_histograms(wers: list[float], durations: list[float], keep: list[bool]) -> bytes:
    """WER of clips with a reference, and durations of every decoded clip (kept vs dropped)."""
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.2))
    a.hist(np.asarray(wers, float), bins=np.linspace(0, max(1.0, max(wers, default=1.0)), 21), color="#2980b9")
    a.set_xlabel("word error rate")
    a.set_ylabel("clips")
    a.set_title(f"WER ({len(wers)} clips with a reference)", fontsize=10, loc="left")
    d, k = np.asarray(durations, float), np.asarray(keep, bool)
    bins = np.linspace(0, max(d.max() if d.size else 1.0, 1.0), 21)
    b.hist([d[k], d[~k]], bins=bins, stacked=True, color=[KEPT, DROPPED],
           label=[f"kept ({k.sum()})", f"dropped ({(~k).sum()})"])
    b.set_xlabel("duration (s)")
    b.set_title("clip durations", fontsize=10, loc="left")
    b.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def loss_curves(curves: dict[str, dict[str, tuple[list[int], list[float]]]]) -> bytes:
    """One panel per model: each loss metric against the step."""
    n = max(1, len(curves))
    fig, axes = _subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
    for ax, (model, metrics) in zip(axes[0], curves.items()):
        for i, (metric, (steps, values)) in enumerate(sorted(metrics.items())):
            ax.plot(steps, values, color=PALETTE[(i + 4) % len(PALETTE)], linewidth=1.2, label=metric)
        ax.set_title(model, fontsize=9, loc="left")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("loss")
    fig.tight_layout()
    return _png(fig)


def score_shift(a: list[float], b: list[float], label_a: str, label_b: str) -> bytes:
    """Score distributions of two versions' members, overlaid (density)."""
    fig, ax = _subplots(figsize=(8, 3.2))
    every = list(a) + list(b)
    bins = np.linspace(min(every, default=0.0), max(every, default=1.0) + 1e-9, 41)
    for values, label, color in ((a, label_a, "#2980b9"), (b, label_b, "#e67e22")):
        if values:
            ax.hist(values, bins=bins, density=True, histtype="stepfilled", alpha=0.45, color=color,
                    label=f"{label} ({len(values)}, median {np.median(values):.3f})")
    ax.set_xlabel("CLIP score of members")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _png(fig)
