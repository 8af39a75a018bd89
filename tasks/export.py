"""Tasks of `mmpipe export`: choose a subset of a version, and reshard it (resized, re-encoded) as a
new version with lineage, through the same reshard/finalize/register path as every dataset."""

from __future__ import annotations

import json
import time

import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.export_options import export_transform, match_ids, read_id_file, write_shard_stats
from mmpipe.schema import MAX_PIXELS
from tasks.dataset import subset_version
from tasks.semantic import version_ids
from warehouse import Warehouse
from warehouse.dataset_queries import versions_of_run
from warehouse.search_queries import sample_info, user_sample_ids


@task(cache_policy=NO_CACHE)
def choose_subset(home: str, dataset: dict, ids_file: str | None = None, query: str | None = None) -> dict:
    """The version's samples named by an id file and/or selected by a read-only user query (both: the
    intersection); all of them when neither is given. Returns ids kept and what named nothing."""
    wh = Warehouse(home)
    ids = version_ids(wh, dataset)
    chosen, missing = ids, []
    if ids_file:
        chosen, missing = match_ids(read_id_file(ids_file), chosen)
    if query:
        selected = set(user_sample_ids(wh, query))
        outside = len(selected - set(ids))
        chosen = [s for s in chosen if s in selected]
        missing += [f"{outside} sample(s) of the query are not in {dataset['name']}@{dataset['version']}"] if outside \
            else []
    return {"sample_ids": chosen, "missing": missing}


def _json_fields(wh: Warehouse, dataset: dict, ids: list[str]) -> dict[str, dict]:
    """What the richer per-sample json carries beyond the curated one: source key and url, caption,
    size, CLIP score and model; for audio duration, sample rate and language."""
    spec = json.loads(dataset.get("filter_spec") or "{}")
    manifest = {r["sample_id"]: r for r in pq.read_table(wh.resolve(dataset["manifest_uri"])).to_pylist()}
    info = sample_info(wh, ids)
    out = {}
    for s in ids:
        i, m = info.get(s, {}), manifest.get(s, {})
        row = {"sample_id": s, "key": i.get("source_key"), "source": i.get("source"), "caption": i.get("caption"),
               "url": i.get("uri") if str(i.get("uri") or "").startswith(("http://", "https://")) else None,
               "source_uri": i.get("uri"), "original_width": i.get("width"), "original_height": i.get("height")}
        if dataset["modality"] == "audio":
            row.update(duration_s=i.get("duration_s"), sample_rate=i.get("sample_rate"),
                       language=m.get("language") or i.get("language"))
        elif m.get("clip_score") is not None:
            row.update(clip_score=m["clip_score"], clip_model=spec.get("clip_model"),
                       clip_pretrained=spec.get("clip_pretrained"))
        out[s] = row
    return out


@task(cache_policy=NO_CACHE)
def export_version(home: str, run_id: str, base: dict, sample_ids: list[str], name: str, filter_spec: dict,
                   shard_size: int = 1000, resize: int | None = None, resize_mode: str = "center_crop",
                   image_format: str = "jpg", quality: int = 95) -> dict:
    """A new version of `name` holding `sample_ids` of `base`, copied from its shards (resized and
    re-encoded on request, json enriched), with per-shard _stats.json; lineage in parent_id."""
    wh = Warehouse(home)
    spec_json = json.dumps(filter_spec, sort_keys=True)
    # A resumed run finds the version it registered; a new export of the same request makes a new one
    # (the id file or the query's result may have changed since).
    existing = next((d for d in versions_of_run(wh, name, run_id)
                     if json.dumps(json.loads(d["filter_spec"]), sort_keys=True) == spec_json), None)
    if existing:
        return subset_version(wh, home, run_id, base, sample_ids, name, filter_spec, existing)
    # Decode with the pixel budget the version was curated with (its images passed it), never below the default.
    budget = max(json.loads(base.get("filter_spec") or "{}").get("max_pixels") or 0, MAX_PIXELS)
    transform = export_transform(resize, resize_mode, image_format, quality, _json_fields(wh, base, sample_ids),
                                 max_pixels=budget)
    return subset_version(wh, home, run_id, base, sample_ids, name, filter_spec, None, shard_size, transform,
                          on_parts=lambda out, parts, started: write_shard_stats(out, parts, started, time.time(),
                                                                                 filter_spec.get("export", {})))
