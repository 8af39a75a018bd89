"""Demo folder: real photos from scikit-image with written captions, plus deliberately broken files."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# (skimage.data function, file name, caption). All ship inside the scikit-image wheel.
PHOTOS: list[tuple[str, str, str]] = [
    ("astronaut", "astronaut.jpg", "portrait of an astronaut in a white spacesuit in front of an american flag"),
    ("chelsea", "chelsea.png", "a ginger tabby cat looking to the side"),
    ("coffee", "coffee.webp", "a cup of coffee on a saucer with a spoon"),
    ("rocket", "rocket_rotated.jpg", "a rocket standing on the launch pad under a blue sky"),
    ("camera", "cameraman.bmp", "black and white photo of a man with a camera on a tripod"),
    ("coins", "coins.gif", "old coins laid out in rows on a dark background"),
    ("logo", "logo.png", "the scikit-image logo, a snake over a blue and green grid"),
    ("hubble_deep_field", "hubble.tiff", "hubble deep field image full of distant galaxies"),
    ("immunohistochemistry", "tissue.jpg", "stained tissue sample seen under a microscope"),
    ("page", "page.png", "a scanned page of printed text"),
    ("horse", "horse.png", "silhouette of a horse standing"),
    ("moon", "moon.tiff", "grayscale close up of the surface of the moon"),
    ("grass", "grass.jpg", "close up texture of green grass"),
    ("gravel", "gravel.jpg", "close up texture of grey gravel stones"),
    ("brick", "brick.jpg", "a wall of bricks"),
    ("clock", "clock.jpg", "a wall clock photographed at an angle"),
]
MAX_SIDE = 320


def _load(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.dtype == bool:
        arr = (~arr).astype(np.uint8) * 255
    img = Image.fromarray(arr)
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    return img


def _save(img: Image.Image, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".jpg":
        img.convert("RGB").save(path, "JPEG", quality=88)
    elif suffix == ".gif":
        img.convert("P").save(path, "GIF")
    elif suffix == ".webp":
        img.save(path, "WEBP", quality=85)
    else:
        img.save(path)


def _rotated_jpeg(img: Image.Image) -> bytes:
    """A JPEG stored sideways with EXIF orientation 6, the way phones save portrait shots."""
    sideways = img.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    sideways.save(buf, "JPEG", quality=88, exif=exif.tobytes())
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 60_000) -> bytes:
    """A tiny PNG whose header declares side x side pixels: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


# Broken files: name -> (bytes factory, caption, the drop reason ingest must record).
def broken_files(good_jpeg: bytes) -> dict[str, tuple[bytes, str, str]]:
    """Deliberately bad inputs with the drop reason each must get."""
    return {
        "empty.jpg": (b"", "a file with nothing in it", "empty_file"),
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 3], "a photo cut off halfway through download", "truncated"),
        "not_an_image.png": (b"<html><body>404 not found</body></html>", "an error page saved as png", "unsupported_format"),
        "drawing.eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
                        "a postscript drawing that must never reach ghostscript", "unsupported_format"),
        "bomb.png": (bomb_png(), "a tiny file that claims billions of pixels", "decompression_bomb"),
        "garbage.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "jpeg magic followed by junk", "decode_error"),
    }


def write_demo_folder(out: str | Path) -> dict[str, str]:
    """Write the demo folder; returns {source_key: expected drop reason or 'kept'}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    manifest = []
    for i, (fn, fname, caption) in enumerate(PHOTOS):
        img = _load(fn)
        path = out / fname
        if fname == "rocket_rotated.jpg":
            path.write_bytes(_rotated_jpeg(img))
        else:
            _save(img, path)
        if i % 3 == 0:  # some captions live in the manifest, the rest in sidecar files
            manifest.append({"file": fname, "caption": caption})
        else:
            path.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
        expected[fname] = "kept"
    good = (out / "astronaut.jpg").read_bytes()
    for fname, (data, caption, reason) in broken_files(good).items():
        (out / fname).write_bytes(data)
        (out / fname).with_suffix(".txt").write_text(caption, encoding="utf-8")
        expected[fname] = reason
    (out / "orphan.jpg").write_bytes(good)  # no caption anywhere
    expected["orphan.jpg"] = "missing_caption"
    manifest.append({"file": "lost_in_transfer.jpg", "caption": "a photo whose file never arrived"})
    expected["lost_in_transfer.jpg"] = "missing_file"
    with (out / "captions.jsonl").open("w", encoding="utf-8") as f:
        for rec in manifest:
            f.write(json.dumps(rec) + "\n")
    return expected
