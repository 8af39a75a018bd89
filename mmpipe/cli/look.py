"""Commands that look at what the pipeline made: runs, models, datasets, sql, tables, report, and the
search indexes over a version's stored embeddings (index, search).

None of them but `index` starts Prefect or creates a home.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmpipe.cli.common import DatasetArg, HomeOpt, MemoryOpt, ModelOpt, PretrainedOpt, TimeoutOpt, fail, guarded, \
    home_of, query_limits, start_flows, warehouse
from mmpipe.cli.output import FORMATS, emit, headline_table, print_table

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, csv, json (an array), jsonl or parquet.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the result here.")]

@guarded
def sql(query: Annotated[str, typer.Argument(help="One read-only query (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, "
                                                   "EXPLAIN).")],
        format: FormatOpt = "table", output: OutputOpt = None,
        max_rows: Annotated[int, typer.Option(help="Rows to print in table format.")] = 100,
        as_of: Annotated[Optional[str], typer.Option(help="Query the warehouse as it was when dataset NAME@VERSION "
                                                          "was registered.")] = None,
        as_of_run: Annotated[Optional[str], typer.Option(help="... or when this run finished.")] = None,
        timeout: TimeoutOpt = None, memory: MemoryOpt = None, home: HomeOpt = None) -> None:
    """Query the warehouse with SQL (read-only). Tables: runs, samples, occurrences, decisions, outcomes, ..."""
    if format not in FORMATS:
        fail(f"unknown --format {format!r}; use {', '.join(FORMATS)}")
    limits = query_limits(timeout, memory)
    wh = warehouse(home)
    snapshot = None
    if as_of:
        name, _, version = as_of.partition("@")
        if not version:
            fail("--as-of takes NAME@VERSION, e.g. demo-shapes@v1")
        snapshot = wh.snapshot_of(dataset=name, version=version)
    elif as_of_run:
        snapshot = wh.snapshot_of(run_id=as_of_run)
    emit(wh.query_readonly(query, snapshot=snapshot, limits=limits, isolated=True), format, output, max_rows)


@guarded
def tables(format: FormatOpt = "table",
           columns: Annotated[bool, typer.Option("--columns", help="Every column with its type and meaning.")] = False,
           home: HomeOpt = None) -> None:
    """The warehouse tables with their row counts, and the drop-reason vocabulary."""
    import pyarrow as pa

    from mmpipe.schema import DROP_REASONS
    from warehouse.queries import column_docs

    wh = warehouse(home)
    if columns:
        emit(column_docs(wh), format, None, 1000)
        return
    counts = wh.table_counts()
    emit(pa.table({"table": list(counts), "rows": list(counts.values())}), format, None, 100)
    if format == "table":
        typer.echo("\ndrop_reason values (decisions, outcomes); ids and thresholds are in the `detail` column:")
        for reason, meaning in DROP_REASONS.items():
            typer.echo(f"  {reason:<20} {meaning}")


@guarded
def runs(limit: Annotated[int, typer.Option(help="How many runs to show.")] = 20, format: FormatOpt = "table",
         home: HomeOpt = None) -> None:
    """Recent runs with their status and counts (ingested = kept + dropped)."""
    from warehouse.queries import recent_runs

    emit(recent_runs(warehouse(home), limit), format, None, limit)


@guarded
def datasets(name: Annotated[Optional[str], typer.Argument(help="Only this dataset's versions.")] = None,
             format: FormatOpt = "table", home: HomeOpt = None) -> None:
    """Dataset versions with their sample counts and where their shards are."""
    from warehouse.dataset_queries import dataset_versions

    emit(dataset_versions(warehouse(home), name), format, None, 1000)


@guarded
def models(format: Annotated[str, typer.Option("--format", "-f", help="table, csv, json, jsonl")] = "table",
           long: Annotated[bool, typer.Option("--long", "-l", help="Every metric of every model, one row each.")] = False,
           home: HomeOpt = None) -> None:
    """Trained models, one row each with its dataset version and headline metrics (--long: every metric)."""
    from warehouse.dataset_queries import models_with_evals

    rows = models_with_evals(warehouse(home))
    emit(rows if long else headline_table(rows), format, None, 1000)


@guarded
def report(dataset: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@TAG (default: the newest "
                                                       "version).")],
           output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for index.html and "
                                                          "plots/ (default <home>/reports/NAME/VERSION).")] = None,
           compare: Annotated[Optional[str], typer.Option("--compare", help="Also show what changed from this "
                                                          "version to NAME@V: samples added and removed, "
                                                          "decisions whose reason changed, score shift.")] = None,
           home: HomeOpt = None) -> None:
    """Write a dataset version's report (one self-contained HTML page + PNG plots) and print its path."""
    from mmpipe.report import report_dir, write_report
    from warehouse.report_queries import compare_inputs, report_inputs

    wh = warehouse(home)
    inputs = report_inputs(wh, dataset)
    other = compare_inputs(wh, dataset, compare) if compare else None
    ds = inputs["dataset"]
    target = output or report_dir(wh.home, ds["name"], ds["version"],
                                  f"{other['b']['name']}@{other['b']['version']}" if other else None)
    typer.echo(str(write_report(inputs, target, other)))


