"""Example queries the CLI and the run summaries show users (SQL stays in this package)."""

from __future__ import annotations

DROP_REASONS = "SELECT coalesce(drop_reason, 'kept') AS outcome, count(*) AS n FROM outcomes GROUP BY 1 ORDER BY 2 DESC"
DROPPED_FILES = ("SELECT source_key, drop_stage, drop_reason, detail FROM outcomes WHERE NOT keep LIMIT 20")
DATASETS = "SELECT name, version, n_samples, shards_uri FROM datasets"
TRANSCRIPTS = ("SELECT s.source_key, t.text, round(t.wer, 3) AS wer FROM transcripts t JOIN samples s "
               "USING (sample_id)")
BEST_SETTING = ("SELECT d.name || '@' || d.version AS dataset, d.filter_spec->>'min_clip_score' AS min_clip_score, "
                "m.objective, round(e.value, 3) AS mean_R5 FROM evals e JOIN models m USING (model_id) "
                "JOIN datasets d USING (dataset_id) WHERE e.metric = 'mean_R@5' ORDER BY e.value DESC")


def run_reasons(run_id: str) -> str:
    """Why one run kept or dropped its inputs."""
    return f"SELECT drop_reason, count(*) FROM outcomes WHERE run_id = '{run_id}' GROUP BY 1"


def run_drops(run_id: str) -> str:
    """What one run (e.g. a semantic dedup) dropped, and why."""
    return f"SELECT sample_id, detail FROM decisions WHERE run_id = '{run_id}' AND NOT keep"


def sweep_metrics(name: str, metric: str) -> str:
    """Each version a sweep derived for NAME, its filter spec and the model's metric."""
    return ("SELECT d.version, d.filter_spec, e.value FROM datasets d JOIN models m USING (dataset_id) "
            f"JOIN evals e USING (model_id) WHERE d.name = '{name}' AND e.metric = '{metric}'")
