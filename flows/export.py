"""Exports of a dataset version: a subset and/or a resized, re-encoded copy as a new version with
lineage (`export`), and the retrieval index with the embeddings in clip-retrieval's layout (`index`)."""

from __future__ import annotations

from prefect import flow

from mmpipe.export_options import ExportRequest
from mmpipe.home import resolve_home
from mmpipe.search import IndexRequest
from tasks.export import choose_subset, export_version
from tasks.runs import tracked_run
from tasks.semantic import build_version_index, resolve_version


@flow(name="export")
def export_flow(dataset: str, home: str | None = None, name: str | None = None, ids_file: str | None = None,
                query: str | None = None, resize: int | None = None, resize_mode: str = "center_crop",
                image_format: str = "jpg", quality: int = 95, shard_size: int = 1000) -> dict:
    """NAME[@VERSION] -> the next version of `name` (default NAME): the samples an id file names and/or
    a read-only SQL query selects (all when neither), resized and re-encoded on request."""
    home = str(resolve_home(home))
    request = ExportRequest(dataset, name, ids_file, query, resize, resize_mode, image_format, quality, shard_size)
    with tracked_run(home, "export", request.params()) as run:
        base = resolve_version(home, dataset)
        subset = choose_subset(home, base, ids_file, query)
        version = export_version(home, run.run_id, base, subset["sample_ids"], name or base["name"],
                                 request.filter_spec(base), shard_size, resize, resize_mode, image_format, quality)
        for miss in subset["missing"][:20]:
            run.warn("not_in_version", f"{miss}: not a sample of {base['name']}@{base['version']}")
    return {"run_id": run.run_id, "home": home, "parent": f"{base['name']}@{base['version']}",
            "selected": len(subset["sample_ids"]), "missing": len(subset["missing"]), "warnings": run.warnings,
            "dataset": version}


@flow(name="index")
def index_flow(dataset: str, home: str | None = None, kind: str = "auto", clip_model: str | None = None,
               clip_pretrained: str | None = None) -> dict:
    """faiss indexes (image and text) over NAME[@VERSION]'s stored embeddings, under <home>/indexes/."""
    home = str(resolve_home(home))
    request = IndexRequest(dataset, kind, clip_model, clip_pretrained)
    with tracked_run(home, "index", request.params()) as run:
        base = resolve_version(home, dataset)
        summary = build_version_index(home, base, kind, clip_model, clip_pretrained)
    return {"run_id": run.run_id, **summary}
