"""CLIP scoring: cosine similarity of normalized image and text embeddings, batched.

Decoding and preprocessing run in DataLoader worker processes while the model encodes; the
model is loaded once per process (mmpipe.models.clip caches it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import pyarrow as pa
import pyarrow.compute as pc

from mmpipe.schema import MAX_PIXELS
from mmpipe.stages.base import Stage, set_column
from mmpipe.stages.decode import decode_image

if TYPE_CHECKING:
    from mmpipe.models.clip import ClipBundle

# torch and open_clip are imported where a model is loaded or run: a curation without CLIP scoring (and
# every command that only names this config) starts without them (about 2 s of import a process).


@dataclass
class ClipScoreConfig:
    """Which CLIP to score with and how to batch."""

    model_name: str
    pretrained: str | None
    batch_size: int = 128
    num_workers: int = 2
    device: str | None = None
    max_pixels: int = MAX_PIXELS


class _PairDataset:
    """A map-style dataset (what DataLoader indexes) of decoded, preprocessed pairs."""

    def __init__(self, ids: list[str], contents: list[bytes], texts: list[str], preprocess: Callable,
                 max_pixels: int):
        self.ids, self.contents, self.texts, self.preprocess = ids, contents, texts, preprocess
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        img, _ = decode_image(self.contents[i], self.max_pixels)
        return self.ids[i], self.preprocess(img), self.texts[i] or ""


def _collate(items):
    import torch

    ids, images, texts = zip(*items)
    return list(ids), torch.stack(images), list(texts)


class ClipScorer(Stage):
    """Adds clip_score and float16 embeddings for every kept row; dropped rows stay null."""

    name = "clip_score"
    version = "1"

    def __init__(self, config: ClipScoreConfig):
        self.config = config
        self.bundle: ClipBundle | None = None

    def setup(self) -> None:
        from mmpipe.models.clip import load_clip

        self.bundle = load_clip(self.config.model_name, self.config.pretrained, self.config.device)

    def score(self, ids: list[str], contents: list[bytes], texts: list[str],
              progress: Callable[[int], None] | None = None) -> dict[str, tuple[float, bytes, bytes]]:
        """sample_id -> (score, image embedding f16 bytes, text embedding f16 bytes)."""
        from torch.utils.data import DataLoader

        from mmpipe.models.clip import encode_pairs, to_f16_bytes

        if self.bundle is None:
            self.setup()
        bs = self.config.batch_size
        # Starting worker processes costs a few hundred ms per call; below a few batches per worker
        # decoding in-process is faster (measured in bench/clip_scoring.py).
        workers = self.config.num_workers if len(ids) >= 4 * bs * max(1, self.config.num_workers) else 0
        loader = DataLoader(_PairDataset(ids, contents, texts, self.bundle.preprocess, self.config.max_pixels),
                            batch_size=bs,
                            num_workers=workers, collate_fn=_collate,
                            pin_memory=self.bundle.device.startswith("cuda"))
        out: dict[str, tuple[float, bytes, bytes]] = {}
        for batch_ids, images, batch_texts in loader:
            img, txt = encode_pairs(self.bundle, images, batch_texts)
            scores = (img * txt).sum(-1).cpu().tolist()
            for sid, s, ie, te in zip(batch_ids, scores, to_f16_bytes(img), to_f16_bytes(txt)):
                out[sid] = (float(s), ie, te)
            if progress:
                progress(len(batch_ids))
        return out

    def __call__(self, batch: pa.Table, progress: Callable[[int], None] | None = None) -> pa.Table:
        """Adds clip_score, clip_image_embedding and clip_text_embedding (float16 bytes) to kept rows."""
        kept = batch.filter(pc.fill_null(batch["keep"], True))
        got = self.score(kept["sample_id"].to_pylist(), kept["content"].to_pylist(), kept["text"].to_pylist(),
                         progress)
        ids = batch["sample_id"].to_pylist()
        batch = set_column(batch, "clip_score", pa.array([got[s][0] if s in got else None for s in ids], pa.float64()))
        batch = set_column(batch, "clip_image_embedding", pa.array([got[s][1] if s in got else None for s in ids], pa.binary()))
        return set_column(batch, "clip_text_embedding", pa.array([got[s][2] if s in got else None for s in ids], pa.binary()))
