"""Threshold and filter-model sweeps: which samples a setting keeps, which setting wins, and its plot.

DataComp's lesson: judge a curation choice by the model trained on its output at fixed compute.
A setting only selects from scores already stored, so a sweep never rescores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from mmpipe.models.names import TINY_CLIP


@dataclass(frozen=True)
class Setting:
    """One curation choice: a CLIP filter model and a rule (min_clip_score or keep_fraction)."""

    model: str
    pretrained: str
    rule: str
    value: float

    def __post_init__(self) -> None:
        if self.rule not in ("min_clip_score", "keep_fraction"):
            raise ValueError(f"unknown rule {self.rule!r}: min_clip_score or keep_fraction")
        if self.rule == "keep_fraction" and not 0 < self.value <= 1:
            raise ValueError("keep fractions are in (0, 1]")

    @property
    def label(self) -> str:
        return f"{self.rule}={self.value:g}"

    def select(self, candidates: list[tuple[str, float]]) -> list[str]:
        """The sample ids this setting keeps, from (sample id, score) pairs (order kept)."""
        scored = [(s, v) for s, v in candidates if v is not None and not math.isnan(v)]
        if self.rule == "min_clip_score":
            return [s for s, v in scored if v >= self.value]
        k = max(1, round(self.value * len(scored)))
        threshold = sorted((v for _, v in scored), reverse=True)[k - 1] if scored else math.inf
        return [s for s, v in scored if v >= threshold]

    def filter_spec(self, parent: str, excluded: str) -> dict:
        """The filter_spec of the version this setting derives from the pool `parent`, without `excluded`."""
        return {"clip_model": self.model, "clip_pretrained": self.pretrained, self.rule: self.value, "parent": parent,
                "excluded": excluded}

    def row(self, dataset: dict) -> dict:
        """This setting's row of the sweep's table, for the dataset version it derived."""
        return {"setting": self.label, "model": self.model, "rule": self.rule, "value": self.value,
                "version": dataset["version"], "dataset_id": dataset["dataset_id"], "n_samples": dataset["n_samples"]}


@dataclass(frozen=True)
class SweepRequest:
    """sweep_flow's parameters (all but the home), with its defaults: what defines a sweep run.
    clip_models: [[model, pretrained], ...] (one scored pool each); each rule value is one setting."""

    source: str
    name: str
    eval_dataset: str
    min_clip_scores: list[float] | None = None
    keep_fractions: list[float] | None = None
    clip_models: list[list[str | None]] | None = None
    objective: str = "contrastive"
    samples_seen: int = 9600
    model_name: str = TINY_CLIP
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    metric: str = "mean_R@5"
    curate: dict | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.min_clip_scores and not self.keep_fractions:
            raise ValueError("give the settings to sweep: min_clip_scores and/or keep_fractions")

    def params(self) -> dict:
        """The run's parameters as the runs table stores them (and a resume matches)."""
        return asdict(self)

    def filter_models(self) -> list[list[str | None]]:
        """The [model, pretrained] pairs to score pools with (the tiny CLIP, untrained, when none given)."""
        return self.clip_models or [[TINY_CLIP, None]]

    def train_recipe(self, home: str, eval_dataset: str) -> dict:
        """Every setting's training flow arguments but the dataset: the same recipe and evaluation set."""
        return {"home": home, "samples": self.samples_seen, "batch_size": self.batch_size, "lr": self.lr,
                "seed": self.seed, "device": self.device, "eval_dataset": eval_dataset,
                **({"model_name": self.model_name} if self.objective == "contrastive" else {})}


def settings_of(model: str, pretrained: str, min_clip_scores: list[float] | None,
                keep_fractions: list[float] | None) -> list[Setting]:
    """One setting per rule value, all on the pool scored by `model` + `pretrained`."""
    return ([Setting(model, pretrained, "min_clip_score", v) for v in min_clip_scores or []]
            + [Setting(model, pretrained, "keep_fraction", v) for v in keep_fractions or []])


def with_models(rows: list[dict], trained: dict[str, dict], recipes: dict[str, dict], columns: tuple[str, ...]
                ) -> list[dict]:
    """Each row with the model trained on its dataset version ({dataset_id: a training flow's result}):
    its id, metrics, whether it was reused, and the recipe `columns` as the models table stores them."""
    out = []
    for row in rows:
        t = trained[row["dataset_id"]]
        model = {"model_id": t["model_id"], "metrics": t["evals"]["metrics"], "reused": t["reused"]}
        out.append({**row, **model, **{k: recipes[t["model_id"]].get(k) for k in columns}})
    return out


