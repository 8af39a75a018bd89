"""Every command and SQL example in the README and docs/ is one the real tools accept: each `mmpipe` line
names commands and options the CLI has (and a whole example line parses), each `prefect` line names a
command and options Prefect's CLI has, and every SQL example runs on a real curated home through the
same read-only path as `mmpipe sql`."""

from __future__ import annotations

import functools
import re

import pytest
import typer.main

from docs_pages import PAGES, commands, sql_examples

_PLACEHOLDERS = re.compile(r"\[|\]|\||\.\.\.|[A-Z]{2,}")  # a synopsis (`[--flag N]`, `NAME`) rather than a run


@functools.lru_cache(maxsize=1)
def _cli():
    from mmpipe.cli import app

    return typer.main.get_command(app)


def _options(cmd) -> dict[str, bool]:
    """Each option name of a command -> whether it takes a value."""
    opts = {"--help": False}
    for p in cmd.params:
        if p.param_type_name == "option":
            for o in [*p.opts, *p.secondary_opts]:
                opts[o] = not p.is_flag
    return opts


def _flag(word: str) -> str | None:
    """The option a word names (`[--min-side`, `--home=DIR` -> `--min-side`, `--home`), if it names one."""
    m = re.match(r"^[\[(]*(--?[A-Za-z][\w-]*)", word)
    return m.group(1) if m else None


def resolve(args: list[str]) -> tuple[list[str], object, list[str], list[str]]:
    """(the subcommand path, its click command, its arguments, problems) for `mmpipe ARGS`, walking the
    global options, the command and, for a group (`train`, `warehouse`), its subcommand."""
    cmd, path, problems, i = _cli(), [], [], 0
    while True:
        opts = _options(cmd)
        while i < len(args) and _flag(args[i]) and hasattr(cmd, "commands"):
            flag = _flag(args[i])
            if flag not in opts:
                problems.append(f"`mmpipe {' '.join(path)}` has no option {flag}")
            i += 2 if opts.get(flag) and "=" not in args[i] else 1
        if not hasattr(cmd, "commands") or i >= len(args):
            return path, cmd, args[i:], problems
        word = args[i].strip("[]()")
        if re.fullmatch(r"<[^>]+>|[A-Z_]+|\.\.\.", word):  # `mmpipe --home DIR <command>`: any command
            return path, None, [], problems
        if word not in cmd.commands:
            problems.append(f"`mmpipe {' '.join(path)}` has no command {word!r} (it has {', '.join(cmd.commands)})")
            return path, None, [], problems
        path.append(word)
        cmd, i = cmd.commands[word], i + 1


def test_every_mmpipe_command_in_the_docs_exists_with_the_options_it_names():
    found = commands("mmpipe")
    assert len(found) > 60, "the README and docs show the commands"
    problems, parsed = [], 0
    for where, line, args, whole in found:
        path, cmd, rest, wrong = resolve(args)
        problems += [f"{where}: {line!r}: {w}" for w in wrong]
        if cmd is None or hasattr(cmd, "commands"):
            continue
        opts = _options(cmd)
        problems += [f"{where}: {line!r}: `mmpipe {' '.join(path)}` has no option {_flag(w)}"
                     for w in rest if _flag(w) and _flag(w) not in opts and not re.fullmatch(r"-\d.*", w)]
        if whole and not any(_PLACEHOLDERS.search(w) for w in rest if " " not in w) and "--help" not in rest:
            try:  # a whole example: click parses it as `mmpipe` would (types, required arguments, counts)
                cmd.make_context(path[-1], list(rest))
                parsed += 1
            except Exception as e:  # noqa: BLE001 - click's usage errors; the message names the problem
                problems.append(f"{where}: {line!r}: {type(e).__name__}: {e}")
    assert not problems, "\n".join(problems)
    assert parsed >= 10, parsed


def test_the_check_fails_on_a_command_or_option_the_cli_lacks():
    assert resolve(["curate", "x", "--name", "n"])[3] == []
    assert resolve(["--home", "h", "train", "contrastive", "--dataset", "d"])[:1] == (["train", "contrastive"],)
    assert resolve(["curat", "x"])[3] and resolve(["--homer", "h", "sql", "q"])[3]
    assert "--min-clip-scor" not in _options(resolve(["curate"])[1])


