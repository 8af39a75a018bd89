"""Semantic dedup of a dataset version over its stored CLIP image embeddings: decisions recorded,
and the kept samples published as a new version with lineage."""

from __future__ import annotations

import json

from prefect import flow

from flows.runners import run_name
from mmpipe.home import resolve_home
from mmpipe.semdedup import SemDedupConfig
from tasks.dataset import derive_dataset
from tasks.runs import tracked_run
from tasks.semantic import resolve_version, semantic_dedup_version


@flow(name="semantic-dedup", flow_run_name=run_name("semantic-dedup", "dataset"))
def semantic_dedup_flow(dataset: str, home: str | None = None, threshold: float = 0.95, clusters: int | None = None,
                        name: str | None = None, clip_model: str | None = None, clip_pretrained: str | None = None,
                        seed: int = 0, shard_size: int = 1000) -> dict:
    """NAME[@VERSION]: k-means the image embeddings, drop pairs above `threshold` within a cluster
    (the higher CLIP score kept), publish the rest as the next version of `name` (default NAME)."""
    home = str(resolve_home(home))
    params = {k: v for k, v in locals().items() if k != "home"}
    config = SemDedupConfig(threshold=threshold, clusters=clusters, seed=seed)
    with tracked_run(home, "semantic-dedup", params) as run:
        base = resolve_version(home, dataset)
        got = semantic_dedup_version(home, run.run_id, base, config, clip_model, clip_pretrained)
        spec = {**json.loads(base.get("filter_spec") or "{}"),
                "semantic_dedup": {"threshold": threshold, "clusters": clusters, "seed": seed,
                                   "clip_model": got["clip_key"]["model"],
                                   "clip_pretrained": got["clip_key"]["pretrained"],
                                   "parent": f"{base['name']}@{base['version']}"}}
        version = derive_dataset(home, run.run_id, base, got["kept_ids"], name or base["name"], spec, shard_size)
    return {"run_id": run.run_id, "home": home, "parent": f"{base['name']}@{base['version']}",
            "n": got["n"], "embedded": got["embedded"], "dropped": got["dropped"], "clusters": got["clusters"],
            "counts": got["counts"], "dataset": version}
