"""Curation recipes: every stage's parameters of `mmpipe curate` in one YAML file.

A recipe names the same settings as the command's flags, grouped by stage. Flags given explicitly
on the command line win over the recipe (a recipe is a base a flag adjusts, as with most tools'
config files); the resolved parameters are stored with the run (`runs.params`), and
`recipe_from_params` writes them back as a recipe, so every run is reproducible from its recipe.
"""

from __future__ import annotations

from pathlib import Path

import yaml

DEMO_RECIPE = Path(__file__).parent / "demo" / "recipe.yaml"
# (section, key in the recipe) -> the `mmpipe curate` option it sets.
FIELDS: dict[tuple[str, str], str] = {
    ("", "name"): "name",
    ("source", "path"): "source", ("source", "kind"): "kind", ("source", "url_col"): "url_col",
    ("source", "caption_col"): "caption_col", ("source", "split"): "split",
    ("source", "shard_size"): "shard_size", ("source", "allow_root"): "allow_root",
    ("basic", "min_caption_words"): "min_caption_words", ("basic", "min_caption_chars"): "min_caption_chars",
    ("basic", "min_side"): "min_side", ("basic", "max_aspect_ratio"): "max_aspect_ratio",
    ("basic", "max_pixels"): "max_pixels",
    ("dedup", "exact"): "exact_dedup", ("dedup", "hamming"): "dedup_hamming",
    ("clip", "model"): "clip_model", ("clip", "pretrained"): "clip_pretrained",
    ("clip", "batch_size"): "clip_batch_size", ("clip", "workers"): "clip_workers", ("clip", "device"): "device",
    ("clip_filter", "min_score"): "min_clip_score", ("clip_filter", "keep_fraction"): "keep_fraction",
    ("output", "out"): "out", ("output", "incremental"): "incremental",
}
SEMANTIC_DEDUP = ("threshold", "clusters", "seed")  # the optional `semantic_dedup:` section, run after curation
# curate_flow's parameter names where they differ from the command's option names
_FLOW_NAMES = {"allow_root": "allowed_roots"}


class RecipeError(ValueError):
    """A recipe file that cannot be used: unreadable, unknown keys, wrong shape."""


def load_recipe(path: str | Path) -> tuple[dict, dict | None]:
    """(option name -> value, the semantic_dedup section or None) from a recipe file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"cannot read the recipe {path}: {e}") from None
    return parse_recipe(doc or {}, str(path))


def parse_recipe(doc: dict, where: str = "recipe") -> tuple[dict, dict | None]:
    """What load_recipe returns, from an already parsed document."""
    if not isinstance(doc, dict):
        raise RecipeError(f"{where}: a recipe is a mapping of stages to settings")
    values: dict = {}
    unknown: list[str] = []
    semantic = None
    for section, body in doc.items():
        if section == "semantic_dedup":
            if body is not None and not isinstance(body, dict):
                raise RecipeError(f"{where}: semantic_dedup is a mapping ({', '.join(SEMANTIC_DEDUP)})")
            semantic = dict(body or {})
            unknown += [f"semantic_dedup.{k}" for k in semantic if k not in SEMANTIC_DEDUP]
        elif ("", section) in FIELDS:
            values[FIELDS[("", section)]] = body
        elif isinstance(body, dict) and any(s == section for s, _ in FIELDS):
            for key, value in body.items():
                if (section, key) in FIELDS:
                    values[FIELDS[(section, key)]] = value
                else:
                    unknown.append(f"{section}.{key}")
        elif section == "source" and isinstance(body, str):
            values["source"] = body
        else:
            unknown.append(str(section))
    if unknown:
        known = sorted({f"{s}.{k}" if s else k for s, k in FIELDS} | {f"semantic_dedup.{k}" for k in SEMANTIC_DEDUP})
        raise RecipeError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return values, semantic


def merge(recipe: dict, given: dict, explicit: set[str]) -> dict:
    """The command's options: those given explicitly on the command line win, then the recipe's,
    then the command's defaults."""
    return {k: (v if k in explicit or k not in recipe else recipe[k]) for k, v in given.items()}


def recipe_from_params(params: dict, semantic: dict | None = None) -> str:
    """A recipe (YAML) from a curate run's stored flow parameters."""
    doc: dict = {}
    for (section, key), option in FIELDS.items():
        value = params.get(_FLOW_NAMES.get(option, option))
        if option == "dedup_hamming" and value is None:
            value = -1  # the command's way of saying off
        if section:
            doc.setdefault(section, {})[key] = value
        else:
            doc[key] = value
    if semantic:
        doc["semantic_dedup"] = {k: semantic.get(k) for k in SEMANTIC_DEDUP}
    return yaml.safe_dump(doc, sort_keys=False)
