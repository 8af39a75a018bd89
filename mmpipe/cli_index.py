"""Commands over a dataset version's stored embeddings and shards: dedup (semantic), index, search,
export (subsets, resize, re-encode) and recipe (a run's parameters as a recipe file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mmpipe.cli_common import HomeOpt, fail, guarded, home_of, start_flows, warehouse
from mmpipe.cli_output import print_dataset, print_warnings

DatasetArg = Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@TAG.")]
ModelOpt = Annotated[Optional[str], typer.Option(help="CLIP model of the stored embeddings (default: the one that "
                                                      "curated the version).")]
PretrainedOpt = Annotated[Optional[str], typer.Option(help="... and its pretrained tag or checkpoint, as stored.")]


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
    from warehouse.dataset_queries import resolve_dataset

    root = home_of(home)
    ds = resolve_dataset(warehouse(home), dataset)
    where = root / "indexes" / ds["name"] / ds["version"]
    if not (where / "index.json").exists():  # said before torch and the model load, which take a while
        fail(f"no index for {ds['name']}@{ds['version']}: run `mmpipe index {ds['name']}@{ds['version']}` first")
    import pyarrow.parquet as pq

    from mmpipe.models.clip import load_clip
    from mmpipe.search import at_home, encode_query, load_index
    from mmpipe.search import search as nearest

    info = json.loads((where / "index.json").read_text())
    bundle = load_clip(info["model"], at_home(root, info["pretrained"]), device)  # checkpoints: home-relative
    query = encode_query(bundle, text=text, image_path=str(image) if image else None)
    scores, rows = nearest(load_index(where / f"{against}.index"), query, k)
    meta = pq.read_table(where / "metadata.parquet").to_pylist()
    # Paths inside the home are stored relative to it (a home can move) and shown resolved.
    hits = [{"rank": r + 1, "score": round(float(s), 4), **meta[i], "image_path": at_home(root, meta[i]["image_path"]),
             "source_uri": at_home(root, meta[i]["source_uri"])}
            for r, (s, i) in enumerate(zip(scores[0].tolist(), rows[0].tolist())) if i >= 0]
    if format == "json":
        typer.echo(json.dumps(hits, indent=1, default=str))
        return
    import pyarrow as pa

    from mmpipe.cli_output import print_table

    print_table(pa.table({"rank": [h["rank"] for h in hits], "score": [h["score"] for h in hits],
                          "caption": [h["caption"] for h in hits],
                          "clip_score": [None if h["clip_score"] is None else round(h["clip_score"], 4) for h in hits],
                          "sample_id": [h["sample_id"][:16] for h in hits],
                          "path": [h["url"] or h["source_uri"] or h["image_path"] for h in hits]}), k)


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
    from mmpipe.cli_query import limits_in_env, query_limits

    limits = query_limits(query_timeout, query_memory)
    if query is not None:
        from warehouse.search_queries import user_sample_ids

        with limits_in_env(limits):  # refused, broken or runaway SQL fails here, before Prefect starts
            user_sample_ids(warehouse(home), query)
    root = start_flows(home)
    from flows.export import export_flow

    with limits_in_env(limits):
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
