"""Curated data out: WebDataset shards (open_clip_train and `datasets` read them unmodified) and
Parquet manifests; plus the staged shards a run keeps between its passes."""

from __future__ import annotations

import io
import itertools
import json
import os
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmpipe.schema import AUDIO_SAMPLE_RATE, MAX_PIXELS
from mmpipe.sources.tars import members, tar_samples, write_tar_atomic  # noqa: F401  (write_tar_atomic: re-exported)
from mmpipe.stages.decode import decode_image, sniff_format

SHARD_NAME = "shard-{:06d}.tar"


def stage_batch(batch: pa.Table, path: str | Path) -> int:
    """Keep the still-kept rows of a batch (raw bytes, text, ordinal) in a staged shard, with a
    `.ids.parquet` sidecar; a sample met twice in the batch is staged once, at its first ordinal."""
    kept = batch.filter(pc.fill_null(batch["keep"], True))
    seen: set[str] = set()
    rows = []
    for sid, ordinal, content, text, meta in zip(*(kept[c].to_pylist() for c in
                                                   ("sample_id", "ordinal", "content", "text", "meta"))):
        if sid not in seen:
            seen.add(sid)
            rows.append((sid, ordinal, content, text, meta))

    def samples():
        for sid, ordinal, content, text, meta in rows:
            yield {"__key__": sid, "bin": content, "txt": (text or "").encode("utf-8"),
                   "json": json.dumps({"sample_id": sid, "ordinal": ordinal,
                                       "meta": json.loads(meta) if meta else None}).encode()}

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"sample_id": pa.array([r[0] for r in rows], pa.string()),
                             "ordinal": pa.array([r[1] for r in rows], pa.int64())}), path.with_suffix(".ids.parquet"))
    write_tar_atomic(path, samples())  # last: its presence marks the shard as prepared
    return len(rows)


def staged_ids(path: str | Path) -> pa.Table:
    """sample_id and ordinal of a staged shard (its .ids.parquet sidecar)."""
    return pq.read_table(Path(path).with_suffix(".ids.parquet"))


def read_staged(path: str | Path) -> list[dict]:
    """The samples of a staged shard: sample_id, content, text, ordinal, meta (the source's json or None)."""
    out = []
    for s in tar_samples(path, max_member_bytes=None):  # our own staged shard: its source was capped when read
        info = json.loads(s["json"])
        out.append({"sample_id": s["__key__"], "content": s["bin"], "text": s["txt"].decode("utf-8"),
                    "ordinal": info["ordinal"], "meta": info.get("meta")})
    return out


def as_jpeg(content: bytes, max_pixels: int = MAX_PIXELS) -> bytes:
    """JPEG bytes as they are; any other allowed format re-encoded as an RGB JPEG."""
    if sniff_format(content) == "JPEG":
        return content
    img, _ = decode_image(content, max_pixels)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def encode_flac(audio, sample_rate: int = AUDIO_SAMPLE_RATE) -> bytes:
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


def export_shard(samples: list[dict], path: str | Path, modality: str = "image", max_pixels: int = MAX_PIXELS) -> int:
    """Write a WebDataset shard: key.jpg (images; `content` bytes) or key.flac (audio; `audio` 16 kHz
    samples), key.txt and key.json (every other field) per sample; key = sample id."""

    def media(s: dict) -> tuple[str, bytes]:
        if modality == "audio":
            return "flac", encode_flac(s["audio"])
        return "jpg", as_jpeg(s["content"], max_pixels)

    def records():
        for s in samples:
            ext, data = media(s)
            meta = {k: v for k, v in s.items() if k not in ("content", "audio", "text")}
            yield {"__key__": s["sample_id"], ext: data, "txt": (s.get("text") or "").encode("utf-8"),
                   "json": json.dumps(meta, default=str).encode()}

    write_tar_atomic(path, records())
    return len(samples)


def count_samples(path: str | Path) -> int:
    """Samples in an exported shard (one .json per sample)."""
    return sum(1 for s in tar_samples(path, None, select=_is_json) if "json" in s)


def _is_json(name: str) -> bool:
    return name.endswith(".json")


def write_sizes(out_dir: str | Path, sizes: dict[str, int]) -> Path:
    """sizes.json as open_clip_train reads it: shard file name -> sample count."""
    path = Path(out_dir) / "sizes.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(sizes.items())), indent=1))
    return path


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """The Parquet manifest of a curated dataset (one row per exported sample)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, path)
    return path


def write_ids(sample_ids: list[str], path: str | Path) -> Path:
    """A Parquet file of sample ids (a split, or a subset), written atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table({"sample_id": pa.array(sample_ids, pa.string())}), tmp)
    os.replace(tmp, path)
    return path


