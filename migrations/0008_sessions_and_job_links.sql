-- 0008: console sessions, and the link from a run or an audit to the queued job that made it.

-- A signed-in browser or API client. The token itself is never stored: only its SHA-256 (hex), so a
-- copy of the database cannot be replayed as a session. `csrf` is the per-session token every
-- state-changing request must echo. Idle expiry moves with `last_seen_at`; `expires_at` is absolute.
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    csrf         TEXT NOT NULL,
    address      TEXT,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE INDEX sessions_by_user ON sessions (user_id);

-- Until now a worker recorded `job:<id>` as the creator of the run or audit it ran, and found the run to
-- resume by that name. That hid the person who queued the training, and separation of duties compares
-- reviewers with the trainer: the trainer must be the person, and the job is a link of its own.
ALTER TABLE runs ADD COLUMN job_id TEXT;
ALTER TABLE audits ADD COLUMN job_id TEXT;

CREATE INDEX runs_by_job ON runs (job_id);
CREATE INDEX audits_by_job ON audits (job_id);
