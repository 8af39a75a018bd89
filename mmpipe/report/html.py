"""HTML pieces of the report: escaping, tables, data: URIs, figures, galleries. No network, no scripts."""

from __future__ import annotations

import base64
import html
import re
from typing import Iterable

_SAMPLE_ID = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{52}\b")

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:0 20px 60px;
color:#1d2330;line-height:1.4}
h1{margin:24px 0 4px;font-size:26px}h2{margin-top:36px;border-bottom:2px solid #e3e6ec;padding-bottom:4px}
h3{margin:22px 0 8px}.sub{color:#5b6473;margin:0 0 12px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #e3e6ec;padding:8px 0;z-index:2;font-size:14px}
nav a{margin-right:14px;color:#2456a6;text-decoration:none}
table{border-collapse:collapse;font-size:13px;margin:8px 0 14px}th,td{border:1px solid #dde1e8;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f4f6f9}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f4f6f9;padding:1px 4px;border-radius:3px;font-size:12px;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{width:150px;font-size:11px;border:1px solid #e3e6ec;border-radius:6px;
padding:6px;background:#fafbfc}.card img{display:block;margin:0 auto 4px;max-width:138px;max-height:110px}
.card .cap{max-height:46px;overflow:hidden}.card .meta{color:#5b6473;overflow-wrap:anywhere}
td{overflow-wrap:anywhere}
.pair{display:flex;gap:6px;border:1px solid #e3e6ec;border-radius:6px;padding:6px;font-size:11px;width:320px}
.pair>div{width:150px}.pair img{max-width:140px;max-height:110px;display:block}
.kept{border-left:4px solid #2e8b57}.dropped{border-left:4px solid #c0392b}
figure{margin:8px 0}figure img{max-width:100%}figcaption{font-size:12px;color:#5b6473}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:14px}.none{color:#8a93a3;font-style:italic}
audio{width:260px;height:32px}.small{font-size:12px;color:#5b6473}
"""


# C0 and C1 control characters (tab and newline stay), DEL, and lone surrogates: never put into the page.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_TEXT = 400  # characters of one text (a caption, a detail) shown in the page
ALT_TEXT = 100


def clean(value, limit: int = MAX_TEXT) -> str:
    """Text as it is shown: control characters removed, shortened to `limit` characters with a note."""
    text = _CONTROL.sub("", "" if value is None else str(value))
    if len(text) > limit:
        return f"{text[:limit]}… (+{len(text) - limit:,} characters)"
    return text


def esc(value, limit: int = MAX_TEXT) -> str:
    """Text as HTML (None as an empty string): no control characters, long texts shortened."""
    return "" if value is None else html.escape(clean(value, limit))


def data_uri(data: bytes, mime: str) -> str:
    """Bytes inlined as a data: URI."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def fmt(value, digits: int = 4) -> str:
    """A cell value: floats rounded, None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def table(rows: list[dict], columns: Iterable[str] | None = None, raw: Iterable[str] = ()) -> str:
    """An HTML table of dict rows; numbers right-aligned; columns in `raw` are HTML already."""
    if not rows:
        return '<p class="none">none</p>'
    cols = list(columns or rows[0].keys())
    raw = set(raw)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c in raw:
                cells.append(f"<td>{v or ''}</td>")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<td class="n">{esc(fmt(v))}</td>')
            else:
                cells.append(f"<td>{esc(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(png: bytes, caption: str, alt: str) -> str:
    """A plot inlined as a PNG data: URI with its caption."""
    return (f'<figure><img src="{data_uri(png, "image/png")}" alt="{esc(alt, ALT_TEXT)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def image(preview: dict | None, alt: str) -> str:
    """A preview's <img>, or a note that the sample has none."""
    if not preview or not preview.get("data"):
        return '<div class="none">no preview</div>'
    return (f'<img src="{data_uri(preview["data"], preview["mime"])}" alt="{esc(alt, ALT_TEXT)}" '
            f'width="{preview.get("width") or ""}" height="{preview.get("height") or ""}">')


def short_ids(text: str) -> str:
    """Sample ids in a text shortened to their first 12 hex digits."""
    return _SAMPLE_ID.sub(lambda m: m.group(1) + "…", text)


def card(preview: dict, extra: str = "") -> str:
    """One gallery card: picture, caption, score and the decision."""
    kept = preview.get("keep")
    score = preview.get("score")
    meta = [f"score {score:.3f}" if score is not None else "", "kept" if kept else esc(preview.get("drop_reason"))]
    detail = preview.get("detail")
    if detail and not kept:
        meta.append(esc(short_ids(str(detail))[:80]))
    return (f'<div class="card {"kept" if kept else "dropped"}" data-sample="{esc(preview["sample_id"])}">'
            f'{image(preview, preview.get("text") or preview["sample_id"])}'
            f'<div class="cap">{esc(preview.get("text") or "(no caption)")}</div>'
            f'<div class="meta">{" · ".join(m for m in meta if m)}</div>{extra}</div>')


def cards(previews: list[dict]) -> str:
    """A gallery of cards."""
    if not previews:
        return '<p class="none">no previews stored for these samples</p>'
    return '<div class="cards">' + "".join(card(p) for p in previews) + "</div>"


def audio_player(preview: dict | None) -> str:
    """An <audio> player with the clip inlined, or a note."""
    if not preview or not preview.get("data"):
        return '<span class="none">no playable clip</span>'
    return f'<audio controls preload="none" src="{data_uri(preview["data"], preview["mime"])}"></audio>'


def page(title: str, nav: list[tuple[str, str]], body: str) -> str:
    """The whole document."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head>'
            f"<body><nav>{links}</nav>{body}</body></html>")


def section(anchor: str, title: str, body: str, sub: str = "") -> str:
    """A titled section with an anchor for the navigation bar."""
    return (f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>'
            + (f'<p class="sub">{esc(sub)}</p>' if sub else "") + body + "</section>")


def anchor_of(text: str) -> str:
    """A safe element id."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())