@guarded
def index(dataset: DatasetArg,
          kind: Annotated[str, typer.Option(help="auto (exact up to 50k, HNSW up to 2M, IVF-PQ beyond), flat, "
                                                 "hnsw or ivfpq.")] = "auto",
          clip_model: ModelOpt = None, clip_pretrained: PretrainedOpt = None, home: HomeOpt = None) -> None:
    """Build faiss indexes over a version's stored CLIP embeddings (for `mmpipe search`).

    The embeddings are exported beside them as .npy shards + metadata Parquet (clip-retrieval's layout)
    under <home>/indexes/NAME/VERSION."""
    from mmpipe.search import KINDS

    if kind not in KINDS:
        fail(f"--kind is one of {', '.join(KINDS)}")
    root = start_flows(home)
    from flows.export import index_flow

    got = index_flow(dataset, home=str(root), kind=kind, clip_model=clip_model, clip_pretrained=clip_pretrained)
    typer.echo(f"{got['dataset']}: {got['kind']} index over {got['n']} embeddings ({got['dim']}-d, "
               f"{got['model']} / {got['pretrained']})\n  {got['path']}/image.index, text.index, index.json\n"
               f"  {got['path']}/embeddings/img_emb/, text_emb/, metadata/  (clip-retrieval layout)")


@guarded
def search(dataset: DatasetArg,
           text: Annotated[Optional[str], typer.Argument(help="What to look for, in words.")] = None,
           image: Annotated[Optional[Path], typer.Option(help="... or an image file to find neighbours of.")] = None,
           k: Annotated[int, typer.Option("-k", help="How many results.")] = 20,
           against: Annotated[str, typer.Option(help="Search the image index (default) or the text (caption) "
                                                     "index.")] = "image",
           format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
           device: Annotated[Optional[str], typer.Option(help="Where to encode the query (default cpu).")] = "cpu",
           home: HomeOpt = None) -> None:
    """The samples nearest to a text or an image, with captions, scores and paths (run `mmpipe index` first)."""
    if (text is None) == (image is None):
        fail("give a text or --image PATH (one of them)")
    if against not in ("image", "text") or format not in ("table", "json") or k < 1:
        fail("--against is image or text, --format table or json, -k positive")
    if image is not None and not image.is_file():
        fail(f"no image file {image}")
    from mmpipe.search import index_folder, nearest_samples
    from warehouse.dataset_queries import resolve_dataset

    root = home_of(home)
    ds = resolve_dataset(warehouse(home), dataset)
    where = index_folder(root, ds["name"], ds["version"])
    if not (where / "index.json").exists():  # said before torch and the model load, which take a while
        fail(f"no index for {ds['name']}@{ds['version']}: run `mmpipe index {ds['name']}@{ds['version']}` first")
    hits = nearest_samples(root, where, text=text, image_path=str(image) if image else None, k=k, against=against,
                           device=device)
    if format == "json":
        typer.echo(json.dumps(hits, indent=1, default=str))
        return
    import pyarrow as pa

    print_table(pa.table({"rank": [h["rank"] for h in hits], "score": [h["score"] for h in hits],
                          "caption": [h["caption"] for h in hits],
                          "clip_score": [None if h["clip_score"] is None else round(h["clip_score"], 4) for h in hits],
                          "sample_id": [h["sample_id"][:16] for h in hits],
                          "path": [h["url"] or h["source_uri"] or h["image_path"] for h in hits]}), k)
