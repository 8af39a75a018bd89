"""Tasks of the ingest flow: scan a folder, then read, decode and record batches."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from mmpipe.schema import MAX_PIXELS
from mmpipe.sources.folder import Entry, read_entries, scan_folder
from mmpipe.stages.decode import DecodeConfig, DecodeImages
from tasks.record import record_batch
from warehouse import Warehouse
from warehouse.queries import decided_ids


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def scan_folder_task(folder: str) -> list[Entry]:
    """List the folder's candidate files with their captions."""
    return scan_folder(folder)


@task(cache_policy=NO_CACHE, task_run_name="ingest-batch-{index}")
def ingest_batch(entries: list[Entry], index: int, run_id: str, home: str, source: str,
                 max_pixels: int = MAX_PIXELS) -> dict[str, int]:
    """Read and decode one batch, skipping samples this run already decided; record the rest."""
    wh = Warehouse(home)
    batch = read_entries(entries, source, shard_index=index)
    done = decided_ids(wh, run_id, DecodeImages.name, batch["sample_id"].to_pylist())
    if done:
        batch = batch.filter(pc.invert(pc.is_in(batch["sample_id"], value_set=pa.array(sorted(done), pa.string()))))
    stage = DecodeImages(DecodeConfig(max_pixels=max_pixels))
    out = stage(batch)
    written = record_batch(wh, out, [stage], run_id, f"ingest/{index}")
    return {"read": len(entries), "skipped": len(entries) - batch.num_rows, **written}
