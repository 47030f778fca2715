-- 0009: growth past one machine. Workers say what they have, jobs say what they need, a job can wait for
-- a group of other jobs (the parts of a sharded audit before their merge), and a run has one writer.

-- Every `lethe worker` (and the server's own worker) registers here when it starts and refreshes
-- `seen_at` while it lives, so the console and `lethe workers list` show who can run what. A claim
-- passes the same figures, so a row here is for people, not a precondition of claiming.
CREATE TABLE workers (
    name         TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    -- CUDA devices libtorch sees (0 on a CPU-only host).
    gpus         BIGINT NOT NULL,
    -- Memory this worker may use: physical memory, or the cgroup limit when lower, or what the operator
    -- advertised with --memory-gb.
    memory_bytes BIGINT NOT NULL,
    -- JSON list of job kinds it runs.
    kinds        TEXT NOT NULL,
    version      TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    seen_at      BIGINT NOT NULL,
    stopped_at   BIGINT
);

-- What a job needs from the worker that claims it. 0 means "anything will do".
ALTER TABLE jobs ADD COLUMN needs_gpu BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN needs_memory_bytes BIGINT NOT NULL DEFAULT 0;
-- Jobs made by another job (the parts of a sharded audit) name it, and share a group: the audit id.
ALTER TABLE jobs ADD COLUMN parent_id TEXT;
ALTER TABLE jobs ADD COLUMN group_id TEXT;
-- A job with `after_group` is not claimed until every job of that group has succeeded (the merge step).
ALTER TABLE jobs ADD COLUMN after_group TEXT;

CREATE INDEX jobs_by_group ON jobs (group_id, state);
CREATE INDEX jobs_by_parent ON jobs (parent_id);

-- Named locks for files on shared storage that one process at a time may write: `run:<id>` while a
-- run trains (in the foreground or in a job). A holder renews `expires_at`; a lock past it may be taken.
CREATE TABLE locks (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
