"""The report never carries control characters, shows a long caption shortened (issue 22), and shows
markup in a caption as text (the templates autoescape)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from mmpipe.report.html import card, clean

BIG = "a very long caption " * 52_500  # over 1 MB
SCRIPT = "a photo titled <script>alert(1)</script>"


def test_control_characters_are_stripped_and_long_texts_shortened():
    assert clean("a\x00b\x1bc\x7f\x85d\ne\tf") == "abcd\ne\tf"
    long = "word " * 200_000
    got = card({"sample_id": "s" * 64, "text": long, "keep": True, "data": b"x", "mime": "image/png"})
    assert len(got) < 2_000 and "+999,600 characters" in got


@pytest.fixture(scope="module")
def hostile_page(prefect_harness, tmp_path_factory) -> str:
    """The report of a real curation of four squares under hostile captions."""
    from flows.curate import curate_flow

    tmp_path = tmp_path_factory.mktemp("hostile")
    folder = tmp_path / "photos"
    folder.mkdir()
    captions = {"nul": "a red\x00 square\x1b[31m with <script>alert(1)</script> control\x07 bytes",
                "big": BIG, "plain": "a plain blue square", "script": SCRIPT}
    for i, (name, text) in enumerate(captions.items()):
        Image.new("RGB", (96, 96), (60 * i, 20, 200 - 60 * i)).save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_bytes(text.encode())
    result = curate_flow(str(folder), "hostile", home=str(tmp_path / "home"), clip_model="none", min_side=32,
                         dedup_hamming=None)
    return Path(result["report"]).read_text()


def test_a_report_over_hostile_captions_is_clean_and_small(hostile_page):
    page = hostile_page
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", page)
    assert "<script>alert" not in page
    assert BIG[:2000] not in page and 1 <= page.count(" characters)") <= 3  # shortened wherever it shows
    assert len(page.encode()) < 1_000_000  # the megabyte caption is not inlined, let alone four times


class _Captions(HTMLParser):
    """The text of each card caption, and every tag the page opens."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.captions: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_caption = tag == "div" and dict(attrs).get("class") == "cap"
        if self._in_caption:
            self.captions.append("")

    def handle_endtag(self, tag):
        self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.captions[-1] += data


def test_a_script_in_a_caption_renders_as_text(hostile_page):
    parsed = _Captions()
    parsed.feed(hostile_page)
    assert "script" not in parsed.tags  # no element made of a caption: the page has no scripts at all
    assert SCRIPT in parsed.captions  # the caption reads as it was written, markup and all
    assert "a photo titled &lt;script&gt;alert(1)&lt;/script&gt;" in hostile_page
