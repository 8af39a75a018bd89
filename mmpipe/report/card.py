"""The data card: sources, counts in and out per stage, drop reasons, filter spec, models, lineage."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from mmpipe.report.html import anchor_of, link, render
from mmpipe.schema import DROP_REASONS

STAGE_ORDER = ["fetch", "decode", "basic", "dedup", "clip_filter", "asr_quality", "semantic_dedup"]


def stage_rank(stage: str) -> tuple[int, str]:
    """Pipeline order of a stage (unknown stages after the known ones)."""
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


def funnel(rows: list[dict]) -> tuple[int, list[dict], Counter]:
    """(inputs, per-stage rows in/dropped/out, reason -> count) from outcome counts."""
    total = sum(r["n"] for r in rows)
    dropped: dict[str, Counter] = defaultdict(Counter)
    reasons: Counter = Counter()
    for r in rows:
        if r["drop_stage"] is not None or r["drop_reason"] is not None:
            dropped[r["drop_stage"] or "?"][r["drop_reason"] or "?"] += r["n"]
            reasons[r["drop_reason"] or "?"] += r["n"]
    left, out = total, []
    for stage in sorted(dropped, key=stage_rank):
        n = sum(dropped[stage].values())
        out.append({"stage": stage, "in": left, "dropped": n, "out": left - n,
                    "reasons": ", ".join(f"{k} {v}" for k, v in dropped[stage].most_common())})
        left -= n
    return total, out, reasons


def reason_link(reason: str) -> str:
    """The anchor of a drop reason's gallery section."""
    return f"drop-{anchor_of(reason)}"


def data_card(d: dict) -> str:
    """The data card section body."""
    ds, fspec = d["dataset"], d["filter_spec"]
    total, stages, reasons = funnel(d["funnel"].to_pylist())
    kept = total - sum(reasons.values())
    facts = [
        {"": "dataset", "value": f"{ds['name']}@{ds['version']} ({ds['modality']})"},
        {"": "samples in the version", "value": ds["n_samples"]},
        {"": "inputs met by its runs", "value": total},
        {"": "kept / dropped", "value": f"{kept} / {sum(reasons.values())}"},
        {"": "dataset id", "value": ds["dataset_id"]},
        {"": "made by run", "value": ds["run_id"]},
        {"": "created (UTC)", "value": str(ds["created_at"])[:19]},
        {"": "shards", "value": ds["shards_uri"] or "(none)"},
        {"": "manifest", "value": ds["manifest_uri"]},
    ]
    if ds.get("parent_id"):
        facts.append({"": "derived from", "value": ds["parent_id"]})
    return render(
        "data_card.html.j2", ds=ds, facts=facts, runs=[_run_row(r) for r in d["runs"].to_pylist()],
        stages=[{"stage": "input", "in": total, "dropped": 0, "out": total, "reasons": ""}, *stages,
                {"stage": "kept", "in": kept, "dropped": 0, "out": kept, "reasons": ""}],
        reasons=_reason_rows(reasons, total),
        filter_spec=[{"setting": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else v}
                     for k, v in sorted(fspec.items())],
        models_used=_models_used(d), **lineage(d))


def _run_row(r: dict) -> dict:
    return {"run_id": r["run_id"], "flow": r["flow"], "status": r["status"], "source": r["source"],
            "started": str(r["started_at"])[:19], "finished": str(r["finished_at"] or "")[:19],
            "code": r["code_version"]}


def _reason_rows(reasons: Counter, total: int) -> list[dict]:
    return [{"drop_reason": link(f"#{reason_link(k)}", k), "samples": v,
             "share": f"{v / total:.1%}" if total else "", "meaning": DROP_REASONS.get(k, "")}
            for k, v in reasons.most_common()]


def _models_used(d: dict) -> list[dict]:
    rows, fspec, clip = [], d["filter_spec"], d.get("clip")
    if clip:
        filt = clip.get("filter_model")
        where = f"warehouse model {filt['model_id'][:8]} ({filt['objective']}, trained on {filt['trained_on']})" \
            if filt else "external"
        rows.append({"role": "CLIP scoring", "model": clip["model"], "version / weights": clip["pretrained"],
                     "note": f"{where}; threshold {clip['threshold']:.4f} ({clip['rule']})"
                     if clip["threshold"] is not None else where})
    if fspec.get("whisper_model"):
        t = d.get("transcripts")
        compute = sorted({r.get("model") for r in t.to_pylist()}) if t is not None else []
        rows.append({"role": "transcription", "model": f"faster-whisper {fspec['whisper_model']}",
                     "version / weights": ", ".join(c for c in compute if c) or fspec["whisper_model"],
                     "note": f"task {fspec.get('task')}, beam {fspec.get('beam_size')}, vad {fspec.get('vad')}"})
    for r in sorted(d["stage_versions"].to_pylist(), key=lambda r: stage_rank(r["stage"])):
        rows.append({"role": f"stage {r['stage']}", "model": "", "version / weights": f"v{r['stage_version']}",
                     "note": f"{r['decided']} decided, {r['kept']} kept"})
    return rows


def lineage(d: dict) -> dict:
    """run -> dataset -> models -> evals: the counts of the chain, a row per model, derived versions."""
    models = d["models"].to_pylist()
    evals = d["evals"].to_pylist()
    per_model = Counter(e["model_id"] for e in evals)
    rows = [{"model": m["model_id"][:8], "objective": m["objective"], "status": m["status"],
             "training run": m["run_id"], "evals": per_model.get(m["model_id"], 0),
             "eval runs": ", ".join(sorted({e["run_id"] for e in evals if e["model_id"] == m["model_id"]}))}
            for m in models]
    return {"n_models": len(models), "n_evals": len(evals), "lineage": rows, "children": d["children"].to_pylist()}
