"""Dependencies: pinned once in pyproject.toml, the whole set locked in constraints.txt, and the
faster-whisper internals we rely on still what the adapter expects."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"]) + [d for extra in project["optional-dependencies"].values() for d in extra]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[a-z,]+\])?==([^;\s]+)", dep.strip())
        assert m, f"every dependency is pinned with ==: {dep}"
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_every_pin_is_in_the_lock_at_the_same_version():
    lock = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            lock[name.lower().replace("_", "-")] = version.strip()
    installed = set(lock)
    for name, version in _pins().items():
        if name in installed:
            assert lock[name] == version, f"{name}: pyproject {version}, lock {lock[name]}"
    required = {n for n in _pins() if n not in ("prefect-dask",)}
    assert required <= installed, f"not locked: {sorted(required - installed)}"


def test_the_faster_whisper_adapter_matches_the_installed_version():
    import faster_whisper

    from mmpipe.models import whisper_batch

    assert faster_whisper.__version__ == whisper_batch.TESTED_VERSION == _pins()["faster-whisper"]
    whisper_batch.check_compatible()


def test_transcription_options_come_from_the_public_signature():
    import dataclasses

    from faster_whisper.tokenizer import Tokenizer

    from mmpipe.models import whisper_batch
    from mmpipe.models.whisper import load_whisper

    model = load_whisper("tiny.en", "cpu", "int8")
    tok = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
    opts = whisper_batch.options(tok, beam_size=3, temperature=0.0)
    assert opts.beam_size == 3 and opts.temperatures == [0.0] and opts.condition_on_previous_text is False
    assert opts.log_prob_threshold == -1.0 and opts.no_speech_threshold == 0.6 and opts.multilingual is False
    assert all(hasattr(opts, f.name) for f in dataclasses.fields(opts))


def test_bootstrap_filter_flow_does_not_import_the_demo():
    import subprocess
    import sys

    code = "import sys, flows.bootstrap_filter; print(any(m.startswith('mmpipe.demo') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_the_report_templates_ship_in_the_package_and_parse():
    """Every file under mmpipe/report/templates is package data (a wheel carries it), and each template
    compiles in the report's environment (autoescaped, strict undefined)."""
    from fnmatch import fnmatch

    from mmpipe.report.html import environment

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mmpipe"]
    folder = ROOT / "mmpipe" / "report" / "templates"
    files = sorted(p.relative_to(ROOT / "mmpipe").as_posix() for p in folder.iterdir() if p.is_file())
    assert files and all(any(fnmatch(f, g) for g in globs) for f in files), (files, globs)
    env = environment()
    assert env.autoescape("page.html.j2") and env.autoescape("macros.html.j2")
    for name in env.list_templates():
        env.get_template(name)
