"""Index build + query time and semantic dedup time for 100k random embeddings, each against a
baseline measured in the same run (exact numpy search; O(n^2) blockwise numpy dedup on a subset).

    OMP_NUM_THREADS=2 .venv/bin/python bench/semantic.py [--n 100000] [--dim 512] [--subset 20000]

Embeddings: random unit vectors plus 1% planted near-copies (cosine ~0.97), so dedup has work.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--subset", type=int, default=20_000, help="rows the O(n^2) dedup baseline runs on")
    ap.add_argument("--threshold", type=float, default=0.95)
    args = ap.parse_args()
    import faiss

    from mmpipe.search import build_index, search
    from mmpipe.semdedup import SemDedupConfig, brute_force_duplicates, normalize, semantic_duplicates

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, n={args.n}, dim={args.dim}")
    rng = np.random.default_rng(0)
    emb = normalize(rng.normal(size=(args.n, args.dim)).astype(np.float32))
    planted = rng.choice(args.n, args.n // 100, replace=False)
    src = rng.choice(args.n, len(planted))
    emb[planted] = normalize(emb[src] + 0.25 / np.sqrt(args.dim) * rng.normal(size=(len(planted), args.dim)))
    scores = rng.uniform(0.2, 0.4, args.n)
    truth = rng.choice(args.n, args.queries)  # each query is a noisy copy (cosine ~0.9) of this row
    queries = normalize(emb[truth] + 0.5 / np.sqrt(args.dim) * rng.normal(size=(args.queries, args.dim)))

    t = time.perf_counter()
    _, exact = search(build_index(emb, "flat"), queries, args.k)  # faiss exact: the ground truth ids
    flat_s = time.perf_counter() - t
    t = time.perf_counter()
    base_ids = np.empty((args.queries, args.k), dtype=np.int64)
    for lo in range(0, args.queries, 100):  # plain numpy brute force
        sims = queries[lo:lo + 100] @ emb.T
        top = np.argpartition(-sims, args.k, axis=1)[:, :args.k]
        order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1)
        base_ids[lo:lo + 100] = np.take_along_axis(top, order, 1)
    numpy_s = time.perf_counter() - t
    print(f"numpy brute force, {args.queries} queries: {numpy_s:.2f} s ({1e3 * numpy_s / args.queries:.2f} ms/query)")
    print(f"faiss flat build+query: {flat_s:.2f} s")
    for kind in ("hnsw", "ivfpq"):
        t = time.perf_counter()
        index = build_index(emb, kind)
        build = time.perf_counter() - t
        t = time.perf_counter()
        _, ids = search(index, queries, args.k)
        query = time.perf_counter() - t
        hit = np.mean(ids[:, 0] == truth)
        print(f"{kind}: build {build:.2f} s, {args.queries} queries {query:.3f} s ({1e3 * query / args.queries:.3f} "
              f"ms/query), the query's source first in {hit:.3f} (exact: {np.mean(exact[:, 0] == truth):.3f}), "
              f"query ratio = ours/numpy = {query / numpy_s:.4f}")

    sub = args.subset
    t = time.perf_counter()
    base = brute_force_duplicates(emb[:sub], scores[:sub], args.threshold)
    base_s = time.perf_counter() - t
    t = time.perf_counter()
    ours_sub, _, _ = semantic_duplicates(emb[:sub], scores[:sub], SemDedupConfig(threshold=args.threshold))
    ours_sub_s = time.perf_counter() - t
    agree = np.mean((ours_sub >= 0) == (base >= 0))
    print(f"dedup on {sub}: O(n^2) numpy {base_s:.2f} s, semantic (k-means, sqrt(n) clusters) {ours_sub_s:.2f} s, "
          f"ratio = {ours_sub_s / base_s:.3f}; same decision on {agree:.4f} of rows "
          f"({int((base >= 0).sum())} vs {int((ours_sub >= 0).sum())} dropped)")
    t = time.perf_counter()
    ours, _, labels = semantic_duplicates(emb, scores, SemDedupConfig(threshold=args.threshold))
    ours_s = time.perf_counter() - t
    est = base_s * (args.n / sub) ** 2
    found = np.isin(planted, np.flatnonzero(ours >= 0)) | np.isin(src, np.flatnonzero(ours >= 0))
    print(f"dedup on {args.n}: semantic {ours_s:.2f} s ({labels.max() + 1} clusters, {int((ours >= 0).sum())} "
          f"dropped, {found.mean():.3f} of planted pairs caught); O(n^2) numpy extrapolated {est:.1f} s, "
          f"ratio = {ours_s / est:.4f}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
