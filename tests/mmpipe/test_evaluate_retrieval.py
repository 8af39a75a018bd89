"""Retrieval and zero-shot metrics: exact values on constructed embeddings, chance levels included."""

from __future__ import annotations

import pytest
import torch

from mmpipe.evaluate.retrieval import retrieval_metrics, zero_shot_accuracy


def test_perfect_embeddings_retrieve_everything_and_chance_is_k_over_n():
    emb = torch.eye(20)
    m = retrieval_metrics(emb, emb.clone())
    assert m["image_to_text_R@1"] == m["text_to_image_R@1"] == 1.0
    assert m["chance_R@1"] == pytest.approx(1 / 20) and m["chance_R@5"] == pytest.approx(5 / 20)
    assert m["chance_R@10"] == pytest.approx(0.5) and m["n_pairs"] == 20.0


def test_shifted_pairs_miss_at_one_and_random_ones_sit_near_chance():
    emb = torch.eye(10)
    m = retrieval_metrics(emb, emb.roll(1, 0))
    assert m["image_to_text_R@1"] == 0.0 and m["text_to_image_R@1"] == 0.0
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 32, generator=gen), torch.randn(2000, 32, generator=gen)
    m = retrieval_metrics(a, b)
    assert abs(m["image_to_text_R@10"] - m["chance_image_to_text_R@10"]) < 0.01
    assert abs(m["text_to_image_R@10"] - m["chance_text_to_image_R@10"]) < 0.01


def test_a_repeated_caption_counts_for_every_image_that_carries_it():
    images = torch.eye(4)
    # pairs 0 and 1 share the caption "a red circle"; the text embedding sits between their images
    texts = torch.stack([images[0] + images[1], images[0] + images[1], images[2], images[3]])
    captions = ["a red circle", "a red circle", "a blue square", "a green cross"]
    m = retrieval_metrics(images, texts, captions)
    assert m["image_to_text_R@1"] == 1.0 and m["text_to_image_R@1"] == 1.0
    assert m["n_captions"] == 3.0 and m["chance_image_to_text_R@1"] == pytest.approx(1 / 3)
    # the shared caption's image competes with the 2 images of other captions (chance 1/3), the
    # other two captions' images with 3 (chance 1/4)
    assert m["chance_text_to_image_R@1"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 4 + 1 / 4) / 4)


class _LabelText(torch.nn.Module):
    """Text encoder that puts a prompt on the axis of the colour it names (pure-logic stand-in)."""

    colours = ["red", "green", "blue"]

    def encode_text(self, tokens):
        return torch.nn.functional.one_hot(tokens[:, 0], 3).float()


def _tokenizer(texts):
    return torch.tensor([[next(i for i, c in enumerate(_LabelText.colours) if c in t)] for t in texts])


def test_zero_shot_picks_the_closest_prompt_and_reports_chance():
    images = torch.tensor([[1.0, 0.1, 0], [0, 1, 0.2], [0, 0, 1], [0.9, 0, 0.1]])
    m = zero_shot_accuracy(_LabelText(), _tokenizer, images, ["red", "green", "blue", "blue"],
                           templates=("a photo of a {}.", "a {} thing"))
    assert m["zero_shot_accuracy"] == 0.75 and m["zero_shot_chance"] == pytest.approx(1 / 3)
