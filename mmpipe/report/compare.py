"""What changed between two dataset versions: members added and removed, decisions whose reason
changed, and the shift of the CLIP score distribution."""

from __future__ import annotations

from collections import Counter

import numpy as np

from mmpipe.report import plots
from mmpipe.report.html import render

LISTED = 50


def ks_statistic(a: list[float], b: list[float]) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    if not a or not b:
        return None
    x, y = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([x, y])
    return float(np.max(np.abs(np.searchsorted(x, grid, "right") / len(x) - np.searchsorted(y, grid, "right") / len(y))))


def _outcome(keep, reason) -> str:
    return "kept" if keep else (reason or "dropped")


def compare_section(c: dict, save) -> str:
    """The compare section body."""
    a, b = c["a"], c["b"]
    la, lb = f"{a['name']}@{a['version']}", f"{b['name']}@{b['version']}"
    added, removed, changed = c["added"].to_pylist(), c["removed"].to_pylist(), c["changed"].to_pylist()
    summary = [{"": "samples", la: a["n_samples"], lb: b["n_samples"]},
               {"": "in both", la: c["n_common"], lb: c["n_common"]},
               {"": f"only in {la} (removed)", la: len(removed), lb: ""},
               {"": f"only in {lb} (added)", la: "", lb: len(added)},
               {"": "decisions that changed (samples both runs met)", la: len(changed), lb: len(changed)}]
    moves = Counter((_outcome(r["a_keep"], r["a_reason"]), _outcome(r["b_keep"], r["b_reason"])) for r in changed)
    lists = [(title, len(rows), [{"sample": r["sample_id"][:12], "source_key": r["source_key"], "caption": r["text"]}
                                 for r in rows[:LISTED]])
             for title, rows in ((f"Added in {lb}", added), (f"Removed from {la}", removed))]
    sa, sb = c["scores_a"], c["scores_b"]
    shift, stats = None, []
    if sa or sb:
        shift = plots.score_shift(sa, sb, la, lb)
        save("compare_scores.png", shift)
        for label, values, clip in ((la, sa, c["clip_a"]), (lb, sb, c["clip_b"])):
            v = np.asarray(values, float)
            stats.append({"version": label, "model": f"{clip['model']} {clip['pretrained']}" if clip else "",
                          "threshold": clip["threshold"] if clip else None, "n": len(v),
                          "mean": float(v.mean()) if v.size else None,
                          "median": float(np.median(v)) if v.size else None,
                          "p5": float(np.quantile(v, 0.05)) if v.size else None})
    return render(
        "compare.html.j2", la=la, lb=lb, summary=summary,
        moves=[{f"in {la}": k[0], f"in {lb}": k[1], "samples": v} for k, v in moves.most_common()],
        changed=[{"sample": r["sample_id"][:12], "caption": r["text"], la: _outcome(r["a_keep"], r["a_reason"]),
                  lb: _outcome(r["b_keep"], r["b_reason"])} for r in changed[:LISTED]],
        lists=lists, shift=shift, stats=stats, ks=ks_statistic(sa, sb) if shift else None)
