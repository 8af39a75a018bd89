"""Flows read like recipes: each flow body is short, and a flow's parameter is never replaced by an unrelated
value (`mmpipe demo` once ran its speech part always because `speech`, the flag, was rebound to a subflow's
result; normalising a parameter, as in `home = str(resolve_home(home))`, stays allowed)."""

from __future__ import annotations

import ast
from pathlib import Path

FLOWS = Path(__file__).resolve().parents[1] / "flows"


def _flows(source: str) -> list[ast.FunctionDef]:
    """The @flow-decorated functions of a module's source."""
    def is_flow(d: ast.expr) -> bool:
        target = d.func if isinstance(d, ast.Call) else d
        return isinstance(target, ast.Name) and target.id == "flow"

    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)
            and any(is_flow(d) for d in n.decorator_list)]


def replaced_parameters(fn: ast.FunctionDef) -> list[tuple[str, int]]:
    """(parameter, line) for each assignment that rebinds a parameter to a value not computed from it."""
    params = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
    found = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
            targets, value = [node.target], node.value
        elif isinstance(node, ast.For | ast.comprehension):
            targets, value = [node.target], node.iter
        elif isinstance(node, ast.With):
            targets, value = [i.optional_vars for i in node.items if i.optional_vars], ast.Tuple([i.context_expr for i in node.items])
        else:
            continue
        bound = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        used = {n.id for n in ast.walk(value) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} if value else set()
        found += [(name, node.lineno) for name in sorted(bound & params) if name not in used]
    return found


def test_no_flow_replaces_one_of_its_parameters():
    paths = sorted(FLOWS.glob("*.py"))
    flows = [(p, fn) for p in paths for fn in _flows(p.read_text())]
    assert len(flows) >= 15  # every flow module was read
    bad = [f"{p.name}:{line} {fn.name} rebinds `{name}`" for p, fn in flows for name, line in replaced_parameters(fn)]
    assert not bad, bad


def test_the_check_catches_the_shadowed_speech_flag():
    """The demo flow as it was when `mmpipe demo` always ran the speech part."""
    source = (FLOWS / "demo.py").read_text().replace("    clips = transcribe_flow(", "    speech = transcribe_flow(")
    assert "speech = transcribe_flow(" in source
    [demo] = [fn for fn in _flows(source) if fn.name == "demo_flow"]
    assert [name for name, _ in replaced_parameters(demo)] == ["speech"]


def test_flow_bodies_are_recipes_of_at_most_forty_lines():
    for path in sorted(FLOWS.glob("*.py")):
        for fn in _flows(path.read_text()):
            body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else fn.body
            lines = body[-1].end_lineno - body[0].lineno + 1
            assert lines <= 40, f"{path.name} {fn.name}: {lines} lines"
