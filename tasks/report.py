"""Tasks that leave artifacts a person looks at: counts by drop reason and a run summary."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from warehouse import Warehouse, examples
from warehouse.queries import outcome_counts


def artifact_key(flow: str, name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for a flow and dataset name."""
    return "".join(c if c.isalnum() else "-" for c in f"{flow}-{name}".lower())


@task(cache_policy=NO_CACHE)
def publish_outcomes(home: str, run_id: str, flow: str, name: str) -> dict[str, int]:
    """Counts by outcome for the run, as a table artifact and a markdown summary."""
    counts = outcome_counts(Warehouse(home), run_id)
    total = sum(counts.values())
    rows = [{"outcome": k, "samples": v, "share": f"{v / total:.1%}" if total else "-"} for k, v in counts.items()]
    key = artifact_key(flow, name)
    create_table_artifact(rows, key=f"{key}-outcomes", description=f"Samples by outcome, run {run_id}")
    kept = counts.get("kept", 0)
    lines = [f"# {flow} `{name}`", "", f"run `{run_id}`: {total} samples, {kept} kept, {total - kept} dropped", "",
             "| outcome | samples |", "|---|---|", *[f"| {k} | {v} |" for k, v in counts.items()], "",
             f"Explain it in SQL: `mmpipe sql \"{examples.run_reasons(run_id)}\"`"]
    create_markdown_artifact("\n".join(lines), key=f"{key}-summary", description=f"{flow} summary")
    dropped = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "kept")
    get_run_logger().info("%s %s, run %s: %d inputs, %d kept, %d dropped%s", flow, name, run_id, total, kept,
                          total - kept, f" ({dropped})" if dropped else "")
    return counts


@task(cache_policy=NO_CACHE)
def publish_wer_summary(home: str, run_id: str, name: str, key: dict) -> dict:
    """Mean WER/CER over the run's clips with a reference, as a table artifact."""
    from warehouse.queries import wer_summary

    summary = wer_summary(Warehouse(home), run_id, key["model"], key["compute_type"], key["options_key"])
    create_table_artifact([{"statistic": k, "value": v} for k, v in summary.items()],
                          key=f"{artifact_key('transcribe', name)}-wer",
                          description=f"WER summary, {key['model']} ({key['compute_type']}), run {run_id}")
    return summary
