"""WebDataset shards (.tar/.tgz, brace patterns), including img2dataset's output layout."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from mmpipe.sources.budget import TarBudget
from mmpipe.sources.tars import MAX_MEMBER_BYTES, members, tar_samples
from mmpipe.schema import batch_from_rows, content_sha256, drop, missing_sample_id, sample_id

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "avif", "gif", "bmp", "tif", "tiff")
AUDIO_EXTS = ("flac", "wav", "mp3", "ogg", "m4a", "opus")
TEXT_EXTS = ("txt", "caption", "text")


def _failed_downloads(tar_path: Path, source: str, modality: str) -> tuple[list[dict], str | None]:
    """img2dataset writes a per-shard parquet; rows that failed to download never reach the tar.

    A parquet that cannot be read is reported as the shard's error; the tar's samples still count.
    """
    meta = tar_path.with_name(tar_path.name.split(".")[0] + ".parquet")
    if not meta.is_file():
        return [], None
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(meta)
        records = table.to_pylist() if "status" in table.column_names else []
    except (pa.ArrowException, OSError, ValueError) as e:
        return [], f"img2dataset metadata {meta.name} is unreadable ({type(e).__name__}: {str(e)[:160]}); " \
                   "the tar's samples were all read, but the failed downloads it lists are not accounted for"
    rows = []
    for r in records:
        if r.get("status") == "success":
            continue
        key = f"{tar_path.name}/{r.get('key')}"
        text = r.get("caption") if isinstance(r.get("caption"), str) else None
        rows.append(drop({"sample_id": missing_sample_id(str(r.get("url") or key), text), "modality": modality,
                          "source": source, "source_key": key, "uri": r.get("url"), "text": text, "keep": True},
                         "download_failed", str(r.get("error_message") or r.get("status"))[:200]))
    return rows, None


def _refused_member(files: dict, key: str, exts: tuple[str, ...]) -> tuple[str, str] | None:
    """(reason, detail) when the sample's media or caption member is a link or over the budget."""
    for ext, value in files.items():
        if isinstance(value, tuple) and (ext in exts or not any(isinstance(v, bytes) for v in files.values())):
            return value[0], f"{key}.{ext}: {value[1]}"
    return None


def _sample(key: str, files: dict, tar_path: Path, source: str, modality: str, max_member_bytes: int) -> dict:
    media_exts = IMAGE_EXTS if modality == "image" else AUDIO_EXTS
    media_ext = next((e for e in media_exts if e in files), None)
    source_key = f"{tar_path.name}/{key}"
    row = {"modality": modality, "source": source, "source_key": source_key,
           "uri": f"{tar_path}#{key}.{media_ext or ''}", "text": None, "keep": True}
    problem: tuple[str, str | None] | None = _refused_member(files, key, media_exts + TEXT_EXTS + ("json",))
    files = {e: v for e, v in files.items() if not isinstance(v, tuple)}
    meta = {}
    if isinstance(files.get("json"), bytes):
        try:
            meta = json.loads(files["json"])
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            row["meta"] = json.dumps(meta)
        except (ValueError, UnicodeDecodeError) as e:
            meta, problem = {}, problem or ("bad_metadata", f"{key}.json: {str(e)[:120]}")
    text_ext = next((e for e in TEXT_EXTS if e in files), None)
    if text_ext and isinstance(files[text_ext], int):
        problem = problem or ("file_too_large", f"{key}.{text_ext}: {files[text_ext]} bytes")
    elif text_ext:
        try:
            row["text"] = files[text_ext].decode("utf-8").strip()
        except UnicodeDecodeError as e:
            problem = problem or ("caption_encoding", f"{key}.{text_ext} byte {e.start}")
    elif isinstance(meta.get("caption") or meta.get("text"), str):
        row["text"] = meta.get("caption") or meta.get("text")
    content = files.get(media_ext) if media_ext else None
    if isinstance(content, int):
        problem = problem or ("file_too_large", f"{key}.{media_ext}: {content} bytes > {max_member_bytes}")
        content = None
    if content is None:
        row["sample_id"] = missing_sample_id(source_key, row["text"])
        problem = problem or ("missing_media", None)
    else:
        row.update(sample_id=sample_id(content, row["text"]), content=content, content_sha256=content_sha256(content))
        if row["text"] is None and modality == "image":
            problem = problem or ("missing_caption", None)
    return drop(row, *problem) if problem else row


def tar_batch(path: str, source: str, modality: str = "image", shard_index: int = 0,
              max_member_bytes: int = MAX_MEMBER_BYTES, budget: TarBudget | None = None) -> tuple[pa.Table, str | None]:
    """All samples of one shard as a batch, and an error if the tar broke off midway or ran past its budget.

    Members over `max_member_bytes` are skipped unread (the sample is dropped as file_too_large); the
    member that would pass the decompressed-bytes budget is dropped as budget_exceeded and reading stops;
    links and devices are samples dropped as not_a_file.
    """
    tar_path = Path(path)
    samples = tar_samples(tar_path, max_member_bytes, budget)
    groups: dict[str, dict] = {}
    for s in samples:  # members of one key are one sample even where the tar does not keep them together
        groups.setdefault(s["__key__"], {}).update(members(s))
    error = samples.error
    rows = [_sample(k, files, tar_path, source, modality, max_member_bytes) for k, files in groups.items()]
    failed, meta_error = _failed_downloads(tar_path, source, modality)
    rows.extend(failed)
    return batch_from_rows(rows, shard_index), error or meta_error
