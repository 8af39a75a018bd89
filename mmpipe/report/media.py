"""The audio section (transcripts, WER, durations, languages, dropped clips) and the trained models."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from mmpipe.evaluate.asr import WORST_TRANSCRIPTS
from mmpipe.report import plots
from mmpipe.report.card import reason_link
from mmpipe.report.html import audio_player, render
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
    save("audio.png", png)
    langs = Counter(r["language"] or "?" for r in rows if r["keep"])
    total = sum(langs.values())
    shown = sorted(rows, key=lambda r: (not r["keep"], r["source_key"] or ""))[:TRANSCRIPTS_SHOWN]
    trows = [{"clip": r["source_key"], "outcome": "kept" if r["keep"] else r["drop_reason"],
              "reference": r["reference"], "transcript": r["transcript"], "WER": r["wer"], "CER": r["cer"],
              "language": r["language"], "duration s": r["duration_s"], "play": audio_player(clips.get(r["sample_id"]))}
             for r in shown]
    mean = f"mean WER {sum(wers) / len(wers):.3f} over {len(wers)} clips with a reference" if wers else \
        "no clip has a reference"
    return render("audio.html.j2", png=png, mean=mean, transcripts=trows, n_transcripts=len(rows),
                  languages=[{"language": k, "clips": v, "share": f"{v / total:.1%}"} for k, v in langs.most_common()],
                  dropped=_dropped_clips(reasons, d["dropped"].to_pylist(), clips))


def _dropped_clips(reasons: Counter, dropped: list[dict], clips: dict[str, dict]) -> list[dict]:
    listed: dict[str, list[dict]] = defaultdict(list)
    for r in dropped:
        listed[r["drop_reason"]].append(r)
    groups = []
    for reason, n in reasons.most_common():
        rows = sorted(listed.get(reason, []), key=lambda r: r["sample_id"] not in clips)[:CLIPS_PER_REASON]
        groups.append({"reason": reason, "anchor": reason_link(reason), "n": n, "meaning": DROP_REASONS.get(reason, ""),
                       "rows": [{"clip": r["source_key"], "detail": r["detail"], "reference": r["text"],
                                 "play": audio_player(clips.get(r["sample_id"]))} for r in rows]})
    return groups


def model_dir(home: str, checkpoint_uri: str) -> Path:
    """The folder a model's files live in (a diffusion checkpoint is its `unet` folder)."""
    p = Path(checkpoint_uri) if Path(checkpoint_uri).is_absolute() else Path(home) / checkpoint_uri
    return p.parent if p.name == "unet" or not p.is_dir() else p


def models_section(d: dict, save) -> str:
    """Models trained on the version: loss curves, evals, the diffusion sample grid."""
    models = d["models"].to_pylist()
    if not models:
        return render("models.html.j2", models=[], losses=None, evals=[], grids=[], worst=[])
    names = {m["model_id"]: f"{m['objective']} {m['model_id'][:8]}" for m in models}
    rows = [{"model": names[m["model_id"]], "status": m["status"], "created": str(m["created_at"])[:19],
             "config": _config_note(m["config"]), "checkpoint": m["checkpoint_uri"]} for m in models]
    curves: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: ([], [])))
    for r in d["train_steps"].to_pylist():
        steps, values = curves[names.get(r["model_id"], r["model_id"][:8])][r["metric"]]
        steps.append(r["step"])
        values.append(r["value"])
    losses = None
    if curves:
        losses = plots.loss_curves({k: dict(v) for k, v in curves.items()})
        save("losses.png", losses)
    evals = [{"model": names.get(e["model_id"], e["model_id"][:8]), "metric": e["metric"], "value": e["value"],
              "split": e["split"], "run": e["run_id"]} for e in d["evals"].to_pylist()]
    grids = []
    for m in models:
        grid = model_dir(d["home"], m["checkpoint_uri"]) / "samples.png"
        if m["objective"] == "diffusion" and grid.is_file():
            data = grid.read_bytes()
            save(f"samples-{m['model_id'][:8]}.png", data)
            grids.append({"name": names[m["model_id"]], "png": data, "path": str(grid)})
    worst = []
    for m in models:
        found = model_dir(d["home"], m["checkpoint_uri"]) / WORST_TRANSCRIPTS
        if m["objective"] == "asr" and found.is_file():
            w = json.loads(found.read_text())
            worst.append({"name": names[m["model_id"]], "split": w["split"], "path": str(found),
                          "rows": [{"reference": r["reference"], "student": r["hypothesis"],
                                    "pseudo-label": r["transcript"], "WER": round(r["wer"], 3)} for r in w["clips"]]})
    return render("models.html.j2", models=rows, losses=losses, evals=evals, grids=grids, worst=worst)


def _config_note(config: str | None) -> str:
    c = json.loads(config) if config else {}
    keys = ("model_name", "clip_model", "steps", "batch_size", "lr", "role")
    return ", ".join(f"{k}={c[k]}" for k in keys if c.get(k) is not None)
