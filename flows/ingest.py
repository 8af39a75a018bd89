"""Ingest a folder of captioned images: every file ends up in the warehouse, kept or dropped."""

from __future__ import annotations

from prefect import flow, unmapped

from flows.fanout import gather
from flows.runners import run_name, task_runner
from mmpipe.home import resolve_home
from mmpipe.schema import MAX_PIXELS
from tasks.ingest import ingest_batch, scan_folder_task
from tasks.record import settle_samples
from tasks.report import publish_outcomes
from tasks.runs import tracked_run


@flow(name="ingest", task_runner=task_runner(), flow_run_name=run_name("ingest"))
def ingest_flow(folder: str, name: str, home: str | None = None, batch_size: int = 256,
                max_pixels: int = MAX_PIXELS) -> dict:
    """Scan `folder`, decode and validate every image in batches, record samples and decisions."""
    home = str(resolve_home(home))
    params = {"folder": str(folder), "name": name, "batch_size": batch_size, "max_pixels": max_pixels}
    with tracked_run(home, "ingest", params) as run:
        run_id = run.run_id
        entries = scan_folder_task(folder)
        batches = [entries[i : i + batch_size] for i in range(0, len(entries), batch_size)]
        results = gather(ingest_batch.map(batches, range(len(batches)), run_id=unmapped(run_id), home=unmapped(home),
                                          source=unmapped(name), max_pixels=unmapped(max_pixels)),
                         f"Ingesting, run {run_id}")
        new_samples = settle_samples(home, run_id)
        counts = publish_outcomes(home, run_id, "ingest", name)
    return {
        "run_id": run_id,
        "home": home,
        "ingested": sum(counts.values()),
        "kept": counts.get("kept", 0),
        "new_samples": new_samples,
        "outcomes": counts,
    }
