"""Tasks that publish a curated dataset: shards, sizes.json, manifest, warehouse row, artifacts, event."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mmpipe.export import (export_shard, finalize_shards, first_json, read_staged, reshard, write_card, write_ids,
                           write_manifest)
from mmpipe.export_options import shard_names
from mmpipe.manifest import manifest_from_plan, plan_rows, write_plan
from mmpipe.schema import MAX_PIXELS, split_of
from mmpipe.sources.tars import expand_shards
from tasks.report import artifact_key
from warehouse import Warehouse, utcnow
from warehouse.dataset_queries import dataset_version, derived_version, latest_curated, next_version
from warehouse.queries import export_meta, kept_plan, manifest_rows, outcome_counts, score_quantiles

CURATED_EVENT = "mmpipe.dataset.curated"


@task(cache_policy=NO_CACHE)
def choose_version(home: str, name: str, run_id: str) -> str:
    """v1, v2, ...; a resumed run keeps the version it already has."""
    return dataset_version(Warehouse(home), name, run_id)


@task(cache_policy=NO_CACHE)
def latest_version(home: str, name: str, run_id: str) -> dict | None:
    """The newest version an earlier curation of `name` published (what an incremental run adds to)."""
    return latest_curated(Warehouse(home), name, run_id)


@task(cache_policy=NO_CACHE)
def count_kept(home: str, run_id: str) -> int:
    """How many samples the run kept through every stage."""
    return outcome_counts(Warehouse(home), run_id).get("kept", 0)


def image_record(sample: dict, meta: dict, model: str | None, pretrained: str | None) -> dict:
    """What an exported image sample carries: bytes, caption, and the json img2dataset users expect."""
    source_meta = sample.get("meta") or {}
    record = {**source_meta, "sample_id": sample["sample_id"], "key": meta["source_key"], "source": meta["source"],
              "url": meta["uri"] if str(meta["uri"] or "").startswith(("http://", "https://")) else None,
              "caption": sample.get("text"), "width": meta["width"], "height": meta["height"]}
    if model:
        record.update(clip_score=meta["clip_score"], clip_model=model, clip_pretrained=pretrained)
    return {**record, "content": sample["content"], "text": sample.get("text")}


@task(cache_policy=NO_CACHE)
def plan_export(home: str, run_id: str, model: str | None, pretrained: str | None) -> str:
    """Write the run's export plan (kept samples in ordinal order) under its staging folder, once."""
    path = Path(home) / "staging" / run_id / "kept.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_plan(kept_plan(Warehouse(home), run_id, model, pretrained), path)
    return str(path)


@task(cache_policy=NO_CACHE, task_run_name="export-{staged}")
def export_staged_shard(home: str, run_id: str, staged: str, out_dir: str, model: str | None = None,
                        pretrained: str | None = None, max_pixels: int = MAX_PIXELS,
                        plan: str | None = None) -> tuple[str, int]:
    """Write the kept samples of one staged shard as a WebDataset part; returns (part name, count).

    A sample met twice in the run is exported only from the shard that met it first. With the run's
    `plan`, the shard reads its own rows of it; without, it asks the warehouse.
    """
    out = Path(out_dir) / "parts" / Path(staged).name
    if out.exists():
        from mmpipe.export import count_samples

        return out.name, count_samples(out)
    staged_samples = read_staged(staged)
    if plan is not None:
        meta = plan_rows(plan, int(Path(staged).stem.split("-")[-1]))
    else:
        meta = export_meta(Warehouse(home), run_id, [s["sample_id"] for s in staged_samples], model, pretrained)
    samples = [image_record(s, meta[s["sample_id"]], model, pretrained) for s in staged_samples
               if s["sample_id"] in meta and meta[s["sample_id"]]["ordinal"] == s["ordinal"]]
    if not samples:
        return out.name, 0
    return out.name, export_shard(samples, out, "image", max_pixels)


@task(cache_policy=NO_CACHE)
def publish_dataset(home: str, run_id: str, name: str, version: str, out_dir: str, part_sizes: dict[str, int],
                    filter_spec: dict, model_key: dict | None, modality: str = "image",
                    base: dict | None = None, plan: str | None = None) -> dict:
    """sizes.json, the Parquet manifest and the `datasets` row of a finished run's kept samples;
    with `base` (an earlier version: incremental curation) its samples first, copied from its shards.

    model_key names the scores the manifest carries: {model, pretrained} (CLIP) for images,
    {model, compute_type, options_key} (Whisper) for audio; None for no model. With the run's export
    `plan` (and no base), the manifest is streamed from it: memory stays flat in the version's size.
    """
    wh = Warehouse(home)
    out = Path(out_dir)
    if plan is not None and not base:
        sizes, _, pattern = finalize_shards(out, part_sizes, index=False)
        manifest, val_ids, _ = manifest_from_plan(plan, out, shard_names(part_sizes))
        return register_files(wh, out, name, version, modality, manifest, val_ids, sizes, pattern, filter_spec,
                              run_id)
    rows = manifest_rows(wh, run_id, modality, model_key or {})
    if base:
        shards = expand_shards(wh.resolve(base["shards_uri"])) if base["shards_uri"] else []
        part_sizes = {**reshard(shards, None, out, prefix="base"), **part_sizes}
        rows = [{k: v for k, v in r.items() if k not in ("shard", "split")}
                for r in pq.read_table(wh.resolve(base["manifest_uri"])).to_pylist()] + rows
    sizes, shard_of, pattern = finalize_shards(out, part_sizes)
    return register_version(wh, out, name, version, modality, rows, sizes, shard_of, pattern, filter_spec, run_id,
                            base["dataset_id"] if base else None)


