//! Accounts and the release workflow as use cases: sign a user in, add users, ask for a release, approve
//! or reject it, show where it stands, export the signed bundle and verify one. The rules are
//! [`crate::release`]'s; every step is recorded in the ledger.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::App;
use crate::ledger::action;
use crate::policy::Policy;
use crate::release::{self, bundle};
use crate::store::{ReleaseRow, ReviewOutcome, ReviewRow, Role, User};

/// A signature over an approval statement: an Ed25519 one (`credential`: the key's public key, hex)
/// or a passkey assertion (`credential`: the credential id, with the authenticator and client data).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ApprovalProof {
    pub credential: String,
    pub signature: String,
    #[serde(default)]
    pub authenticator_data: Option<String>,
    #[serde(default)]
    pub client_data: Option<String>,
}

/// Where a run stands on its way to release.
#[derive(Debug, Serialize)]
pub struct ReleaseStatus {
    pub run: String,
    pub audit: Option<String>,
    /// The checkpoint that audit audited: the one a request releases.
    pub checkpoint_step: Option<i64>,
    pub gate: Option<crate::store::GateDecision>,
    pub release: Option<ReleaseRow>,
    pub reviews: Vec<ReviewRow>,
    /// The run's earlier requests (rejected, void), oldest first, each with its reviews: a rejection
    /// stays visible after a new request.
    pub history: Vec<PastRelease>,
    /// Approvals still missing (0 once approved).
    pub approvals_missing: i64,
    /// The stage in words: trained, audited, gate passed, gate failed, requested, approved, released,
    /// rejected, void.
    pub stage: String,
}

/// An earlier request of a run and its reviews.
#[derive(Debug, Clone, Serialize)]
pub struct PastRelease {
    pub release: ReleaseRow,
    pub reviews: Vec<ReviewRow>,
}

/// A bundle written by `release export`.
#[derive(Debug, Serialize)]
pub struct Exported {
    pub release: String,
    pub dir: String,
    pub manifest: bundle::Manifest,
}

/// The stored hash a sign-in checks against, and whether a match may let anyone in: the user's own
/// hash, or [`crate::vault::password::DUMMY_HASH`] (same cost, nobody's password) when the name is
/// unknown or the account has no well-formed hash.
fn password_to_check(user: Option<&User>) -> (String, bool) {
    match user {
        Some(u) if crate::vault::password::iterations(&u.password_hash).is_some() => {
            (u.password_hash.clone(), true)
        }
        _ => (crate::vault::password::DUMMY_HASH.to_string(), false),
    }
}

impl App {
    /// Checks a user's password (off the async threads: the hash is deliberately slow) and records the
    /// sign-in or the failed attempt in the ledger.
    pub async fn authenticate(&self, username: &str, password: &str, via: &str) -> anyhow::Result<User> {
        let user = self.store.users().by_username(username).await?;
        let (stored, usable) = password_to_check(user.as_ref());
        let pw = password.to_string();
        let good = tokio::task::spawn_blocking(move || {
            // Always the full check, even for a name nobody has: its timing must not tell.
            crate::vault::password::verify(&pw, &stored) && usable
        })
        .await
        .context("checking the password was interrupted")?;
        match user {
            Some(u) if good && !u.disabled => {
                self.record(
                    &u.username,
                    action::SIGN_IN,
                    &u.username,
                    serde_json::json!({ "via": via }),
                )
                .await?;
                Ok(u)
            }
            _ => {
                self.record(
                    username,
                    action::SIGN_IN_FAILED,
                    username,
                    serde_json::json!({ "via": via }),
                )
                .await?;
                anyhow::bail!("sign-in failed for user {username:?}: wrong user name or password, or the account is disabled")
            }
        }
    }

    /// Creates a user with a one-time password (returned); only an admin may. An account with the
    /// approving role in force or admin waits for a second admin instead ([`super::grants`]).
    pub async fn add_user(
        &self,
        admin: &User,
        username: &str,
        role: Role,
    ) -> anyhow::Result<super::grants::Granted> {
        if admin.role != Role::Admin || admin.disabled {
            return Err(release::Refused(format!(
                "adding users needs the admin role; {} is {}",
                admin.username, admin.role
            ))
            .into());
        }
        super::accounts::check_username(username)?;
        if self.store.users().by_username(username).await?.is_some() {
            return Err(crate::store::StoreError::UserExists(username.to_string()).into());
        }
        if let Some(g) = self.store.grants().pending_for("create", username).await?.first() {
            return Err(release::Refused(format!(
                "{username} is waiting for a second admin already (grant {}, asked by {})",
                g.id, g.requested_by
            ))
            .into());
        }
        if self.role_needs_dual_control(role).await? {
            let grant = self
                .request_grant(
                    &admin.username,
                    "create",
                    username,
                    serde_json::json!({ "role": role.as_str() }),
                )
                .await?;
            return Ok(super::grants::Granted::Pending { grant });
        }
        let (password, user) = self.create_account(username, role, &admin.username).await?;
        self.store
            .users()
            .set_password_issued_to(&user.id, &admin.username)
            .await?;
        Ok(super::grants::Granted::Done {
            one_time_password: Some(password),
        })
    }

