"""Semantic dedup of a dataset version over its stored CLIP image embeddings: decisions recorded,
and the kept samples published as a new version with lineage."""

from __future__ import annotations

from prefect import flow

from flows.runners import run_name
from mmpipe.home import resolve_home
from mmpipe.semdedup import SemDedupRequest
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
    request = SemDedupRequest(dataset, threshold, clusters, name, clip_model, clip_pretrained, seed, shard_size)
    with tracked_run(home, "semantic-dedup", request.params()) as run:
        base = resolve_version(home, dataset)
        got = semantic_dedup_version(home, run.run_id, base, request.config(), clip_model, clip_pretrained)
        spec = request.filter_spec(base, got["clip_key"])
        version = derive_dataset(home, run.run_id, base, got["kept_ids"], name or base["name"], spec, shard_size)
    return {"run_id": run.run_id, "home": home, "parent": f"{base['name']}@{base['version']}",
            "n": got["n"], "embedded": got["embedded"], "dropped": got["dropped"], "clusters": got["clusters"],
            "counts": got["counts"], "dataset": version}