def test_every_prefect_command_in_the_docs_parses_with_prefects_cli():
    """Prefect's own CLI (cyclopts) parses each `prefect ...` line as `prefect` would, without running it:
    an unknown command or option, a missing argument or a bad value is an error."""
    from prefect.cli import _app  # the cyclopts App behind `prefect` (pinned prefect==3.9.1)

    found = commands("prefect")
    assert len(found) >= 6
    problems = []
    for where, line, args, _ in found:
        try:
            _app._app.parse_args(list(args), exit_on_error=False, print_error=False)
        except Exception as e:  # noqa: BLE001 - cyclopts' parse errors; the message names the problem
            problems.append(f"{where}: {line!r}: {type(e).__name__}: {e}")
    assert not problems, "\n".join(problems)
    try:
        _app._app.parse_args(["flow-run", "ls", "--limitz", "20"], exit_on_error=False, print_error=False)
    except Exception:  # noqa: BLE001
        pass
    else:
        raise AssertionError("the parse must fail on an option Prefect's CLI lacks")


@pytest.fixture(scope="module")
def curated_home(prefect_harness, shapes, tiny_clip_checkpoint, tmp_path_factory):
    """A small real home: the shapes curated with the CLI (tiny CLIP scoring, dedup, export)."""
    from typer.testing import CliRunner

    from mmpipe.cli import app

    home = tmp_path_factory.mktemp("docs") / "home"
    ran = CliRunner().invoke(app, ["--quiet", "curate", shapes.pattern, "--name", "demo-shapes", "--home", str(home),
                                   "--clip-model", "mmpipe-tiny-clip", "--clip-pretrained", tiny_clip_checkpoint,
                                   "--min-side", "64", "--min-clip-score", "0.0"])
    assert ran.exit_code == 0, ran.output[-3000:]
    return home


def _queries_of_commands() -> list[tuple[str, str, str | None]]:
    """The SQL that `mmpipe sql "..."` and `mmpipe export --query "..."` lines pass, with the dataset
    version of `--as-of NAME@VERSION` when the line gives one."""
    found = []
    for where, line, args, _ in commands("mmpipe"):
        path, _, rest, _ = resolve(args)
        as_of = next((v for f, v in zip(rest, rest[1:]) if f == "--as-of"), None)
        queries = [w for w in rest if " " in w and "..." not in w]  # the quoted statement
        if path == ["sql"] and queries:
            found.append((where, queries[0], as_of))
        found += [(where, v, None) for f, v in zip(rest, rest[1:]) if path == ["export"] and f == "--query"]
    return found


def test_every_sql_example_in_the_docs_runs_on_a_real_home(curated_home):
    from warehouse import Warehouse

    examples = [(where, statement, None) for where, statement in sql_examples()] + _queries_of_commands()
    assert len(examples) >= 20, "the README and docs show their SQL"
    assert any(as_of for *_, as_of in examples), "time travel is shown"
    wh = Warehouse(curated_home, create=False)
    failed, rows = [], 0
    for where, statement, as_of in examples:
        try:  # what `mmpipe sql` runs: the guard, a read-only attach (at the version's snapshot), the limits
            snapshot = wh.snapshot_of(*as_of.split("@")) if as_of else None
            rows += wh.query_readonly(statement, snapshot=snapshot).num_rows
        except Exception as e:  # noqa: BLE001 - any error is the example's failure; the message says which
            failed.append(f"{where}: {statement[:200]!r}: {type(e).__name__}: {str(e)[:300]}")
    assert not failed, "\n".join(failed)
    assert rows > 0, "the examples read the curated home"


def test_every_dask_command_in_the_docs_parses_with_distributeds_cli():
    """`dask scheduler` and `dask worker ...` lines: distributed's click commands parse them and have every
    option they name (dask-cuda is not installed: its line must say it was not run)."""
    from distributed.cli.dask_scheduler import main as scheduler
    from distributed.cli.dask_worker import main as worker

    clis = {"scheduler": scheduler, "worker": worker}
    found = commands("dask")
    assert {args[0] for *_, args, _ in found} == set(clis)
    for where, line, args, _ in found:
        cli = clis[args[0]]
        cli.make_context(f"dask {args[0]}", list(args[1:]))
        named = {o for p in cli.params for o in [*p.opts, *p.secondary_opts]}
        assert {_flag(a) for a in args[1:] if _flag(a)} <= named, (where, line)
    for where, line, args, _ in commands("dask-cuda-worker"):
        text = " ".join(next(p for p in PAGES if p.as_posix().endswith(where)).read_text().split())
        assert "dask-cuda (not run here" in text, where
