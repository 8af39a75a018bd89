"""Reports built by the flows themselves, checked against the warehouse: counts, every drop reason,
every image and clip, models, evals, the sample grid, --compare, the CLI, and a report that fails."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from warehouse import Warehouse


def _decode_src(src: str, page: Path) -> bytes:
    if src.startswith("data:"):
        head, _, payload = src.partition(",")
        assert head.endswith(";base64"), head
        return base64.b64decode(payload)
    assert "://" not in src, f"a reference off the machine: {src[:80]}"
    path = page.parent / src
    assert path.is_file(), f"missing {path}"
    return path.read_bytes()


def _images_decode(parsed, page: Path) -> int:
    for src in parsed.images:
        with Image.open(io.BytesIO(_decode_src(src, page))) as img:
            img.load()
            assert img.width > 0 and img.height > 0
    return len(parsed.images)


def _text(parsed) -> str:
    return " ".join(" ".join(parsed.text).split())


def test_the_curation_report_matches_the_warehouse(pipeline_home, parse_page):
    home, cur = pipeline_home["home"], pipeline_home["curate"]
    page = Path(cur["report"])
    assert page == home / "reports" / "shapes" / "v1" / "index.html" and page.is_file()
    parsed = parse_page(page)
    wh = Warehouse(home)
    run = cur["run_id"]
    reasons = {r["drop_reason"]: r["n"] for r in wh.sql(
        "SELECT drop_reason, count(*) AS n FROM outcomes WHERE run_id = ? AND NOT keep GROUP BY 1", [run]).to_pylist()}
    assert {"duplicate", "near_duplicate", "clip_score_low", "too_small", "truncated"} <= set(reasons)
    # every drop reason present has its own section, and nothing else does
    assert Counter(parsed.reasons) == Counter(reasons.keys())
    assert {f"drop-{r.replace('_', '-')}" for r in reasons} <= parsed.ids
    text = _text(parsed)
    for reason, n in reasons.items():  # the drop reasons table: reason, count, share
        assert re.search(rf"{reason} {n} \d+\.\d%", text), reason
    ingested, kept = cur["ingested"], cur["kept"]
    n_samples = wh.sql("SELECT n_samples FROM datasets WHERE name = 'shapes' AND version = 'v1'").column(0)[0].as_py()
    assert n_samples == kept
    assert f"kept / dropped {kept} / {ingested - kept}" in text
    assert f"input {ingested} 0 {ingested}" in text and f"kept {kept} 0 {kept}" in text
    stages = {r["drop_stage"]: r["n"] for r in wh.sql(
        "SELECT drop_stage, count(*) AS n FROM outcomes WHERE run_id = ? AND NOT keep GROUP BY 1", [run]).to_pylist()}
    left = ingested
    for stage in ("decode", "basic", "dedup", "clip_filter"):  # counts in and out per stage
        assert f"{stage} {left} {stages[stage]} {left - stages[stage]}" in text, stage
        left -= stages[stage]
    # previews were captured during curation (bounded), and every gallery card is what the warehouse says
    thumbs = wh.sql("SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM thumbnails WHERE run_id = ?",
                    [run]).to_pylist()[0]
    assert 0 < thumbs["n"] == thumbs["d"] <= 512
    outcome = {r["sample_id"]: r for r in wh.sql("SELECT sample_id, keep, drop_reason FROM outcomes "
                                                 "WHERE run_id = ?", [run]).to_pylist()}
    kept_cards = [s for sec, cls, s in parsed.card_sections if sec == "kept"]
    assert kept_cards and all(outcome[s]["keep"] for s in kept_cards)
    for sec, cls, sample in parsed.card_sections:
        if sec == "dropped":
            assert "dropped" in cls and not outcome[sample]["keep"]
    assert _images_decode(parsed, page) > len(kept_cards)
    assert {"clip_scores.png", "embeddings_pca.png"} <= {p.name for p in (page.parent / "plots").iterdir()}
    for png in (page.parent / "plots").iterdir():
        with Image.open(png) as img:
            img.load()
    threshold = wh.sql("SELECT min(score) AS t FROM decisions WHERE run_id = ? AND stage = 'clip_filter' AND keep",
                       [run]).column("t")[0].as_py()
    assert f"threshold {threshold:.4f}" in text  # the borderline gallery names the threshold applied
    assert sum(1 for sec, _, _ in parsed.card_sections if sec == "borderline") > 0
    assert parsed.pairs and re.search(r"\d+ duplicate, \d+ near_duplicate|\d+ near_duplicate, \d+ duplicate", text)


def test_training_adds_models_loss_curves_evals_and_the_sample_grid(pipeline_home, parse_page):
    home = pipeline_home["home"]
    page = Path(pipeline_home["diffusion"]["report"])
    assert page == Path(pipeline_home["contrastive"]["report"]) == home / "reports" / "shapes" / "v1" / "index.html"
    parsed = parse_page(page)
    text = _text(parsed)
    wh = Warehouse(home)
    models = wh.sql("SELECT m.model_id, m.objective, m.run_id FROM models m JOIN datasets d USING (dataset_id) "
                    "WHERE d.name = 'shapes' AND d.version = 'v1'").to_pylist()
    assert {m["objective"] for m in models} == {"contrastive", "diffusion"}
    evals = wh.sql("SELECT e.model_id, e.metric, e.value FROM evals e WHERE e.model_id IN "
                   "(SELECT unnest(?::VARCHAR[]))", [[m["model_id"] for m in models]]).to_pylist()
    assert evals
    for m in models:
        assert f"{m['objective']} {m['model_id'][:8]}" in text and m["run_id"] in text
    for e in evals:  # every eval row is in the evals table
        assert re.search(rf"{re.escape(e['metric'])} [-\d.e+]+ val", text), e["metric"]
    assert f"{len(models)} model(s) → {len(evals)} eval metric(s)" in text  # lineage run -> dataset -> models -> evals
    plots = {p.name for p in (page.parent / "plots").iterdir()}
    assert "losses.png" in plots
    diffusion = next(m for m in models if m["objective"] == "diffusion")
    assert f"samples-{diffusion['model_id'][:8]}.png" in plots
    grid = Path(pipeline_home["diffusion"]["evals"]["grid"]).read_bytes()
    assert any(_decode_src(src, page) == grid for src in parsed.images)  # the sample grid is on the page


def test_the_audio_report_lists_transcripts_and_plays_clips(pipeline_home, parse_page):
    from mmpipe.export import decode_audio

    home, speech = pipeline_home["home"], pipeline_home["speech"]
    page = Path(speech["report"])
    assert page == home / "reports" / "speech" / "v1" / "index.html"
    parsed = parse_page(page)
    text = _text(parsed)
    wh = Warehouse(home)
    run = speech["run_id"]
    reasons = dict((r["drop_reason"], r["n"]) for r in wh.sql(
        "SELECT drop_reason, count(*) AS n FROM outcomes WHERE run_id = ? AND NOT keep GROUP BY 1", [run]).to_pylist())
    assert {"no_speech", "empty_file"} <= set(reasons)
    assert Counter(parsed.reasons) == Counter(reasons.keys())
    transcripts = wh.sql("SELECT s.source_key, t.wer FROM transcripts t JOIN samples s USING (sample_id) "
                         "WHERE t.run_id = ?", [run]).to_pylist()
    assert transcripts and all(t["source_key"] in text for t in transcripts)
    with_ref = [t["wer"] for t in transcripts if t["wer"] is not None]
    assert f"mean WER {sum(with_ref) / len(with_ref):.3f} over {len(with_ref)} clips" in text
    assert "Languages of the kept clips" in text and re.search(r"en \d+ 100\.0%", text)
    clips = [src for src in parsed.audio if src.startswith("data:audio/flac")]
    assert clips, "no inlined clip"
    kept_keys = wh.sql("SELECT count(*) FROM thumbnails WHERE run_id = ? AND role = 'audio'", [run]).column(0)[0]
    assert 0 < kept_keys.as_py() <= 64
    for src in clips:
        audio = decode_audio(_decode_src(src, page))
        assert 0 < len(audio) <= 16000 * 10 + 1
    assert "audio.png" in {p.name for p in (page.parent / "plots").iterdir()}


def test_compare_shows_members_added_removed_and_changed_decisions(pipeline_home, parse_page, tmp_path):
    from typer.testing import CliRunner

    from mmpipe.cli import app

    home = pipeline_home["home"]
    out = tmp_path / "cmp"
    got = CliRunner().invoke(app, ["--home", str(home), "report", "shapes@v1", "--compare", "shapes@v2",
                                   "--output", str(out)])
    assert got.exit_code == 0, got.output
    page = Path(got.output.strip().splitlines()[-1])
    assert page == out / "index.html"
    parsed = parse_page(page)
    text = _text(parsed)
    wh = Warehouse(home)
    members = {}
    for v in ("v1", "v2"):
        uri = wh.sql("SELECT manifest_uri FROM datasets WHERE name = 'shapes' AND version = ?", [v]).column(0)[0]
        members[v] = set(pq.read_table(wh.resolve(uri.as_py()))["sample_id"].to_pylist())
    added, removed = members["v2"] - members["v1"], members["v1"] - members["v2"]
    assert removed and not added  # keeping 40% instead of 60% of the same scores
    assert f"only in shapes@v1 (removed) {len(removed)}" in text and f"Removed from shapes@v1 ({len(removed)})" in text
    assert f"only in shapes@v2 (added) {len(added)}" in text
    changed = wh.sql(
        "SELECT count(*) FROM outcomes a JOIN outcomes b USING (sample_id) WHERE a.run_id = ? AND b.run_id = ? "
        "AND a.ordinal = b.ordinal AND (a.keep IS DISTINCT FROM b.keep OR a.drop_reason IS DISTINCT FROM "
        "b.drop_reason)", [pipeline_home["curate"]["run_id"], pipeline_home["curate_v2"]["run_id"]]).column(0)[0]
    assert changed.as_py() == len(removed)
    assert f"decisions that changed (samples both runs met) {len(removed)}" in text
    assert f"kept clip_score_low {len(removed)}" in text
    assert "Kolmogorov-Smirnov statistic" in text and (out / "plots" / "compare_scores.png").is_file()
    # the default place, from the command line, without Prefect
    code = ("import sys\nfrom mmpipe.cli import app\ntry:\n    app(['--home', sys.argv[1], 'report', 'shapes'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('loaded:', [m for m in ('prefect', 'duckdb') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(home / "reports" / "shapes" / "v2" / "index.html")
    assert "'prefect'" not in proc.stdout  # read-only, like the query commands
    bad = CliRunner().invoke(app, ["--home", str(home), "report", "shapes@v9"])
    assert bad.exit_code == 1 and "no version 'v9'" in bad.output


def test_a_report_that_fails_leaves_the_flow_completed(prefect_harness, monkeypatch, pipeline_home):
    from prefect import flow

    import tasks.report_page as report_page

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report_page, "report_inputs", broken)
    warned = []

    class Logger:  # Prefect's run logger, as seen by the task (caplog misses it once Prefect's logging is set up)
        def warning(self, msg, *args):
            warned.append(msg % args)

    monkeypatch.setattr(report_page, "get_run_logger", lambda: Logger())

    @flow
    def f() -> str | None:
        return report_page.write_report_page(str(pipeline_home["home"]), "shapes@v1")

    assert f() is None
    assert any("disk on fire" in w for w in warned)


def test_report_time_on_this_data(pipeline_home, tmp_path):
    """A measurement, printed (no timing assert): see bench/report.py for the demo's data."""
    from mmpipe.report import write_report
    from warehouse.report_queries import report_inputs

    wh = Warehouse(pipeline_home["home"], create=False, read_only=True)
    start = time.perf_counter()
    path = write_report(report_inputs(wh, "shapes@v1"), tmp_path / "r")
    print(f"\nreport of shapes@v1 ({pipeline_home['curate']['ingested']} inputs) written in "
          f"{time.perf_counter() - start:.2f} s: {path}")
    assert path.is_file()
