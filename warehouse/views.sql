-- Derived views over the tables. Created after the table views; names are part of the interface.

-- The final outcome of every input occurrence of each run: kept, or the stage that dropped it.
-- A sample met again in the same run (same bytes and text) is dropped as `duplicate` at its repeat.
-- Were a sample ever dropped by two stages of a run, its reason, stage and detail come from one row:
-- the first such stage in pipeline order (stages not listed after those, by name).
CREATE OR REPLACE VIEW outcomes AS
WITH per_sample AS (
    SELECT sample_id, run_id, bool_and(keep) AS keep,
           arg_min({'reason': drop_reason, 'stage': stage, 'detail': detail},
                   (CASE stage WHEN 'decode' THEN 0 WHEN 'basic' THEN 1 WHEN 'dedup' THEN 2
                               WHEN 'clip_filter' THEN 3 WHEN 'transcribe' THEN 4 WHEN 'asr_quality' THEN 5
                               WHEN 'semantic_dedup' THEN 6 ELSE 7 END, stage))
               FILTER (WHERE NOT keep) AS dropped
    FROM decisions
    GROUP BY sample_id, run_id
), occ AS (
    SELECT run_id, ordinal, sample_id, source, source_key,
           first_value(ordinal) OVER w AS first_ordinal, first_value(source_key) OVER w AS first_key
    FROM occurrences
    WINDOW w AS (PARTITION BY run_id, sample_id ORDER BY ordinal)
)
SELECT o.run_id, o.sample_id, o.ordinal, o.source, o.source_key,
       CASE WHEN o.ordinal > o.first_ordinal THEN false ELSE p.keep END AS keep,
       CASE WHEN o.ordinal > o.first_ordinal THEN 'duplicate' ELSE p.dropped.reason END AS drop_reason,
       CASE WHEN o.ordinal > o.first_ordinal THEN 'dedup' ELSE p.dropped.stage END AS drop_stage,
       CASE WHEN o.ordinal > o.first_ordinal THEN 'repeat of ' || o.first_key ELSE p.dropped.detail END AS detail
FROM occ o LEFT JOIN per_sample p USING (sample_id, run_id);

-- Runs with their counts: ingested (occurrences met) = kept + dropped.
CREATE OR REPLACE VIEW run_summary AS
SELECT r.run_id, r.flow, r.status, r.started_at, r.finished_at,
       count(o.sample_id) AS ingested,
       count(o.sample_id) FILTER (WHERE o.keep) AS kept,
       count(o.sample_id) FILTER (WHERE NOT o.keep) AS dropped,
       coalesce(json_array_length(r.warnings), 0) AS warnings,
       json_extract_string(r.params, '$.name') AS name
FROM runs r LEFT JOIN outcomes o USING (run_id)
GROUP BY ALL;