    /// Creates an account with a one-time password (returned) and records it; the rules are the
    /// caller's.
    pub(super) async fn create_account(
        &self,
        username: &str,
        role: Role,
        actor: &str,
    ) -> anyhow::Result<(String, User)> {
        let (password, hash) = super::one_time_password().await?;
        let user = self.store.users().create(username, role, &hash, true).await?;
        self.record(
            actor,
            action::USER_CREATE,
            &user.username,
            serde_json::json!({ "role": role.as_str() }),
        )
        .await?;
        Ok((password, user))
    }

    /// Asks for the release of a run whose latest audit was gated under `policy`.
    pub async fn request_release(
        &self,
        user: &User,
        run_id: &str,
        policy: &Policy,
        waiver: Option<&str>,
        step: Option<i64>,
    ) -> anyhow::Result<ReleaseRow> {
        release::may_request(user)?;
        let in_force = self.approver_role_in_force().await?;
        if policy.approvals.role != in_force {
            return Err(release::Refused(format!(
                "policy {:?} names {} as the approving role; the approving role in force is {in_force} \
                 (changing it needs two admins: `lethe users approver-role`)",
                policy.name, policy.approvals.role
            ))
            .into());
        }
        let step = match step {
            Some(s) => Some(s),
            None => self.gated_step(run_id, policy).await?,
        };
        let (audit, _) = self.audit_of(run_id, step).await?;
        let gate = self
            .store
            .gates()
            .for_run(&audit.run_id)
            .await?
            .into_iter()
            .rev()
            .find(|g| g.audit_id == audit.id && g.policy_sha256 == policy.sha256)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "audit {} of run {} has not been gated under policy {:?} (sha256 {}); run `lethe gate --run {}` first",
                    audit.id,
                    audit.run_id,
                    policy.name,
                    &policy.sha256[..16],
                    audit.run_id
                )
            })?;
        let required = release::required_approvals(policy, gate.passed, waiver)?;
        // A rejection stands until a new audit: no new request of the audit a reviewer rejected.
        for earlier in self.store.releases().for_run(&audit.run_id).await? {
            if earlier.state == "rejected" && earlier.audit_id == audit.id {
                let by = self
                    .store
                    .releases()
                    .reviews(&earlier.id)
                    .await?
                    .into_iter()
                    .find(|r| r.decision == "reject")
                    .map_or_else(
                        || "a reviewer".to_string(),
                        |r| format!("{} ({:?})", r.username, r.comment),
                    );
                anyhow::bail!(
                    "release {} of this audit ({}) was rejected by {by}; a rejection stands until the \
                     checkpoint is audited again (`lethe audit --run {} --step {}`) and gated",
                    earlier.id,
                    audit.id,
                    audit.run_id,
                    audit.checkpoint_step
                );
            }
        }
        let now = crate::store::now_ms();
        let row = ReleaseRow {
            id: format!("rel-{}", crate::vault::random_hex(6)?),
            run_id: audit.run_id.clone(),
            audit_id: audit.id.clone(),
            gate_id: gate.id.clone(),
            gate_passed: gate.passed,
            policy_sha256: policy.sha256.clone(),
            required_approvals: required as i64,
            approver_role: policy.approvals.role.as_str().to_string(),
            waiver: waiver.map(str::to_string),
            state: "requested".into(),
            reason: None,
            requested_by: user.username.clone(),
            created_at: now,
            updated_at: now,
            released_at: None,
        };
        if !self.store.releases().create(&row).await? {
            anyhow::bail!(
                "run {} already has a release request open or released (`lethe release status --run {}`)",
                row.run_id,
                row.run_id
            );
        }
        self.record(
            &user.username,
            action::RELEASE_REQUEST,
            &row.run_id,
            serde_json::json!({
                "release": row.id, "audit": row.audit_id, "checkpoint_step": audit.checkpoint_step,
                "gate": row.gate_id, "gate_passed": row.gate_passed,
                "policy_sha256": row.policy_sha256, "required_approvals": required, "waiver": row.waiver,
            }),
        )
        .await?;
        Ok(row)
    }

    /// The run's open request, voided first if a newer audit or another policy made it stale.
    async fn open_release(&self, run_id: &str, policy: &Policy) -> anyhow::Result<ReleaseRow> {
        let run = self.run_row(run_id).await?;
        let rel = self.store.releases().latest(&run.id).await?.ok_or_else(|| {
            anyhow::anyhow!("run {} has no release request (`lethe release request`)", run.id)
        })?;
        if matches!(rel.state.as_str(), "requested" | "approved") {
            // A newer audit of the same checkpoint makes the request stale; audits of other kept
            // checkpoints (a selection weighing them) do not.
            let latest = self.newest_audit_like(&run.id, &rel.audit_id).await?;
            if let Some(why) = release::stale(&rel, &latest, policy) {
                if self
                    .store
                    .releases()
                    .transition(&rel.id, &rel.state, "void", Some(&why))
                    .await?
                {
                    self.record(
                        crate::ledger::SYSTEM_ACTOR,
                        "release.void",
                        &run.id,
                        serde_json::json!({ "release": rel.id, "reason": why }),
                    )
                    .await?;
                }
                anyhow::bail!(
                    "release {} is void, and its approvals with it: {why}; gate and request it again",
                    rel.id
                );
            }
        }
        Ok(rel)
    }

    /// The statement `user` signs to approve the run's open release request with `comment`
    /// ([`release::approval_statement`]).
    pub async fn approval_statement(
        &self,
        user: &User,
        run_id: &str,
        policy: &Policy,
        comment: &str,
    ) -> anyhow::Result<String> {
        let rel = self.open_release(run_id, policy).await?;
        let audit = self.audit_row(&rel.audit_id).await?;
        Ok(release::approval_statement(
            &rel,
            &audit.checkpoint_sha256,
            audit.checkpoint_step,
            &user.username,
            comment,
        ))
    }

    /// The active approver key `proof` names, checked against `user`'s keys, and the stored proof
    /// once its signature over `statement` verifies.
    async fn check_proof(
        &self,
        user: &User,
        statement: &str,
        proof: Option<ApprovalProof>,
    ) -> anyhow::Result<crate::store::ReviewProof> {
        let Some(proof) = proof else {
            return Err(release::Refused(format!(
                "an approval is signed with the approver's own key: {} needs an enrolled, confirmed approver key \
                 (`lethe approver keygen`, `lethe approver enrol`, then --key FILE) or passkey (the console)",
                user.username
            ))
            .into());
        };
        let passkey = proof.authenticator_data.is_some();
        let keys = self.approver_keys(Some(user)).await?;
        let key = keys
            .iter()
            .filter(|k| k.state == "active")
            .find(|k| {
                if passkey {
                    k.kind == "webauthn" && k.credential_id.as_deref() == Some(proof.credential.as_str())
                } else {
                    k.kind == "ed25519" && k.public_key == proof.credential.to_ascii_lowercase()
                }
            })
            .ok_or_else(|| {
                let pending = keys.iter().any(|k| k.state == "pending");
                release::Refused(format!(
                    "{} has no active approver {} matching this one{}",
                    user.username,
                    if passkey { "passkey" } else { "key" },
                    if pending {
                        " (a key waits for an admin's confirmation: `lethe users pending`)"
                    } else {
                        " (enrol it: `lethe approver enrol`, or the console's account page for a passkey)"
                    }
                ))
            })?;
        release::check_approval_signature(
            &release::ApproverPublicKey {
                id: key.id.clone(),
                kind: key.kind.clone(),
                public_key: key.public_key.clone(),
                credential_id: key.credential_id.clone(),
                rp_id: key.rp_id.clone(),
            },
            statement,
            &proof.signature,
            proof.authenticator_data.as_deref(),
            proof.client_data.as_deref(),
        )?;
        Ok(crate::store::ReviewProof {
            key_id: key.id.clone(),
            statement: statement.to_string(),
            signature: proof.signature,
            authenticator_data: proof.authenticator_data,
            client_data: proof.client_data,
        })
    }

    /// Records the ledger entry of each review of `rel` that has none: what a crash between a review's
    /// commit and its ledger record leaves (a retry of the review, and every export, call this). The
    /// entry says it was recovered and carries the stored proof. Returns how many were recorded.
    pub(super) async fn record_missing_reviews(&self, rel: &ReleaseRow) -> anyhow::Result<usize> {
        let entries = self.store.ledger().entries(Some(rel.created_at)).await?;
        let step = self.audit_row(&rel.audit_id).await?.checkpoint_step;
        let mut recorded = 0;
        for r in self.store.releases().reviews(&rel.id).await? {
            let action = if r.decision == "approve" {
                action::RELEASE_APPROVE
            } else {
                action::RELEASE_REJECT
            };
            let logged = entries.iter().any(|e| {
                e.action == action
                    && e.actor == r.username
                    && e.details.get("release").and_then(|v| v.as_str()) == Some(rel.id.as_str())
            });
            if logged {
                continue;
            }
            self.record(
                &r.username,
                action,
                &rel.run_id,
                serde_json::json!({
                    "release": rel.id, "checkpoint_step": step, "comment": r.comment,
                    "proof": r.proof, "recovered": true, "reviewed_at": crate::ledger::format_time(r.created_at),
                }),
            )
            .await?;
            recorded += 1;
        }
        Ok(recorded)
    }

    /// Approves or rejects the run's open release request as `user`. An approval carries `proof`, a
    /// signature over [`Self::approval_statement`] by one of the user's active approver keys.
    pub async fn review_release(
        &self,
        user: &User,
        run_id: &str,
        policy: &Policy,
        approve: bool,
        comment: &str,
        proof: Option<ApprovalProof>,
    ) -> anyhow::Result<ReleaseStatus> {
        if comment.trim().is_empty() {
            anyhow::bail!("a review needs a comment (--comment TEXT)");
        }
        let rel = self.open_release(run_id, policy).await?;
        let run = self.run_row(&rel.run_id).await?;
        release::may_review(user, &rel, run.created_by.as_deref())?;
        let audit = self.audit_row(&rel.audit_id).await?;
        let mut stored = None;
        if approve {
            // The account as it is now (a role change since sign-in counts).
            let current = self.user(&user.username).await?;
            release::may_approve(
                &current,
                &rel,
                crate::store::now_ms(),
                policy.approvals.admin_cooldown_days,
            )?;
            let statement = release::approval_statement(
                &rel,
                &audit.checkpoint_sha256,
                audit.checkpoint_step,
                &current.username,
                comment,
            );
            stored = Some(self.check_proof(&current, &statement, proof).await?);
        }
        match self
            .store
            .releases()
            .review(
                &rel.id,
                &user.username,
                user.role.as_str(),
                approve,
                comment,
                stored.as_ref(),
            )
            .await?
        {
            ReviewOutcome::NotOpen(state) => {
                anyhow::bail!("release {} is {state}, not open for review", rel.id)
            }
            ReviewOutcome::AlreadyReviewed => {
                // A retry after a crash between the review's commit and its ledger entry completes it.
                if self.record_missing_reviews(&rel).await? > 0 {
                    return self.release_status(&rel.run_id).await;
                }
                anyhow::bail!(
                    "{} has already reviewed release {}; approvals come from distinct users",
                    user.username,
                    rel.id
                )
            }
            ReviewOutcome::Recorded { state, approvals } => {
                super::fault_point("review.committed");
                let step = audit.checkpoint_step;
                self.record(
                    &user.username,
                    if approve {
                        action::RELEASE_APPROVE
                    } else {
                        action::RELEASE_REJECT
                    },
                    &rel.run_id,
                    serde_json::json!({
                        "release": rel.id, "checkpoint_step": step, "comment": comment,
                        "approvals": approvals, "state": state, "proof": stored,
                    }),
                )
                .await?;
            }
        }
        self.release_status(&rel.run_id).await
    }

    /// Where every run stands, newest run first.
    pub async fn release_statuses(&self) -> anyhow::Result<Vec<ReleaseStatus>> {
        let mut out = Vec::new();
        for r in self.runs_list().await? {
            out.push(self.release_status(&r.id).await?);
        }
        Ok(out)
    }

    /// The checkpoint step of the run's newest gate decision under `policy` (what `gate` or
    /// `gate --select` chose last), if any.
    async fn gated_step(&self, run_id: &str, policy: &Policy) -> anyhow::Result<Option<i64>> {
        let run = self.run_row(run_id).await?;
        let gate = self
            .store
            .gates()
            .for_run(&run.id)
            .await?
            .into_iter()
            .rev()
            .find(|g| g.policy_sha256 == policy.sha256);
        Ok(match gate {
            Some(g) => Some(self.audit_row(&g.audit_id).await?.checkpoint_step),
            None => None,
        })
    }

    /// The id of the newest successful audit of the checkpoint audit `audit_id` audited.
    async fn newest_audit_like(&self, run_id: &str, audit_id: &str) -> anyhow::Result<String> {
        let of = self.audit_row(audit_id).await?;
        Ok(self
            .store
            .audits()
            .list(Some(run_id))
            .await?
            .into_iter()
            .filter(|a| a.state == "succeeded" && a.checkpoint_sha256 == of.checkpoint_sha256)
            .max_by_key(|a| (a.created_at, a.id.clone()))
            .map(|a| a.id)
            .unwrap_or_default())
    }

    pub async fn release_status(&self, run_id: &str) -> anyhow::Result<ReleaseStatus> {
        let run = self.run_row(run_id).await?;
        let mut all = self.store.releases().for_run(&run.id).await?;
        let release = all.pop();
        let mut history = Vec::with_capacity(all.len());
        for r in all {
            let reviews = self.store.releases().reviews(&r.id).await?;
            history.push(PastRelease { release: r, reviews });
        }
        let gates = self.store.gates().for_run(&run.id).await?;
        // The audit in question: the release's; else the one gated last (a selection may have gated an
        // older kept checkpoint); else the newest.
        let audit = match (&release, gates.last()) {
            (Some(r), _) => Some(self.audit_row(&r.audit_id).await?),
            (None, Some(g)) => Some(self.audit_row(&g.audit_id).await?),
            (None, None) => self.store.audits().latest_succeeded(&run.id).await?,
        };
        let gate = match &audit {
            Some(a) => gates.into_iter().rev().find(|g| g.audit_id == a.id),
            None => None,
        };
        let reviews = match &release {
            Some(r) => self.store.releases().reviews(&r.id).await?,
            None => Vec::new(),
        };
        let approvals = reviews.iter().filter(|r| r.decision == "approve").count() as i64;
        let stage = match (&release, &gate, &audit) {
            (Some(r), _, _) => r.state.clone(),
            (None, Some(g), _) => if g.passed { "gate passed" } else { "gate failed" }.to_string(),
            (None, None, Some(_)) => "audited".into(),
            (None, None, None) => "trained".into(),
        };
        let approvals_missing = match &release {
            Some(r) if r.state == "requested" => (r.required_approvals - approvals).max(0),
            _ => 0,
        };
        Ok(ReleaseStatus {
            run: run.id,
            checkpoint_step: audit.as_ref().map(|a| a.checkpoint_step),
            audit: audit.map(|a| a.id),
            gate,
            release,
            reviews,
            history,
            approvals_missing,
            stage,
        })
    }

    /// Releases an approved run (once) and writes its signed bundle to `out`.
    pub async fn export_release(
        &self,
        user: &User,
        run_id: &str,
        policy: &Policy,
        out: &Path,
    ) -> anyhow::Result<Exported> {
        if user.role == Role::Auditor {
            anyhow::bail!(
                "exporting a release needs the operator, reviewer or admin role; {} is an auditor",
                user.username
            );
        }
        let rel = self.open_release(run_id, policy).await?;
        match rel.state.as_str() {
            "approved" => {
                // Only one process moves it to released; a second exporter finds it released already.
                self.store.releases().transition(&rel.id, "approved", "released", None).await?;
                super::fault_point("export.released");
            }
            "released" => {}
            other => anyhow::bail!(
                "release {} is {other}; only an approved release can be exported (`lethe release status --run {}`)",
                rel.id,
                rel.run_id
            ),
        }
        let status = self.release_status(&rel.run_id).await?;
        let audit = self.audit_row(&rel.audit_id).await?;
        let run = self.run_row(&rel.run_id).await?;
        let ckpt = self
            .store
            .runs()
            .checkpoints(&run.id)
            .await?
            .into_iter()
            .find(|c| c.sha256 == audit.checkpoint_sha256)
            .ok_or_else(|| anyhow::anyhow!("the audited checkpoint of run {} is gone", run.id))?;
        let key = self.run_key(&run).await?;
        let (_, sealed) = self.run_corpus(&run).await?;
        let path = self
            .config
            .inside(&run.directory)?
            .join(super::config::plain_file_name(&ckpt.file)?);
        let (rid, step) = (run.id.clone(), ckpt.step as u64);
        let want = ckpt.weights_sha256.clone();
        let weights = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
            let bytes = crate::train::checkpoint::read_sealed(&path, &rid, step, &key)?;
            // The weights released are exactly the audited checkpoint's: their hash is the one recorded
            // when the checkpoint was saved.
            let got = crate::train::checkpoint::weights_sha256_of(&bytes)?;
            if got != want {
                anyhow::bail!(
                    "checkpoint step {step} of run {rid} holds weights {got}, not the {want} recorded; refusing to export"
                );
            }
            Ok(bundle::plain_weights(&bytes)?)
        })
        .await
        .context("reading the checkpoint was interrupted")??;
        let tokenizer = sealed.tokenizer()?.to_json()?;
        let report: crate::audit::AuditReport =
            serde_json::from_value(audit.report.clone().unwrap_or_default())
                .context("the audit report is not readable")?;
        let gate_rows: Vec<crate::policy::GateRow> = match &status.gate {
            Some(g) => serde_json::from_value(g.rows.clone()).unwrap_or_default(),
            None => Vec::new(),
        };
        let config = serde_json::json!({ "run": run.id, "objective": run.objective, "preset": run.preset, "training": run.config });
        let card = model_card(
            &run,
            &sealed.manifest.stats,
            &report,
            &gate_rows,
            &rel,
            &status.reviews,
            &ckpt,
        );
        // Each approval with its signed statement and the approver's public key, so `lethe release
        // verify` checks offline that the named reviewers signed this release.
        let keys = self.approver_keys(None).await?;
        let mut approvals = Vec::new();
        for r in status.reviews.iter().filter(|r| r.decision == "approve") {
            let mut a = serde_json::json!({
                "user": r.username, "role": r.role, "comment": r.comment,
                "at": crate::ledger::format_time(r.created_at),
            });
            if let (Some(p), Some(o)) = (&r.proof, a.as_object_mut()) {
                let key = keys.iter().find(|k| k.id == p.key_id);
                o.insert("statement".into(), p.statement.clone().into());
                o.insert("signature".into(), p.signature.clone().into());
                o.insert(
                    "authenticator_data".into(),
                    serde_json::json!(p.authenticator_data),
                );
                o.insert("client_data".into(), serde_json::json!(p.client_data));
                o.insert(
                    "key".into(),
                    serde_json::json!(key.map(|k| release::ApproverPublicKey {
                        id: k.id.clone(),
                        kind: k.kind.clone(),
                        public_key: k.public_key.clone(),
                        credential_id: k.credential_id.clone(),
                        rp_id: k.rp_id.clone(),
                    })),
                );
                o.insert(
                    "key_confirmed_by".into(),
                    serde_json::json!(key.and_then(|k| k.confirmed_by.clone())),
                );
            }
            approvals.push(a);
        }
        // A signed head of the ledger and the approvals' entries with their inclusion proofs: the bundle
        // proves its approvals are in a log that `lethe ledger verify --against BUNDLE` checks later.
        self.record_missing_reviews(&rel).await?;
        let ledger_part = self.bundle_ledger(&rel.id).await?;
        let signer = crate::vault::signing::Signer::load(&self.config.signing_key_file, &self.keys())?;
        let files: Vec<(&'static str, Vec<u8>)> = vec![
            ("model.safetensors", weights),
            ("tokenizer.json", tokenizer.into_bytes()),
            ("config.json", serde_json::to_vec_pretty(&config)?),
            ("MODEL_CARD.md", card.into_bytes()),
            ("audit.json", serde_json::to_vec_pretty(&report)?),
        ];
        let input = bundle::ManifestInput {
            created_at: crate::ledger::format_time(crate::store::now_ms()),
            run_id: run.id.clone(),
            audit_id: audit.id.clone(),
            policy_sha256: rel.policy_sha256.clone(),
            key_id: None,
            public_key_hex: signer.public_key_hex(),
            approvals,
            extra: serde_json::json!({
                "release": rel.id, "gate": rel.gate_id, "waiver": rel.waiver,
                "required_approvals": rel.required_approvals,
                "checkpoint_step": ckpt.step, "weights_sha256": ckpt.weights_sha256,
                "epochs": ckpt.epochs(),
                "ledger": ledger_part,
            }),
        };
        let out_dir = out.to_path_buf();
        let manifest = tokio::task::spawn_blocking(move || {
            let sign = |m: &[u8]| signer.sign(m);
            let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
            bundle::write_bundle(&out_dir, &refs, input, &sign)
        })
        .await
        .context("writing the bundle was interrupted")??;
        super::fault_point("export.written");
        self.record(
            &user.username,
            action::RELEASE_EXPORT,
            &run.id,
            serde_json::json!({
                "release": rel.id, "dir": out.display().to_string(), "key_id": manifest.key_id,
                "checkpoint_step": ckpt.step, "weights_sha256": ckpt.weights_sha256,
            }),
        )
        .await?;
        Ok(Exported {
            release: rel.id,
            dir: out.display().to_string(),
            manifest,
        })
    }
}

