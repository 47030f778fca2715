-- 0003: training runs, their metrics and their checkpoints.

-- A run trains one model on one corpus. Its checkpoints are sealed with the run's own data key
-- (`data_key_id`), so deleting a run's key destroys its weights. `config` is the full resolved training
-- configuration (model shape included) as JSON; `summary` is the latest figures for listings.
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    corpus_id   TEXT NOT NULL REFERENCES corpora (id),
    objective   TEXT NOT NULL CHECK (objective IN ('diffusion', 'ar')),
    preset      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('created', 'running', 'succeeded', 'failed', 'interrupted')),
    config      TEXT NOT NULL,
    data_key_id TEXT NOT NULL REFERENCES data_keys (id),
    directory   TEXT NOT NULL,
    step        BIGINT NOT NULL DEFAULT 0,
    total_steps BIGINT NOT NULL,
    summary     TEXT,
    error       TEXT,
    created_by  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    finished_at BIGINT
);

-- One row per logged step (`kind` = 'step') and per epoch end (`kind` = 'epoch', with validation loss).
CREATE TABLE run_metrics (
    run_id       TEXT NOT NULL REFERENCES runs (id),
    kind         TEXT NOT NULL CHECK (kind IN ('step', 'epoch')),
    step         BIGINT NOT NULL,
    epoch        BIGINT NOT NULL,
    train_loss   DOUBLE PRECISION,
    val_loss     DOUBLE PRECISION,
    lr           DOUBLE PRECISION,
    grad_norm    DOUBLE PRECISION,
    tokens_per_s DOUBLE PRECISION,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (run_id, kind, step)
);

-- Sealed checkpoints of a run, newest last. `sha256` is of the sealed file; `weights_sha256` of the
-- model tensors alone (what two runs compare to show they ended identical).
CREATE TABLE checkpoints (
    run_id         TEXT NOT NULL REFERENCES runs (id),
    step           BIGINT NOT NULL,
    file           TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    bytes          BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (run_id, step)
);
