"""Basic filters, dedup and the CLIP filter: each annotates keep + reason and never deletes rows."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from mmpipe.schema import batch_from_rows
from mmpipe.stages.basic import BasicFilter, BasicFilterConfig
from mmpipe.stages.clip_filter import ClipFilter, ClipFilterConfig
from mmpipe.stages.dedup import Dedup, DedupConfig, _popcount, near_duplicates, phash


def test_basic_filter_defaults_are_datacomps():
    rows = [
        {"sample_id": "ok", "text": "a red bus", "width": 300, "height": 200, "keep": True},
        {"sample_id": "one_word", "text": "bus", "width": 300, "height": 200, "keep": True},
        {"sample_id": "short", "text": "a b", "width": 300, "height": 200, "keep": True},
        {"sample_id": "small", "text": "a red bus", "width": 300, "height": 199, "keep": True},
        {"sample_id": "wide", "text": "a red bus", "width": 900, "height": 250, "keep": True},
        {"sample_id": "already", "text": "x", "width": 1, "height": 1, "keep": False, "drop_reason": "decode_error",
         "drop_stage": "decode"},
    ]
    f = BasicFilter()
    out = f(batch_from_rows(rows))
    assert out["drop_reason"].to_pylist() == [None, "caption_too_short", "caption_too_short", "too_small",
                                              "aspect_ratio", "decode_error"]
    assert out.num_rows == 6 and f.counts["kept"] == 1
    lenient = BasicFilter(BasicFilterConfig(min_caption_words=1, min_caption_chars=3, min_side=100,
                                            max_aspect_ratio=4, max_pixels=100_000))
    out = lenient(batch_from_rows(rows))
    assert out["drop_reason"].to_pylist()[:5] == [None, None, None, None, "too_many_pixels"]


def _img(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((128, 128), Image.Resampling.BILINEAR)


def test_phash_is_stable_under_reencoding_and_differs_across_images():
    a = _img(1)
    buf = io.BytesIO()
    a.save(buf, "JPEG", quality=60)
    a2 = Image.open(io.BytesIO(buf.getvalue()))
    dist = lambda x, y: int(_popcount(np.array([phash(x) ^ phash(y)], dtype=np.int64))[0])  # noqa: E731
    assert dist(a, a2) <= 4
    assert dist(a, _img(2)) > 10


def test_phash_is_imagehash_as_the_signed_int64_the_warehouse_stores():
    """samples.phash is a signed BIGINT: imagehash's 64 bits, first coefficient in the top bit; a resized
    copy of a photo stays within the default radius (4), other photos do not."""
    import imagehash
    import skimage.data

    photos = {n: Image.fromarray(getattr(skimage.data, n)()) for n in ("astronaut", "chelsea", "coffee", "rocket")}
    for img in photos.values():
        unsigned = int(str(imagehash.phash(img)), 16)
        got = phash(img)
        assert -2**63 <= got < 2**63 and got & (2**64 - 1) == unsigned
        assert got < 0  # the top bit (the DC term, above the median) set: two's complement, not 2**63 and up
    dist = lambda x, y: bin((phash(x) ^ phash(y)) & (2**64 - 1)).count("1")  # noqa: E731
    for name, img in photos.items():
        w, h = img.size
        small = img.resize((int(w * 0.8), int(h * 0.8)), Image.Resampling.BICUBIC)
        assert dist(img, small) <= 4, name
        assert all(dist(img, other) > 10 for o, other in photos.items() if o != name)


def test_near_duplicates_match_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(-2**63, 2**63 - 1, size=300, dtype=np.int64)
    flips = [np.int64(1) << np.int64(b) for b in rng.integers(0, 63, size=(100, 3))[:, 0]]
    hashes = np.concatenate([base, base[:100] ^ np.array(flips, dtype=np.int64)])
    got = near_duplicates(hashes, 3)
    brute = {}
    for j in range(len(hashes)):
        d = _popcount(hashes[:j] ^ hashes[j])
        close = np.flatnonzero(d <= 3)
        if len(close):
            brute[j] = int(close.min())
    assert got == brute and len(got) >= 100


def test_dedup_keeps_the_first_seen_and_names_it():
    rows = pa.table({
        "sample_id": ["late", "first", "copy", "near", "other"],
        "content_sha256": ["s1", "s1", "s1", "s2", "s3"],
        "phash": [10, 10, 10, 11, -5_000_000_000_000],
        "ordinal": [5, 1, 3, 4, 2],
        "keep": [True] * 5, "drop_reason": pa.nulls(5, pa.string()), "drop_detail": pa.nulls(5, pa.string()),
        "drop_stage": pa.nulls(5, pa.string()),
    })
    out = Dedup(DedupConfig(exact=True, hamming=2))(rows)
    assert out["drop_reason"].to_pylist() == ["duplicate", None, "duplicate", "near_duplicate", None]
    assert out["drop_detail"].to_pylist() == ["first", None, "first", "first hamming=1", None]
    only_exact = Dedup(DedupConfig(exact=True, hamming=None))(rows)
    assert only_exact["drop_reason"].to_pylist()[3] is None
    # Bytes kept in an earlier shard of the run count; the same sample met again is not its own twin.
    prior = Dedup(DedupConfig(exact=True, hamming=None), prior={"s3": "elsewhere", "s2": "near"})(rows)
    assert prior["drop_reason"].to_pylist() == ["duplicate", None, "duplicate", None, "duplicate"]
    assert prior["drop_detail"].to_pylist()[4] == "elsewhere"


def test_every_stage_records_a_decision_for_what_it_evaluated():
    from mmpipe.stages.base import decisions_of
    from mmpipe.stages.decode import DecodeImages

    good = io.BytesIO()
    _img(3).save(good, "PNG")
    rows = [{"sample_id": "ok", "content": good.getvalue(), "text": "a fine picture", "keep": True},
            {"sample_id": "tiny_caption", "content": good.getvalue(), "text": "x", "keep": True},
            {"sample_id": "bad", "content": b"<html>", "text": "not an image", "keep": True},
            {"sample_id": "gone", "text": "missing", "keep": False, "drop_reason": "missing_file",
             "drop_stage": "decode"}]
    decode, basic = DecodeImages(), BasicFilter(BasicFilterConfig(min_side=10))
    out = basic(decode(batch_from_rows(rows)))
    d = {r["sample_id"]: r for r in decisions_of(out, decode).to_pylist()}
    # decode kept tiny_caption even though basic dropped it later in the same batch
    assert d["tiny_caption"]["keep"] and d["ok"]["keep"] and not d["bad"]["keep"] and not d["gone"]["keep"]
    assert d["bad"]["drop_reason"] == "unsupported_format" and d["bad"]["detail"] == "html"
    b = {r["sample_id"]: r for r in decisions_of(out, basic).to_pylist()}
    assert set(b) == {"ok", "tiny_caption"} and b["tiny_caption"]["drop_reason"] == "caption_too_short"


def _scores(values):
    n = len(values)
    return pa.table({"sample_id": [f"s{i}" for i in range(n)], "clip_score": pa.array(values, pa.float64()),
                     "keep": [True] * n, "drop_reason": pa.nulls(n, pa.string()),
                     "drop_detail": pa.nulls(n, pa.string()), "drop_stage": pa.nulls(n, pa.string())})


def test_clip_filter_threshold_and_top_fraction():
    out = ClipFilter(ClipFilterConfig(min_score=0.25))(_scores([0.1, 0.25, 0.3, None]))
    assert out["drop_reason"].to_pylist() == ["clip_score_low", None, None, "clip_score_low"]
    assert out["drop_detail"][0].as_py() == "0.1000 < 0.2500 (min_clip_score=0.25)"
    f = ClipFilter(ClipFilterConfig(keep_fraction=0.3))
    out = f(_scores([i / 10 for i in range(10)]))
    assert sum(out["keep"].to_pylist()) == 3 and out["keep"].to_pylist()[-3:] == [True] * 3
    assert out["drop_reason"][0].as_py() == "clip_score_low" and "keep_fraction=0.3" in out["drop_detail"][0].as_py()
    with pytest.raises(ValueError, match="exactly one"):
        ClipFilterConfig()
    with pytest.raises(ValueError):
        ClipFilterConfig(keep_fraction=1.5)
