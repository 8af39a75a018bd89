"""Tasks that publish a curated dataset: shards, sizes.json, manifest, warehouse row, artifacts, event."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mmpipe.export import export_shard, read_staged, write_manifest, write_sizes
from tasks.report import artifact_key
from warehouse import Warehouse, utcnow
from warehouse.queries import audio_manifest_rows, clip_scores_of, dataset_version, kept_ids, manifest_rows, score_quantiles

CURATED_EVENT = "mmpipe.dataset.curated"


@task(cache_policy=NO_CACHE)
def choose_version(home: str, name: str, run_id: str) -> str:
    """v1, v2, ...; a resumed run keeps the version it already has."""
    return dataset_version(Warehouse(home), name, run_id)


@task(cache_policy=NO_CACHE, task_run_name="export-{staged}")
def export_staged_shard(home: str, run_id: str, staged: str, out_dir: str, model: str | None = None,
                        pretrained: str | None = None) -> tuple[str, int]:
    """Write the kept samples of one staged shard as a WebDataset part; returns (part name, count)."""
    out = Path(out_dir) / "parts" / Path(staged).name
    if out.exists():
        with tarfile.open(out) as tf:
            return out.name, sum(1 for m in tf if m.name.endswith(".jpg"))
    wh = Warehouse(home)
    keep = kept_ids(wh, run_id)
    samples = [s for s in read_staged(staged) if s["sample_id"] in keep]
    if not samples:
        return out.name, 0
    scores = clip_scores_of(wh, model, pretrained or "", [s["sample_id"] for s in samples]) if model else {}
    for s in samples:
        s.pop("order", None)
        if model:
            s.update(clip_score=scores.get(s["sample_id"]), clip_model=model, clip_pretrained=pretrained)
    return out.name, export_shard(samples, out)


@task(cache_policy=NO_CACHE)
def publish_dataset(home: str, run_id: str, name: str, version: str, out_dir: str, sizes: dict[str, int],
                    filter_spec: dict, model_key: dict | None, modality: str = "image") -> dict:
    """sizes.json, the Parquet manifest, the `datasets` row, artifacts and the curated event.

    model_key names the scores the manifest carries: {model, pretrained} (CLIP) for images,
    {model, compute_type, task} (Whisper) for audio; None for no model.
    """
    wh = Warehouse(home)
    out = Path(out_dir)
    parts = sorted(k for k, v in sizes.items() if v)
    final = {part: f"shard-{i:06d}.tar" for i, part in enumerate(parts)}
    for part, name_ in final.items():  # contiguous names, so one brace pattern covers the dataset
        if (out / "parts" / part).exists():
            os.replace(out / "parts" / part, out / name_)
    write_sizes(out, {final[p]: sizes[p] for p in parts})
    key = model_key or {}
    if modality == "audio":
        rows = audio_manifest_rows(wh, run_id, key["model"], key["compute_type"], key["task"])
    else:
        rows = manifest_rows(wh, run_id, key.get("model"), key.get("pretrained"))
    shard_of = {}
    for shard in final.values():
        with tarfile.open(out / shard) as tf:
            shard_of.update({m.name.split(".")[0]: shard for m in tf if m.name.endswith(".txt")})
    for r in rows:
        r["shard"] = shard_of.get(r["sample_id"])
    manifest = write_manifest(rows, out / "manifest.parquet")
    shutil.rmtree(out / "parts", ignore_errors=True)
    shards_uri = str(out / (f"shard-{{000000..{len(parts) - 1:06d}}}.tar" if len(parts) > 1 else
                            "shard-000000.tar")) if parts else ""
    dataset_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mmpipe:{name}:{version}:{run_id}"))
    wh.register_dataset({"dataset_id": dataset_id, "name": name, "version": version, "modality": modality,
                         "filter_spec": json.dumps(filter_spec, sort_keys=True), "n_samples": len(rows),
                         "manifest_uri": str(manifest), "shards_uri": shards_uri, "run_id": run_id,
                         "created_at": utcnow()}, run_id)
    if modality == "image" and key.get("model"):
        q = score_quantiles(wh, run_id, key["model"], key.get("pretrained") or "")
        create_table_artifact([{"statistic": k, "value": v} for k, v in q.items()],
                              key=f"{artifact_key('curate', name)}-clip-scores", description="CLIP score quantiles")
    emit_event(event=CURATED_EVENT, resource={"prefect.resource.id": f"mmpipe.dataset.{name}"},
               payload={"name": name, "version": version, "dataset_id": dataset_id, "n_samples": len(rows),
                        "shards_uri": shards_uri, "manifest_uri": str(manifest)})
    return {"dataset_id": dataset_id, "version": version, "n_samples": len(rows), "shards_uri": shards_uri,
            "manifest_uri": str(manifest), "out_dir": str(out)}

