"""Image decode and validation: every bad kind gets its drop reason; good images come out RGB and upright."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest
from PIL import Image

from mmpipe.demo.photos import bomb_png
from mmpipe.schema import batch_from_rows, sample_id
from mmpipe.stages.base import decisions_of
from mmpipe.stages.decode import DecodeError, DecodeImages, decode_image, sniff_format


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_allowed_format_decodes_to_rgb(fmt):
    img, got = decode_image(_encode(_photo(), fmt))
    assert got == fmt.lower() and img.mode == "RGB" and img.size == (64, 48)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1", "I", "F"])
def test_any_mode_becomes_rgb(mode):
    base = _photo()
    if mode == "I;16":
        src = Image.fromarray((np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20))
    elif mode in ("I", "F"):
        src = base.convert("L").convert(mode)
    else:
        src = base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode in ("I;16", "I", "F") else "PNG"
    img, _ = decode_image(_encode(src, fmt))
    assert img.mode == "RGB" and img.size == (64, 48)
    if mode == "I;16":
        arr = np.asarray(img)
        assert arr.max() == 255 and arr.min() == 0  # 16-bit range scaled, not clipped to white


def test_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img, _ = decode_image(_encode(rgba, "PNG"))
    assert img.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (80, 40), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 40, 40))  # left half blue
    stored = wide.transpose(Image.Transpose.ROTATE_90)  # stored sideways: 40 x 80
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img, _ = decode_image(_encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert img.size == (80, 40)
    r, g, b = img.getpixel((10, 20))
    assert b > 200 and r < 60  # the blue half is back on the left


@pytest.mark.parametrize("content,reason", [
    (b"", "empty_file"),
    (b"<html>not found</html>", "unsupported_format"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unsupported_format"),
    (b"\xc5\xd0\xd3\xc6" + b"\x00" * 64, "unsupported_format"),  # binary EPS header
    (b"\x00\x00\x01\x00" + b"\x00" * 64, "unsupported_format"),  # ICO is not allowed
    (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "decode_error"),
])
def test_bad_bytes_get_a_reason(content, reason):
    with pytest.raises(DecodeError) as e:
        decode_image(content)
    assert e.value.reason == reason


def test_eps_never_reaches_a_decoder_or_a_subprocess(monkeypatch):
    def no_subprocess(*a, **k):
        raise AssertionError("a subprocess was started")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto showpage\n"
    assert sniff_format(eps) is None
    with pytest.raises(DecodeError):
        decode_image(eps)


def test_truncated_jpeg_and_png():
    for fmt in ("JPEG", "PNG"):
        data = _encode(_photo((256, 256)), fmt)
        with pytest.raises(DecodeError) as e:
            decode_image(data[: len(data) // 2])
        assert e.value.reason == "truncated"


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(DecodeError) as e:
        decode_image(bomb_png(60_000))
    assert e.value.reason == "decompression_bomb"
    with pytest.raises(DecodeError) as e:
        decode_image(_encode(_photo((64, 48)), "PNG"), max_pixels=1000)
    assert e.value.reason == "decompression_bomb"


def test_decode_stage_annotates_without_deleting_rows():
    good = _encode(_photo(), "PNG")
    rows = [
        {"sample_id": sample_id(good, "a cat"), "content": good, "text": "a cat", "keep": True},
        {"sample_id": sample_id(b"", "nothing"), "content": b"", "text": "nothing", "keep": True},
        {"sample_id": "missing", "content": None, "text": "gone", "keep": False,
         "drop_reason": "missing_file", "drop_stage": "decode"},
    ]
    stage = DecodeImages()
    out = stage(batch_from_rows(rows))
    assert out.num_rows == 3
    assert out["keep"].to_pylist() == [True, False, False]
    assert out["drop_reason"].to_pylist() == [None, "empty_file", "missing_file"]
    assert out["width"].to_pylist() == [64, None, None] and out["format"].to_pylist() == ["png", None, None]
    decisions = decisions_of(out, stage)
    assert decisions.num_rows == 3  # the pre-dropped row is this stage's decision too
    assert stage.counts == {"kept": 1, "empty_file": 1}
