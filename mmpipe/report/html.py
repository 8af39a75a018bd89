"""The report's templates (mmpipe/report/templates/*.html.j2, Jinja2 with autoescape) and the helpers
they use: text cleaning, number formatting, data: URIs. No network, no scripts."""

from __future__ import annotations

import base64
import re
from functools import lru_cache

import jinja2
from markupsafe import Markup

_SAMPLE_ID = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{52}\b")

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


def data_uri(data: bytes, mime: str) -> Markup:
    """Bytes inlined as a data: URI (Markup: never shortened; the mime type is escaped)."""
    return Markup("data:{};base64,{}").format(mime, base64.b64encode(data).decode("ascii"))


def fmt(value, digits: int = 4) -> str:
    """A cell value: floats rounded, None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def short_ids(text: str) -> str:
    """Sample ids in a text shortened to their first 12 hex digits."""
    return _SAMPLE_ID.sub(lambda m: m.group(1) + "…", text)


def anchor_of(text: str) -> str:
    """A safe element id."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def card_meta(preview: dict) -> list[str]:
    """The meta line of a gallery card: score, the decision, and a dropped sample's detail (short ids)."""
    kept, score, detail = preview.get("keep"), preview.get("score"), preview.get("detail")
    meta = [f"score {score:.3f}" if score is not None else "", "kept" if kept else clean(preview.get("drop_reason"))]
    if detail and not kept:
        meta.append(clean(short_ids(str(detail))[:80]))
    return [m for m in meta if m]


def _shown(value) -> object:
    """What every {{ value }} of a template shows: Markup as it is, None as nothing, the rest cleaned."""
    if isinstance(value, Markup):
        return value
    return "" if value is None else clean(value)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates' environment: autoescaped, strict about undefined names, every value cleaned."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mmpipe.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=True),
        undefined=jinja2.StrictUndefined, finalize=_shown, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(clean=clean, fmt=fmt, data_uri=data_uri, short_ids=short_ids)
    env.tests.update(markup=lambda v: isinstance(v, Markup),
                     numeric=lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
    env.globals.update(card_meta=card_meta, ALT_TEXT=ALT_TEXT)
    return env


def render(template: str, **context) -> Markup:
    """A template rendered with `context`, as Markup to put into another template."""
    return Markup(environment().get_template(template).render(**context))


def macros(template: str = "macros.html.j2"):
    """A template's macros, callable from Python (each returns Markup)."""
    return environment().get_template(template).module


def table(rows: list[dict], columns: list[str] | None = None) -> Markup:
    """An HTML table of dict rows (numbers right-aligned; Markup cells go in as they are)."""
    return macros().table(rows, columns)


def card(preview: dict) -> Markup:
    """One gallery card: picture, caption, score and the decision."""
    return macros().card(preview)


def audio_player(preview: dict | None) -> Markup:
    """An <audio> player with the clip inlined, or a note."""
    return macros().audio_player(preview)


def link(href: str, text: str) -> Markup:
    """A link."""
    return macros().link(href, text)
