"""Galleries: kept examples, dropped examples per reason, borderline pairs, near-duplicate pairs."""

from __future__ import annotations

from collections import Counter, defaultdict

from mmpipe.report.card import reason_link
from mmpipe.report.html import macros
from mmpipe.schema import DROP_REASONS

KEPT_SHOWN = 24
DROPPED_SHOWN = 12
BORDERLINE_SHOWN = 8
PAIRS_SHOWN = 12


def kept_gallery(previews: list[dict]) -> str:
    """Kept samples that have a preview (a deterministic sample)."""
    kept = [p for p in previews if p["keep"] and p["mime"].startswith("image/")]
    return _gallery().kept(kept[:KEPT_SHOWN], len(kept))


def dropped_galleries(reasons: Counter, previews: list[dict], dropped: list[dict]) -> str:
    """One section per drop reason present: previews where stored, else the samples' keys and details."""
    by_reason: dict[str, list[dict]] = defaultdict(list)
    for p in previews:
        if not p["keep"] and p["mime"].startswith("image/"):
            by_reason[p["drop_reason"]].append(p)
    listed: dict[str, list[dict]] = defaultdict(list)
    for r in dropped:
        listed[r["drop_reason"]].append(r)
    groups = []
    for reason, n in reasons.most_common():
        shown = by_reason.get(reason, [])[:DROPPED_SHOWN]
        rows = [] if shown else [{"source_key": r["source_key"], "stage": r["drop_stage"], "detail": r["detail"],
                                  "caption": r["text"]} for r in listed.get(reason, [])]
        groups.append({"reason": reason, "anchor": reason_link(reason), "n": n,
                       "meaning": DROP_REASONS.get(reason, ""), "previews": shown, "rows": rows})
    return _gallery().dropped(groups)


def borderline(previews: list[dict], threshold: float | None) -> str:
    """Previews just above (kept) and just below (dropped by the CLIP filter) the threshold."""
    if threshold is None:
        return _gallery().borderline(None, [], [])
    scored = [p for p in previews if p["score"] is not None and p["mime"].startswith("image/")]
    above = sorted((p for p in scored if p["keep"]), key=lambda p: p["score"] - threshold)[:BORDERLINE_SHOWN]
    below = sorted((p for p in scored if not p["keep"] and p["drop_reason"] == "clip_score_low"),
                   key=lambda p: threshold - p["score"])[:BORDERLINE_SHOWN]
    return _gallery().borderline(threshold, above, below)


def duplicate_pairs(duplicates: list[dict], previews: list[dict]) -> str:
    """Each dropped duplicate beside the sample it duplicates (pairs with both previews first)."""
    if not duplicates:
        return _gallery().pairs([], None)
    by_id = {p["sample_id"]: p for p in previews if p["mime"].startswith("image/")}
    pairs = sorted(duplicates, key=lambda d: -((d["sample_id"] in by_id) + (d["kept_id"] in by_id)))
    shown = [{**d, "orig": by_id.get(d["kept_id"]), "dup": by_id.get(d["sample_id"])}
             for d in pairs if d["sample_id"] in by_id or d["kept_id"] in by_id][:PAIRS_SHOWN]
    counts = Counter(d["drop_reason"] for d in duplicates)
    return _gallery().pairs(shown, ", ".join(f"{v} {k}" for k, v in counts.most_common()))


def _gallery():
    return macros("galleries.html.j2")
