"""The README and the pages under docs/, read the way the doc tests need them: fenced blocks, inline code,
command lines, SQL statements (a helper module of tests/test_docs*.py, not a test)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def name(page: Path) -> str:
    """The page's path from the repository root (for messages)."""
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path) -> list[tuple[str, str]]:
    """Every fenced code block of a page as (language, body)."""
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(page.read_text())]


def spans(page: Path) -> list[str]:
    """Every inline code span outside the fenced blocks, its whitespace (line breaks too) made single spaces."""
    prose = _FENCE.sub("", page.read_text())
    return [" ".join(s.split()) for s in re.findall(r"`([^`\n]+(?:\n[^`\n]+)*)`", prose)]


def shell_lines(body: str) -> list[str]:
    """The logical lines of a shell-like block: backslash continuations joined, and indented lines that go
    on a command's synopsis (`[--flag ...]` under the command) joined to it."""
    lines: list[str] = []
    for raw in body.splitlines():
        if lines and (lines[-1].endswith("\\") or (raw[:1].isspace() and raw.strip()[:1] in "[-")):
            lines[-1] = lines[-1].rstrip("\\").rstrip() + " " + raw.strip()
        else:
            lines.append(raw.rstrip())
    return [line for line in lines if line.strip()]


def tokens(line: str) -> list[str]:
    """A command line's words as a shell splits them, comments dropped, cut at `&`, `&&` or `;`."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose-like synopsis: split on blanks
        words = line.split("#")[0].split()
    for i, w in enumerate(words):
        if w in ("&", "&&", ";"):
            return words[:i]
    return words


def command(words: list[str], program: str) -> list[str] | None:
    """The arguments of `program` when the words run it (after any VAR=value), else None."""
    i = 0
    while i < len(words) and _ENV.match(words[i]):
        i += 1
    if i < len(words) and words[i].rsplit("/", 1)[-1] == program:
        return words[i + 1:]
    return None


def commands(program: str) -> list[tuple[str, str, list[str], bool]]:
    """Every place the README and docs run `program`: (page, the line or span, its arguments, whether it
    is a whole command from a fenced block rather than a mention in prose)."""
    found = []
    for page in PAGES:
        for lang, body in blocks(page):
            if lang in ("", "sh", "bash", "console"):
                for line in shell_lines(body):
                    args = command(tokens(line), program)
                    if args is not None:
                        found.append((name(page), line, args, True))
        for span in spans(page):
            args = command(tokens(span), program)
            if args is not None:
                found.append((name(page), span, args, False))
    return found


def sql_statements(text: str) -> list[str]:
    """The statements of a SQL block, `--` comment lines dropped."""
    body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def sql_examples() -> list[tuple[str, str]]:
    """Every SQL example of the pages: the statements of ```sql blocks and whole SELECTs in prose, as
    (page, statement)."""
    found = []
    for page in PAGES:
        for lang, body in blocks(page):
            if lang == "sql":
                found += [(name(page), s) for s in sql_statements(body)]
        found += [(name(page), s) for s in spans(page)
                  if re.match(r"(SELECT|WITH) ", s) and "..." not in s and not s.endswith(" FROM")]
    return found
