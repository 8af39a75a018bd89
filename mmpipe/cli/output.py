"""How the `mmpipe` command line shows results: tables, exported query results, run summaries."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Optional

import typer


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return str(value)


def print_table(table, max_rows: int = 100) -> None:
    """Print an Arrow table as a terminal table, at most `max_rows` rows (binary shown as its size)."""
    from rich.console import Console
    from rich.table import Table

    out = Table(show_lines=False, header_style="bold")
    for name in table.column_names:
        out.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        out.add_row(*[_cell(v) for v in row.values()])
    rows = table.slice(0, max_rows).to_pylist()
    widest = [max([len(str(c))] + [len(_cell(r[c])) for r in rows]) for c in table.column_names]
    console = Console(width=min(250, max(Console().width, sum(widest) + 3 * len(widest) + 1)))
    console.print(out)
    shown = min(max_rows, table.num_rows)
    console.print(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}"
                  + (f", first {shown} shown; use --format csv --output FILE for all" if shown < table.num_rows else "")
                  + ")")


FORMATS = ("table", "csv", "json", "jsonl", "parquet")


def _plain(table):
    """JSON columns as nested values, binary as base64 text: what csv and json writers can hold."""
    import base64

    import pyarrow as pa

    cols = {}
    for field, col in zip(table.schema, table.columns):
        values = col.to_pylist()
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            values = [None if v is None else base64.b64encode(v).decode() for v in values]
        elif (field.metadata or {}).get(b"json"):
            values = [None if v is None else json.loads(v) for v in values]
        cols[field.name] = values
    return cols


def _rows(table) -> list[dict]:
    cols = _plain(table)
    return [dict(zip(cols, vals)) for vals in zip(*cols.values())] if cols else []


def emit(table, fmt: str, output: Optional[Path], max_rows: int = 100) -> None:
    """Show or write an Arrow table: a terminal table, csv, json (one array), jsonl or parquet."""
    if fmt == "table" and output is None:
        print_table(table, max_rows)
        return
    fmt = "csv" if fmt == "table" else fmt
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if output is None:
            raise ValueError("--format parquet needs --output PATH")
        pq.write_table(table, output)
    else:
        text = _serialize(table, fmt)
        if output is None:
            sys.stdout.write(text)
        else:
            Path(output).write_text(text)
    if output is not None:
        typer.echo(f"wrote {table.num_rows} rows to {output}", err=True)


def _serialize(table, fmt: str) -> str:
    if fmt == "csv":
        import csv

        buf = io.StringIO()
        writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in _rows(table):
            writer.writerow(["" if v is None else json.dumps(v) if isinstance(v, (dict, list)) else v
                             for v in row.values()])
        return buf.getvalue()
    rows = _rows(table)
    if fmt == "jsonl":
        return "".join(json.dumps(r, default=str) + "\n" for r in rows)
    return json.dumps(rows, default=str, indent=1) + "\n"


def print_outcomes(result: dict) -> None:
    """The run's inputs by outcome (ingested = kept + dropped)."""
    typer.echo(f"\nrun {result['run_id']}: {result['ingested']} inputs, {result['kept']} kept, "
               f"{result['ingested'] - result['kept']} dropped ({result['new_samples']} new samples in the warehouse)")
    for outcome, n in result["outcomes"].items():
        typer.echo(f"  {outcome:<24} {n}")


def print_warnings(result: dict) -> None:
    """What went wrong without failing the run, last, so it is the thing a user reads."""
    warnings = result.get("warnings") or []
    if warnings:
        typer.secho(f"\nrun {result['run_id']} completed with {len(warnings)} warning(s):", fg=typer.colors.YELLOW,
                    err=True)
        for w in warnings:
            typer.secho(f"  {w['what']}: {w['message']}", fg=typer.colors.YELLOW, err=True)


def print_wer(result: dict) -> None:
    w = result["wer"]
    if w.get("mean_wer") is not None:
        typer.echo(f"WER {w['mean_wer']:.3f} mean, {w['median_wer']:.3f} median, CER {w['mean_cer']:.3f} "
                   f"over {w['with_reference']} clips with a reference ({result['device']}, {result['compute_type']})")


def print_dataset(ds: dict) -> None:
    typer.echo(f"\ndataset {ds['version']}: {ds['n_samples']} samples")
    typer.echo(f"  shards:   {ds['shards_uri']}")
    typer.echo(f"  manifest: {ds['manifest_uri']}")


def print_models(wh, model_ids: list[str]) -> None:
    """The headline metrics of some models, one line per model and split."""
    from warehouse.dataset_queries import models_with_evals

    rows = models_with_evals(wh, model_ids).to_pylist()
    keep = ("mean_R@5", "chance_R@5", "zero_shot_accuracy", "masked_token_accuracy", "masked_token_unigram_accuracy",
            "masked_patch_mse", "linear_probe_accuracy", "conditioning_gap", "denoise_mse", "clip_score", "fd_clip",
            "wer", "cer", "transcript_wer", "contrastive_loss", "contrastive_loss_chance", "codevector_perplexity")
    by_model: dict[tuple, dict] = {}
    for r in rows:
        if r["metric"] in keep:
            by_model.setdefault((r["model_id"], r["objective"], r["dataset"], r["split"]), {})[r["metric"]] = r["value"]
    for (model_id, objective, dataset, split), metrics in by_model.items():
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        typer.echo(f"  {objective:<12} {model_id[:8]}  {dataset} [{split}]  {shown}")  # noqa: E501


# The metrics that say how good a model is, by objective family, shown in this order where present.
HEADLINE = ("mean_R@5", "chance_R@5", "zero_shot_accuracy", "masked_token_accuracy", "masked_token_unigram_accuracy",
            "conditioning_gap", "fd_clip", "clip_score", "wer", "cer", "contrastive_loss", "contrastive_loss_chance")


def headline_table(rows):
    """One row per model (newest last): its dataset, the split evaluated, and its headline metrics."""
    import pyarrow as pa

    models: dict[str, dict] = {}
    for r in rows.to_pylist():
        m = models.setdefault(r["model_id"], {"model_id": r["model_id"], "objective": r["objective"],
                                              "dataset": r["dataset"], "metrics": {}})
        if r["metric"] is not None:
            m["metrics"].setdefault(r["split"], {})[r["metric"]] = r["value"]
    out = []
    for m in models.values():
        split = "val" if "val" in m["metrics"] else next(iter(m["metrics"]), None)
        got = m["metrics"].get(split, {})
        shown = [f"{k} {got[k]:.4g}" for k in HEADLINE if got.get(k) is not None]
        out.append({"model_id": m["model_id"], "objective": m["objective"], "dataset": m["dataset"], "split": split,
                    "metrics": ", ".join(shown or [f"{k} {v:.4g}" for k, v in list(got.items())[:3] if v is not None]),
                    "n_metrics": sum(len(v) for v in m["metrics"].values())})
    names = ("model_id", "objective", "dataset", "split", "metrics", "n_metrics")
    return pa.table({k: [o[k] for o in out] for k in names}) if out else pa.table({k: [] for k in names})
