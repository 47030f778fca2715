-- 0006: the tamper-evident ledger.

-- Append-only: entries are inserted, never updated or deleted (there is no code path that does either).
-- Each entry's `hash` is SHA-256 over its canonical encoding, which includes `prev_hash`, the hash of the
-- entry before it; `seq` is dense from 1, and as the primary key it turns two concurrent appends of the
-- same seq into one success and one retry. `details` is canonical JSON. The encoding is in
-- src/ledger/chain.rs and docs/formats.md.
CREATE TABLE ledger_entries (
    seq       BIGINT PRIMARY KEY,
    at_ms     BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

CREATE INDEX ledger_entries_by_time ON ledger_entries (at_ms);

-- Signed checkpoints of the chain's head: Ed25519 (the appliance signing key) over the entry's seq, its
-- hash and the time. A re-hashed chain no longer matches the heads signed before it.
CREATE TABLE ledger_checkpoints (
    seq        BIGINT PRIMARY KEY,
    head_hash  TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL
);
