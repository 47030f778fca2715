-- 0011: studies the appliance runs itself. A repetition study trains a sweep of runs on one corpus
-- (each epoch budget and objective its own run, on the same hash-selected unique tokens), evaluates
-- and audits each, and keeps the table of results here, so `lethe study show` and the console present
-- what the appliance measured without recomputing it.
--
-- `spec` is the request (JSON); `result` the measured points (JSON, figures only: no corpus text);
-- `state` moves running -> succeeded or failed.
CREATE TABLE studies (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    corpus_id   TEXT NOT NULL REFERENCES corpora (id),
    spec        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    result      TEXT,
    error       TEXT,
    created_by  TEXT,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT,
    job_id      TEXT
);
