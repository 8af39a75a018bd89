-- The mmpipe warehouse: DuckLake tables (Parquet data files under <home>/lake/data, a catalog beside).
-- Names and columns are the users' interface: columns are only ever added. Keys are enforced by the
-- writer (MERGE on the key; DuckLake has no primary keys). Run inside one transaction by Warehouse.

CREATE SCHEMA IF NOT EXISTS mmpipe_internal;
CREATE TABLE IF NOT EXISTS mmpipe_internal.meta (key VARCHAR, value VARCHAR);

CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR, flow VARCHAR, flow_run_id VARCHAR, params JSON, code_version VARCHAR,
    status VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, warnings JSON
);
CREATE TABLE IF NOT EXISTS samples (
    sample_id VARCHAR, modality VARCHAR, source VARCHAR, source_key VARCHAR, uri VARCHAR,
    content_sha256 VARCHAR, text VARCHAR, width INTEGER, height INTEGER, format VARCHAR,
    duration_s DOUBLE, sample_rate INTEGER, phash BIGINT, first_run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS occurrences (
    run_id VARCHAR, ordinal BIGINT, sample_id VARCHAR, source VARCHAR, source_key VARCHAR, uri VARCHAR
);
CREATE TABLE IF NOT EXISTS decisions (
    sample_id VARCHAR, run_id VARCHAR, stage VARCHAR, stage_version VARCHAR, score DOUBLE,
    keep BOOLEAN, drop_reason VARCHAR, detail VARCHAR
);
CREATE TABLE IF NOT EXISTS clip_scores (
    sample_id VARCHAR, model VARCHAR, pretrained VARCHAR, score DOUBLE, run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS clip_embeddings (
    sample_id VARCHAR, model VARCHAR, pretrained VARCHAR, dim INTEGER,
    image_embedding BLOB, text_embedding BLOB, run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS transcripts (
    sample_id VARCHAR, model VARCHAR, compute_type VARCHAR, task VARCHAR, language VARCHAR,
    language_probability DOUBLE, text VARCHAR, segments JSON, avg_logprob DOUBLE,
    no_speech_prob DOUBLE, compression_ratio DOUBLE, wer DOUBLE, cer DOUBLE, run_id VARCHAR,
    options JSON, options_key VARCHAR
);
CREATE TABLE IF NOT EXISTS datasets (
    dataset_id VARCHAR, name VARCHAR, version VARCHAR, modality VARCHAR, filter_spec JSON,
    n_samples BIGINT, manifest_uri VARCHAR, shards_uri VARCHAR, run_id VARCHAR, created_at TIMESTAMP,
    parent_id VARCHAR, val_ids_uri VARCHAR
);
CREATE TABLE IF NOT EXISTS models (
    model_id VARCHAR, objective VARCHAR, dataset_id VARCHAR, config JSON,
    checkpoint_uri VARCHAR, run_id VARCHAR, created_at TIMESTAMP, code_version VARCHAR, status VARCHAR
);
CREATE TABLE IF NOT EXISTS evals (
    model_id VARCHAR, metric VARCHAR, value DOUBLE, split VARCHAR, run_id VARCHAR, created_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS thumbnails (
    sample_id VARCHAR, run_id VARCHAR, role VARCHAR, mime VARCHAR, data BLOB, width INTEGER, height INTEGER
);
CREATE TABLE IF NOT EXISTS dataset_tags (
    name VARCHAR, tag VARCHAR, version VARCHAR, reason VARCHAR, run_id VARCHAR, created_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS train_steps (
    model_id VARCHAR, step BIGINT, samples_seen BIGINT, metric VARCHAR, value DOUBLE, run_id VARCHAR
);

-- A run's samples rows wait here until the run settles (set-based, first sighting wins), so a shard's
-- write never reads `samples`; and the ledger of committed batches that makes a rerun a no-op.
CREATE TABLE IF NOT EXISTS mmpipe_internal.sightings (
    sample_id VARCHAR, modality VARCHAR, source VARCHAR, source_key VARCHAR, uri VARCHAR,
    content_sha256 VARCHAR, text VARCHAR, width INTEGER, height INTEGER, format VARCHAR,
    duration_s DOUBLE, sample_rate INTEGER, phash BIGINT, first_run_id VARCHAR, run_id VARCHAR, ordinal BIGINT
);
CREATE TABLE IF NOT EXISTS mmpipe_internal.batches (
    run_id VARCHAR, batch_key VARCHAR, committed_at TIMESTAMP, counts JSON
);
CREATE TABLE IF NOT EXISTS mmpipe_internal.run_leases (
    lease_key VARCHAR, owner VARCHAR, flow VARCHAR, run_id VARCHAR, claimed_at TIMESTAMP, renewed_at TIMESTAMP,
    expires_at TIMESTAMP
);

-- A run's rows live in their own files: a write or a per-run read opens only that run's partition.
ALTER TABLE occurrences SET PARTITIONED BY (run_id);
ALTER TABLE decisions SET PARTITIONED BY (run_id);
ALTER TABLE thumbnails SET PARTITIONED BY (run_id);
ALTER TABLE clip_scores SET PARTITIONED BY (run_id);
ALTER TABLE clip_embeddings SET PARTITIONED BY (run_id);
ALTER TABLE transcripts SET PARTITIONED BY (run_id);
ALTER TABLE mmpipe_internal.sightings SET PARTITIONED BY (run_id);
ALTER TABLE mmpipe_internal.batches SET PARTITIONED BY (run_id);

COMMENT ON TABLE runs IS 'One row per flow run; status running -> completed | completed_with_warnings | failed | cancelled';
COMMENT ON COLUMN runs.run_id IS 'Run id (flow-YYYYmmdd-HHMMSS-xxxxxx); a rerun of an unfinished run keeps it';
COMMENT ON COLUMN runs.flow IS 'Flow name: ingest, curate, transcribe, bootstrap-filter, train-*, evaluate, sweep';
COMMENT ON COLUMN runs.flow_run_id IS 'The Prefect flow run id';
COMMENT ON COLUMN runs.params IS 'The flow parameters (JSON); equal params reopen an unfinished run';
COMMENT ON COLUMN runs.code_version IS 'mmpipe version + git commit';
COMMENT ON COLUMN runs.status IS 'running, completed, completed_with_warnings, failed or cancelled';
COMMENT ON COLUMN runs.started_at IS 'UTC';
COMMENT ON COLUMN runs.finished_at IS 'UTC; null while running';
COMMENT ON COLUMN runs.warnings IS 'What went wrong without failing the run (JSON list), e.g. a shard that broke off';

COMMENT ON TABLE samples IS 'One row per distinct sample (content): first sighting wins';
COMMENT ON COLUMN samples.sample_id IS 'sha256 over the media bytes and the text';
COMMENT ON COLUMN samples.modality IS 'image or audio';
COMMENT ON COLUMN samples.source IS 'Dataset name of the run that first met it';
COMMENT ON COLUMN samples.source_key IS 'Where it was first met: file path, tar/key, table:row, url';
COMMENT ON COLUMN samples.uri IS 'The path or URL the bytes came from (as the user gave it)';
COMMENT ON COLUMN samples.content_sha256 IS 'sha256 of the media bytes alone (exact-duplicate key)';
COMMENT ON COLUMN samples.text IS 'Caption, or reference transcript for audio';
COMMENT ON COLUMN samples.width IS 'Pixels, after EXIF orientation';
COMMENT ON COLUMN samples.height IS 'Pixels, after EXIF orientation';
COMMENT ON COLUMN samples.format IS 'Decoded format (jpeg, png, webp, avif ... / flac, wav, mp3 ...)';
COMMENT ON COLUMN samples.duration_s IS 'Audio duration in seconds';
COMMENT ON COLUMN samples.sample_rate IS 'Audio sample rate before resampling to 16 kHz';
COMMENT ON COLUMN samples.phash IS '64-bit perceptual hash (near-duplicate key), signed';
COMMENT ON COLUMN samples.first_run_id IS 'The run that first met the sample';

COMMENT ON TABLE occurrences IS 'One row per input a run met; the same pair met twice is one sample, two occurrences';
COMMENT ON COLUMN occurrences.run_id IS 'The run';
COMMENT ON COLUMN occurrences.ordinal IS 'First-seen order in the run: shard index * 2^32 + position';
COMMENT ON COLUMN occurrences.sample_id IS 'The sample met';
COMMENT ON COLUMN occurrences.source IS 'Dataset name of the run';
COMMENT ON COLUMN occurrences.source_key IS 'Where: file path, tar/key, table:row, url';
COMMENT ON COLUMN occurrences.uri IS 'The path or URL of the bytes';

COMMENT ON TABLE decisions IS 'One row per (sample, run, stage) the stage evaluated';
COMMENT ON COLUMN decisions.sample_id IS 'The sample';
COMMENT ON COLUMN decisions.run_id IS 'The run';
COMMENT ON COLUMN decisions.stage IS 'decode, basic, dedup, clip_filter, asr_quality, semantic_dedup ...';
COMMENT ON COLUMN decisions.stage_version IS 'Version of the stage logic';
COMMENT ON COLUMN decisions.score IS 'The stage score where it has one (CLIP score, ASR avg logprob)';
COMMENT ON COLUMN decisions.keep IS 'True when the stage kept the sample';
COMMENT ON COLUMN decisions.drop_reason IS 'A fixed vocabulary (mmpipe tables lists it); null when kept';
COMMENT ON COLUMN decisions.detail IS 'Ids, thresholds, statuses behind the reason';

COMMENT ON TABLE clip_scores IS 'CLIP score per (sample, model, pretrained): computed once, reused by every run';
COMMENT ON COLUMN clip_scores.sample_id IS 'The sample';
COMMENT ON COLUMN clip_scores.model IS 'open_clip model name';
COMMENT ON COLUMN clip_scores.pretrained IS 'open_clip pretrained tag or checkpoint path';
COMMENT ON COLUMN clip_scores.score IS 'Cosine similarity of the normalized image and text embeddings';
COMMENT ON COLUMN clip_scores.run_id IS 'The run that computed it';

COMMENT ON TABLE clip_embeddings IS 'Normalized CLIP embeddings beside the scores (little-endian float16 bytes)';
COMMENT ON COLUMN clip_embeddings.sample_id IS 'The sample';
COMMENT ON COLUMN clip_embeddings.model IS 'open_clip model name';
COMMENT ON COLUMN clip_embeddings.pretrained IS 'open_clip pretrained tag or checkpoint path';
COMMENT ON COLUMN clip_embeddings.dim IS 'Embedding width';
COMMENT ON COLUMN clip_embeddings.image_embedding IS 'float16 x dim, little-endian';
COMMENT ON COLUMN clip_embeddings.text_embedding IS 'float16 x dim, little-endian';
COMMENT ON COLUMN clip_embeddings.run_id IS 'The run that computed it';

COMMENT ON TABLE transcripts IS 'Whisper transcript per (sample, model, compute type, decoding options)';
COMMENT ON COLUMN transcripts.sample_id IS 'The clip';
COMMENT ON COLUMN transcripts.model IS 'faster-whisper model (size name or folder)';
COMMENT ON COLUMN transcripts.compute_type IS 'CTranslate2 compute type (float16, int8 ...)';
COMMENT ON COLUMN transcripts.task IS 'transcribe or translate';
COMMENT ON COLUMN transcripts.language IS 'Language decoded in';
COMMENT ON COLUMN transcripts.language_probability IS 'Detection probability (1.0 when given or English-only)';
COMMENT ON COLUMN transcripts.text IS 'The transcript';
COMMENT ON COLUMN transcripts.segments IS 'JSON list of {start, end, text}, seconds in the original clip';
COMMENT ON COLUMN transcripts.avg_logprob IS 'Token-weighted average log-probability';
COMMENT ON COLUMN transcripts.no_speech_prob IS 'Whisper no-speech probability (mean over segments)';
COMMENT ON COLUMN transcripts.compression_ratio IS 'gzip compression ratio of the text (repetition signal)';
COMMENT ON COLUMN transcripts.wer IS 'Word error rate against the reference, after Whisper''s English normalizer';
COMMENT ON COLUMN transcripts.cer IS 'Character error rate against the reference';
COMMENT ON COLUMN transcripts.run_id IS 'The run that transcribed it';
COMMENT ON COLUMN transcripts.options IS 'Every decoding option that changes the text (JSON)';
COMMENT ON COLUMN transcripts.options_key IS 'Short hash of options: the reuse key';

COMMENT ON TABLE datasets IS 'One row per dataset version (a curated, transcribed or exported set)';
COMMENT ON COLUMN datasets.dataset_id IS 'Stable id of the version';
COMMENT ON COLUMN datasets.name IS 'Dataset name';
COMMENT ON COLUMN datasets.version IS 'v1, v2, ...';
COMMENT ON COLUMN datasets.modality IS 'image or audio';
COMMENT ON COLUMN datasets.filter_spec IS 'Every filter setting that made it (JSON)';
COMMENT ON COLUMN datasets.n_samples IS 'Samples in its shards';
COMMENT ON COLUMN datasets.manifest_uri IS 'Parquet manifest, relative to the home';
COMMENT ON COLUMN datasets.shards_uri IS 'WebDataset shards (brace pattern), relative to the home';
COMMENT ON COLUMN datasets.run_id IS 'The run that made it';
COMMENT ON COLUMN datasets.created_at IS 'UTC';
COMMENT ON COLUMN datasets.parent_id IS 'The dataset version it was derived from (subsets, sweeps), if any';
COMMENT ON COLUMN datasets.val_ids_uri IS 'Parquet of the sample ids held out for validation, relative to the home';

COMMENT ON TABLE models IS 'One row per trained model';
COMMENT ON COLUMN models.model_id IS 'Stable id';
COMMENT ON COLUMN models.objective IS 'contrastive, masked or diffusion';
COMMENT ON COLUMN models.dataset_id IS 'The dataset version it was trained on';
COMMENT ON COLUMN models.config IS 'Training and model config (JSON)';
COMMENT ON COLUMN models.checkpoint_uri IS 'Checkpoint file or folder, relative to the home';
COMMENT ON COLUMN models.run_id IS 'The training run';
COMMENT ON COLUMN models.created_at IS 'UTC';
COMMENT ON COLUMN models.code_version IS 'mmpipe version + git commit';
COMMENT ON COLUMN models.status IS 'training or trained';

COMMENT ON TABLE evals IS 'One row per (model, metric, split, run)';
COMMENT ON COLUMN evals.model_id IS 'The model';
COMMENT ON COLUMN evals.metric IS 'e.g. i2t_R@5, t2i_R@1, zero_shot_acc, masked_token_acc, conditioning_gap';
COMMENT ON COLUMN evals.value IS 'The value';
COMMENT ON COLUMN evals.split IS 'Where it was measured (val, train, a named eval set)';
COMMENT ON COLUMN evals.run_id IS 'The run that measured it';
COMMENT ON COLUMN evals.created_at IS 'UTC';

COMMENT ON TABLE thumbnails IS 'Small previews of some samples of each run (kept, dropped per reason, borderline, duplicates), for reports';
COMMENT ON COLUMN thumbnails.sample_id IS 'The sample';
COMMENT ON COLUMN thumbnails.run_id IS 'The run that kept the preview';
COMMENT ON COLUMN thumbnails.role IS 'Why it was kept: kept, dropped, borderline, duplicate';
COMMENT ON COLUMN thumbnails.mime IS 'image/jpeg (at most 160 px) or audio/flac (at most 10 s, 16 kHz mono)';
COMMENT ON COLUMN thumbnails.data IS 'The preview bytes';
COMMENT ON COLUMN thumbnails.width IS 'Pixels (images)';
COMMENT ON COLUMN thumbnails.height IS 'Pixels (images)';

COMMENT ON TABLE dataset_tags IS 'Named pointers to dataset versions (NAME@TAG), e.g. the best setting of a sweep';
COMMENT ON COLUMN dataset_tags.name IS 'Dataset name';
COMMENT ON COLUMN dataset_tags.tag IS 'Tag, used as NAME@TAG wherever a dataset version is named';
COMMENT ON COLUMN dataset_tags.version IS 'The version it points to';
COMMENT ON COLUMN dataset_tags.reason IS 'Why it points there';
COMMENT ON COLUMN dataset_tags.run_id IS 'The run that set it';
COMMENT ON COLUMN dataset_tags.created_at IS 'UTC';

COMMENT ON TABLE train_steps IS 'Per-step training metrics';
COMMENT ON COLUMN train_steps.model_id IS 'The model being trained';
COMMENT ON COLUMN train_steps.step IS 'Optimizer step';
COMMENT ON COLUMN train_steps.samples_seen IS 'Training samples consumed so far';
COMMENT ON COLUMN train_steps.metric IS 'Loss name, lr, logit_scale ...';
COMMENT ON COLUMN train_steps.value IS 'The value';
COMMENT ON COLUMN train_steps.run_id IS 'The training run';