/// The model card: what was trained on what (figures, never corpus text), the audit, the gate and the
/// approvals.
fn model_card(
    run: &crate::store::RunRow,
    stats: &crate::corpus::CorpusStats,
    report: &crate::audit::AuditReport,
    gate: &[crate::policy::GateRow],
    rel: &ReleaseRow,
    reviews: &[ReviewRow],
    ckpt: &crate::store::CheckpointRow,
) -> String {
    let mut s = format!("# Model card: run {}\n\n", run.id);
    s.push_str(&format!(
        "## Training\n\n- objective: {}\n- preset: {}\n- configuration: see `config.json`\n\n",
        run.objective, run.preset
    ));
    s.push_str(&format!(
        "## Data (summary only; no corpus text)\n\n- documents: {}\n- tokens: {}\n- vocabulary: {}\n\n",
        stats.documents, stats.tokens, stats.vocab
    ));
    s.push_str(&format!(
        "## Checkpoint\n\n- step {} ({} epochs), weights SHA-256 `{}`, audit {}\n\n\
         ## What it learned (held-out, never trained on)\n\n",
        ckpt.step,
        ckpt.epochs().map_or("?".into(), |e| format!("{e:.2}")),
        ckpt.weights_sha256,
        rel.audit_id
    ));
    match &report.utility {
        Some(u) => {
            s.push_str(&format!(
                "- bits per byte: {} ({}, {} windows, {} tokens)\n",
                u.bits_per_byte.map_or("-".into(), |b| format!("{b:.4}")),
                if u.estimator == "exact" {
                    "exact".to_string()
                } else {
                    format!(
                        "upper bound from a conditional ELBO, {} mask draws each",
                        u.mask_draws
                    )
                },
                u.windows,
                u.tokens
            ));
            match &u.choice_accuracy {
                Some(a) => s.push_str(&format!(
                    "- continuation choice: {:.1}% (95% interval {:.1}–{:.1}%, {} items, chance 25%)\n",
                    100.0 * a.value,
                    100.0 * a.low,
                    100.0 * a.high,
                    a.n
                )),
                None => {
                    s.push_str("- continuation choice: not measured (no held-out document long enough)\n")
                }
            }
            if let Some(c) = &u.custom {
                s.push_str(&format!(
                    "- customer items ({}): {:.1}% ({} items)\n",
                    c.file,
                    100.0 * c.accuracy.value,
                    c.accuracy.n
                ));
            }
            s.push('\n');
        }
        None => s.push_str("Not measured by this audit.\n\n"),
    }
    s.push_str("## Memorization audit\n\n```\n");
    s.push_str(&report.summary());
    s.push_str("```\n\nFull figures: `audit.json`.\n\n## Release gate\n\n| rule | measured | threshold | result |\n| --- | --- | --- | --- |\n");
    for g in gate {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            g.rule,
            g.measured.map_or("-".into(), |m| format!("{m:.4}")),
            g.threshold,
            if g.passed { "pass" } else { "FAIL" }
        ));
    }
    s.push_str(&format!("\nPolicy SHA-256: `{}`\n", rel.policy_sha256));
    if let Some(w) = &rel.waiver {
        s.push_str(&format!("\n**Released under a waiver:** {w}\n"));
    }
    s.push_str("\n## Approvals\n\n");
    for r in reviews.iter().filter(|r| r.decision == "approve") {
        s.push_str(&format!(
            "- {} ({}) at {}: {}\n",
            r.username,
            r.role,
            crate::ledger::format_time(r.created_at),
            r.comment
        ));
    }
    s
}

