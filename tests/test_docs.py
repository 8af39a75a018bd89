"""The docs stay whole: `mkdocs build --strict` passes (links, anchors, every page in the nav), the README
stays a first screen that starts with the two commands and links only to pages that exist, the paths
the pages name exist, and the examples that are not commands or SQL (Python, a recipe, the drop-reason
table) are what the code accepts (commands and SQL: tests/test_docs_commands.py)."""

from __future__ import annotations

import ast
import os
import importlib
import importlib.util
import re
import subprocess
import sys

from docs_pages import PAGES, ROOT, blocks, name, spans, tokens

README = ROOT / "README.md"
_QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # material's end-of-life banner, printed on every build


def test_the_docs_build_strictly(tmp_path):
    """mkdocs-material with web fonts off and no plugin that downloads: the build runs offline."""
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600, env=_QUIET)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    pages = sorted(p.relative_to(ROOT / "docs").with_suffix(".html").as_posix() for p in PAGES[1:])
    assert all((site / p).is_file() for p in pages), pages
    html = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html


def test_the_build_fails_on_a_broken_link(tmp_path):
    """The strict build is a real check: a page linking to a page that does not exist fails it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\nSee [nowhere](nowhere.md).\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text((ROOT / "mkdocs.yml").read_text().split("\nnav:")[0] + "\nnav:\n  - Home: index.md\n")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                            "--site-dir", str(tmp_path / "site")], capture_output=True, text=True, timeout=600,
                           env=_QUIET)
    assert built.returncode != 0 and "nowhere.md" in built.stdout + built.stderr


def test_the_readme_is_a_first_screen_that_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines; the reference goes in docs/"
    assert lines[0] == "# mmpipe" and lines[2] == "```"
    assert lines[3].startswith("make demo ") and lines[4].startswith("make test ") and lines[5] == "```"


def test_every_link_of_the_readme_reaches_a_page():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert len(local) >= 15, local
    assert [link for link in local if not (ROOT / link).exists()] == []
    linked = {(ROOT / link).resolve() for link in local}
    assert [name(p) for p in PAGES[1:] if p.resolve() not in linked] == [], "each docs page is reachable from the README"


def test_every_path_the_docs_name_exists():
    """A code span naming a file or folder of the repository (`mmpipe/train/recipes.py`, `bench/RESULTS.md`)."""
    roots = ("mmpipe/", "warehouse/", "flows/", "tasks/", "bench/", "deployments/", "tests/", "docs/")
    named = {(name(page), s) for page in PAGES for s in spans(page)
             if s.startswith(roots) and re.fullmatch(r"[\w./-]+", s)}
    assert len(named) > 10, named
    assert sorted((p, s) for p, s in named if not (ROOT / s.rstrip("/")).exists()) == []


def test_the_drop_reason_table_is_the_vocabulary():
    """The docs' drop-reason table is the vocabulary `decisions.drop_reason` holds (mmpipe/schema.py)."""
    from mmpipe.schema import DROP_REASONS

    text = (ROOT / "docs" / "sql.md").read_text()
    table = text[text.index("| reason | meaning |"):].split("\n\n")[0]
    documented = re.findall(r"^\| `([a-z_0-9]+)` \|", table, flags=re.M)
    assert sorted(documented) == sorted(DROP_REASONS)


def test_every_recipe_in_the_docs_is_one_curate_accepts():
    from mmpipe.recipe import load_yaml, parse_recipe

    recipes = [(name(p), body) for p in PAGES for lang, body in blocks(p) if lang == "yaml"]
    assert recipes
    for where, body in recipes:
        values, semantic = parse_recipe(load_yaml(body, where), where)  # unknown keys and wrong types raise
        assert values["name"] and values["source"], where


def _imports(tree: ast.AST) -> list[tuple[str, str | None]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(node.module, a.name) for a in node.names]
    return found


def test_every_python_example_compiles_and_imports_what_exists():
    """Each Python block parses, and what it imports exists (a module the docs say to install is named with
    `pip install` in the block); `python -m` lines name modules that exist."""
    examples = [(name(p), body) for p in PAGES for lang, body in blocks(p) if lang == "python"]
    assert len(examples) >= 3
    for where, body in examples:
        tree = ast.parse(body, where)
        for module, attr in _imports(tree):
            if importlib.util.find_spec(module.split(".")[0]) is None:
                assert f"pip install {module.split('.')[0].replace('_', '-')}" in body, (where, module)
                continue
            imported = importlib.import_module(module)
            assert attr is None or hasattr(imported, attr) or importlib.util.find_spec(f"{module}.{attr}"), \
                (where, module, attr)
    modules = {(name(p), m) for p in PAGES for lang, body in blocks(p) if lang in ("", "sh", "bash")
               for m in re.findall(r"python -m ([\w.]+)", body)}
    modules |= {(name(p), m) for p in PAGES for s in spans(p) for m in re.findall(r"python -m ([\w.]+)", s)}
    assert {m for _, m in modules} >= {"open_clip_train.main", "mmpipe.audio_io"}
    assert sorted((p, m) for p, m in modules if importlib.util.find_spec(m) is None) == []


def test_open_clip_train_accepts_the_options_the_docs_pass_it():
    from open_clip_train.params import parse_args

    line = next(s for p in PAGES for _, body in blocks(p) for s in body.splitlines() if "open_clip_train.main" in s)
    args = [w for w in tokens(line)[tokens(line).index("open_clip_train.main") + 1:] if w != "..."]
    assert "--train-data" in args
    parsed = parse_args(args)  # an unknown option or a bad value exits
    assert parsed.dataset_type == "webdataset" and parsed.train_data == args[args.index("--train-data") + 1]


def test_every_python_one_liner_in_the_docs_runs(tmp_path):
    """`python -c "..."` and `python -m mmpipe.audio_io` as the pages show them, run in a scratch folder."""
    lines = [line for p in PAGES for lang, body in blocks(p) if lang in ("", "sh") for line in body.splitlines()
             if re.search(r"python -c ", line)]
    lines += [s for p in PAGES for s in spans(p) if s.startswith("python -c ")]
    assert len(lines) >= 2, lines
    for line in lines:
        words = tokens(line)
        code = words[words.index("-c") + 1]
        ran = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, (line, ran.stderr[-2000:])
    assert (tmp_path / "keep.npy").is_file()  # the export page's uid list, for `mmpipe export --ids keep.npy`
    ran = subprocess.run([sys.executable, "-m", "mmpipe.audio_io"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0 and os.path.isdir(ran.stdout.strip()), (ran.stdout, ran.stderr[-2000:])
