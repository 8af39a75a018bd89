"""The preview sample a shard keeps for reports: every drop reason first, bounded, deterministic."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from mmpipe.report.compare import ks_statistic
from mmpipe.report.plots import pca_2d
from mmpipe.report.previews import PREVIEW_PX, audio_previews, choose, image_preview, image_previews


def _batch(n: int, dropped: dict[int, str]) -> pa.Table:
    return pa.table({"sample_id": [f"{i:064x}" for i in range(n)],
                     "keep": [i not in dropped for i in range(n)],
                     "drop_reason": [dropped.get(i) for i in range(n)],
                     "phash": [i * 7919 for i in range(n)]})


def test_every_drop_reason_is_chosen_first_within_the_budget():
    dropped = {3: "too_small", 4: "too_small", 9: "truncated", 17: "aspect_ratio"}
    batch = _batch(100, dropped)
    rows = choose(batch, 10)
    assert len(rows) == 10 and len(set(rows)) == 10
    assert {batch["drop_reason"][i].as_py() for i in rows} >= {"too_small", "truncated", "aspect_ratio"}
    assert choose(batch, 10) == rows  # deterministic
    assert choose(batch, 0) == [] and len(choose(batch, 1000)) == 100


def test_image_previews_are_small_jpegs_and_broken_bytes_are_skipped():
    buf = io.BytesIO()
    Image.fromarray(np.full((300, 600, 3), 200, np.uint8)).save(buf, "PNG")
    batch = _batch(3, {2: "decode_error"}).append_column("content", pa.array([buf.getvalue(), buf.getvalue(),
                                                                             b"not an image"], pa.large_binary()))
    got = image_previews(batch, "run-1", 10).to_pylist()
    assert len(got) == 2 and all(r["mime"] == "image/jpeg" and r["run_id"] == "run-1" for r in got)
    assert all(max(r["width"], r["height"]) <= PREVIEW_PX for r in got) and got[0]["data"][:2] == b"\xff\xd8"
    assert image_preview(b"\x89PNG\r\n\x1a\nbroken") is None


def test_audio_previews_keep_at_most_ten_seconds_of_decoded_clips():
    from mmpipe.export import decode_audio
    from mmpipe.stages.audio_decode import audio_column

    clips = [np.sin(np.linspace(0, 2000, 16000 * 12)).astype(np.float32), None]
    batch = _batch(2, {1: "empty_file"}).append_column("audio", audio_column(clips))
    got = audio_previews(batch, "run-1", 5).to_pylist()
    assert len(got) == 1 and got[0]["mime"] == "audio/flac" and got[0]["role"] == "audio"
    assert len(decode_audio(got[0]["data"])) == 16000 * 10


def test_pca_and_ks_helpers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)) * np.array([5, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    points, explained = pca_2d(x)
    assert points.shape == (200, 2) and explained[0] > explained[1] > 0 and explained.sum() <= 1
    assert ks_statistic([0.1, 0.2], [0.1, 0.2]) == 0 and ks_statistic([0.0], [1.0]) == 1
