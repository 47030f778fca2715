-- 0007: release requests and their reviews.

-- A request to release one run, made under one audit, one gate decision and one policy (by hash). Its
-- state moves requested → approved → released, or to rejected (a reviewer said no) or void (a newer audit
-- or another policy made it stale); every move is a conditional UPDATE from the expected state, so two
-- processes can never both make it. At most one request per run is open or released at a time.
CREATE TABLE releases (
    id                 TEXT PRIMARY KEY,
    run_id             TEXT NOT NULL REFERENCES runs (id),
    audit_id           TEXT NOT NULL REFERENCES audits (id),
    gate_id            TEXT NOT NULL REFERENCES gate_decisions (id),
    gate_passed        BIGINT NOT NULL,
    policy_sha256      TEXT NOT NULL,
    required_approvals BIGINT NOT NULL,
    approver_role      TEXT NOT NULL,
    waiver             TEXT,
    state              TEXT NOT NULL CHECK (state IN ('requested', 'approved', 'released', 'rejected', 'void')),
    reason             TEXT,
    requested_by       TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    released_at        BIGINT
);

CREATE UNIQUE INDEX releases_one_open_per_run ON releases (run_id)
    WHERE state IN ('requested', 'approved', 'released');

-- One review per user per request: an approval or a rejection, with the reviewer's comment.
CREATE TABLE release_reviews (
    release_id TEXT NOT NULL REFERENCES releases (id),
    username   TEXT NOT NULL,
    role       TEXT NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (release_id, username)
);
