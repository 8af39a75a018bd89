-- Derived views over the tables. Created after the table views; names are part of the interface.

-- The final outcome of every input occurrence of each run: kept, or the stage that dropped it.
-- A sample met again in the same run (same bytes and text) is dropped as `duplicate` at its repeat.
CREATE OR REPLACE VIEW outcomes AS
WITH per_sample AS (
    SELECT sample_id, run_id,
           bool_and(keep) AS keep,
           max(drop_reason) FILTER (WHERE NOT keep) AS drop_reason,
           max(stage) FILTER (WHERE NOT keep) AS drop_stage,
           max(detail) FILTER (WHERE NOT keep) AS detail
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
       CASE WHEN o.ordinal > o.first_ordinal THEN 'duplicate' ELSE p.drop_reason END AS drop_reason,
       CASE WHEN o.ordinal > o.first_ordinal THEN 'dedup' ELSE p.drop_stage END AS drop_stage,
       CASE WHEN o.ordinal > o.first_ordinal THEN 'repeat of ' || o.first_key ELSE p.detail END AS detail
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
