-- 0004: memorization audits of training runs.

-- One row per audit of a run's checkpoint. `report` is the figures (JSON, no corpus text and no secret
-- values: safe to show to anyone who may see the run); the evidence a reviewer needs (generations beside
-- their corpus source, secret findings) is a sealed file, `evidence_file`, relative to the data directory,
-- sealed with the run's data key. `checkpoint_sha256` names exactly which weights were audited, so a
-- later checkpoint never inherits an earlier audit. `params` is the resolved audit configuration.
CREATE TABLE audits (
    id                TEXT PRIMARY KEY,
    run_id            TEXT NOT NULL REFERENCES runs (id),
    checkpoint_step   BIGINT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    quick             BIGINT NOT NULL DEFAULT 0,
    params            TEXT NOT NULL,
    report            TEXT,
    evidence_file     TEXT,
    evidence_sha256   TEXT,
    error             TEXT,
    created_by        TEXT,
    created_at        BIGINT NOT NULL,
    finished_at       BIGINT
);

CREATE INDEX audits_by_run ON audits (run_id, created_at);