def choose(results: list[dict], metric: str, n_eval: int | None = None, lower_is_better: bool = False
           ) -> tuple[dict, str]:
    """The chosen setting and the reason in words, by the one-standard-error rule: among the settings
    whose `metric` is within one standard error of the best, the one that keeps the most samples
    (filtering away less for no measurable gain). For a metric in [0, 1] measured on `n_eval`
    evaluation pairs the standard error is that of a proportion, sqrt(p (1 - p) / n); otherwise
    (or without n_eval) the best metric wins, an exact tie going to the larger dataset. The best is the
    highest, or the lowest with `lower_is_better` (an error rate such as WER)."""
    sign = -1 if lower_is_better else 1
    ranked = sorted(results, key=lambda r: (-sign * r["metrics"][metric], r["n_samples"]))
    top = ranked[0]
    p = top["metrics"][metric]
    se = math.sqrt(p * (1 - p) / n_eval) if n_eval and 0 <= p <= 1 else 0.0
    close = [r for r in ranked if sign * (r["metrics"][metric] - p) >= -se]
    best = max(close, key=lambda r: (r["n_samples"], sign * r["metrics"][metric]))
    seen = f"on the fixed evaluation set at {best['samples_seen']} samples seen"
    if best is top:
        runner_up = ranked[1] if len(ranked) > 1 else None
        margin = f", {p - runner_up['metrics'][metric]:+.4f} over {runner_up['setting']}" if runner_up else ""
        within = f" (no setting keeping more samples within one standard error, {se:.4f})" if se else ""
        return best, f"{'lowest' if lower_is_better else 'highest'} {metric} {p:.4f} {seen}{margin}{within}"
    return best, (f"{metric} {best['metrics'][metric]:.4f} {seen}, within one standard error ({se:.4f} on {n_eval} "
                  f"evaluation pairs) of the {'lowest' if lower_is_better else 'highest'}, {p:.4f} "
                  f"({top['setting']}), keeping the most samples ({best['n_samples']} vs {top['n_samples']})")


def plot_png(results: list[dict], metric: str, chosen: str | None = None, chance: float | None = None) -> bytes:
    """The metric against the setting as PNG bytes: one line per filter model and rule, no filtering
    (keep fraction 1) as a dashed level when other settings are thresholds, each point labelled with its
    sample count, the chosen version starred (matplotlib, Agg)."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    unfiltered = [r for r in results if r["rule"] == "keep_fraction" and r["value"] >= 1.0]
    thresholds = any(r["rule"] != "keep_fraction" for r in results)
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if thresholds and r in unfiltered:
            continue
        groups.setdefault((r["model"], r["rule"]), []).append(r)
    for (model, rule), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r["value"])
        xs, ys = [r["value"] for r in rows], [r["metrics"][metric] for r in rows]
        ax.plot(xs, ys, marker="o", label=f"{rule} ({model})")
        for r in rows:
            ax.annotate(f"{r['n_samples']}", (r["value"], r["metrics"][metric]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7)
        for r in rows:
            if r["version"] == chosen:
                ax.plot([r["value"]], [r["metrics"][metric]], marker="*", markersize=16, color="crimson",
                        linestyle="none", label=f"chosen ({r['setting']})")
    if thresholds:
        for r in unfiltered:
            ax.axhline(r["metrics"][metric], color="dimgrey", linestyle="--",
                       label=f"no filtering ({r['n_samples']} samples)" + (" - chosen" if r["version"] == chosen else ""))
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", label="chance")
    rules = {rule for _, rule in groups}
    ax.set_xlabel(rules.pop() if len(rules) == 1 else "setting (threshold or keep fraction)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by filter setting (same recipe, same samples seen)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def plot(results: list[dict], metric: str, path: str | Path, chance: float | None = None,
         chosen: str | None = None) -> Path:
    """`plot_png` written to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(plot_png(results, metric, chosen, chance))
    return path


THRESHOLD_RULES = ("min_clip_score", "min_avg_logprob", "max_no_speech_prob", "max_wer")


def results_of(settings: list[dict], metric: str) -> list[dict]:
    """Sweep results (as `plot_png` takes them) from stored rows: version, filter_spec, n_samples, value."""
    out = []
    for r in settings:
        spec = r["filter_spec"]
        rule = next((k for k in THRESHOLD_RULES if spec.get(k) is not None), "keep_fraction")
        value = float(spec.get(rule) if spec.get(rule) is not None else 1.0)
        model = spec.get("clip_model") or spec.get("whisper_model") or ""
        out.append({"setting": f"{rule}={value:g}", "model": model, "rule": rule,
                    "value": value, "version": r["version"], "n_samples": r["n_samples"], "metrics": {metric: r["value"]}})
    return out
