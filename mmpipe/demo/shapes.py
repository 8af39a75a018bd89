"""Synthetic captioned shapes with known ground truth: mismatched captions, duplicates, bad samples.

Images are drawn with PIL; captions describe colour and shape. A known share of captions
deliberately describes another picture, some images are duplicated (exact and re-encoded), a few
are planted again as near-copies under their original caption (resized, cropped: what a perceptual
hash tends to miss and semantic dedup is for), and a few samples break the basic filters. A
separate trusted seed split (all captions correct) trains the demo's filter model, the DFN way.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmpipe.export import write_tar_atomic

COLORS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (240, 210, 20),
          "purple": (140, 40, 170), "orange": (245, 130, 20)}
SHAPES = ("circle", "square", "triangle", "cross")
BACKGROUNDS = {"white": (250, 250, 250), "grey": (150, 150, 150), "black": (15, 15, 15)}
TEMPLATES = ("a {c} {s}", "a {c} {s} on a {b} background", "a photo of a {c} {s}", "a drawing of a {size} {c} {s}",
             "one {c} {s} in the picture")


def _background(base: tuple[int, int, int], side: int, rng: random.Random) -> Image.Image:
    """A plain colour with a low-contrast gradient at a random angle, so pictures differ."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:side, 0:side] / side - 0.5
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(60, 110)
    ripple = np.sin((xx * rng.uniform(2, 6) + yy * rng.uniform(2, 6)) * np.pi) * 15
    arr = np.clip(np.asarray(base, dtype=np.float64) + (ramp + ripple)[..., None], 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def draw(color: str, shape: str, bg: str, rng: random.Random, side: int = 96) -> tuple[Image.Image, str]:
    """One picture of a coloured shape; returns the image and its size word."""
    img = _background(BACKGROUNDS[bg], side, rng)
    d = ImageDraw.Draw(img)
    big = rng.random() < 0.5
    r = rng.randint(side // 4, side * 2 // 5) if big else rng.randint(side // 7, side // 5)
    cx, cy = rng.randint(r, side - r), rng.randint(r, side - r)
    fill = COLORS[color]
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        w = max(2, r // 3)
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    return img, "large" if big else "small"


def caption(color: str, shape: str, bg: str, size: str, rng: random.Random) -> str:
    """One of the templates, filled in (with 'an' before a vowel)."""
    return rng.choice(TEMPLATES).format(c=color, s=shape, b=bg, size=size).replace("a orange", "an orange")


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _other(color: str, shape: str, rng: random.Random) -> tuple[str, str]:
    while True:
        c, s = rng.choice(list(COLORS)), rng.choice(SHAPES)
        if (c, s) != (color, shape) and (c != color or rng.random() < 0.5) and (s != shape or rng.random() < 0.5):
            return c, s


def random_pair(rng: random.Random, side: int = 96) -> tuple[bytes, str, tuple[str, str]]:
    """A correctly captioned pair: (jpeg bytes, caption, (colour, shape))."""
    c, s, b = rng.choice(list(COLORS)), rng.choice(SHAPES), rng.choice([k for k in BACKGROUNDS])
    if c == "yellow" and b == "white" or c == "purple" and b == "black":
        b = "grey"
    img, size = draw(c, s, b, rng, side)
    return _jpeg(img), caption(c, s, b, size, rng), (c, s)


@dataclass
class ShapesSet:
    """Where the set was written and its ground truth per source key."""

    shards: list[Path]
    pattern: str
    seed_pairs: list[tuple[bytes, str]]
    truth: dict[str, dict]
    seed_shard: Path
    holdout_shard: Path


def _write_pairs(path: Path, pairs: list[tuple[bytes, str]]) -> Path:
    write_tar_atomic(path, ({"__key__": f"{i:06d}", "jpg": data, "txt": text.encode()}
                            for i, (data, text) in enumerate(pairs)))
    return path


def near_copy(img: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """A resized (scaled by 0.7-0.85 or 1.2-1.4) or cropped (80-90% of each side, anywhere) copy."""
    w, h = img.size
    if kind == "resized":
        f = rng.uniform(0.7, 0.85) if rng.random() < 0.5 else rng.uniform(1.2, 1.4)
        return img.resize((round(w * f), round(h * f)), Image.Resampling.BICUBIC)
    cw, ch = round(w * rng.uniform(0.8, 0.9)), round(h * rng.uniform(0.8, 0.9))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((x, y, x + cw, y + ch))


def _near_copies(originals: list[tuple[str, Image.Image, str, dict]], fraction: float, n: int, seed: int,
                 shard_size: int) -> list[tuple[str, bytes, str, dict]]:
    """Resized and cropped copies of `fraction * n` originals under their own captions, drawn from an
    rng of their own so the rest of the set is the same with or without them."""
    rng = random.Random(f"near-copies:{seed}")
    count = min(round(fraction * n), len(originals))
    out = []
    for i, (key, img, text, truth) in enumerate(rng.sample(originals, count)):
        kind = ("resized", "cropped")[i % 2]
        out.append((f"near_{i:04d}", _jpeg(near_copy(img, kind, rng), quality=rng.randint(75, 92)), text,
                    {**truth, "duplicate": False, "near_copy": kind,
                     "copy_of": f"shapes-{int(key) // shard_size:06d}.tar/{key}"}))
    return out


def write_shapes(out: str | Path, n: int = 800, n_seed: int = 1500, n_holdout: int = 200, mismatch: float = 0.2,
                 dup: float = 0.05, shard_size: int = 200, seed: int = 0, near: float = 0.03) -> ShapesSet:
    """Write the candidate pool as WebDataset shards, plus a trusted seed split and a held-out trusted split.

    near: the share of `n` planted at the end as resized or cropped copies of originals (truth
    `near_copy` = kind, `copy_of` = the original's key); 0 leaves them out, and every other sample is
    the same either way.
    """
    rng = random.Random(seed)
    out = Path(out)
    seed_pairs = [random_pair(rng)[:2] for _ in range(n_seed)]
    holdout = [random_pair(rng)[:2] for _ in range(n_holdout)]
    seed_shard = _write_pairs(out / "trusted" / "seed-000000.tar", seed_pairs)
    holdout_shard = _write_pairs(out / "trusted" / "holdout-000000.tar", holdout)
    samples: list[tuple[str, bytes, str, dict]] = []
    originals: list[tuple[bytes, Image.Image]] = []
    near_sources: list[tuple[str, Image.Image, str, dict]] = []
    for i in range(n):
        key = f"{i:06d}"
        roll = rng.random()
        if originals and roll < dup:
            content, img = rng.choice(originals)
            exact = rng.random() < 0.5
            data = content if exact else _jpeg(img, quality=rng.randint(60, 80))
            samples.append((key, data, f"another copy of a picture number {i}", {"duplicate": True}))
            continue
        c, s, b = rng.choice(list(COLORS)), rng.choice(SHAPES), rng.choice(list(BACKGROUNDS))
        img, size = draw(c, s, b, rng)
        truth = {"color": c, "shape": s, "label": f"{c} {s}", "mismatched": False, "duplicate": False}
        if rng.random() < mismatch:
            mc, ms = _other(c, s, rng)
            text = caption(mc, ms, b, size, rng)
            truth["mismatched"] = True
        else:
            text = caption(c, s, b, size, rng)
        data = _jpeg(img)
        originals.append((data, img))
        near_sources.append((key, img, text, truth))
        samples.append((key, data, text, truth))
    # A few samples that the basic filters must catch.
    small, _ = draw("red", "circle", "white", rng, side=40)
    samples.append(("bad_small", _jpeg(small), "a tiny red circle", {"expect": "too_small"}))
    wide = Image.new("RGB", (400, 100), BACKGROUNDS["white"])
    samples.append(("bad_wide", _jpeg(wide), "a very wide empty banner", {"expect": "aspect_ratio"}))
    samples.append(("bad_caption", random_pair(rng)[0], "shape", {"expect": "caption_too_short"}))
    samples.append(("bad_bytes", b"\xff\xd8\xff\xe0garbage", "a broken jpeg file", {"expect": "truncated"}))
    samples += _near_copies(near_sources, near, n, seed, shard_size)
    shards = []
    for k, start in enumerate(range(0, len(samples), shard_size)):
        path = out / "pool" / f"shapes-{k:06d}.tar"
        write_tar_atomic(path, ({"__key__": key, "jpg": data, "txt": text.encode(), "json": json.dumps(truth).encode()}
                                for key, data, text, truth in samples[start:start + shard_size]))
        shards.append(path)
    pattern = str(out / "pool" / f"shapes-{{000000..{len(shards) - 1:06d}}}.tar")
    truth: dict[str, dict] = {}
    for k, start in enumerate(range(0, len(samples), shard_size)):
        for key, _, _, t in samples[start:start + shard_size]:
            truth[f"shapes-{k:06d}.tar/{key}"] = t
    return ShapesSet(shards, pattern, seed_pairs, truth, seed_shard, holdout_shard)


def evaluate(outcomes: list[dict], truth: dict[str, dict]) -> dict[str, dict]:
    """Precision/recall of the CLIP filter (mismatched captions) and of dedup (copies), from a run's outcomes."""
    from mmpipe.evaluate.filtering import precision_recall

    by_key = {o["source_key"]: o for o in outcomes}
    clip_seen = {k for k, o in by_key.items() if o["drop_stage"] in (None, "clip_filter")}
    clip_dropped = {k for k, o in by_key.items() if o["drop_stage"] == "clip_filter"}
    mismatched = {k for k, t in truth.items() if t.get("mismatched")}
    near = {k for k, t in truth.items() if t.get("near_copy")}  # counted under near_copies below
    dedup_seen = {k for k, o in by_key.items() if o["drop_stage"] not in ("decode", "basic")} - near
    dedup_dropped = {k for k, o in by_key.items() if o["drop_stage"] == "dedup"} - near
    copies = {k for k, t in truth.items() if t.get("duplicate")}
    basic_expected = {k: t["expect"] for k, t in truth.items() if "expect" in t}
    basic_ok = sum(1 for k, reason in basic_expected.items() if (by_key.get(k) or {}).get("drop_reason") == reason)
    return {"clip_filter": precision_recall(clip_dropped, mismatched, clip_seen),
            "dedup": precision_recall(dedup_dropped, copies, dedup_seen),
            "basic": {"expected": len(basic_expected), "caught_with_expected_reason": basic_ok},
            "near_copies": {kind: sum(1 for k in near if truth[k]["near_copy"] == kind and
                                      (by_key.get(k) or {}).get("drop_stage") == "dedup")
                            for kind in ("resized", "cropped")}}
