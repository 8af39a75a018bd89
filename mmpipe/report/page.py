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
from mmpipe.report.html import esc, figure, page, section, table
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
    title = f"{ds['name']}@{ds['version']}"
    _, _, reasons = funnel(d["funnel"].to_pylist())
    previews = d["previews"].to_pylist()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>Data card: {esc(title)}</h1><p class=\"sub\">{esc(ds['modality'])} dataset, "
            f"{ds['n_samples']} samples · report made {now} from the warehouse at <code>{esc(d['home'])}</code></p>"]
    nav = [("card", "Data card")]
    body.append(section("card", "Data card", data_card(d)))
    if ds["modality"] == "audio":
        nav.append(("audio", "Audio"))
        body.append(section("audio", "Audio", audio_section(d, reasons, save)))
    else:
        nav.append(("scores", "CLIP scores"))
        body.append(section("scores", "CLIP scores", scores_section(d, save)))
        nav += [("kept", "Kept"), ("dropped", "Dropped"), ("borderline", "Borderline"), ("duplicates", "Duplicates")]
        body += [section("kept", "Kept examples", kept_gallery(previews)),
                 section("dropped", "Dropped examples per reason", dropped_galleries(
                     reasons, previews, d["dropped"].to_pylist())),
                 section("borderline", "Borderline pairs around the threshold",
                         borderline(previews, (d.get("clip") or {}).get("threshold"))),
                 section("duplicates", "Near-duplicate pairs side by side",
                         duplicate_pairs(d["duplicates"].to_pylist(), previews))]
    if d.get("sweep"):
        nav.append(("sweep", "Sweep"))
        body.append(section("sweep", "The sweep that chose this setting", sweep_section(d, save)))
    nav.append(("models", "Models"))
    body.append(section("models", "Trained models", models_section(d, save)))
    if compare is not None:
        nav.append(("compare", "Compare"))
        body.append(section("compare", f"Compared with {compare['b']['name']}@{compare['b']['version']}",
                            compare_section(compare, save)))
    return page(f"mmpipe report {title}", nav, "".join(body))


def scores_section(d: dict, save) -> str:
    """Score histograms per source with the threshold, score quantiles, and the PCA of the embeddings."""
    clip = d.get("clip")
    if not clip:
        return '<p class="none">this version was curated without CLIP scoring (<code>--clip-model none</code>)</p>'
    scores = d["scores"].to_pylist()
    groups: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for r in scores:
        groups[r["source"] or "?"][0].append(r["score"])
        groups[r["source"] or "?"][1].append(bool(r["keep"]))
    parts = []
    if scores:
        png = plots.score_histograms(dict(groups), clip["threshold"], f"({clip['rule']})")
        parts += [figure(png, f"CLIP scores ({clip['model']}, {clip['pretrained']}) per source; kept and dropped "
                         "stacked; the dashed line is the threshold", "CLIP score histogram"),
                  save("clip_scores.png", png)]
        values = np.asarray([r["score"] for r in scores], float)
        qs = {f"p{int(q * 100)}": float(np.quantile(values, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
        parts.append(table([{"scored": len(values), "min": float(values.min()), **qs, "max": float(values.max()),
                             "threshold": clip["threshold"]}]))
    emb = d["embeddings"].to_pylist()
    if len(emb) >= 3:
        vectors = np.stack([np.frombuffer(r["image_embedding"], dtype="<f2") for r in emb])
        points, explained = plots.pca_2d(vectors)
        labels = ["kept" if r["keep"] else (r["drop_reason"] or "dropped") for r in emb]
        png = plots.projection(points, labels, explained,
                               f"PCA of {len(emb)} stored image embeddings, coloured by outcome")
        parts += [figure(png, "2-D projection (PCA) of the stored CLIP image embeddings", "embedding projection"),
                  save("embeddings_pca.png", png)]
    return "".join(parts) or '<p class="none">no scores stored for this version\'s runs</p>'


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
    params = sw["params"]
    lead = (f"<p>Sweep run <code>{esc(sw['run_id'])}</code>: every setting derived from the same stored scores, the "
            f"same {esc(params.get('objective', 'contrastive'))} recipe for {esc(params.get('samples_seen'))} samples "
            f"seen, evaluated on <code>{esc(params.get('eval_dataset'))}</code>.</p>")
    choice = f"<p>Chosen: <b>{esc(chosen)}</b>, tagged <code>{esc(tag['tag'])}</code>: {esc(tag['reason'])}.</p>" \
        if tag else "<p>No setting tagged yet.</p>"
    return lead + table(rows) + figure(png, f"{metric} by filter setting", "sweep plot") + save("sweep.png", png) + choice
