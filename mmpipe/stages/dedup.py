"""Deduplication: exact (same image bytes) and near (perceptual hash within a Hamming radius).

The first sample seen (lowest `ordinal`) is kept; later ones are dropped as `duplicate` (same bytes)
or `near_duplicate` (perceptual hash), with the kept sample's id in the detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import imagehash
import numpy as np
import pyarrow as pa
from PIL import Image

from mmpipe.stages.base import Filter, set_column


def phash(img: Image.Image) -> int:
    """64-bit perceptual hash (imagehash.phash: DCT of a 32x32 grey thumbnail, 8x8 low frequencies vs
    their median), first coefficient in the top bit, as a signed int64 (samples.phash is a BIGINT)."""
    bits = imagehash.phash(img, hash_size=8, highfreq_factor=4).hash.ravel()
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")
    return value - (1 << 64) if value >= (1 << 63) else value


def _popcount(x: np.ndarray) -> np.ndarray:
    x = x.view(np.uint64)
    count = np.zeros(x.shape, dtype=np.uint64)
    for shift in range(0, 64, 8):
        count += _POP8[(x >> np.uint64(shift)) & np.uint64(0xFF)]
    return count


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint64)


def near_duplicates(hashes: np.ndarray, threshold: int) -> dict[int, int]:
    """index -> index of the first earlier hash within `threshold` bits (pigeonhole banding).

    Splitting 64 bits into threshold+1 bands, two hashes within the radius agree exactly on at
    least one band, so only same-bucket pairs need an exact distance check.
    """
    n = len(hashes)
    if n == 0 or threshold < 0:
        return {}
    h = hashes.astype(np.int64).view(np.uint64)
    bands = min(threshold + 1, 64)
    edges = np.linspace(0, 64, bands + 1).astype(int)
    dup_of: dict[int, int] = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = np.uint64((1 << (hi - lo)) - 1)
        keys = (h >> np.uint64(lo)) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], n]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            members = np.sort(order[s:e])
            for j_pos in range(1, len(members)):
                j = members[j_pos]
                earlier = members[:j_pos]
                dist = _popcount(h[earlier] ^ h[j])
                close = earlier[dist <= threshold]
                if len(close):
                    first = int(close.min())
                    if j not in dup_of or first < dup_of[j]:
                        dup_of[int(j)] = first
    return dup_of


@dataclass
class DedupConfig:
    """exact: same image bytes; near: perceptual hash within `hamming` bits (None turns it off)."""

    exact: bool = True
    hamming: int | None = 4


class Dedup(Filter):
    """Keeps the first-seen of each duplicate group over a whole run's candidates.

    Expects columns sample_id, content_sha256, phash and `ordinal` (first seen = lowest).
    """

    name = "dedup"
    version = "1"

    def __init__(self, config: DedupConfig | None = None, prior: dict[str, str] | None = None):
        """prior: content_sha256 -> sample id kept earlier in the run (shards processed in order)."""
        super().__init__()
        self.config = config or DedupConfig()
        self.prior = prior or {}

    def decide(self, batch: pa.Table):
        order = np.argsort(np.asarray(batch["ordinal"].to_pylist()), kind="stable")
        ids = [batch["sample_id"][int(i)].as_py() for i in order]
        shas = [batch["content_sha256"][int(i)].as_py() for i in order]
        raw = [batch["phash"][int(i)].as_py() for i in order]
        reason: list[tuple[str, str] | None] = [None] * len(ids)
        if self.config.exact:
            first: dict[str, str] = dict(self.prior)
            for k, sha in enumerate(shas):
                if sha is None:
                    continue
                if sha in first and first[sha] != ids[k]:
                    reason[k] = ("duplicate", first[sha])
                else:  # the same sample met again is an occurrence, accounted for as such, not a twin
                    first.setdefault(sha, ids[k])
        if self.config.hamming is not None:
            seen: set[str] = set()
            alive = [k for k in range(len(ids)) if reason[k] is None and raw[k] is not None
                     and not (ids[k] in seen or seen.add(ids[k]))]
            hashes = np.array([raw[k] for k in alive], dtype=np.int64)
            for j, i in near_duplicates(hashes, self.config.hamming).items():
                dist = bin((int(hashes[j]) ^ int(hashes[i])) & (2**64 - 1)).count("1")
                reason[alive[j]] = ("near_duplicate", f"{ids[alive[i]]} hamming={dist}")
        out: list[tuple[str, str] | None] = [None] * len(ids)
        for k, i in enumerate(order):
            out[int(i)] = reason[k]
        return out, None


def mark_met_before(batch: pa.Table, known: dict[str, dict]) -> pa.Table:
    """`batch` with the rows of samples an earlier run met (known: sample_id -> {run_id, source_key} of
    where it was first met) dropped by dedup as `duplicate`; later stages pass them through."""
    if not known:
        return batch
    ids = batch["sample_id"].to_pylist()
    hit = [s in known and k is not False for s, k in zip(ids, batch["keep"].to_pylist())]
    cols = {"keep": [False if h else k for h, k in zip(hit, batch["keep"].to_pylist())],
            "drop_reason": ["duplicate" if h else r for h, r in zip(hit, batch["drop_reason"].to_pylist())],
            "drop_detail": [f"repeat of {known[s]['source_key']} (run {known[s]['run_id']})" if h else d
                            for s, h, d in zip(ids, hit, batch["drop_detail"].to_pylist())],
            "drop_stage": [Dedup.name if h else g for h, g in zip(hit, batch["drop_stage"].to_pylist())]}
    for col, typ in (("keep", pa.bool_()), ("drop_reason", pa.string()), ("drop_detail", pa.string()),
                     ("drop_stage", pa.string())):
        batch = set_column(batch, col, pa.array(cols[col], typ))
    return batch
