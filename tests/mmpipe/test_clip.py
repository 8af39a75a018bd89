"""Real open_clip (the shipped tiny config): loading, caching, scoring, and plain errors offline."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mmpipe.models.clip import TINY_MODEL, ClipWeightsUnavailable, from_f16_bytes, load_clip
from mmpipe.stages.clip_score import ClipScoreConfig, ClipScorer


def _pairs(n):
    rng = np.random.default_rng(0)
    contents = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(buf, "PNG")
        contents.append(buf.getvalue())
    return [f"id{i}" for i in range(n)], contents, [f"a picture number {i}" for i in range(n)]


def test_load_from_a_checkpoint_path_once_per_process(tiny_clip_checkpoint):
    a = load_clip(TINY_MODEL, tiny_clip_checkpoint, "cpu")
    b = load_clip(TINY_MODEL, tiny_clip_checkpoint, "cpu")
    assert a is b and a.dtype.is_floating_point and a.device == "cpu"


def test_scores_are_cosines_of_normalized_embeddings_stored_as_float16(tiny_clip_checkpoint):
    ids, contents, texts = _pairs(10)
    got = ClipScorer(ClipScoreConfig(TINY_MODEL, tiny_clip_checkpoint, batch_size=4, num_workers=0)).score(
        ids, contents, texts)
    assert set(got) == set(ids)
    for score, img_b, txt_b in got.values():
        img, txt = from_f16_bytes(img_b), from_f16_bytes(txt_b)
        assert img.shape == (64,) and abs(np.linalg.norm(img) - 1) < 1e-2 and abs(np.linalg.norm(txt) - 1) < 1e-2
        assert abs(float(img @ txt) - score) < 1e-2 and -1 <= score <= 1


def test_dataloader_workers_give_the_same_scores(tiny_clip_checkpoint):
    ids, contents, texts = _pairs(20)
    serial = ClipScorer(ClipScoreConfig(TINY_MODEL, tiny_clip_checkpoint, batch_size=8, num_workers=0))
    workers = ClipScorer(ClipScoreConfig(TINY_MODEL, tiny_clip_checkpoint, batch_size=8, num_workers=2))
    a, b = serial.score(ids, contents, texts), workers.score(ids, contents, texts)
    assert all(abs(a[i][0] - b[i][0]) < 1e-5 for i in ids)


def test_unknown_weights_and_offline_hub_tags_are_plain_errors(monkeypatch, tmp_path):
    with pytest.raises(ClipWeightsUnavailable, match="local checkpoint|checkpoint"):
        load_clip(TINY_MODEL, str(tmp_path / "missing.pt"), "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ClipWeightsUnavailable) as e:
        load_clip("ViT-B-32", "laion2b_s34b_b79k", "cpu")
    msg = str(e.value)
    assert "ViT-B-32" in msg and "--clip-pretrained" in msg and "--clip-model none" in msg
