-- 0005: gate decisions: an audit evaluated against a release policy.

-- One row per `lethe gate` evaluation. `policy_sha256` is the SHA-256 of the policy file's bytes, so a
-- decision names exactly the policy it was made under; `rows` is the per-rule table (JSON) the decision
-- came from. Decisions are never updated: a new audit or another policy makes a new decision.
CREATE TABLE gate_decisions (
    id            TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL REFERENCES runs (id),
    audit_id      TEXT NOT NULL REFERENCES audits (id),
    policy_name   TEXT NOT NULL,
    policy_sha256 TEXT NOT NULL,
    passed        BIGINT NOT NULL,
    rows          TEXT NOT NULL,
    created_by    TEXT,
    created_at    BIGINT NOT NULL
);

CREATE INDEX gate_decisions_by_run ON gate_decisions (run_id, created_at);
