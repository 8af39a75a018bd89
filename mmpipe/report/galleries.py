"""Galleries: kept examples, dropped examples per reason, borderline pairs, near-duplicate pairs."""

from __future__ import annotations

from collections import Counter, defaultdict

from mmpipe.report.card import reason_link
from mmpipe.report.html import cards, esc, image, table
from mmpipe.schema import DROP_REASONS

KEPT_SHOWN = 24
DROPPED_SHOWN = 12
BORDERLINE_SHOWN = 8
PAIRS_SHOWN = 12


def kept_gallery(previews: list[dict]) -> str:
    """Kept samples that have a preview (a deterministic sample)."""
    kept = [p for p in previews if p["keep"] and p["mime"].startswith("image/")]
    return cards(kept[:KEPT_SHOWN]) + f'<p class="small">{min(len(kept), KEPT_SHOWN)} of the {len(kept)} kept ' \
                                      "samples with a stored preview.</p>"


def dropped_galleries(reasons: Counter, previews: list[dict], dropped: list[dict]) -> str:
    """One section per drop reason present: previews where stored, else the samples' keys and details."""
    by_reason: dict[str, list[dict]] = defaultdict(list)
    for p in previews:
        if not p["keep"] and p["mime"].startswith("image/"):
            by_reason[p["drop_reason"]].append(p)
    listed: dict[str, list[dict]] = defaultdict(list)
    for r in dropped:
        listed[r["drop_reason"]].append(r)
    parts = []
    for reason, n in reasons.most_common():
        shown = by_reason.get(reason, [])[:DROPPED_SHOWN]
        body = cards(shown) if shown else ""
        if not shown:
            rows = [{"source_key": r["source_key"], "stage": r["drop_stage"], "detail": r["detail"],
                     "caption": r["text"]} for r in listed.get(reason, [])]
            body = '<p class="small">No previews (nothing decodable to show); some of these samples:</p>' + \
                table(rows, ["source_key", "stage", "detail", "caption"])
        parts.append(f'<div id="{reason_link(reason)}" class="reason" data-reason="{esc(reason)}">'
                     f"<h3>{esc(reason)} <span class=\"small\">({n} samples; {esc(DROP_REASONS.get(reason, ''))})"
                     f"</span></h3>{body}</div>")
    return "".join(parts) or '<p class="none">nothing was dropped</p>'


def borderline(previews: list[dict], threshold: float | None) -> str:
    """Previews just above (kept) and just below (dropped by the CLIP filter) the threshold."""
    if threshold is None:
        return '<p class="none">no CLIP threshold in this version</p>'
    scored = [p for p in previews if p["score"] is not None and p["mime"].startswith("image/")]
    above = sorted((p for p in scored if p["keep"]), key=lambda p: p["score"] - threshold)[:BORDERLINE_SHOWN]
    below = sorted((p for p in scored if not p["keep"] and p["drop_reason"] == "clip_score_low"),
                   key=lambda p: threshold - p["score"])[:BORDERLINE_SHOWN]
    return (f'<p class="small">Threshold {threshold:.4f}: the kept samples closest above it and the dropped '
            "ones closest below it.</p>"
            f'<div class="grid2"><div><h3>just above (kept)</h3>{cards(above)}</div>'
            f"<div><h3>just below (dropped)</h3>{cards(below)}</div></div>")


def duplicate_pairs(duplicates: list[dict], previews: list[dict]) -> str:
    """Each dropped duplicate beside the sample it duplicates (pairs with both previews first)."""
    if not duplicates:
        return '<p class="none">no duplicates in this version\'s runs</p>'
    by_id = {p["sample_id"]: p for p in previews if p["mime"].startswith("image/")}
    pairs = sorted(duplicates, key=lambda d: -((d["sample_id"] in by_id) + (d["kept_id"] in by_id)))
    shown = [d for d in pairs if d["sample_id"] in by_id or d["kept_id"] in by_id][:PAIRS_SHOWN]
    html = []
    for d in shown:
        dup, orig = by_id.get(d["sample_id"]), by_id.get(d["kept_id"])
        html.append(
            f'<div class="pair" data-pair="{esc(d["sample_id"])}">'
            f'<div>{image(orig, "kept original")}<b>kept</b> {esc((orig or {}).get("text") or d["kept_id"][:12])}</div>'
            f'<div>{image(dup, "dropped copy")}<b>{esc(d["drop_reason"])}</b> '
            f'{esc((dup or {}).get("text") or d["sample_id"][:12])}<br><span class="small">{esc(d["detail"][65:])}'
            f"</span></div></div>")
    counts = Counter(d["drop_reason"] for d in duplicates)
    note = ", ".join(f"{v} {k}" for k, v in counts.most_common())
    return (f'<p class="small">{note}; {len(shown)} pair(s) with a stored preview shown.</p>'
            f'<div class="cards">{"".join(html)}</div>')
