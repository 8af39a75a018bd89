-- mmpipe warehouse catalog. Parquet files under tables/<name>/run_id=<id>/ hold the rows;
-- DuckDB holds this catalog and the views users query (views.sql and the generated table views).

-- Every committed Parquet file: written under a temp name, renamed, then registered here.
CREATE TABLE IF NOT EXISTS _files (
    table_name  VARCHAR NOT NULL,
    path        VARCHAR NOT NULL,   -- relative to the warehouse home
    run_id      VARCHAR,
    n_rows      BIGINT,
    written_at  TIMESTAMP
);

CREATE TABLE IF NOT EXISTS _meta (key VARCHAR PRIMARY KEY, value VARCHAR);

-- The typed shape of each user-facing table. These stay empty: the view of the same name
-- (without the _schema_ prefix) unions them with the registered Parquet files.

-- One row per flow run; status moves running -> completed | failed (latest row wins).
-- warnings: what went wrong without failing the run (a shard that broke off), as a JSON list.
CREATE TABLE IF NOT EXISTS _schema_runs (
    run_id VARCHAR, flow VARCHAR, flow_run_id VARCHAR, params JSON, code_version VARCHAR,
    status VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, warnings JSON
);
ALTER TABLE _schema_runs ADD COLUMN IF NOT EXISTS warnings JSON;

-- One row per input occurrence a run met (where it saw a sample); ordinal = first seen order.
-- The same pair met twice is one sample with two occurrences; the repeat's outcome is `duplicate`.
CREATE TABLE IF NOT EXISTS _schema_occurrences (
    run_id VARCHAR, ordinal BIGINT, sample_id VARCHAR, source VARCHAR, source_key VARCHAR, uri VARCHAR
);

-- One row per distinct sample (sha256 of content bytes + text); first sighting wins.
CREATE TABLE IF NOT EXISTS _schema_samples (
    sample_id VARCHAR, modality VARCHAR, source VARCHAR, source_key VARCHAR, uri VARCHAR,
    content_sha256 VARCHAR, text VARCHAR, width INTEGER, height INTEGER, format VARCHAR,
    duration_s DOUBLE, sample_rate INTEGER, phash BIGINT, first_run_id VARCHAR
);

-- One row per (sample, run, stage) that the stage evaluated.
-- drop_reason is a fixed vocabulary (README); ids, thresholds and statuses go to detail.
CREATE TABLE IF NOT EXISTS _schema_decisions (
    sample_id VARCHAR, run_id VARCHAR, stage VARCHAR, stage_version VARCHAR, score DOUBLE,
    keep BOOLEAN, drop_reason VARCHAR, detail VARCHAR
);
ALTER TABLE _schema_decisions ADD COLUMN IF NOT EXISTS detail VARCHAR;

CREATE TABLE IF NOT EXISTS _schema_clip_scores (
    sample_id VARCHAR, model VARCHAR, pretrained VARCHAR, score DOUBLE, run_id VARCHAR
);

-- CLIP embeddings beside the scores: float16 vectors as little-endian bytes.
CREATE TABLE IF NOT EXISTS _schema_clip_embeddings (
    sample_id VARCHAR, model VARCHAR, pretrained VARCHAR, dim INTEGER,
    image_embedding BLOB, text_embedding BLOB, run_id VARCHAR
);

-- options: every decoding option that changes the text; options_key is its short hash (reuse key).
CREATE TABLE IF NOT EXISTS _schema_transcripts (
    sample_id VARCHAR, model VARCHAR, compute_type VARCHAR, task VARCHAR, language VARCHAR,
    language_probability DOUBLE, text VARCHAR, segments JSON, avg_logprob DOUBLE,
    no_speech_prob DOUBLE, compression_ratio DOUBLE, wer DOUBLE, cer DOUBLE, run_id VARCHAR,
    options JSON, options_key VARCHAR
);
ALTER TABLE _schema_transcripts ADD COLUMN IF NOT EXISTS options JSON;
ALTER TABLE _schema_transcripts ADD COLUMN IF NOT EXISTS options_key VARCHAR;

CREATE TABLE IF NOT EXISTS _schema_datasets (
    dataset_id VARCHAR, name VARCHAR, version VARCHAR, modality VARCHAR, filter_spec JSON,
    n_samples BIGINT, manifest_uri VARCHAR, shards_uri VARCHAR, run_id VARCHAR,
    created_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS _schema_models (
    model_id VARCHAR, objective VARCHAR, dataset_id VARCHAR, config JSON,
    checkpoint_uri VARCHAR, run_id VARCHAR, created_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS _schema_evals (
    model_id VARCHAR, metric VARCHAR, value DOUBLE, split VARCHAR, run_id VARCHAR,
    created_at TIMESTAMP
);