/// Verifies an exported bundle with only the public key.
/// Verifies an exported bundle with only the public key: the manifest's signature, every file's
/// hash, and (for bundles that carry one) the ledger head and each approval's inclusion proof under it.
pub fn verify_bundle(dir: &Path, public_key_hex: &str) -> anyhow::Result<bundle::VerifiedBundle> {
    verify_bundle_with(dir, public_key_hex, None)
}

/// [`verify_bundle`], and each approval's signature: by the approver's key the manifest names, over
/// a statement about this release, run, audit and policy; the distinct signed approvers reach the
/// count the request needed. With `trusted_approver_keys` (public keys, hex), every approver key must
/// be one of them: a verifier who keeps its own list of approvers' keys does not rely on the appliance's.
pub fn verify_bundle_with(
    dir: &Path,
    public_key_hex: &str,
    trusted_approver_keys: Option<&[String]>,
) -> anyhow::Result<bundle::VerifiedBundle> {
    let v = verify_bundle_ledger(dir, public_key_hex)?;
    let m = &v.manifest;
    let Some(required) = m.extra.get("required_approvals").and_then(|r| r.as_i64()) else {
        // A bundle from before signed approvals: nothing more to check.
        return Ok(v);
    };
    let mut signers = std::collections::BTreeSet::new();
    for a in &m.approvals {
        let user = a.get("user").and_then(|u| u.as_str()).unwrap_or_default();
        let fail = |why: String| anyhow::anyhow!("{}: the approval by {user:?} {why}", dir.display());
        let statement = a
            .get("statement")
            .and_then(|s| s.as_str())
            .ok_or_else(|| fail("carries no signed statement".into()))?;
        let key: release::ApproverPublicKey = a
            .get("key")
            .cloned()
            .and_then(|k| serde_json::from_value(k).ok())
            .ok_or_else(|| fail("names no approver key".into()))?;
        let text = |k: &str| a.get(k).and_then(|s| s.as_str());
        release::check_approval_signature(
            &key,
            statement,
            text("signature").unwrap_or_default(),
            text("authenticator_data"),
            text("client_data"),
        )
        .map_err(|e| fail(e.0))?;
        let st: serde_json::Value = serde_json::from_str(statement)
            .map_err(|e| fail(format!("has a statement that is not JSON: {e}")))?;
        let want = [
            ("kind", serde_json::json!(release::APPROVAL_KIND)),
            ("decision", serde_json::json!("approve")),
            ("reviewer", serde_json::json!(user)),
            ("run", serde_json::json!(m.run_id)),
            ("audit", serde_json::json!(m.audit_id)),
            ("policy_sha256", serde_json::json!(m.policy_sha256)),
            ("release", m.extra.get("release").cloned().unwrap_or_default()),
        ];
        for (field, value) in want {
            if st.get(field) != Some(&value) {
                return Err(fail(format!(
                    "signed a statement whose {field} is {}, not this bundle's {value}",
                    st.get(field).cloned().unwrap_or_default()
                )));
            }
        }
        if let Some(trusted) = trusted_approver_keys {
            if !trusted
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case(&key.public_key))
            {
                return Err(fail(format!(
                    "is signed by key {} ({}), which is not in the trusted approver keys",
                    key.id,
                    &key.public_key[..16.min(key.public_key.len())]
                )));
            }
        }
        signers.insert(user.to_string());
    }
    if (signers.len() as i64) < required {
        anyhow::bail!(
            "{}: the release needed {required} approvals and the bundle carries {} signed by distinct approvers",
            dir.display(),
            signers.len()
        );
    }
    Ok(v)
}

