"""The report page at the end of a curation, transcription or training flow (never fails the flow)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mmpipe.report import report_dir, write_report
from tasks.report import artifact_key
from warehouse import Warehouse
from warehouse.report_queries import report_inputs


@task(cache_policy=NO_CACHE)
def write_report_page(home: str, dataset: str) -> str | None:
    """Write the report of dataset NAME@VERSION to <home>/reports/NAME/VERSION/index.html and link it
    from a markdown artifact; returns its path, or None (with a warning) when it could not be made."""
    logger = get_run_logger()
    try:
        inputs = report_inputs(Warehouse(home), dataset)
        ds = inputs["dataset"]
        path = write_report(inputs, report_dir(home, ds["name"], ds["version"]))
        name = f"{ds['name']}@{ds['version']}"
        create_markdown_artifact(
            f"# Report of `{name}`\n\n[{path}]({Path(path).as_uri()})\n\nData card, CLIP score histogram and "
            f"projection, galleries of kept and dropped samples, audio, trained models. Again any time: "
            f"`mmpipe report {name}`", key=artifact_key("report", f"{ds['name']}-{ds['version']}"),
            description=f"report of {name}")
        return str(path)
    except Exception as e:  # noqa: BLE001 - a report is a view of the run, never a reason to fail it
        logger.warning("the report of %s was not written: %s: %s", dataset, type(e).__name__, e)
        return None
