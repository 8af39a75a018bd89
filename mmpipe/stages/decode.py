"""Read, decode and validate images: allow-listed formats only, bombs and broken files dropped."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image, ImageFile, ImageOps

Image.MAX_IMAGE_PIXELS = None  # replaced by decode_image's max_pixels, checked before any decoding

from mmpipe.schema import MAX_PIXELS
from mmpipe.stages.base import Filter, set_column
from mmpipe.stages.dedup import phash

# Magic bytes -> PIL format name. Only these ever reach a decoder, so formats such as EPS
# (which would start Ghostscript) cannot be opened whatever their file name says.
_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
]
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
# ISO-BMFF brands: AVIF decodes (Pillow ships libavif); HEIC is named, then refused.
_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")
# Recognisable non-images, so a drop's detail says what the bytes were.
_OTHER = [(b"%!PS", "postscript"), (b"\xc5\xd0\xd3\xc6", "eps"), (b"%PDF", "pdf"), (b"<svg", "svg"),
          (b"<?xml", "xml"), (b"<!doctype html", "html"), (b"<html", "html"), (b"PK\x03\x04", "zip"),
          (b"\x1f\x8b", "gzip"), (b"8BPS", "psd"), (b"\x00\x00\x00\x0cjP  ", "jpeg2000"), (b"qoif", "qoi")]


def sniff_format(content: bytes) -> str | None:
    """The allow-listed format the bytes declare, or None."""
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "WEBP"
    if content[4:8] == b"ftyp" and content[8:12] in _AVIF_BRANDS:
        return "AVIF"
    for magic, offset, fmt in _MAGIC:
        if content[offset : offset + len(magic)] == magic:
            return fmt
    return None


def describe_unsupported(content: bytes) -> str:
    """A short name for bytes that are not an allowed image (the drop's detail)."""
    if content[4:8] == b"ftyp":
        brand = content[8:12].decode("ascii", "replace").strip()
        return "heif/heic" if content[8:12] in _HEIF_BRANDS else f"iso-bmff brand {brand!r}"
    head = content[:64].lstrip().lower()
    for magic, name in _OTHER:
        if head.startswith(magic.lower()):
            return name
    return "unknown bytes"


class DecodeError(Exception):
    """An image that cannot be used, with its drop reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


def decode_image(content: bytes, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, str]:
    """Decode bytes to an upright RGB image; raise DecodeError with a drop reason."""
    if not content:
        raise DecodeError("empty_file")
    fmt = sniff_format(content)
    if fmt is None:
        raise DecodeError("unsupported_format", describe_unsupported(content))
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # Pillow's own global bomb limit would override a raised `max_pixels`; the size check
            # below (header only, before any pixel is decoded) is the budget that applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(content), formats=[fmt])
            if img.width * img.height > max_pixels:
                raise DecodeError("decompression_bomb", f"{img.width}x{img.height} > {max_pixels} px")
            img.load()
            img = ImageOps.exif_transpose(img) or img
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError("decompression_bomb", str(e)[:200]) from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, RuntimeError) as e:
        reason = "truncated" if "truncated" in str(e).lower() or isinstance(e, EOFError) else "decode_error"
        raise DecodeError(reason, f"{fmt.lower()}: {str(e)[:200]}") from e
    if img.width == 0 or img.height == 0:
        raise DecodeError("decode_error", "zero-sized image")
    return to_rgb(img), fmt.lower()


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is composited on white, 16-bit scaled to 8."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


@dataclass
class DecodeConfig:
    """Limits for decoding; max_pixels guards against decompression bombs."""

    max_pixels: int = MAX_PIXELS


class DecodeImages(Filter):
    """Decode each kept row's bytes; record width, height, format or a drop reason."""

    name = "decode"
    # 2: phash by imagehash; v1's hand-written hash has the same bits on ~90% of images, <= 4 apart on the rest
    version = "2"

    def __init__(self, config: DecodeConfig | None = None):
        super().__init__()
        self.config = config or DecodeConfig()

    def decide(self, batch: pa.Table):
        reasons: list = []
        self._dims: dict[str, tuple[int, int, str, int]] = {}
        for sid, content in zip(batch["sample_id"].to_pylist(), batch["content"].to_pylist()):
            try:
                img, fmt = decode_image(content or b"", self.config.max_pixels)
            except DecodeError as e:
                reasons.append((e.reason, str(e) if str(e) != e.reason else None))
                continue
            self._dims[sid] = (img.width, img.height, fmt, phash(img))
            reasons.append(None)
        return reasons, None

    def __call__(self, batch: pa.Table) -> pa.Table:
        self._dims = {}
        out = super().__call__(batch)
        ids = out["sample_id"].to_pylist()
        dims = [self._dims.get(s) for s in ids]
        width = [d[0] if d else w for d, w in zip(dims, out["width"].to_pylist())]
        height = [d[1] if d else h for d, h in zip(dims, out["height"].to_pylist())]
        fmt = [d[2] if d else f for d, f in zip(dims, out["format"].to_pylist())]
        out = set_column(out, "width", pa.array(width, pa.int32()))
        out = set_column(out, "height", pa.array(height, pa.int32()))
        out = set_column(out, "format", pa.array(fmt, pa.string()))
        ph = [d[3] if d else p for d, p in zip(dims, out["phash"].to_pylist())]
        return set_column(out, "phash", pa.array(ph, pa.int64()))
