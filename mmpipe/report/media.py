"""The audio section (transcripts, WER, durations, languages, dropped clips) and the trained models."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from mmpipe.report import plots
from mmpipe.report.card import reason_link
from mmpipe.report.html import audio_player, esc, figure, table
from mmpipe.schema import DROP_REASONS

TRANSCRIPTS_SHOWN = 100
CLIPS_PER_REASON = 4


def audio_section(d: dict, reasons: Counter, save) -> str:
    """Transcripts with WER, WER and duration histograms, language shares, dropped clips with players."""
    rows = d["transcripts"].to_pylist()
    clips = {p["sample_id"]: p for p in d["previews"].to_pylist() if p["mime"].startswith("audio/")}
    durations = d["durations"].to_pylist()
    wers = [r["wer"] for r in rows if r["wer"] is not None]
    png = plots.audio_histograms(wers, [r["duration_s"] for r in durations], [bool(r["keep"]) for r in durations])
    parts = [figure(png, "WER of the transcribed clips with a reference; durations of every decoded clip",
                    "WER and duration histograms"), save("audio.png", png)]
    langs = Counter(r["language"] or "?" for r in rows if r["keep"])
    total = sum(langs.values())
    parts += ["<h3>Languages of the kept clips</h3>",
              table([{"language": k, "clips": v, "share": f"{v / total:.1%}"} for k, v in langs.most_common()])]
    shown = sorted(rows, key=lambda r: (not r["keep"], r["source_key"] or ""))[:TRANSCRIPTS_SHOWN]
    trows = [{"clip": r["source_key"], "outcome": "kept" if r["keep"] else r["drop_reason"],
              "reference": r["reference"], "transcript": r["transcript"], "WER": r["wer"], "CER": r["cer"],
              "language": r["language"], "duration s": r["duration_s"], "play": audio_player(clips.get(r["sample_id"]))}
             for r in shown]
    mean = f"mean WER {sum(wers) / len(wers):.3f} over {len(wers)} clips with a reference" if wers else \
        "no clip has a reference"
    parts += [f"<h3>Transcripts</h3><p class=\"small\">{esc(mean)}; {len(shown)} of {len(rows)} shown.</p>",
              table(trows, raw=["play"])]
    parts.append("<h3>Dropped clips per reason</h3>" + _dropped_clips(reasons, d["dropped"].to_pylist(), clips))
    return "".join(parts)


def _dropped_clips(reasons: Counter, dropped: list[dict], clips: dict[str, dict]) -> str:
    listed: dict[str, list[dict]] = defaultdict(list)
    for r in dropped:
        listed[r["drop_reason"]].append(r)
    parts = []
    for reason, n in reasons.most_common():
        rows = sorted(listed.get(reason, []), key=lambda r: r["sample_id"] not in clips)[:CLIPS_PER_REASON]
        body = table([{"clip": r["source_key"], "detail": r["detail"], "reference": r["text"],
                       "play": audio_player(clips.get(r["sample_id"]))} for r in rows], raw=["play"])
        parts.append(f'<div id="{reason_link(reason)}" class="reason" data-reason="{esc(reason)}"><h3>{esc(reason)} '
                     f'<span class="small">({n} clips; {esc(DROP_REASONS.get(reason, ""))})</span></h3>{body}</div>')
    return "".join(parts) or '<p class="none">nothing was dropped</p>'


def model_dir(home: str, checkpoint_uri: str) -> Path:
    """The folder a model's files live in (a diffusion checkpoint is its `unet` folder)."""
    p = Path(checkpoint_uri) if Path(checkpoint_uri).is_absolute() else Path(home) / checkpoint_uri
    return p.parent if p.name == "unet" or not p.is_dir() else p


def models_section(d: dict, save) -> str:
    """Models trained on the version: loss curves, evals, the diffusion sample grid."""
    models = d["models"].to_pylist()
    if not models:
        return '<p class="none">no model has been trained on this version yet (<code>mmpipe train ...</code>)</p>'
    names = {m["model_id"]: f"{m['objective']} {m['model_id'][:8]}" for m in models}
    rows = [{"model": names[m["model_id"]], "status": m["status"], "created": str(m["created_at"])[:19],
             "config": _config_note(m["config"]), "checkpoint": m["checkpoint_uri"]} for m in models]
    parts = [table(rows)]
    curves: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: ([], [])))
    for r in d["train_steps"].to_pylist():
        steps, values = curves[names.get(r["model_id"], r["model_id"][:8])][r["metric"]]
        steps.append(r["step"])
        values.append(r["value"])
    if curves:
        png = plots.loss_curves({k: dict(v) for k, v in curves.items()})
        parts += ["<h3>Loss curves</h3>", figure(png, "Per-step training losses (train_steps)", "loss curves"),
                  save("losses.png", png)]
    evals = [{"model": names.get(e["model_id"], e["model_id"][:8]), "metric": e["metric"], "value": e["value"],
              "split": e["split"], "run": e["run_id"]} for e in d["evals"].to_pylist()]
    parts += ["<h3>Evaluations</h3>", table(evals)]
    for m in models:
        grid = model_dir(d["home"], m["checkpoint_uri"]) / "samples.png"
        if m["objective"] == "diffusion" and grid.is_file():
            data = grid.read_bytes()
            parts += [f"<h3>Samples of {esc(names[m['model_id']])}</h3>",
                      figure(data, f"DDIM samples from validation captions ({grid})", "diffusion sample grid"),
                      save(f"samples-{m['model_id'][:8]}.png", data)]
    return "".join(parts)


def _config_note(config: str | None) -> str:
    c = json.loads(config) if config else {}
    keys = ("model_name", "clip_model", "steps", "batch_size", "lr", "role")
    return ", ".join(f"{k}={c[k]}" for k in keys if c.get(k) is not None)
