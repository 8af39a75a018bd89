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


MAX_RECIPE_BYTES = 1024 * 1024  # a recipe is a page of settings
_STR, _INT, _NUM, _BOOL, _LIST = "a string", "an integer", "a number", "true or false", "a list of folders"
# option -> (what it must be, whether null is allowed)
TYPES: dict[str, tuple[str, bool]] = {
    "name": (_STR, False), "source": (_STR, False), "kind": (_STR, True), "url_col": (_STR, True),
    "caption_col": (_STR, True), "split": (_STR, True), "shard_size": (_INT, False), "allow_root": (_LIST, True),
    "min_caption_words": (_INT, False), "min_caption_chars": (_INT, False), "min_side": (_INT, False),
    "max_aspect_ratio": (_NUM, False), "max_pixels": (_INT, True), "exact_dedup": (_BOOL, False),
    "dedup_hamming": (_INT, True), "clip_model": (_STR, False), "clip_pretrained": (_STR, True),
    "clip_batch_size": (_INT, False), "clip_workers": (_INT, False), "device": (_STR, True),
    "min_clip_score": (_NUM, True), "keep_fraction": (_NUM, True), "out": (_STR, True), "incremental": (_BOOL, False),
    "semantic_dedup.threshold": (_NUM, True), "semantic_dedup.clusters": (_INT, True),
    "semantic_dedup.seed": (_INT, True),
}


class RecipeError(ValueError):
    """A recipe file that cannot be used: unreadable, unknown keys, wrong shape or types."""


class _SafeNoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases: `*name` is what a billion-laughs document multiplies."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise RecipeError(f"aliases (*name) are not allowed in a recipe (line {mark.line + 1}); "
                              "write the value out")
        return super().compose_node(parent, index)


def load_yaml(text: str, where: str = "recipe"):
    """A YAML document with no aliases and no python tags, at most MAX_RECIPE_BYTES long."""
    if len(text.encode()) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{where}: larger than {MAX_RECIPE_BYTES // 1024} KiB; a recipe is a page of settings")
    try:
        return yaml.load(text, Loader=_SafeNoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise RecipeError(f"cannot read the recipe {where}: {' '.join(str(e).split())}") from None


def load_recipe(path: str | Path) -> tuple[dict, dict | None]:
    """(option name -> value, the semantic_dedup section or None) from a recipe file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError(f"{path}: larger than {MAX_RECIPE_BYTES // 1024} KiB; a recipe is a page of settings")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"cannot read the recipe {path}: {e}") from None
    return parse_recipe(load_yaml(text, str(path)) or {}, str(path))


def _type_ok(value, kind: str, nullable: bool) -> bool:
    if value is None:
        return nullable
    if kind == _BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # YAML's yes/true is not a number
    if kind == _INT:
        return isinstance(value, int)
    if kind == _NUM:
        return isinstance(value, (int, float))
    if kind == _LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)


def type_errors(values: dict, semantic: dict | None) -> list[str]:
    """Every setting whose value has the wrong type, as `section.key: must be ..., got ...`."""
    where = {opt: f"{s}.{k}" if s else k for (s, k), opt in FIELDS.items()}
    checks = [(where.get(k, k), k, v) for k, v in values.items()]
    checks += [(f"semantic_dedup.{k}", f"semantic_dedup.{k}", v) for k, v in (semantic or {}).items()]
    return [f"{label} must be {TYPES[key][0]}{' or null' if TYPES[key][1] else ''}, got {value!r}"[:160]
            for label, key, value in checks if key in TYPES and not _type_ok(value, *TYPES[key])]


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
        elif any(s == section for s, _ in FIELDS):
            keys = ", ".join(k for s, k in FIELDS if s == section)
            raise RecipeError(f"{where}: {section} is a section of settings ({keys}), got {body!r}"[:240])
        else:
            unknown.append(str(section))
    if unknown:
        known = sorted({f"{s}.{k}" if s else k for s, k in FIELDS} | {f"semantic_dedup.{k}" for k in SEMANTIC_DEDUP})
        raise RecipeError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    wrong = type_errors(values, semantic)
    if wrong:
        raise RecipeError(f"{where}: {'; '.join(wrong)}")
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
        if value is None and not TYPES.get(option, ("", True))[1]:
            continue  # not stored for this run: the recipe leaves it to the default
        if section:
            doc.setdefault(section, {})[key] = value
        else:
            doc[key] = value
    if semantic:
        doc["semantic_dedup"] = {k: semantic.get(k) for k in SEMANTIC_DEDUP
                                 if semantic.get(k) is not None or TYPES.get(f"semantic_dedup.{k}", ("", True))[1]}
    return yaml.safe_dump(doc, sort_keys=False)
