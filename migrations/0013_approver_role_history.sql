-- 0013: what a reviewer's right to approve depends on besides the role (the security review found an
-- admin who demoted itself to reviewer, approved, and was restored; and reviewers made after a request
-- approving it). `role_since`: when the account got its current role (0: before this migration);
-- `admin_until`: when it last stopped being an admin (0: never, as far as the appliance knows).
ALTER TABLE users ADD COLUMN role_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN admin_until BIGINT NOT NULL DEFAULT 0;
