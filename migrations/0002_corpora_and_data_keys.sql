-- 0002: sealed corpora and the data keys that seal them.

-- Every data key Lethe makes (one per corpus, one per training run), stored only wrapped by the master
-- key. Rotation rewrites `wrapped` and the master key columns here and never touches a sealed file.
-- Deleting a row destroys the only copy of the key: the files it sealed become unreadable.
CREATE TABLE data_keys (
    id             TEXT PRIMARY KEY,
    purpose        TEXT NOT NULL,
    master_key_id  TEXT NOT NULL,
    master_version BIGINT NOT NULL,
    wrapped        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    rewrapped_at   BIGINT
);

-- A corpus is registered only once every sealed file is in place, so a row always means a complete
-- corpus. `stats` is the JSON summary shown by `corpus show` (counts and sizes, never corpus text).
CREATE TABLE corpora (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    data_key_id TEXT NOT NULL REFERENCES data_keys (id),
    directory   TEXT NOT NULL,
    documents   BIGINT NOT NULL,
    tokens      BIGINT NOT NULL,
    vocab       BIGINT NOT NULL,
    stats       TEXT NOT NULL,
    created_by  TEXT,
    created_at  BIGINT NOT NULL
);
