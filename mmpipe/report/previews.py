"""Small previews of a bounded, deterministic sample of each run, kept for reports (`thumbnails`).

Per shard: every reason the shard's stages dropped is represented first (a few rows each), then
survivors in the order of a hash of their perceptual hash's top bits (exact and most near
duplicates share it, so pairs tend to be chosen together), up to the shard's budget; the run's
budget caps the total. A preview is a JPEG of at most PREVIEW_PX a side, or a FLAC clip of at most
AUDIO_SECONDS of 16 kHz mono.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict

import numpy as np
import pyarrow as pa
from PIL import Image

from mmpipe.schema import AUDIO_SAMPLE_RATE

PREVIEW_PX = 96
AUDIO_SECONDS = 10.0
IMAGES_PER_SHARD = 64
IMAGES_PER_RUN = 512
CLIPS_PER_SHARD = 16
CLIPS_PER_RUN = 64
PER_REASON = 6  # dropped rows of one reason previewed per shard

THUMBNAIL_SCHEMA = pa.schema([("sample_id", pa.string()), ("run_id", pa.string()), ("role", pa.string()),
                              ("mime", pa.string()), ("data", pa.binary()), ("width", pa.int32()),
                              ("height", pa.int32())])


def _order_key(sample_id: str, phash: int | None) -> bytes:
    basis = f"p{(phash or 0) >> 40}" if phash is not None else f"s{sample_id}"
    return hashlib.sha1(basis.encode()).digest() + sample_id.encode()


def choose(batch: pa.Table, budget: int, per_reason: int = PER_REASON) -> list[int]:
    """Rows of `batch` to preview: each drop reason first (a few each), then survivors by hash order;
    each sample once, at most `budget` rows."""
    if budget <= 0 or batch.num_rows == 0:
        return []
    ids = batch["sample_id"].to_pylist()
    keep = batch["keep"].to_pylist()
    reasons = batch["drop_reason"].to_pylist()
    hashes = batch["phash"].to_pylist() if "phash" in batch.column_names else [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: _order_key(ids[i], hashes[i]))
    by_reason: dict[str, list[int]] = defaultdict(list)
    survivors: list[int] = []
    for i in order:
        if keep[i] is False:
            by_reason[reasons[i] or "dropped"].append(i)
        else:
            survivors.append(i)
    picked, seen = [], set()
    for rows in by_reason.values():
        picked += rows[:per_reason]
    picked += survivors
    out = []
    for i in picked:
        if ids[i] not in seen and len(out) < budget:
            seen.add(ids[i])
            out.append(i)
    return out


def image_preview(content: bytes, size: int = PREVIEW_PX) -> tuple[bytes, int, int] | None:
    """(JPEG bytes, width, height) of an image at most `size` px a side, or None if it does not decode."""
    try:
        with Image.open(io.BytesIO(content)) as img:
            if img.width * img.height > 50_000_000:
                return None
            img.draft("RGB", (size * 2, size * 2))  # JPEG: decode at a reduced scale
            img = img.convert("RGB")
            img.thumbnail((size, size), Image.Resampling.BILINEAR)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80, optimize=True)
            return buf.getvalue(), img.width, img.height
    except Exception:  # noqa: BLE001 - a preview is best effort; the sample's decision is recorded elsewhere
        return None


def image_previews(batch: pa.Table, run_id: str, budget: int) -> pa.Table:
    """Thumbnail rows for a bounded sample of a decoded image batch (role: dropped or sample)."""
    rows = []
    contents = batch["content"] if "content" in batch.column_names else None
    for i in choose(batch, budget):
        content = contents[i].as_py() if contents is not None else None
        got = image_preview(content) if content else None
        if got is None:
            continue
        data, w, h = got
        role = "dropped" if batch["keep"][i].as_py() is False else "sample"
        rows.append({"sample_id": batch["sample_id"][i].as_py(), "run_id": run_id, "role": role,
                     "mime": "image/jpeg", "data": data, "width": w, "height": h})
    return pa.Table.from_pylist(rows, schema=THUMBNAIL_SCHEMA)


def audio_previews(batch: pa.Table, run_id: str, budget: int, seconds: float = AUDIO_SECONDS) -> pa.Table:
    """Short FLAC clips (16 kHz mono, the first `seconds`) of a bounded sample of a decoded audio batch."""
    from mmpipe.export import encode_flac

    rows = []
    if "audio" not in batch.column_names:
        return pa.Table.from_pylist(rows, schema=THUMBNAIL_SCHEMA)
    audio = batch["audio"]
    playable = batch.filter(pa.array([a.is_valid for a in audio], pa.bool_())) if batch.num_rows else batch
    for i in choose(playable, budget):
        clip = playable["audio"][i].values.to_numpy(zero_copy_only=False)[: int(seconds * AUDIO_SAMPLE_RATE)]
        if clip.size == 0:
            continue
        rows.append({"sample_id": playable["sample_id"][i].as_py(), "run_id": run_id, "role": "audio",
                     "mime": "audio/flac", "data": encode_flac(np.asarray(clip, np.float32)), "width": None,
                     "height": None})
    return pa.Table.from_pylist(rows, schema=THUMBNAIL_SCHEMA)
