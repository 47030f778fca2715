-- 0015: the sign-in throttle in the database (security review, medium finding 3), so that every console
-- process on one database counts the same failures and the same checks in flight. A row is an attempt
-- under one key (`user:NAME` or `addr:ADDRESS`): `checking` while its password is being checked (it
-- expires on its own if the process dies), then `failed` for the throttle's window, or deleted.
CREATE TABLE sign_in_attempts (
    id         TEXT PRIMARY KEY,
    key        TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('checking', 'failed')),
    at         BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sign_in_attempts_key ON sign_in_attempts (key, state, at);
