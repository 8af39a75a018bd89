"""One real curation (shapes + a tiny CLIP), a short training run on it, a transcription, and a
second curated version, shared by the report tests (module scope keeps the suite short)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mmpipe.models.clip import TINY_MODEL


@pytest.fixture(scope="session")
def pipeline_home(prefect_harness, tiny_clip_checkpoint, shapes, tmp_path_factory) -> dict:
    """shapes@v1 (keep 60%), a contrastive and a diffusion model trained and evaluated on it, shapes@v2
    (keep 40%), and speech@v1 transcribed with tiny.en; the flows' results by name."""
    from flows.curate import curate_flow
    from flows.train import train_contrastive_flow, train_diffusion_flow
    from flows.transcribe import transcribe_flow
    from mmpipe.demo.speech import SPEECH_DIR

    home = tmp_path_factory.mktemp("report") / "home"
    clip = dict(clip_model=TINY_MODEL, clip_pretrained=tiny_clip_checkpoint, min_side=64, clip_workers=0)
    got = {"home": home}
    got["curate"] = curate_flow(shapes.pattern, "shapes", home=str(home), keep_fraction=0.6, **clip)
    fast = dict(batch_size=16, lr=3e-3, warmup_steps=1)
    got["contrastive"] = train_contrastive_flow("shapes@v1", home=str(home), model_name="mmpipe-micro-clip", steps=4,
                                                **fast)
    got["diffusion"] = train_diffusion_flow("shapes@v1", home=str(home), steps=3, model={"block_out_channels":
                                                                                          [16, 32, 32]}, **fast)
    got["curate_v2"] = curate_flow(shapes.pattern, "shapes", home=str(home), keep_fraction=0.4, **clip)
    speech = home.parent / "speech"  # a few clips of each kind keep tiny.en's share of the time small
    speech.mkdir()
    for name in ("clip00.flac", "clip00.txt", "clip04.mp3", "clip04.txt", "silence.wav", "empty.wav",
                 "truncated.flac", "truncated.txt"):
        shutil.copy(SPEECH_DIR / name, speech / name)
    got["speech"] = transcribe_flow(str(speech), "speech", home=str(home), whisper_model="tiny.en",
                                    device="cpu", shard_size=8)
    return got


class PageParser(HTMLParser):
    """Collects what the tests check: ids, sources of images and clips, links, elements with data-*."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.audio: list[str] = []
        self.links: list[str] = []
        self.reasons: list[str] = []
        self.pairs: list[str] = []
        self.cards: list[tuple[str, str]] = []  # (class, sample id)
        self.section: str | None = None
        self.card_sections: list[tuple[str, str, str]] = []  # (section id, class, sample id)
        self.open_tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("img", "br", "meta", "link", "source"):
            self.open_tags.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "section":
            self.section = a.get("id")
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "audio":
            self.audio.append(a.get("src", ""))
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if "data-pair" in a:
            self.pairs.append(a["data-pair"])
        if "data-reason" in a:
            self.reasons.append(a["data-reason"])
        if "data-sample" in a:
            self.card_sections.append((self.section, a.get("class", ""), a["data-sample"]))

    def handle_endtag(self, tag):
        if tag in ("img", "br", "meta", "link", "source"):
            return
        assert self.open_tags and self.open_tags[-1] == tag, f"</{tag}> closes <{self.open_tags[-1:]}>"
        self.open_tags.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse_page(path: str | Path) -> PageParser:
    parser = PageParser()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    parser.close()
    assert parser.open_tags == [], parser.open_tags[-5:]
    return parser


@pytest.fixture(scope="session")
def parse_page():
    """Parse a report page with html.parser; every tag must be closed where it opened."""
    return _parse_page


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (skipped only where apt is unavailable)."""
    found = shutil.which("chromium")
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and apt-get is unavailable")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=900, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, capture_output=True, timeout=1800,
                   env=env)
    found = shutil.which("chromium")
    assert found, "chromium not found after apt-get install chromium"
    return found


@pytest.fixture(scope="session")
def wait_for_file():
    """Wait until a file exists with content; returns its text."""
    return _wait_for


def _wait_for(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear")