def register_version(wh: Warehouse, out: Path, name: str, version: str, modality: str, rows: list[dict],
                     sizes: dict[str, int], shard_of: dict[str, str], pattern: str, filter_spec: dict, run_id: str,
                     parent_id: str | None = None) -> dict:
    """Manifest (with shard and split), validation ids, dataset card and the `datasets` row of a version."""
    rows = [{**r, "shard": shard_of.get(r["sample_id"]), "split": split_of(r["sample_id"])} for r in rows]
    manifest = write_manifest(rows, out / "manifest.parquet")
    val_ids = write_ids([r["sample_id"] for r in rows if r["split"] == "val"], out / "val_ids.parquet")
    return register_files(wh, out, name, version, modality, manifest, val_ids, sizes, pattern, filter_spec, run_id,
                          parent_id)


def register_files(wh: Warehouse, out: Path, name: str, version: str, modality: str, manifest: Path, val_ids: Path,
                   sizes: dict[str, int], pattern: str, filter_spec: dict, run_id: str,
                   parent_id: str | None = None) -> dict:
    """The dataset card and the `datasets` row of a version whose shards, manifest and ids are written."""
    shutil.rmtree(out / "parts", ignore_errors=True)
    write_card(out, name, version, modality, first_json(out / "shard-000000.tar") if sizes else None)
    shards_uri = str(out / pattern) if pattern else ""
    dataset_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mmpipe:{name}:{version}:{run_id}"))
    wh.register_dataset({"dataset_id": dataset_id, "name": name, "version": version, "modality": modality,
                         "filter_spec": json.dumps(filter_spec, sort_keys=True), "n_samples": sum(sizes.values()),
                         "manifest_uri": wh.relative(manifest), "shards_uri": wh.relative(shards_uri) if pattern else "",
                         "val_ids_uri": wh.relative(val_ids), "parent_id": parent_id,
                         "run_id": run_id, "created_at": utcnow()}, run_id)
    return {"dataset_id": dataset_id, "name": name, "version": version, "modality": modality,
            "n_samples": sum(sizes.values()), "shards_uri": shards_uri, "manifest_uri": str(manifest),
            "out_dir": str(out)}


@task(cache_policy=NO_CACHE)
def derive_dataset(home: str, run_id: str, base: dict, sample_ids: list[str], name: str, filter_spec: dict,
                   shard_size: int = 1000) -> dict:
    """A new version holding `sample_ids` of a parent version, copied from its shards (nothing re-read
    from the source or rescored); the manifest rows come from the parent's; lineage in parent_id."""
    wh = Warehouse(home)
    # The same subset of the same parent (a resumed or repeated run) is registered already.
    existing = derived_version(wh, name, base["dataset_id"], json.dumps(filter_spec, sort_keys=True))
    return subset_version(wh, home, run_id, base, sample_ids, name, filter_spec, existing, shard_size)


def subset_version(wh: Warehouse, home: str, run_id: str, base: dict, sample_ids: list[str], name: str,
                   filter_spec: dict, existing: dict | None, shard_size: int = 1000, transform=None,
                   on_parts=None) -> dict:
    """`existing` when the caller found this subset registered already; else a new version of `name`
    with `sample_ids` of `base` resharded from its shards (each sample through `transform(key, files)`
    when given; `on_parts(out_dir, parts, started)` sees the parts before they are named), its manifest
    rows taken from the parent's, registered with lineage in parent_id."""
    if existing:
        return {**existing, "shards_uri": wh.resolve(existing["shards_uri"]),
                "out_dir": str(Path(home) / "datasets" / name / existing["version"])}
    version = next_version(wh, name)
    out = Path(home) / "datasets" / name / version
    keep = set(sample_ids)
    shards = expand_shards(wh.resolve(base["shards_uri"])) if base["shards_uri"] else []
    started = time.time()
    parts = reshard(shards, keep, out, shard_size, transform)
    if on_parts is not None:
        on_parts(out, parts, started)
    sizes, shard_of, pattern = finalize_shards(out, parts)
    parent = pq.read_table(wh.resolve(base["manifest_uri"])).to_pylist()
    rows = [{k: v for k, v in r.items() if k not in ("shard", "split")} for r in parent if r["sample_id"] in keep]
    return register_version(wh, out, name, version, base["modality"], rows, sizes, shard_of, pattern, filter_spec,
                            run_id, base["dataset_id"])


@task(cache_policy=NO_CACHE)
def announce_dataset(home: str, run_id: str, dataset: dict, clip_key: dict | None = None) -> None:
    """CLIP score quantiles as an artifact, and the `mmpipe.dataset.curated` event training listens to."""
    if clip_key:
        q = score_quantiles(Warehouse(home), run_id, clip_key["model"], clip_key.get("pretrained") or "")
        create_table_artifact([{"statistic": k, "value": v} for k, v in q.items()],
                              key=f"{artifact_key('curate', dataset['name'])}-clip-scores",
                              description="CLIP score quantiles")
    emit_event(event=CURATED_EVENT, resource={"prefect.resource.id": f"mmpipe.dataset.{dataset['name']}",
                                              "mmpipe.modality": dataset["modality"]},
               payload={**{k: dataset[k] for k in ("name", "version", "dataset_id", "n_samples")},
                        # home-relative, as the warehouse stores them: an event outlives a home's move
                        **{k: _relative(home, dataset[k]) for k in ("shards_uri", "manifest_uri")}})


def _relative(home: str, path: str) -> str:
    """`path` relative to the home when inside it, else as it is."""
    root = Path(home).resolve()
    return str(Path(path).relative_to(root)) if path and Path(path).is_relative_to(root) else path
