"""Example queries the CLI and the run summaries show users (SQL stays in this package)."""

from __future__ import annotations

DROP_REASONS = "SELECT drop_reason, count(*) AS n FROM decisions GROUP BY 1 ORDER BY 2 DESC"
DROPPED_FILES = ("SELECT s.source_key, o.drop_stage, o.drop_reason FROM outcomes o JOIN samples s "
                 "USING (sample_id) WHERE NOT o.keep LIMIT 20")
DATASETS = "SELECT name, version, n_samples, shards_uri FROM datasets"
TRANSCRIPTS = ("SELECT s.source_key, t.text, round(t.wer, 3) AS wer FROM transcripts t JOIN samples s "
               "USING (sample_id)")


def run_reasons(run_id: str) -> str:
    """Why one run kept or dropped its samples."""
    return f"SELECT drop_reason, count(*) FROM outcomes WHERE run_id = '{run_id}' GROUP BY 1"
