"""The perceptual hash: `mmpipe.stages.dedup.phash` (imagehash.phash) vs the hand-written DCT hash it
replaced (copied below as the baseline), on the same decoded images in one process.

The images are crops, scalings and rotations of the photos scikit-image ships (deterministic, seeded),
decoded once up front so only hashing is timed; each function hashes the whole set `--repeat` times
(the two alternating) and its best pass counts.

    .venv/bin/python bench/phash.py --n 2000

Prints hashes/s of each, ratio = ours/baseline in seconds (above 1: ours is slower), and how often
the two agree bit for bit (a home whose stored hashes came from the baseline dedups against new ones
only as far as they agree).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image
from scipy.fft import dctn

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "coins", "horse", "hubble_deep_field",
          "immunohistochemistry", "moon", "page", "text", "brick", "grass", "gravel", "clock", "retina")


def baseline_phash(img: Image.Image) -> int:
    """The hand-written hash mmpipe used before imagehash (mmpipe/stages/dedup.py, verbatim)."""
    grey = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(grey, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value - (1 << 64) if value >= (1 << 63) else value  # stored as signed BIGINT


def images(n: int, seed: int = 0) -> list[Image.Image]:
    """n RGB images: random crops (30-100% of a side), scalings (64-512 px) and rotations of the photos."""
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in PHOTOS]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        w, h = img.size
        cw, ch = (int(s * rng.uniform(0.3, 1.0)) for s in (w, h))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = img.crop((x, y, x + cw, y + ch))
        side = int(rng.integers(64, 513))
        img = img.resize((side, max(8, int(side * ch / cw))), Image.Resampling.BILINEAR)
        out.append(img.rotate(float(rng.choice([0, 0, 90, 3.0])), expand=True))
    return out


def timed(fns: list, imgs: list[Image.Image], repeat: int) -> list[tuple[float, list[int]]]:
    """Best seconds over `repeat` passes of each fn over every image, and its hashes; the passes
    alternate between the functions, so a machine that gets busier or quieter affects both alike."""
    best, hashes = [float("inf")] * len(fns), [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            hashes[k] = [fn(img) for img in imgs]
            best[k] = min(best[k], time.perf_counter() - t0)
    return list(zip(best, hashes))


def main() -> None:
    """Hash the same images with both functions and print the ratio."""
    from mmpipe.stages.dedup import phash

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    imgs = images(args.n)
    phash(imgs[0]), baseline_phash(imgs[0])  # imports and first-call costs out of the timing
    (ours_s, ours), (base_s, base) = timed([phash, baseline_phash], imgs, args.repeat)
    dist = np.array([bin((a ^ b) & (2**64 - 1)).count("1") for a, b in zip(ours, base)])
    print(f"images: {args.n} (best of {args.repeat} passes)")
    print(f"baseline (hand-written scipy DCT): {base_s:.3f} s, {args.n / base_s:,.0f} hashes/s")
    print(f"ours (imagehash.phash):            {ours_s:.3f} s, {args.n / ours_s:,.0f} hashes/s")
    print(f"ratio = ours/baseline = {ours_s / base_s:.2f}")
    print(f"same hash: {np.mean(dist == 0):.2%} of images; bits apart where not: "
          f"max {dist.max()}, mean {dist[dist > 0].mean() if (dist > 0).any() else 0:.2f}")


if __name__ == "__main__":
    main()
