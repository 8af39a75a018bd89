"""Assemble the report page of a dataset version from the plain data the warehouse hands over."""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mmpipe.report import plots
from mmpipe.report.card import data_card, funnel
from mmpipe.report.compare import compare_section
from mmpipe.report.galleries import borderline, dropped_galleries, duplicate_pairs, kept_gallery
from mmpipe.report.html import render
from mmpipe.report.media import audio_section, models_section


def write_report(inputs: dict, out_dir: str | os.PathLike, compare: dict | None = None) -> Path:
    """Write <out_dir>/index.html (self-contained: every image and clip inlined) and its plots as
    <out_dir>/plots/*.png; returns the page's path."""
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)

    def save(name: str, png: bytes) -> str:
        (out / "plots" / name).write_bytes(png)
        return ""

    html = build_html(inputs, save, compare)
    path = out / "index.html"
    tmp = path.with_name(".index.html.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


def build_html(d: dict, save, compare: dict | None = None) -> str:
    """The page as a string; `save(name, png)` keeps each plot beside it."""
    ds = d["dataset"]
    _, _, reasons = funnel(d["funnel"].to_pylist())
    previews = d["previews"].to_pylist()
    sections = [_section("card", "Data card", "Data card", data_card(d))]
    if ds["modality"] == "audio":
        sections.append(_section("audio", "Audio", "Audio", audio_section(d, reasons, save)))
    else:
        sections += [
            _section("scores", "CLIP scores", "CLIP scores", scores_section(d, save)),
            _section("kept", "Kept", "Kept examples", kept_gallery(previews)),
            _section("dropped", "Dropped", "Dropped examples per reason",
                     dropped_galleries(reasons, previews, d["dropped"].to_pylist())),
            _section("borderline", "Borderline", "Borderline pairs around the threshold",
                     borderline(previews, (d.get("clip") or {}).get("threshold"))),
            _section("duplicates", "Duplicates", "Near-duplicate pairs side by side",
                     duplicate_pairs(d["duplicates"].to_pylist(), previews))]
    if d.get("sweep"):
        sections.append(_section("sweep", "Sweep", "The sweep that chose this setting", sweep_section(d, save)))
    sections.append(_section("models", "Models", "Trained models", models_section(d, save)))
    if compare is not None:
        sections.append(_section("compare", "Compare", f"Compared with {compare['b']['name']}@{compare['b']['version']}",
                                 compare_section(compare, save)))
    title = f"{ds['name']}@{ds['version']}"
    return render("page.html.j2", title=f"mmpipe report {title}", name=title, ds=ds, home=d["home"],
                  now=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), sections=sections)


def _section(anchor: str, nav: str, title: str, body: str) -> dict:
    return {"anchor": anchor, "nav": nav, "title": title, "body": body}


def scores_section(d: dict, save) -> str:
    """Score histograms per source with the threshold, score quantiles, and the PCA of the embeddings."""
    clip = d.get("clip")
    if not clip:
        return render("scores.html.j2", clip=None, histogram=None, projection=None, quantiles=None)
    scores = d["scores"].to_pylist()
    groups: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for r in scores:
        groups[r["source"] or "?"][0].append(r["score"])
        groups[r["source"] or "?"][1].append(bool(r["keep"]))
    histogram = projection = quantiles = None
    if scores:
        histogram = plots.score_histograms(dict(groups), clip["threshold"], f"({clip['rule']})")
        save("clip_scores.png", histogram)
        values = np.asarray([r["score"] for r in scores], float)
        qs = {f"p{int(q * 100)}": float(np.quantile(values, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
        quantiles = {"scored": len(values), "min": float(values.min()), **qs, "max": float(values.max()),
                     "threshold": clip["threshold"]}
    emb = d["embeddings"].to_pylist()
    if len(emb) >= 3:
        vectors = np.stack([np.frombuffer(r["image_embedding"], dtype="<f2") for r in emb])
        points, explained = plots.pca_2d(vectors)
        labels = ["kept" if r["keep"] else (r["drop_reason"] or "dropped") for r in emb]
        projection = plots.projection(points, labels, explained,
                                      f"PCA of {len(emb)} stored image embeddings, coloured by outcome")
        save("embeddings_pca.png", projection)
    return render("scores.html.j2", clip=clip, histogram=histogram, projection=projection, quantiles=quantiles)


def sweep_section(d: dict, save) -> str:
    """The settings of the sweep that made this version: each version's samples and metric, the plot, the choice."""
    from mmpipe.sweep import plot_png, results_of

    sw = d["sweep"]
    metric, tag = sw["metric"], sw["tag"]
    results = results_of(sw["settings"], metric)
    chosen = tag["version"] if tag else None
    rows = [{"setting": r["setting"], "version": f"{d['dataset']['name']}@{r['version']}", "samples": r["n_samples"],
             metric: round(r["metrics"][metric], 4),
             "": "chosen" if r["version"] == chosen else ("this version" if r["version"] == d["dataset"]["version"]
                                                          else "")} for r in results]
    png = plot_png(results, metric, chosen)
    save("sweep.png", png)
    params = sw["params"]
    return render("sweep.html.j2", run_id=sw["run_id"], objective=params.get("objective", "contrastive"),
                  samples_seen=params.get("samples_seen"), eval_dataset=params.get("eval_dataset"), rows=rows,
                  png=png, metric=metric, tag=tag, chosen=chosen)
