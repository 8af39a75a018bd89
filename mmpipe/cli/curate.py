"""Commands that curate dataset versions: ingest, curate (also from a recipe), transcribe; and those that
derive a version from a stored one: dedup (semantic), export (subsets, resize, re-encode), and recipe
(a curate run's parameters as a recipe file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmpipe.cli.common import DaskAddressOpt, DaskWorkersOpt, DatasetArg, HomeOpt, ModelOpt, PretrainedOpt, \
    RunnerOpt, fail, guarded, home_of, query_limits, runner_choice, start_flows, warehouse
from mmpipe.cli.output import print_dataset, print_outcomes, print_warnings, print_wer
from mmpipe.models.names import CLIP_MODEL, CLIP_PRETRAINED, WHISPER_MODEL
from mmpipe.schema import MAX_PIXELS
from mmpipe.sources import SourceSpec, validate


def _check_source(spec: SourceSpec) -> None:
    """Fail in a second, before Prefect starts or the home is touched, when the source cannot work."""
    try:
        validate(spec)
    except (FileNotFoundError, ValueError) as e:
        fail(f"{e}")


@guarded
def ingest(folder: Annotated[Path, typer.Argument(help="Folder of images with captions (.txt sidecars or captions.jsonl/.csv).")],
           name: Annotated[str, typer.Option("--name", help="Name of this source in the warehouse.")],
           batch_size: Annotated[int, typer.Option(help="Samples per Prefect task.")] = 256,
           max_pixels: Annotated[int, typer.Option(help="Larger images are dropped as decompression bombs.")] = MAX_PIXELS,
           runner: RunnerOpt = "local", dask_address: DaskAddressOpt = None, dask_workers: DaskWorkersOpt = None,
           home: HomeOpt = None) -> None:
    """Ingest a folder of captioned images: decode, validate, record every sample and decision."""
    if not folder.is_dir():
        fail(f"not a folder: {folder}")
    where = runner_choice(runner, dask_address, dask_workers)
    start_flows(home)
    from flows.ingest import ingest_flow
    from flows.runners import run_with
    from mmpipe.sources.folder import ManifestError

    try:
        result = run_with(ingest_flow, **where, folder=str(folder), name=name, home=str(home_of(home)),
                          batch_size=batch_size, max_pixels=max_pixels)
    except ManifestError as e:
        fail(str(e))
    print_outcomes(result)


@guarded
def curate(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Argument(help="Folder, WebDataset shards (shard-{000000..000009}.tar), a "
                                                         ".parquet/.csv/.jsonl of paths or URLs, or a datasets "
                                                         "save_to_disk folder.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Dataset name; versions v1, v2, ... per name.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="A recipe (YAML) with every stage's settings; "
                                                   "flags given explicitly win over it.")] = None,
    kind: Annotated[Optional[str], typer.Option(help="folder, webdataset, table or hf (detected when omitted).")] = None,
    url_col: Annotated[Optional[str], typer.Option(help="Table column with paths/URLs (or image bytes).")] = None,
    caption_col: Annotated[Optional[str], typer.Option(help="Table column with captions.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of a DatasetDict on disk.")] = None,
    shard_size: Annotated[int, typer.Option(help="Rows per shard for folders and tables.")] = 512,
    min_caption_words: int = 2, min_caption_chars: int = 5,
    min_side: Annotated[int, typer.Option(help="Drop images whose shorter side is smaller.")] = 200,
    max_aspect_ratio: float = 3.0,
    max_pixels: Annotated[Optional[int], typer.Option(help="Drop images with more pixels.")] = None,
    exact_dedup: Annotated[bool, typer.Option(help="Drop later copies of the same image bytes.")] = True,
    dedup_hamming: Annotated[int, typer.Option(help="Near-dup radius in pHash bits; -1 turns it off.")] = 4,
    clip_model: Annotated[str, typer.Option(help="open_clip model name, hf-hub:/local-dir: id, or none.")] = CLIP_MODEL,
    clip_pretrained: Annotated[Optional[str], typer.Option(help="Pretrained tag or checkpoint path.")] = CLIP_PRETRAINED,
    min_clip_score: Annotated[Optional[float], typer.Option(help="Keep pairs scoring at least this.")] = None,
    keep_fraction: Annotated[Optional[float], typer.Option(help="Keep this top fraction (default 0.3).")] = None,
    clip_batch_size: int = 128, clip_workers: int = 2,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when available).")] = None,
    allow_root: Annotated[Optional[list[str]], typer.Option(help="A folder a table's local paths may point into "
                                                              "(default: the table's own folder); repeatable.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the shards (default <home>/datasets/NAME/vN).")] = None,
    incremental: Annotated[bool, typer.Option("--incremental", help="Process only samples no earlier run of NAME "
                                              "met; add the kept ones to its newest version as a new version "
                                              "(none when nothing new is kept).")] = False,
    runner: RunnerOpt = "local", dask_address: DaskAddressOpt = None, dask_workers: DaskWorkersOpt = None,
    home: HomeOpt = None,
) -> None:
    """Curate image-text pairs: decode, basic filters, dedup, CLIP score + filter, WebDataset shards out."""
    if config is not None:
        given = {k: v for k, v in locals().items() if k not in ("ctx", "config")}
        return curate_from_recipe(ctx, curate, config, given)
    if source is None or name is None:
        fail("give SOURCE and --name, or a --config recipe that names them")
    if min_clip_score is not None and keep_fraction is not None:
        fail("give --min-clip-score or --keep-fraction, not both")
    _check_source(SourceSpec(source, kind=kind, media_col=url_col, text_col=caption_col, split=split))
    where = runner_choice(runner, dask_address, dask_workers)
    start_flows(home)
    from flows.curate import curate_flow
    from flows.runners import run_with
    from mmpipe.models.errors import ClipWeightsUnavailable

    try:
        result = run_with(curate_flow, **where, source=source, name=name, home=str(home_of(home)), kind=kind,
                          url_col=url_col, caption_col=caption_col, split=split, shard_size=shard_size,
                          min_caption_words=min_caption_words, min_caption_chars=min_caption_chars,
                          min_side=min_side, max_aspect_ratio=max_aspect_ratio, max_pixels=max_pixels,
                          exact_dedup=exact_dedup, dedup_hamming=None if dedup_hamming < 0 else dedup_hamming,
                          clip_model=clip_model, clip_pretrained=clip_pretrained, min_clip_score=min_clip_score,
                          keep_fraction=keep_fraction, clip_batch_size=clip_batch_size, clip_workers=clip_workers,
                          device=device, allowed_roots=allow_root, out=str(out) if out else None,
                          incremental=incremental)
    except (ClipWeightsUnavailable, FileNotFoundError, ValueError) as e:
        fail(str(e))
    print_outcomes(result)
    if result.get("seen_before"):
        typer.echo(f"{result['seen_before']} samples met by earlier runs of {name} were left out (--incremental)")
    if result["dataset"] is None:
        base = result["unchanged"]
        typer.echo(f"\nno new sample kept: {name}@{base['version']} unchanged ({base['n_samples']} samples), "
                   "no new version")
    else:
        print_dataset(result["dataset"])
    print_warnings(result)


@guarded
def transcribe(
    source: Annotated[str, typer.Argument(help="Folder of audio (+ .txt references), WebDataset shards, a table of "
                                               "paths/URLs, or a datasets save_to_disk folder with an Audio column.")],
    name: Annotated[str, typer.Option("--name", help="Dataset name; versions v1, v2, ... per name.")],
    whisper_model: Annotated[str, typer.Option(help="Size name (tiny.en ... large-v3, distil-large-v3) or a local "
                                                    "CTranslate2 folder.")] = WHISPER_MODEL,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when available).")] = None,
    compute_type: Annotated[Optional[str], typer.Option(help="float16, int8_float16, int8 (default: float16 on "
                                                             "cuda, int8 on cpu).")] = None,
    batch_size: Annotated[int, typer.Option(help="Speech chunks per batch, pooled across files.")] = 16,
    beam_size: int = 5,
    task: Annotated[str, typer.Option(help="transcribe or translate (to English).")] = "transcribe",
    language: Annotated[Optional[str], typer.Option(help="Language code; detected per clip when omitted.")] = None,
    vad: Annotated[bool, typer.Option(help="Silero VAD before decoding.")] = True,
    short_windows: Annotated[bool, typer.Option(help="Encode short clips in short windows (faster; "
                                                     "--no-short-windows pads to Whisper's 30 s).")] = True,
    kind: Annotated[Optional[str], typer.Option(help="folder, webdataset, table or hf.")] = None,
    url_col: Annotated[Optional[str], typer.Option(help="Table column with paths/URLs (or audio bytes).")] = None,
    text_col: Annotated[Optional[str], typer.Option(help="Table column with reference transcripts.")] = None,
    split: Optional[str] = None, shard_size: int = 64,
    min_duration_s: float = 0.3, max_duration_s: float = 600.0,
    allow_root: Annotated[Optional[list[str]], typer.Option(help="A folder a table's local paths may point into "
                                                              "(default: the table's own folder); repeatable.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the shards.")] = None,
    runner: RunnerOpt = "local", dask_address: DaskAddressOpt = None, dask_workers: DaskWorkersOpt = None,
    home: HomeOpt = None,
) -> None:
    """Transcribe audio with faster-whisper: decode, transcribe, quality-filter, WER, audio-text shards out."""
    if task not in ("transcribe", "translate"):
        fail("--task is transcribe or translate")
    _check_source(SourceSpec(source, kind=kind, media_col=url_col, text_col=text_col, split=split, modality="audio"))
    where = runner_choice(runner, dask_address, dask_workers)
    start_flows(home)
    from flows.runners import run_with
    from flows.transcribe import transcribe_flow
    from mmpipe.models.whisper import WhisperUnavailable

    try:
        result = run_with(transcribe_flow, **where, source=source, name=name, home=str(home_of(home)), kind=kind,
                          url_col=url_col, text_col=text_col, split=split, shard_size=shard_size,
                          whisper_model=whisper_model, device=device, compute_type=compute_type,
                          batch_size=batch_size, beam_size=beam_size, task=task, language=language, vad=vad,
                          short_windows=short_windows, min_duration_s=min_duration_s,
                          max_duration_s=max_duration_s, allowed_roots=allow_root, out=str(out) if out else None)
    except (WhisperUnavailable, FileNotFoundError, ValueError) as e:
        fail(str(e))
    print_outcomes(result)
    print_wer(result)
    print_dataset(result["dataset"])
    print_warnings(result)


@guarded
def dedup(dataset: DatasetArg,
          threshold: Annotated[float, typer.Option(help="Cosine similarity above which two images are one.")] = 0.95,
          clusters: Annotated[Optional[int], typer.Option(help="k-means clusters (default about sqrt(n)).")] = None,
          name: Annotated[Optional[str], typer.Option(help="Name of the new version (default NAME).")] = None,
          clip_model: ModelOpt = None, clip_pretrained: PretrainedOpt = None, seed: int = 0,
          shard_size: Annotated[int, typer.Option(help="Samples per output shard.")] = 1000,
          home: HomeOpt = None) -> None:
    """Semantic dedup over stored CLIP image embeddings; the kept samples become a new version."""
    if not -1.0 <= threshold <= 1.0:
        fail("--threshold is a cosine similarity, between -1 and 1")
    if clusters is not None and clusters < 1:
        fail("--clusters is a positive count")
    root = start_flows(home)
    from flows.dedup import semantic_dedup_flow

    result = semantic_dedup_flow(dataset, home=str(root), threshold=threshold, clusters=clusters, name=name,
                                 clip_model=clip_model, clip_pretrained=clip_pretrained, seed=seed,
                                 shard_size=shard_size)
    typer.echo(f"{result['parent']}: {result['n']} samples, {result['embedded']} with embeddings, "
               f"{result['clusters']} clusters; {result['dropped']} dropped as semantic_duplicate "
               f"(threshold {threshold})")
    print_dataset(result["dataset"])
    from warehouse import examples

    typer.echo(f"\nwhy: mmpipe sql \"{examples.run_drops(result['run_id'])}\"")


@guarded
def export(dataset: DatasetArg,
           ids: Annotated[Optional[Path], typer.Option(help="Only these samples: a .npy (sample ids, or DataComp-style "
                                                            "uids) or a Parquet with a sample_id/uid column.")] = None,
           query: Annotated[Optional[str], typer.Option(help="Only the samples this read-only query selects "
                                                             "(it returns a sample_id column).")] = None,
           resize: Annotated[Optional[int], typer.Option(help="Resize images to this size.")] = None,
           resize_mode: Annotated[str, typer.Option(help="center_crop, keep_ratio or border.")] = "center_crop",
           format: Annotated[str, typer.Option("--format", help="Image format: jpg or webp.")] = "jpg",
           quality: Annotated[int, typer.Option(help="Encoder quality (1-100).")] = 95,
           shard_size: Annotated[int, typer.Option(help="Samples per shard.")] = 1000,
           name: Annotated[Optional[str], typer.Option(help="Name of the new version (default NAME).")] = None,
           query_timeout: Annotated[Optional[float], typer.Option(
               help="Stop --query after this many seconds (default 120).", show_default=False)] = None,
           query_memory: Annotated[Optional[str], typer.Option(
               help="Stop --query past this much memory, e.g. 8GB (default 2GB).", show_default=False)] = None,
           home: HomeOpt = None) -> None:
    """Reshard a version (a subset, resized, re-encoded) as a new version with lineage, img2dataset-style."""
    from mmpipe.export_options import RESIZE_MODES

    if resize_mode not in RESIZE_MODES[:3]:
        fail(f"--resize-mode is one of {', '.join(RESIZE_MODES[:3])}")
    if format not in ("jpg", "webp"):
        fail("--format is jpg or webp")
    if not 1 <= quality <= 100 or shard_size < 1 or (resize is not None and resize < 1):
        fail("--quality is 1-100; --shard-size and --resize are positive")
    if ids is not None and (not ids.is_file() or ids.suffix not in (".npy", ".parquet")):
        fail(f"--ids takes an existing .npy or .parquet file, not {ids}")
    limits = query_limits(query_timeout, query_memory)
    if query is not None:
        from warehouse.search_queries import user_sample_ids

        with limits.in_env():  # refused, broken or runaway SQL fails here, before Prefect starts
            user_sample_ids(warehouse(home), query)
    root = start_flows(home)
    from flows.export import export_flow

    with limits.in_env():
        result = export_flow(dataset, home=str(root), name=name, ids_file=str(ids.resolve()) if ids else None,
                             query=query, resize=resize, resize_mode=resize_mode, image_format=format,
                             quality=quality, shard_size=shard_size)
    typer.echo(f"{result['parent']}: {result['selected']} samples selected")
    print_dataset(result["dataset"])
    print_warnings(result)


@guarded
def recipe(run_id: Annotated[str, typer.Argument(help="A curate run id (see `mmpipe runs`).")],
           home: HomeOpt = None) -> None:
    """Print the recipe (YAML) that reproduces a curate run: `mmpipe curate --config` takes it."""
    from mmpipe.recipe import recipe_from_params

    from warehouse.queries import run_row

    row = run_row(warehouse(home), run_id)
    if row is None:
        fail(f"no run {run_id!r} (see `mmpipe runs`)")
    if row["flow"] != "curate":
        fail(f"{run_id} is a {row['flow']} run; recipes describe curate runs")
    typer.echo(recipe_from_params(json.loads(row["params"])), nl=False)


def curate_from_recipe(ctx: typer.Context, curate, config: Path, given: dict) -> None:
    """`mmpipe curate --config recipe.yaml`: the recipe's settings under the flags given explicitly,
    the curation itself, the recipe's semantic dedup (if any) on the new version, and the resolved
    recipe kept beside the version (recipe.yaml) as well as in runs.params."""
    from mmpipe.recipe import RecipeError, load_recipe, merge, recipe_from_params

    try:
        values, semantic = load_recipe(config)
    except RecipeError as e:
        fail(str(e))
    # typer ships its own click, so the parameter source is compared by name
    explicit = {k for k in given if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") not in ("DEFAULT",
                                                                                                  "DEFAULT_MAP")}
    opts = merge(values, given, explicit)
    curate(ctx, **opts)
    from warehouse.dataset_queries import resolve_dataset
    from warehouse.queries import run_row

    wh = warehouse(opts.get("home"))
    ds = resolve_dataset(wh, opts["name"])
    out_dir = Path(wh.resolve(ds["manifest_uri"])).parent
    (out_dir / "recipe.yaml").write_text(recipe_from_params(json.loads(run_row(wh, ds["run_id"])["params"]), semantic))
    typer.echo(f"  recipe:   {out_dir / 'recipe.yaml'}")
    if semantic is not None:
        typer.echo("")
        dedup(f"{ds['name']}@{ds['version']}", threshold=semantic.get("threshold", 0.95),
              clusters=semantic.get("clusters"), seed=semantic.get("seed") or 0, home=opts.get("home"),
              name=None, clip_model=None, clip_pretrained=None, shard_size=1000)
