-- 0014: dual control and approvers' own credentials (security review, high finding 1).
--
-- `grants`: a change that makes someone able to approve (an account created with, or promoted to, the
-- approving role or admin; a password reset of such an account; an approver's credential; a change of
-- the approving role in force). It waits, `pending`, until an admin other than the one who asked (and
-- other than the account it concerns) confirms it; then it takes effect and is `confirmed`, or it is
-- `cancelled`. Both steps land in the ledger.
CREATE TABLE grants (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('create', 'role', 'reset', 'credential', 'approver_role')),
    target       TEXT NOT NULL,
    details      TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'cancelled')),
    decided_by   TEXT,
    decided_at   BIGINT
);

-- An approver's public keys: an Ed25519 key for the command line (the private key stays in the
-- reviewer's file) or a WebAuthn passkey (the private key stays in the authenticator). `pending` until
-- an admin confirms the enrolment, `revoked` by a password reset or by hand. A passkey also keeps its
-- credential id and the relying party (host name) it was made for.
CREATE TABLE approver_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL CHECK (kind IN ('ed25519', 'webauthn')),
    public_key    TEXT NOT NULL,
    credential_id TEXT,
    rp_id         TEXT,
    label         TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'active', 'revoked')),
    created_at    BIGINT NOT NULL,
    confirmed_by  TEXT,
    confirmed_at  BIGINT,
    revoked_at    BIGINT
);
CREATE UNIQUE INDEX approver_keys_public_key ON approver_keys (public_key);

-- Who received the account's last one-time password (the admin who confirmed its creation or reset, or
-- the host's operator); that admin may not confirm the account's credential.
ALTER TABLE users ADD COLUMN password_issued_to TEXT;

-- Settings that need dual control to change; `approver_role`: the only role a policy may name as
-- approving (absent: reviewer).
CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- An approval's proof: the statement the reviewer signed (canonical JSON), the key, and the signature;
-- for a passkey also the authenticator data and the client data the signature covers.
ALTER TABLE release_reviews ADD COLUMN key_id TEXT;
ALTER TABLE release_reviews ADD COLUMN statement TEXT;
ALTER TABLE release_reviews ADD COLUMN signature TEXT;
ALTER TABLE release_reviews ADD COLUMN authenticator_data TEXT;
ALTER TABLE release_reviews ADD COLUMN client_data TEXT;
