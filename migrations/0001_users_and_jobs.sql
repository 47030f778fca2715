-- 0001: accounts and the job queue, the two tables the foundation needs.

-- Accounts. Roles are a closed set checked here as well as in code, so a hand-edited row cannot
-- invent a role. `must_change_password` is set for accounts created with a one-time password.
CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    username             TEXT NOT NULL UNIQUE,
    role                 TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'reviewer', 'auditor')),
    password_hash        TEXT NOT NULL,
    must_change_password BIGINT NOT NULL DEFAULT 0,
    disabled             BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- The job queue. A worker claims a queued job atomically (one UPDATE … RETURNING; on PostgreSQL with
-- FOR UPDATE SKIP LOCKED), then heartbeats; a running job whose heartbeat lapses is handed back.
-- `attempts` counts claims, so a job that kills every worker that takes it ends failed, not looping.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    args         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress     DOUBLE PRECISION NOT NULL DEFAULT 0,
    message      TEXT,
    owner        TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL DEFAULT 3,
    result       TEXT,
    error        TEXT,
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    claimed_at   BIGINT,
    heartbeat_at BIGINT,
    finished_at  BIGINT
);

-- Claimers scan queued jobs oldest first; the reaper scans running jobs by heartbeat.
CREATE INDEX jobs_state_created ON jobs (state, created_at, id);
CREATE INDEX jobs_state_heartbeat ON jobs (state, heartbeat_at);
