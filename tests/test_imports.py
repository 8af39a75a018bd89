"""The library stays light: importing it pulls in neither prefect nor duckdb."""

import subprocess
import sys


def test_import_mmpipe_leaves_prefect_and_duckdb_out():
    code = (
        "import sys, mmpipe, mmpipe.schema, mmpipe.cli, mmpipe.cli.output, mmpipe.cli.common, mmpipe.cli.look, "
        "mmpipe.cli.curate, mmpipe.cli.prefect_server, mmpipe.sources.folder, mmpipe.stages.decode, "
        "mmpipe.demo.photos, mmpipe.home\n"
        "bad = [m for m in ('prefect', 'duckdb') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_curate_flow_imports_no_model_or_plotting_library_until_it_uses_one():
    """torch and open_clip load where CLIP scoring runs, matplotlib where a plot is drawn (seconds a process)."""
    code = ("import sys, flows.curate, mmpipe.cli.curate, mmpipe.stages.clip_score, mmpipe.report.plots\n"
            "bad = [m for m in ('torch', 'open_clip', 'matplotlib') if m in sys.modules]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mmpipe_source_never_imports_prefect_or_duckdb():
    from pathlib import Path

    import mmpipe

    root = Path(mmpipe.__file__).parent
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[0] == "cli":  # the command line (mmpipe/cli/) is the front door
            continue
        text = path.read_text()
        for mod in ("prefect", "duckdb", "warehouse", "flows", "tasks"):
            assert f"import {mod}" not in text and f"from {mod}" not in text, f"{path} imports {mod}"


def _cli_modules() -> list[str]:
    from pathlib import Path

    import mmpipe.cli

    folder = Path(mmpipe.cli.__file__).parent
    return sorted(f"mmpipe.cli.{p.stem}" for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__"))


def test_every_cli_module_imports_alone_in_a_fresh_interpreter():
    """Each module of the command line imports first, on its own (an import cycle fails one of them)."""
    modules = _cli_modules()
    assert {"mmpipe.cli.common", "mmpipe.cli.output", "mmpipe.cli.prefect_server"} <= set(modules)
    for name in ["mmpipe.cli", *modules]:
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True)
        assert proc.returncode == 0, f"import {name}:\n{proc.stderr[-3000:]}"


def test_the_cli_modules_import_each_other_without_a_cycle():
    """The imports between the command line's modules (at module level or inside functions) form no cycle."""
    import ast
    from pathlib import Path

    import mmpipe.cli

    folder = Path(mmpipe.cli.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        if path.stem in ("__init__", "__main__"):
            continue  # the package assembles the app from every module; the modules never import it
        edges = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("mmpipe.cli."):
                    edges.add(node.module.split(".")[2])
                elif node.module == "mmpipe.cli":
                    edges.update(a.name for a in node.names)
                    assert not {"app", "main", "PANELS"} & {a.name for a in node.names}, f"{path.name} imports the app"
            elif isinstance(node, ast.Import):
                edges.update(a.name.split(".")[2] for a in node.names if a.name.startswith("mmpipe.cli."))

    def visit(module: str, trail: tuple[str, ...]) -> None:
        assert module not in trail, "import cycle: " + " -> ".join((*trail, module))
        for dep in graph.get(module, ()):
            visit(dep, (*trail, module))

    for module in graph:
        visit(module, ())
