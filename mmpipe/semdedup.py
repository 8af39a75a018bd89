"""Semantic dedup (SemDeDup, NeMo Curator's semantic dedup) over stored CLIP image embeddings.

k-means (faiss) groups the normalized embeddings; inside each cluster, samples are visited from the
highest CLIP score down, and one whose cosine similarity to an already kept sample of its cluster
exceeds the threshold is dropped as `semantic_duplicate`, naming that kept twin. Nothing is rescored.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

STAGE = "semantic_dedup"
STAGE_VERSION = "1"
REASON = "semantic_duplicate"


@dataclass(frozen=True)
class SemDedupConfig:
    """threshold: cosine similarity above which two images are one; clusters: k-means k (default
    about sqrt(n), at most n); niter and seed make the clustering repeatable."""

    threshold: float = 0.95
    clusters: int | None = None
    niter: int = 20
    seed: int = 0
    block: int = 4096  # rows of a cluster's similarity matrix held at once

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SemDedupRequest:
    """semantic_dedup_flow's parameters (all but the home), with its defaults: what defines a semantic-dedup run."""

    dataset: str
    threshold: float = SemDedupConfig.threshold
    clusters: int | None = None
    name: str | None = None
    clip_model: str | None = None
    clip_pretrained: str | None = None
    seed: int = SemDedupConfig.seed
    shard_size: int = 1000

    def params(self) -> dict:
        """The run's parameters as the runs table stores them (and a resume matches)."""
        return asdict(self)

    def config(self) -> SemDedupConfig:
        return SemDedupConfig(threshold=self.threshold, clusters=self.clusters, seed=self.seed)

    def filter_spec(self, parent: dict, clip_key: dict) -> dict:
        """The deduplicated version's filter_spec: its parent's, plus this dedup under "semantic_dedup"."""
        return {**json.loads(parent.get("filter_spec") or "{}"),
                "semantic_dedup": {"threshold": self.threshold, "clusters": self.clusters, "seed": self.seed,
                                   "clip_model": clip_key["model"], "clip_pretrained": clip_key["pretrained"],
                                   "parent": f"{parent['name']}@{parent['version']}"}}


def normalize(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32 (zero rows stay zero)."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norms == 0, 1, norms)


def n_clusters(n: int, clusters: int | None) -> int:
    """The k actually used: the requested one (or about sqrt(n)), between 1 and n."""
    k = clusters if clusters else max(1, round(math.sqrt(n)))
    return max(1, min(k, n))


def kmeans_labels(emb: np.ndarray, k: int, niter: int = 20, seed: int = 0) -> np.ndarray:
    """Cluster of each row: spherical k-means with faiss (every row its own cluster when k >= n)."""
    import faiss

    n, d = emb.shape
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(256, n // k + 1))
    km.train(emb)
    _, labels = km.index.search(emb, 1)
    return labels[:, 0].astype(np.int64)


def _dedup_cluster(emb: np.ndarray, threshold: float, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy dedup of one cluster whose rows are ordered best first: (twin index or -1, similarity)."""
    m = len(emb)
    twin = np.full(m, -1, dtype=np.int64)
    sim = np.full(m, np.nan, dtype=np.float32)
    kept = np.ones(m, dtype=bool)
    for lo in range(0, m, block):
        hi = min(m, lo + block)
        s = emb[lo:hi] @ emb[:hi].T  # rows lo..hi against everything up to them
        s[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
        s[:, lo:hi] = np.where(np.tri(hi - lo, k=-1, dtype=bool), s[:, lo:hi], -np.inf)  # only earlier rows
        close = np.flatnonzero((s > threshold).any(axis=1))
        for r in close:  # few rows have a twin; only they need the sequential check against kept ones
            i = lo + r
            row = np.where(kept[:i], s[r, :i], -np.inf)
            j = int(np.argmax(row)) if i else -1
            if j >= 0 and row[j] > threshold:
                kept[i], twin[i], sim[i] = False, j, row[j]
    return twin, sim


def semantic_duplicates(emb: np.ndarray, scores: np.ndarray | None, config: SemDedupConfig = SemDedupConfig()
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For n embeddings (any scale) and their CLIP scores (higher is kept; ties keep the earlier row):
    (twin: index of the kept sample each dropped one duplicates, -1 when kept; similarity to it;
    cluster of each row)."""
    emb = normalize(emb)
    n = len(emb)
    twin = np.full(n, -1, dtype=np.int64)
    sim = np.full(n, np.nan, dtype=np.float32)
    if n == 0:
        return twin, sim, np.zeros(0, dtype=np.int64)
    labels = kmeans_labels(emb, n_clusters(n, config.clusters), config.niter, config.seed)
    score = np.zeros(n) if scores is None else np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    order = np.lexsort((np.arange(n), -score, labels))  # by cluster, then best score first
    bounds = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        members = order[lo:hi]
        if len(members) < 2:
            continue
        t, s = _dedup_cluster(emb[members], config.threshold, config.block)
        dropped = t >= 0
        twin[members[dropped]] = members[t[dropped]]
        sim[members[dropped]] = s[dropped]
    return twin, sim, labels


def brute_force_duplicates(emb: np.ndarray, scores: np.ndarray | None, threshold: float,
                           block: int = 4096) -> np.ndarray:
    """The same greedy rule over all n rows at once (no clusters, O(n^2)): the baseline semantic dedup
    is measured against. Returns the twin index per row (-1 kept)."""
    emb = normalize(emb)
    n = len(emb)
    score = np.zeros(n) if scores is None else np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(n), -score))
    t, _ = _dedup_cluster(emb[order], threshold, block)
    twin = np.full(n, -1, dtype=np.int64)
    twin[order[t >= 0]] = order[t[t >= 0]]
    return twin
