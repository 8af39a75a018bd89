"""Retrieval over stored CLIP embeddings (clip-retrieval's core): faiss indexes, query encoding, and
the embeddings as .npy shards + metadata Parquet in clip-retrieval's layout."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmpipe.semdedup import normalize

KINDS = ("auto", "flat", "hnsw", "ivfpq")
EXACT_UP_TO = 50_000  # below this, exact search is fast enough and loses nothing
HNSW_UP_TO = 2_000_000  # above this, HNSW's memory (full vectors + graph) gives way to IVF-PQ


@dataclass(frozen=True)
class IndexRequest:
    """index_flow's parameters (all but the home), with its defaults: what defines an index run."""

    dataset: str
    kind: str = "auto"
    clip_model: str | None = None
    clip_pretrained: str | None = None

    def params(self) -> dict:
        """The run's parameters as the runs table stores them (and a resume matches)."""
        return asdict(self)


def choose_kind(n: int, kind: str = "auto") -> str:
    """flat (exact) for small sets, HNSW up to a few million, IVF-PQ beyond; or the one asked for."""
    if kind not in KINDS:
        raise ValueError(f"index kind is one of {', '.join(KINDS)}, not {kind!r}")
    if kind != "auto":
        return kind
    return "flat" if n <= EXACT_UP_TO else "hnsw" if n <= HNSW_UP_TO else "ivfpq"


def _pq_subquantizers(d: int) -> int:
    """The most sub-vectors of at least 8 dims each that divide d (faiss needs d % m == 0)."""
    for m in range(max(1, d // 8), 0, -1):
        if d % m == 0:
            return m
    return 1


def build_index(emb: np.ndarray, kind: str = "auto", hnsw_m: int = 32, seed: int = 0):
    """A faiss inner-product index over normalized rows (cosine similarity)."""
    import faiss

    x = normalize(emb)
    n, d = x.shape
    kind = choose_kind(n, kind)
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        index.hnsw.efSearch = 64
    else:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))  # faiss wants ~39 training points per list
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, _pq_subquantizers(d), 8, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(x)
        index.nprobe = min(nlist, 16)
    index.add(x)
    return index


def set_search_effort(index, ef: int | None = None, nprobe: int | None = None) -> None:
    """HNSW's efSearch or IVF's nprobe (more is slower and finds more of the true neighbours)."""
    import faiss

    if ef and isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = ef
    if nprobe and hasattr(index, "nprobe"):
        index.nprobe = nprobe


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row ids) of the k nearest rows for each query row; ids are -1 past the end."""
    q = normalize(np.atleast_2d(queries))
    return index.search(q, min(k, index.ntotal))


def index_kind(index) -> str:
    import faiss

    return "hnsw" if isinstance(index, faiss.IndexHNSW) else "ivfpq" if isinstance(index, faiss.IndexIVF) else "flat"


def save_index(index, path: str | Path) -> Path:
    """Write a faiss index atomically."""
    import faiss

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)
    return path


def load_index(path: str | Path):
    """Read a faiss index written by save_index."""
    import faiss

    return faiss.read_index(str(path))


def write_embeddings(out_dir: str | Path, img_emb: np.ndarray, text_emb: np.ndarray | None, metadata: pa.Table,
                     shard_size: int = 1_000_000) -> dict[str, list[str]]:
    """clip-retrieval's layout: img_emb/img_emb_{i}.npy, text_emb/text_emb_{i}.npy (float16, row i of
    shard j = row i of metadata/metadata_{j}.parquet). Returns the files written by folder."""
    out = Path(out_dir)
    written: dict[str, list[str]] = {"img_emb": [], "text_emb": [], "metadata": []}
    for j, lo in enumerate(range(0, max(len(img_emb), 1), shard_size)):
        hi = min(len(img_emb), lo + shard_size)
        parts = [("img_emb", img_emb)] + ([("text_emb", text_emb)] if text_emb is not None else [])
        for folder, arr in parts:
            path = out / folder / f"{folder}_{j}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, np.asarray(arr[lo:hi], dtype=np.float16))
            written[folder].append(str(path))
        path = out / "metadata" / f"metadata_{j}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(metadata.slice(lo, hi - lo), path)
        written["metadata"].append(str(path))
    return written


def read_embeddings(out_dir: str | Path, folder: str = "img_emb") -> np.ndarray:
    """All shards of one embeddings folder, in order, as float32."""
    files = sorted(Path(out_dir, folder).glob(f"{folder}_*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return np.concatenate([np.load(f).astype(np.float32) for f in files]) if files else np.zeros((0, 0), np.float32)


def at_home(home: str | Path, path: str | None) -> str | None:
    """A path stored relative to the home, resolved against where the home is now (URLs, tags, hub
    ids and absolute paths as they are): indexes store paths this way so a home can move whole."""
    if not path or "://" in path or path.startswith("hf-hub:") or os.path.isabs(path):
        return path
    candidate = Path(home) / path
    return str(candidate) if candidate.exists() or "/" in path else path


def write_index_info(path: str | Path, info: dict) -> Path:
    """index.json beside the index: model, pretrained, kind, size, dataset."""
    path = Path(path)
    path.write_text(json.dumps(info, indent=1, sort_keys=True))
    return path


def encode_query(bundle, text: str | None = None, image_path: str | None = None) -> np.ndarray:
    """The normalized CLIP embedding of a text or an image file (float32, one row)."""
    import torch
    from PIL import Image

    with torch.no_grad():
        if image_path is not None:
            with Image.open(image_path) as img:
                x = bundle.preprocess(img.convert("RGB")).unsqueeze(0).to(bundle.device, dtype=bundle.dtype)
            emb = bundle.model.encode_image(x)
        else:
            emb = bundle.model.encode_text(bundle.tokenizer([text or ""]).to(bundle.device))
    return normalize(emb.float().cpu().numpy())


def index_folder(home: str | Path, name: str, version: str) -> Path:
    """Where `mmpipe index` keeps a dataset version's indexes: <home>/indexes/NAME/VERSION."""
    return Path(home) / "indexes" / name / version


def nearest_samples(home: str | Path, where: str | Path, text: str | None = None, image_path: str | None = None,
                    k: int = 20, against: str = "image", device: str | None = "cpu") -> list[dict]:
    """The `k` samples of the index folder `where` nearest to a text or an image file, best first:
    rank, score and the sample's stored metadata, its paths resolved against the home (they are stored
    relative to it, so a home can move)."""
    from mmpipe.models.clip import load_clip

    if against not in ("image", "text"):
        raise ValueError(f"search against the image or the text index, not {against!r}")
    where = Path(where)
    info = json.loads((where / "index.json").read_text())
    bundle = load_clip(info["model"], at_home(home, info["pretrained"]), device)  # checkpoints: home-relative
    query = encode_query(bundle, text=text, image_path=image_path)
    scores, rows = search(load_index(where / f"{against}.index"), query, k)
    meta = pq.read_table(where / "metadata.parquet").to_pylist()
    return [{"rank": r + 1, "score": round(float(s), 4), **meta[i], "image_path": at_home(home, meta[i]["image_path"]),
             "source_uri": at_home(home, meta[i]["source_uri"])}
            for r, (s, i) in enumerate(zip(scores[0].tolist(), rows[0].tolist())) if i >= 0]
