"""The report never carries control characters and shows a long caption shortened (issue 22)."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from mmpipe.report.html import card, clean


def test_control_characters_are_stripped_and_long_texts_shortened():
    assert clean("a\x00b\x1bc\x7f\x85d\ne\tf") == "abcd\ne\tf"
    long = "word " * 200_000
    got = card({"sample_id": "s" * 64, "text": long, "keep": True, "data": b"x", "mime": "image/png"})
    assert len(got) < 2_000 and "+999,600 characters" in got


def test_a_report_over_hostile_captions_is_clean_and_small(prefect_harness, tmp_path):
    from flows.curate import curate_flow

    folder = tmp_path / "photos"
    folder.mkdir()
    big = "a very long caption " * 52_500  # over 1 MB
    captions = {"nul": "a red\x00 square\x1b[31m with <script>alert(1)</script> control\x07 bytes",
                "big": big, "plain": "a plain blue square"}
    for i, (name, text) in enumerate(captions.items()):
        Image.new("RGB", (96, 96), (60 * i, 20, 200 - 60 * i)).save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_bytes(text.encode())
    result = curate_flow(str(folder), "hostile", home=str(tmp_path / "home"), clip_model="none", min_side=32,
                         dedup_hamming=None)
    page = Path(result["report"]).read_text()
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", page)
    assert "<script>alert" not in page
    assert big[:2000] not in page and 1 <= page.count(" characters)") <= 3  # shortened wherever it shows
    assert len(page.encode()) < 1_000_000  # the megabyte caption is not inlined, let alone four times
