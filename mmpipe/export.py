"""Curated data out: WebDataset shards (open_clip_train and `datasets` read them unmodified) and
Parquet manifests; plus the staged shards a run keeps between its passes."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmpipe.stages.decode import decode_image, sniff_format


def write_tar_atomic(path: str | Path, members: Iterable[tuple[str, bytes]]) -> int:
    """Write (name, bytes) members to a tar under a temp name, then rename; returns member count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    mtime = time.time()
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tf.addfile(info, io.BytesIO(data))
            n += 1
    os.replace(tmp, path)
    return n


def stage_batch(batch: pa.Table, path: str | Path, shard_index: int) -> int:
    """Keep the still-kept rows of a batch (raw bytes, text, order) in a staged shard."""
    kept = batch.filter(pc.fill_null(batch["keep"], True))

    def members():
        for row, (sid, content, text) in enumerate(zip(kept["sample_id"].to_pylist(), kept["content"].to_pylist(),
                                                       kept["text"].to_pylist())):
            meta = {"sample_id": sid, "order": shard_index * 1_000_000 + row}
            yield f"{sid}.bin", content
            yield f"{sid}.txt", (text or "").encode("utf-8")
            yield f"{sid}.json", json.dumps(meta).encode()

    write_tar_atomic(path, members())
    return kept.num_rows


def read_staged(path: str | Path) -> list[dict]:
    """The samples of a staged shard: sample_id, content, text, order."""
    groups: dict[str, dict] = {}
    with tarfile.open(path, "r") as tf:
        for m in tf:
            key, ext = m.name.split(".", 1)
            data = tf.extractfile(m).read()
            g = groups.setdefault(key, {"sample_id": key})
            if ext == "bin":
                g["content"] = data
            elif ext == "txt":
                g["text"] = data.decode("utf-8")
            elif ext == "json":
                g["order"] = json.loads(data)["order"]
    return list(groups.values())


def as_jpeg(content: bytes) -> bytes:
    """JPEG bytes as they are; any other allowed format re-encoded as an RGB JPEG."""
    if sniff_format(content) == "JPEG":
        return content
    img, _ = decode_image(content)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def export_shard(samples: list[dict], path: str | Path) -> int:
    """Write a WebDataset shard: key.jpg, key.txt, key.json per sample (key = sample id)."""

    def members():
        for s in samples:
            meta = {k: v for k, v in s.items() if k not in ("content", "text")}
            yield f"{s['sample_id']}.jpg", as_jpeg(s["content"])
            yield f"{s['sample_id']}.txt", (s.get("text") or "").encode("utf-8")
            yield f"{s['sample_id']}.json", json.dumps(meta, default=str).encode()

    write_tar_atomic(path, members())
    return len(samples)


def write_sizes(out_dir: str | Path, sizes: dict[str, int]) -> Path:
    """sizes.json as open_clip_train reads it: shard file name -> sample count."""
    path = Path(out_dir) / "sizes.json"
    path.write_text(json.dumps(dict(sorted(sizes.items())), indent=1))
    return path


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """The Parquet manifest of a curated dataset (one row per exported sample)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, path)
    return path


def encode_flac(audio, sample_rate: int = 16_000) -> bytes:
    """16-bit mono FLAC bytes of float samples in [-1, 1] (through PyAV, no system tools)."""
    import av
    import numpy as np

    pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16)[None, :]
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def export_audio_shard(samples: list[dict], path: str | Path) -> int:
    """An audio-text WebDataset shard: key.flac (16 kHz mono), key.txt (transcript), key.json."""

    def members():
        for s in samples:
            meta = {k: v for k, v in s.items() if k not in ("audio", "text")}
            yield f"{s['sample_id']}.flac", encode_flac(s["audio"])
            yield f"{s['sample_id']}.txt", (s.get("text") or "").encode("utf-8")
            yield f"{s['sample_id']}.json", json.dumps(meta, default=str).encode()

    write_tar_atomic(path, members())
    return len(samples)