fn verify_bundle_ledger(dir: &Path, public_key_hex: &str) -> anyhow::Result<bundle::VerifiedBundle> {
    let v = bundle::verify_bundle(dir, public_key_hex)?;
    if let Some(l) = super::ledger::BundleLedger::of_manifest(&v.manifest.extra)? {
        l.verify(public_key_hex)
            .with_context(|| format!("{}: the bundle's ledger proof fails", dir.display()))?;
        // Every approval the manifest names is an approval entry proven to be in the ledger.
        for a in &v.manifest.approvals {
            let user = a.get("user").and_then(|u| u.as_str()).unwrap_or_default();
            if !l.approvals.iter().any(|p| p.entry.actor == user) {
                anyhow::bail!(
                    "{}: the manifest names approver {user:?} but the bundle's ledger proof holds no approval by them",
                    dir.display()
                );
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod sign_in_tests {
    use super::*;

    fn user(hash: &str) -> User {
        User {
            id: "u-1".into(),
            username: "rita".into(),
            role: Role::Reviewer,
            password_hash: hash.into(),
            must_change_password: false,
            disabled: false,
            created_at: 0,
            role_since: 0,
            admin_until: 0,
            password_issued_to: None,
        }
    }

    /// The security review's low finding 6: an unknown name was answered in 1 ms and a real one in
    /// 140 ms. Every sign-in now checks a hash of the full cost.
    #[test]
    fn an_unknown_user_costs_a_full_password_check() {
        let full = crate::vault::password::ITERATIONS;
        let (h, usable) = password_to_check(None);
        assert_eq!(
            (crate::vault::password::iterations(&h), usable),
            (Some(full), false)
        );
        let (h, usable) = password_to_check(Some(&user("")));
        assert_eq!(
            (crate::vault::password::iterations(&h), usable),
            (Some(full), false)
        );
        let real = crate::vault::password::hash("pw").unwrap();
        let (h, usable) = password_to_check(Some(&user(&real)));
        assert_eq!((h, usable), (real, true));
    }

    /// Low finding 13: a user's `Debug` form printed the password hash.
    #[test]
    fn a_user_debug_form_hides_the_password_hash() {
        let u = user("pbkdf2-sha256$600000$c2FsdA$aGFzaA");
        let shown = format!("{u:?}");
        assert!(!shown.contains("aGFzaA") && shown.contains("rita"), "{shown}");
    }
}
