"""Training data: image-text pairs as (image tensor, token ids) batches."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset

from mmpipe.stages.decode import decode_image


class PairDataset(Dataset):
    """Encoded images with captions, preprocessed with the model's transform and tokenizer."""

    def __init__(self, pairs: list[tuple[bytes, str]], preprocess: Callable, tokenizer: Callable):
        self.pairs, self.preprocess, self.tokenizer = pairs, preprocess, tokenizer

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        content, text = self.pairs[i]
        img, _ = decode_image(content)
        return self.preprocess(img), self.tokenizer([text])[0]


def pairs_from_shards(paths: list[str]) -> list[tuple[bytes, str]]:
    """(image bytes, caption) of every complete sample in WebDataset shards."""
    from mmpipe.sources.webdataset import read_tar

    pairs = []
    for path in paths:
        batch, error = read_tar(path, "train")
        if error:
            raise ValueError(f"training shard {path} is broken: {error}")
        for content, text, keep in zip(batch["content"].to_pylist(), batch["text"].to_pylist(),
                                       batch["keep"].to_pylist()):
            if keep and content and text:
                pairs.append((content, text))
    return pairs
