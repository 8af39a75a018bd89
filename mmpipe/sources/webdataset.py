"""WebDataset shards (.tar/.tgz, brace patterns), including img2dataset's output layout."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow as pa
from braceexpand import braceexpand

from mmpipe.schema import batch_from_rows, content_sha256, missing_sample_id, sample_id

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
AUDIO_EXTS = ("flac", "wav", "mp3", "ogg", "m4a", "opus")
TEXT_EXTS = ("txt", "caption", "text")


def expand_shards(pattern: str) -> list[str]:
    """Shard paths from a file, a folder of tars, or a brace pattern like shard-{000..009}.tar."""
    p = Path(pattern)
    if p.is_dir():
        return sorted(str(x) for x in p.iterdir() if x.name.endswith((".tar", ".tgz", ".tar.gz")))
    paths = list(braceexpand(pattern))
    missing = [x for x in paths if not Path(x).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) not found, e.g. {missing[0]}")
    return paths


def _split(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the base name."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1:].lower())


def _failed_downloads(tar_path: Path, source: str, modality: str) -> list[dict]:
    """img2dataset writes a per-shard parquet; rows that failed to download never reach the tar."""
    meta = tar_path.with_name(tar_path.name.split(".")[0] + ".parquet")
    if not meta.is_file():
        return []
    import pyarrow.parquet as pq

    table = pq.read_table(meta)
    if "status" not in table.column_names:
        return []
    rows = []
    for r in table.to_pylist():
        if r.get("status") == "success":
            continue
        key = f"{tar_path.name}/{r.get('key')}"
        text = r.get("caption")
        rows.append({"sample_id": missing_sample_id(str(r.get("url") or key), text), "modality": modality,
                     "source": source, "source_key": key, "uri": r.get("url"), "text": text, "keep": False,
                     "drop_reason": "download_failed", "drop_stage": "decode"})
    return rows


def _has_end_marker(path: Path, offset: int) -> bool:
    """An uncompressed tar ends with two zero blocks after its last member; a cut-off one does not."""
    with path.open("rb") as f:
        if f.read(2) == b"\x1f\x8b":
            return True  # gzip: a truncated stream already raised EOFError
        f.seek(offset)
        tail = f.read(1024)
    return len(tail) == 1024 and not tail.strip(b"\x00")


def read_tar(path: str, source: str, modality: str = "image") -> tuple[pa.Table, str | None]:
    """All samples of one shard as a batch, and a read error if the tar broke off midway."""
    tar_path = Path(path)
    groups: dict[str, dict[str, bytes]] = {}
    error = None
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                key, ext = _split(member.name)
                if Path(key).name.startswith((".", "_")):
                    continue
                f = tf.extractfile(member)
                groups.setdefault(key, {})[ext] = f.read() if f else b""
            end = tf.offset
        if not _has_end_marker(tar_path, end):
            error = "the tar ends without its end-of-archive marker (truncated?)"
    except (tarfile.TarError, OSError, EOFError) as e:
        error = f"{type(e).__name__}: {e}"
    media_exts = IMAGE_EXTS if modality == "image" else AUDIO_EXTS
    rows = []
    for key, files in groups.items():
        text, meta = None, {}
        if "json" in files:
            try:
                meta = json.loads(files["json"])
            except (ValueError, UnicodeDecodeError):
                meta = {}
        for ext in TEXT_EXTS:
            if ext in files:
                text = files[ext].decode("utf-8", errors="replace").strip()
                break
        if text is None and isinstance(meta, dict):
            text = meta.get("caption") or meta.get("text")
        media_ext = next((e for e in media_exts if e in files), None)
        source_key = f"{tar_path.name}/{key}"
        row = {"modality": modality, "source": source, "source_key": source_key,
               "uri": f"{tar_path}#{key}.{media_ext or ''}", "text": text, "keep": True}
        if media_ext is None:
            row.update(sample_id=missing_sample_id(source_key, text), keep=False,
                       drop_reason="missing_media", drop_stage="decode")
        else:
            content = files[media_ext]
            row.update(sample_id=sample_id(content, text), content=content, content_sha256=content_sha256(content))
            if text is None and modality == "image":
                row.update(keep=False, drop_reason="missing_caption", drop_stage="decode")
        rows.append(row)
    rows.extend(_failed_downloads(tar_path, source, modality))
    return batch_from_rows(rows), error
