"""Basic filters with DataComp's defaults: caption length, image size, aspect ratio, pixels."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from mmpipe.stages.base import Filter


@dataclass
class BasicFilterConfig:
    """DataComp's basic filtering defaults; every threshold is configurable."""

    min_caption_words: int = 2
    min_caption_chars: int = 5
    min_side: int = 200
    max_aspect_ratio: float = 3.0
    max_pixels: int | None = None


class BasicFilter(Filter):
    """Drops short captions, small or elongated images, and images over a pixel budget."""

    name = "basic"
    version = "1"

    def __init__(self, config: BasicFilterConfig | None = None):
        super().__init__()
        self.config = config or BasicFilterConfig()

    def reason(self, text: str | None, width: int | None, height: int | None) -> str | None:
        """The first rule a sample breaks, or None."""
        c = self.config
        caption = (text or "").strip()
        if len(caption) < c.min_caption_chars or len(caption.split()) < c.min_caption_words:
            return "caption_too_short"
        if width is None or height is None:
            return None  # not an image (audio); image rules do not apply
        if min(width, height) < c.min_side:
            return "too_small"
        if max(width, height) / max(1, min(width, height)) > c.max_aspect_ratio:
            return "aspect_ratio"
        if c.max_pixels is not None and width * height > c.max_pixels:
            return "too_many_pixels"
        return None

    def decide(self, batch: pa.Table):
        rows = zip(batch["text"].to_pylist(), batch["width"].to_pylist(), batch["height"].to_pylist())
        return [self.reason(t, w, h) for t, w, h in rows], None
