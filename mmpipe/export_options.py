"""Export options, as img2dataset users know them: resize modes, image formats, per-shard stats;
and the id files (DataComp's .npy uids, Parquet) that choose an export's samples."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from mmpipe.export import SHARD_NAME
from mmpipe.schema import MAX_PIXELS
from mmpipe.stages.decode import decode_image

RESIZE_MODES = ("center_crop", "keep_ratio", "border", "no")
IMAGE_FORMATS = {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}
# The settings an exported dataset version records under "export" in its filter_spec.
EXPORT_SPEC_KEYS = ("ids_file", "query", "resize", "resize_mode", "image_format", "quality", "shard_size")


@dataclass(frozen=True)
class ExportRequest:
    """export_flow's parameters (all but the home), with its defaults: what defines an export run."""

    dataset: str
    name: str | None = None
    ids_file: str | None = None
    query: str | None = None
    resize: int | None = None
    resize_mode: str = "center_crop"
    image_format: str = "jpg"
    quality: int = 95
    shard_size: int = 1000

    def params(self) -> dict:
        """The run's parameters as the runs table stores them (and a resume matches)."""
        return asdict(self)

    def filter_spec(self, parent: dict) -> dict:
        """The exported version's filter_spec: its parent's, plus this export under "export"."""
        return {**json.loads(parent.get("filter_spec") or "{}"),
                "export": {**{k: getattr(self, k) for k in EXPORT_SPEC_KEYS},
                           "parent": f"{parent['name']}@{parent['version']}"}}


def resize_image(img, size: int, mode: str = "center_crop"):
    """img2dataset's resize modes: center_crop (shorter side to `size`, then the centre size x size),
    keep_ratio (shorter side to `size`), border (longer side to `size`, padded to a black square),
    no (unchanged)."""
    from PIL import Image

    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode is one of {', '.join(RESIZE_MODES)}, not {mode!r}")
    w, h = img.size
    if mode == "no" or not size:
        return img
    if mode == "border":
        f = size / max(w, h)
        img = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (size, size), (0, 0, 0))
        canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
        return canvas
    f = size / min(w, h)
    img = img.resize((max(size, round(w * f)), max(size, round(h * f))), Image.Resampling.LANCZOS)
    if mode == "keep_ratio":
        return img
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((left, top, left + size, top + size))


def encode_image(img, fmt: str = "jpg", quality: int = 95) -> bytes:
    """RGB image bytes as jpg, webp or png."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"image format is one of {', '.join(IMAGE_FORMATS)}, not {fmt!r}")
    buf = io.BytesIO()
    img.convert("RGB").save(buf, IMAGE_FORMATS[fmt], quality=quality)
    return buf.getvalue()


def export_transform(resize: int | None = None, mode: str = "center_crop", fmt: str = "jpg", quality: int = 95,
                     extra_json: dict[str, dict] | None = None, max_pixels: int = MAX_PIXELS):
    """A `reshard` transform: re-encode each image (resized when asked) as `fmt` and merge
    `extra_json[key]` into its json, with the exported and original width and height. Audio members
    pass through with only the json enriched."""
    extra_json = extra_json or {}

    def transform(key: str, files: dict[str, bytes]) -> dict[str, bytes]:
        files = dict(files)
        meta = json.loads(files.get("json") or b"{}")
        meta.update({k: v for k, v in (extra_json.get(key) or {}).items() if v is not None})
        media = next((e for e in ("jpg", "jpeg", "png", "webp") if e in files), None)
        if media is not None and (resize or fmt != "jpg" or media != "jpg"):
            img, _ = decode_image(files.pop(media), max_pixels)
            meta.setdefault("original_width", img.width)
            meta.setdefault("original_height", img.height)
            img = resize_image(img, resize, mode) if resize else img
            files[fmt] = encode_image(img, fmt, quality)
            meta.update(width=img.width, height=img.height)
        files["json"] = json.dumps(meta, default=str).encode()
        return files

    return transform


def shard_names(part_sizes: dict[str, int]) -> dict[str, str]:
    """part name -> the shard name finalize_shards gives it."""
    return {p: SHARD_NAME.format(i) for i, p in enumerate(sorted(k for k, v in part_sizes.items() if v))}


def write_shard_stats(out_dir: str | Path, part_sizes: dict[str, int], started: float, ended: float,
                      config: dict, failed: dict[str, int] | None = None) -> list[Path]:
    """shard-NNNNNN_stats.json beside each shard, as img2dataset writes NNNNN_stats.json: count,
    successes, failures by kind, timing, status and the export config."""
    paths = []
    for part, name in shard_names(part_sizes).items():
        n = part_sizes[part]
        stats = {"count": n, "successes": n, "failed_to_download": 0, "failed_to_resize": (failed or {}).get(part, 0),
                 "duration": round(ended - started, 3), "start_time": started, "end_time": ended,
                 "status": "success", "config": config}
        path = Path(out_dir) / name.replace(".tar", "_stats.json")
        path.write_text(json.dumps(stats, indent=1, sort_keys=True, default=str))
        paths.append(path)
    return paths


def uid_of(sample_id: str) -> str:
    """A sample's DataComp-style uid: the first 128 bits of its id, 32 hex digits."""
    return sample_id[:32]


def read_id_file(path: str | Path) -> list[str]:
    """Sample ids (or DataComp-style 32-hex uids) from a .npy (strings, or DataComp's `u8,u8` pairs)
    or a Parquet file (column sample_id or uid)."""
    import numpy as np

    path = Path(path)
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.dtype.names and len(arr.dtype.names) == 2:  # DataComp: a uid as two big-endian halves
            a, b = arr.dtype.names
            return [f"{int(x):016x}{int(y):016x}" for x, y in zip(arr[a], arr[b])]
        return [str(x) for x in arr.tolist()]
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        col = next((c for c in ("sample_id", "uid") if c in table.column_names), None)
        if col is None:
            raise ValueError(f"{path} has no sample_id or uid column (columns: {', '.join(table.column_names)})")
        return [str(x) for x in table.column(col).to_pylist() if x is not None]
    raise ValueError(f"an id file is .npy or .parquet, not {path.name}")


def match_ids(wanted: list[str], available: list[str]) -> tuple[list[str], list[str]]:
    """(the available sample ids that `wanted` names by full id or 32-hex uid, the wanted entries
    that name none)."""
    full = set(available)
    by_uid: dict[str, list[str]] = {}
    for s in available:
        by_uid.setdefault(uid_of(s), []).append(s)
    found: list[str] = []
    missing: list[str] = []
    for w in dict.fromkeys(x.lower() for x in wanted):
        if w in full:
            found.append(w)
        elif w in by_uid:
            found += by_uid[w]
        else:
            missing.append(w)
    return found, missing