def finalize_shards(out_dir: str | Path, part_sizes: dict[str, int],
                    index: bool = True) -> tuple[dict[str, int], dict[str, str], str]:
    """Rename the non-empty parts (out_dir/parts/*.tar) to contiguous shard names so one brace
    pattern covers the dataset; write sizes.json. Returns (sizes, sample id -> shard, pattern); with
    index=False the shards are not read back and the mapping is empty (the caller knows it).

    Idempotent: a part already renamed by an interrupted call is found under its final name.
    """
    out = Path(out_dir)
    parts = sorted(k for k, v in part_sizes.items() if v)
    final = {part: SHARD_NAME.format(i) for i, part in enumerate(parts)}
    for part, name in final.items():
        if (out / "parts" / part).exists():
            os.replace(out / "parts" / part, out / name)
    sizes = {final[p]: part_sizes[p] for p in parts}
    write_sizes(out, sizes)
    shard_of: dict[str, str] = {}
    for name in final.values() if index else ():
        shard_of.update({s["__key__"]: name for s in tar_samples(out / name, None, select=_is_json) if "json" in s})
    last = len(parts) - 1
    pattern = "" if not parts else (SHARD_NAME.format(0) if last == 0 else
                                    "shard-{000000.." + f"{last:06d}" + "}.tar")
    return sizes, shard_of, pattern


def _feature(value) -> dict:
    if isinstance(value, bool):
        return {"dtype": "bool"}
    if isinstance(value, int):
        return {"dtype": "int64"}
    if isinstance(value, float):
        return {"dtype": "float64"}
    return {"dtype": "string"}


def write_card(out_dir: str | Path, name: str, version: str, modality: str, example_json: dict | None) -> Path:
    """README.md with the `datasets` card (features and data files), so `load_dataset(<this folder>)`
    reads the shards as they are: images decode with PIL, audio into an `Audio` column (16 kHz) that
    torchcodec decodes (see mmpipe.audio_io for FFmpeg)."""
    import yaml

    media = ({"name": "jpg", "dtype": "image"} if modality == "image"
             else {"name": "flac", "dtype": {"audio": {"sampling_rate": AUDIO_SAMPLE_RATE}}})
    fields = [{"name": k, **_feature(v)} for k, v in sorted((example_json or {}).items())
              if not isinstance(v, (dict, list))]
    card = {"dataset_info": {"features": [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"},
                                          media, {"name": "txt", "dtype": "string"},
                                          {"name": "json", "struct": fields or [{"name": "sample_id", "dtype": "string"}]}]},
            "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "shard-*.tar"}]}]}
    text = (f"---\n{yaml.safe_dump(card, sort_keys=False)}---\n\n# {name} {version}\n\n"
            f"Curated by mmpipe: WebDataset shards (key.{media['name']}, key.txt, key.json), `sizes.json`, "
            "`manifest.parquet` (one row per sample) and `val_ids.parquet` (the validation split).\n\n"
            "```python\nfrom datasets import load_dataset\nds = load_dataset(\"<this folder>\", split=\"train\")\n```\n"
            + ("" if modality == "image" else _AUDIO_NOTE))
    path = Path(out_dir) / "README.md"
    path.write_text(text)
    return path


_AUDIO_NOTE = ("\n`ds[0][\"flac\"]` decodes with torchcodec (`pip install torchcodec`), which needs FFmpeg's shared "
               "libraries: a system FFmpeg, or `import mmpipe.audio_io; mmpipe.audio_io.use_pyav_ffmpeg()` first. "
               "With `webdataset`: `wds.WebDataset(urls).decode(mmpipe.audio_io.wds_audio)`.\n")


def decode_audio(flac: bytes):
    """FLAC bytes of an exported audio shard as 16 kHz mono float32 samples (PyAV, no system tools)."""
    from mmpipe.audio_io import decode_audio_bytes

    return decode_audio_bytes(flac)[0]  # not faster_whisper's decode_audio: its gc.collect() per clip


def first_json(path: str | Path) -> dict | None:
    """The first sample's json of a shard (what the dataset card declares), or None."""
    for s in tar_samples(path, None, select=_is_json):
        if "json" in s:
            return json.loads(s["json"])
    return None


def iter_shard_samples(shards: list[str]) -> Iterable[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) of each sample of exported shards, one sample in memory at a time."""
    for path in shards:
        for s in tar_samples(path, max_member_bytes=None):  # our own exported shards
            yield s["__key__"], {e: v for e, v in members(s).items() if isinstance(v, bytes)}


def reshard(shards: list[str], keep: set[str] | None, out_dir: str | Path, shard_size: int = 1000,
            transform=None, prefix: str = "part") -> dict[str, int]:
    """Copy the samples whose key (sample id) is in `keep` from exported shards into new parts
    (out_dir/parts/<prefix>-*.tar, `shard_size` samples each; keep=None copies all), optionally changing each sample's members
    with `transform(key, files) -> files`; returns part name -> count (finalize_shards names them)."""
    out = Path(out_dir) / "parts"
    sizes: dict[str, int] = {}

    def chosen():
        for key, files in iter_shard_samples(shards):
            if keep is None or key in keep:
                yield {"__key__": key, **(transform(key, files) if transform is not None else files)}

    samples = chosen()
    # streamed part by part through the one atomic writer (webdataset's ShardWriter names parts by a
    # %-pattern and writes them in place, so a crash would leave a half part under its final name)
    for first in samples:
        name = f"{prefix}-{len(sizes):06d}.tar"
        sizes[name] = write_tar_atomic(out / name, itertools.chain([first], itertools.islice(samples, shard_size - 1)))
    return sizes
