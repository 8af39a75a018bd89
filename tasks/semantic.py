"""Tasks over a dataset version's stored CLIP embeddings: semantic dedup and the retrieval index."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.models.clip import from_f16_bytes
from mmpipe.search import (build_index, index_folder, index_kind, save_index, write_embeddings,
                           write_index_info)
from mmpipe.semdedup import REASON, STAGE, STAGE_VERSION, SemDedupConfig, semantic_duplicates
from warehouse import Warehouse
from warehouse.dataset_queries import resolve_dataset
from warehouse.search_queries import (embedding_models, record_semantic_dedup, sample_info,
                                      semantic_dedup_summary, stored_embeddings)


@task(cache_policy=NO_CACHE)
def resolve_version(home: str, spec: str) -> dict:
    """The `datasets` row of NAME[@VERSION|@TAG]."""
    return resolve_dataset(Warehouse(home), spec)


def version_ids(wh: Warehouse, dataset: dict) -> list[str]:
    """The sample ids of a dataset version (its manifest)."""
    return pq.read_table(wh.resolve(dataset["manifest_uri"]), columns=["sample_id"]).column("sample_id").to_pylist()


def clip_key_of(wh: Warehouse, dataset: dict, ids: list[str], model: str | None, pretrained: str | None) -> dict:
    """Which stored embeddings to use: the given model, the one that curated the version, else the
    model with the most embeddings of its samples."""
    spec = json.loads(dataset.get("filter_spec") or "{}")
    model = model or spec.get("clip_model")
    pretrained = pretrained if pretrained is not None else spec.get("clip_pretrained")
    found = embedding_models(wh, ids)
    if model and model.lower() != "none":
        match = [f for f in found if f["model"] == model and (pretrained is None or f["pretrained"] == pretrained)]
    else:
        match = found
    if not match:
        raise LookupError(f"no stored CLIP embeddings for {dataset['name']}@{dataset['version']}"
                          + (f" from {model} / {pretrained}" if model else "")
                          + "; curate it with a CLIP model first (embeddings are stored beside the scores)")
    return {"model": match[0]["model"], "pretrained": match[0]["pretrained"]}


def load_embeddings(wh: Warehouse, key: dict, ids: list[str]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(sample ids, image embeddings, text embeddings, CLIP scores) of the samples that have them."""
    table = stored_embeddings(wh, key["model"], key["pretrained"], ids)
    got = table.column("sample_id").to_pylist()
    img = np.stack([from_f16_bytes(b) for b in table.column("image_embedding").to_pylist()]) if got else np.zeros((0, 0))
    txt = np.stack([from_f16_bytes(b) for b in table.column("text_embedding").to_pylist()]) if got else np.zeros((0, 0))
    scores = np.array([np.nan if s is None else s for s in table.column("clip_score").to_pylist()], dtype=np.float64)
    return got, img.astype(np.float32), txt.astype(np.float32), scores


@task(cache_policy=NO_CACHE)
def semantic_dedup_version(home: str, run_id: str, dataset: dict, config: SemDedupConfig,
                           model: str | None = None, pretrained: str | None = None) -> dict:
    """Decide every sample of a version: kept, or `semantic_duplicate` of a kept twin (recorded as
    decisions of this run). Samples without an embedding are kept. Returns the kept ids and counts."""
    wh = Warehouse(home)
    ids = version_ids(wh, dataset)
    key = clip_key_of(wh, dataset, ids, model, pretrained)
    got, img, _, scores = load_embeddings(wh, key, ids)
    twin, sim, labels = semantic_duplicates(img, scores, config)
    dropped = twin >= 0
    n = len(got)
    detail = [f"kept {got[t]} (cosine {s:.4f}, cluster {c})" if t >= 0 else None
              for t, s, c in zip(twin.tolist(), sim.tolist(), labels.tolist())]
    decisions = pa.table({
        "sample_id": pa.array(got, pa.string()), "run_id": pa.array([run_id] * n, pa.string()),
        "stage": pa.array([STAGE] * n, pa.string()), "stage_version": pa.array([STAGE_VERSION] * n, pa.string()),
        "score": pa.array([None if np.isnan(s) else float(s) for s in sim.tolist()], pa.float64()),
        "keep": pa.array((~dropped).tolist(), pa.bool_()),
        "drop_reason": pa.array([REASON if d else None for d in dropped.tolist()], pa.string()),
        "detail": pa.array(detail, pa.string())})
    record_semantic_dedup(wh, decisions)
    drop = {got[i] for i in np.flatnonzero(dropped)}
    return {"kept_ids": [s for s in ids if s not in drop], "clip_key": key, "n": len(ids), "embedded": n,
            "dropped": len(drop), "clusters": int(labels.max()) + 1 if n else 0,
            "counts": semantic_dedup_summary(wh, run_id)}


@task(cache_policy=NO_CACHE)
def build_version_index(home: str, dataset: dict, kind: str = "auto", model: str | None = None,
                        pretrained: str | None = None) -> dict:
    """faiss indexes over a version's image and text embeddings, and the embeddings in
    clip-retrieval's layout (img_emb/, text_emb/, metadata/) under <home>/indexes/NAME/VERSION."""
    wh = Warehouse(home)
    ids = version_ids(wh, dataset)
    key = clip_key_of(wh, dataset, ids, model, pretrained)
    got, img, txt, scores = load_embeddings(wh, key, ids)
    if not got:
        raise LookupError(f"{dataset['name']}@{dataset['version']} has no samples with embeddings to index")
    out = index_folder(home, dataset["name"], dataset["version"])  # where `mmpipe search` looks
    manifest = {r["sample_id"]: r for r in pq.read_table(wh.resolve(dataset["manifest_uri"])).to_pylist()}
    info = sample_info(wh, got)
    # Paths inside the home are stored relative to it, so a copied home's index points into the copy.
    shards = str(Path(dataset["shards_uri"]).parent)
    meta = pa.table({
        "sample_id": got,
        "caption": [info.get(s, {}).get("caption") for s in got],
        "image_path": [f"{shards}/{manifest.get(s, {}).get('shard') or ''}/{s}" for s in got],
        "url": [u if str(u or "").startswith(("http://", "https://")) else None
                for u in (info.get(s, {}).get("uri") for s in got)],
        "source_uri": [_in_home(wh, info.get(s, {}).get("uri")) for s in got],
        "source_key": [info.get(s, {}).get("source_key") for s in got],
        "clip_score": pa.array([None if np.isnan(v) else float(v) for v in scores], pa.float64())})
    files = {k: [wh.relative(f) for f in v] for k, v in write_embeddings(out / "embeddings", img, txt, meta).items()}
    image_index = build_index(img, kind)
    save_index(image_index, out / "image.index")
    save_index(build_index(txt, kind), out / "text.index")
    pq.write_table(meta, out / "metadata.parquet")
    summary = {"dataset": f"{dataset['name']}@{dataset['version']}", "dataset_id": dataset["dataset_id"],
               "model": key["model"], "pretrained": key["pretrained"], "kind": index_kind(image_index),
               "n": len(got), "dim": int(img.shape[1]), "path": wh.relative(out), "embeddings": files}
    write_index_info(out / "index.json", summary)
    return {**summary, "path": str(out)}


def _in_home(wh: Warehouse, uri: str | None) -> str | None:
    """A sample's source path relative to the home when it lies inside it (URLs and outside paths as they are)."""
    if not uri or "://" in uri:
        return uri
    path, sep, member = uri.partition("#")  # an audio sample's "shard.tar#key.wav"
    return wh.relative(path) + sep + member if os.path.isabs(path) else uri
