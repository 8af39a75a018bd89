-- Derived views over the tables. Created after the table views; names are part of the interface.

-- The final outcome of each sample in each run: the stage that dropped it, or kept.
CREATE OR REPLACE VIEW outcomes AS
SELECT sample_id, run_id,
       bool_and(keep) AS keep,
       max(drop_reason) FILTER (WHERE NOT keep) AS drop_reason,
       max(stage) FILTER (WHERE NOT keep) AS drop_stage
FROM decisions
GROUP BY sample_id, run_id;

-- Runs with their counts: ingested = kept + dropped.
CREATE OR REPLACE VIEW run_summary AS
SELECT r.run_id, r.flow, r.status, r.started_at, r.finished_at,
       count(o.sample_id) AS ingested,
       count(o.sample_id) FILTER (WHERE o.keep) AS kept,
       count(o.sample_id) FILTER (WHERE NOT o.keep) AS dropped,
       json_extract_string(r.params, '$.name') AS name
FROM runs r LEFT JOIN outcomes o USING (run_id)
GROUP BY ALL;
