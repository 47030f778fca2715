//! Dual control (security review, high finding 1): anything that makes someone able to approve, or able
//! to confirm such a change, waits for a second admin. That is creating or promoting an account to the
//! approving role in force or to admin (or enabling such an account again), resetting such an account's
//! password, an approver's credential, and changing the approving role in force. The request is a
//! pending grant; an enabled admin other than the one who asked, and other than the account concerned,
//! confirms it, and only then does it take effect. While the appliance has a single enabled admin there
//! is nobody to ask, so the host's operator (who holds the data directory and the master key, as for
//! `lethe users recover`) confirms from the host. Each step lands in the ledger.
//!
//! Approvers' credentials: an Ed25519 key the reviewer generates (`lethe approver keygen`) or a passkey
//! (WebAuthn) the console enrols. The appliance stores public keys only; a key is `pending` until
//! confirmed, and a password reset revokes every key of the account.

use anyhow::Context as _;

use super::{App, NotFound};
use crate::ledger::action;
use crate::release::Refused;
use crate::store::{ApproverKeyRow, GrantRow, NewApproverKey, Role, User};
use crate::vault::approver;

/// The setting that names the approving role in force.
const APPROVER_ROLE: &str = "approver_role";

/// What a change that may need dual control came to.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Granted {
    /// Done now; a new or reset account's one-time password (shown once).
    Done { one_time_password: Option<String> },
    /// Waiting for a second admin: `lethe users confirm ID` or the console's admin page.
    Pending { grant: GrantRow },
}

/// Who confirms a grant.
#[derive(Debug, Clone, Copy)]
pub enum Confirmer<'a> {
    /// An enabled admin other than the one who asked.
    Admin(&'a User),
    /// The host's operator, while the appliance has fewer than two enabled admins.
    Host,
}

/// A confirmed grant and, for a new or reset account, its one-time password (for the confirmer to hand
/// over; shown once).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Confirmed {
    pub grant: GrantRow,
    pub one_time_password: Option<String>,
}

/// The message an approver signs to prove it holds the key it enrols.
pub fn enrolment_message(username: &str, public_key_hex: &str) -> Vec<u8> {
    format!("lethe approver enrol\n{username}\n{public_key_hex}\n").into_bytes()
}

impl App {
    /// The role a policy must name as approving (`reviewer` until changed under dual control).
    pub async fn approver_role_in_force(&self) -> anyhow::Result<Role> {
        match self.store.grants().setting(APPROVER_ROLE).await? {
            None => Ok(Role::Reviewer),
            Some(r) => r
                .parse()
                .map_err(|e: String| anyhow::anyhow!("setting {APPROVER_ROLE}: {e}")),
        }
    }

    /// Whether giving `role` to someone needs a second admin: admins confirm grants, and the approving
    /// role approves.
    pub async fn role_needs_dual_control(&self, role: Role) -> anyhow::Result<bool> {
        Ok(role == Role::Admin || role == self.approver_role_in_force().await?)
    }

    /// Records a pending grant and its ledger entry.
    pub(super) async fn request_grant(
        &self,
        by: &str,
        kind: &str,
        target: &str,
        details: serde_json::Value,
    ) -> anyhow::Result<GrantRow> {
        let g = self.store.grants().create(kind, target, &details, by).await?;
        self.record(
            by,
            action::GRANT_REQUEST,
            target,
            serde_json::json!({ "grant": g.id, "kind": kind, "details": details }),
        )
        .await?;
        Ok(g)
    }

    /// Grants waiting for a second admin, oldest first.
    pub async fn pending_grants(&self) -> anyhow::Result<Vec<GrantRow>> {
        Ok(self.store.grants().list(Some("pending")).await?)
    }

    pub async fn grant(&self, id: &str) -> anyhow::Result<GrantRow> {
        self.store
            .grants()
            .get(id)
            .await?
            .ok_or_else(|| NotFound(format!("no grant {id:?} (see `lethe users pending`)")).into())
    }

    /// Confirms grant `id`, which then takes effect. Refused for the admin who asked, for the account
    /// the grant concerns, for whoever received that account's one-time password (a credential), for
    /// the host while two enabled admins exist, and for a grant already decided.
    pub async fn confirm_grant(&self, who: Confirmer<'_>, id: &str) -> anyhow::Result<Confirmed> {
        let g = self.grant(id).await?;
        if g.state != "pending" {
            return Err(Refused(format!(
                "grant {id} is {} already{}",
                g.state,
                g.decided_by
                    .as_deref()
                    .map(|b| format!(" (by {b})"))
                    .unwrap_or_default()
            ))
            .into());
        }
        let target = match g.kind.as_str() {
            "approver_role" => None,
            _ => self.store.users().by_username(&g.target).await?,
        };
        let actor = match who {
            Confirmer::Admin(u) => {
                // The account as it is now: a demoted or disabled admin confirms nothing.
                let now = self.user(&u.username).await?;
                if now.role != Role::Admin || now.disabled {
                    return Err(Refused(format!(
                        "confirming a grant needs an enabled admin; {} is {}{}",
                        now.username,
                        now.role,
                        if now.disabled { " (disabled)" } else { "" }
                    ))
                    .into());
                }
                if now.username == g.requested_by {
                    return Err(Refused(format!(
                        "{} asked for grant {id}; another admin must confirm it (dual control)",
                        now.username
                    ))
                    .into());
                }
                if target.is_some() && now.username == g.target {
                    return Err(Refused(format!(
                        "grant {id} concerns {}'s own account; another admin must confirm it",
                        now.username
                    ))
                    .into());
                }
                now.username
            }
            Confirmer::Host => {
                let admins = self.store.users().active_admins().await?;
                if admins >= 2 {
                    return Err(Refused(format!(
                        "{admins} enabled admins exist: one of them other than {} confirms grant {id}, not the \
                         host (the host confirms only while a single admin is left)",
                        g.requested_by
                    ))
                    .into());
                }
                super::host_actor()
            }
        };
        if g.kind == "credential" {
            if let Some(t) = &target {
                if t.password_issued_to.as_deref() == Some(actor.as_str()) {
                    return Err(Refused(format!(
                        "{actor} received {}'s one-time password, so may not confirm a credential of that \
                         account; another admin must",
                        t.username
                    ))
                    .into());
                }
            }
        }
        if !self
            .store
            .grants()
            .decide(id, "pending", "confirmed", Some(&actor))
            .await?
        {
            return Err(Refused(format!("grant {id} was decided by someone else meanwhile")).into());
        }
        let password = match self.apply_grant(&g, target.as_ref(), &actor).await {
            Ok(p) => p,
            Err(e) => {
                // Nothing took effect: the grant waits again.
                let _ = self.store.grants().decide(id, "confirmed", "pending", None).await;
                return Err(e);
            }
        };
        let grant = self.grant(id).await?;
        Ok(Confirmed {
            grant,
            one_time_password: password,
        })
    }

    /// Makes a confirmed grant take effect; a new or reset account's one-time password.
    async fn apply_grant(
        &self,
        g: &GrantRow,
        target: Option<&User>,
        actor: &str,
    ) -> anyhow::Result<Option<String>> {
        let detail = |k: &str| {
            g.details
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let confirmation = serde_json::json!({
            "grant": g.id, "kind": g.kind, "requested_by": g.requested_by, "details": g.details,
        });
        let mut password = None;
        match g.kind.as_str() {
            "create" => {
                let role: Role = detail("role").parse().map_err(|e: String| anyhow::anyhow!(e))?;
                let (pw, user) = self.create_account(&g.target, role, &g.requested_by).await?;
                self.store.users().set_password_issued_to(&user.id, actor).await?;
                password = Some(pw);
            }
            "role" => {
                let t = target.ok_or_else(|| NotFound(format!("no user {:?}", g.target)))?;
                let role: Role = detail("role").parse().map_err(|e: String| anyhow::anyhow!(e))?;
                let disabled = g
                    .details
                    .get("disabled")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                if !self
                    .store
                    .users()
                    .set_role_keeping_an_admin(&t.id, role, disabled)
                    .await?
                {
                    return Err(Refused(format!("{} is the last enabled admin", t.username)).into());
                }
            }
            "reset" => {
                let t = target.ok_or_else(|| NotFound(format!("no user {:?}", g.target)))?;
                password = Some(self.issue_reset(t, actor).await?);
            }
            "credential" => {
                let key = detail("key");
                if !self.store.grants().activate_key(&key, actor).await? {
                    return Err(Refused(format!("approver key {key} is no longer pending")).into());
                }
            }
            "approver_role" => {
                let role: Role = g.target.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                self.store
                    .grants()
                    .set_setting(APPROVER_ROLE, role.as_str())
                    .await?;
            }
            other => anyhow::bail!("grant {} has an unknown kind {other:?}", g.id),
        }
        self.record(actor, action::GRANT_CONFIRM, &g.target, confirmation)
            .await?;
        Ok(password)
    }

    /// Withdraws (the admin or user who asked) or refuses (any other enabled admin) a pending grant.
    pub async fn cancel_grant(&self, by: &User, id: &str) -> anyhow::Result<GrantRow> {
        let g = self.grant(id).await?;
        let current = self.user(&by.username).await?;
        let admin = current.role == Role::Admin && !current.disabled;
        if !admin && current.username != g.requested_by {
            return Err(Refused(format!(
                "only the one who asked for grant {id} ({}) or an admin may cancel it",
                g.requested_by
            ))
            .into());
        }
        if !self
            .store
            .grants()
            .decide(id, "pending", "cancelled", Some(&by.username))
            .await?
        {
            return Err(Refused(format!("grant {id} is not pending")).into());
        }
        if g.kind == "credential" {
            if let Some(key) = g.details.get("key").and_then(|v| v.as_str()) {
                self.store.grants().revoke_key(key).await?;
            }
        }
        self.record(
            &by.username,
            action::GRANT_CANCEL,
            &g.target,
            serde_json::json!({ "grant": g.id, "kind": g.kind, "requested_by": g.requested_by }),
        )
        .await?;
        self.grant(id).await
    }

    /// A new one-time password for `target`, handed to `issued_to`: its sessions end, its approver keys
    /// are revoked, and the reset counts as a new grant of its role (no approving an older request).
    pub(super) async fn issue_reset(&self, target: &User, issued_to: &str) -> anyhow::Result<String> {
        let (password, hash) = super::one_time_password().await?;
        self.store
            .users()
            .reset_password(&target.id, &hash, issued_to)
            .await?;
        self.store.sessions().delete_for_user(&target.id).await?;
        let revoked = self.store.grants().revoke_keys(&target.id).await?;
        self.record(
            issued_to,
            action::USER_PASSWORD,
            &target.username,
            serde_json::json!({ "by": "admin reset", "approver_keys_revoked": revoked }),
        )
        .await?;
        Ok(password)
    }

    /// Asks that `role` become the approving role in force (dual control).
    pub async fn request_approver_role(&self, admin: &User, role: Role) -> anyhow::Result<GrantRow> {
        super::accounts::require_admin(admin, "changing the approving role")?;
        if role == Role::Auditor {
            return Err(Refused(
                "auditors only read; the approving role is reviewer, operator or admin".into(),
            )
            .into());
        }
        let from = self.approver_role_in_force().await?;
        if role == from {
            return Err(Refused(format!("{role} is the approving role already")).into());
        }
        self.request_grant(
            &admin.username,
            "approver_role",
            role.as_str(),
            serde_json::json!({ "from": from.as_str() }),
        )
        .await
    }

    /// `user`'s enrolment of an Ed25519 approver key, proven by a signature over
    /// [`enrolment_message`]: pending until an admin confirms it.
    pub async fn enrol_ed25519(
        &self,
        user: &User,
        public_key_hex: &str,
        proof_b64: &str,
        label: &str,
    ) -> anyhow::Result<GrantRow> {
        let pk = public_key_hex.trim().to_ascii_lowercase();
        approver::verify_ed25519(&pk, &enrolment_message(&user.username, &pk), proof_b64)
            .context("the enrolment is not signed by the key's private half")?;
        self.enrol(user, "ed25519", &pk, None, None, label).await
    }

    /// `user`'s enrolment of a passkey (its P-256 point, credential id and relying party): pending
    /// until an admin confirms it.
    pub async fn enrol_passkey(
        &self,
        user: &User,
        point_hex: &str,
        credential_id: &str,
        rp_id: &str,
        label: &str,
    ) -> anyhow::Result<GrantRow> {
        self.enrol(
            user,
            "webauthn",
            point_hex,
            Some(credential_id),
            Some(rp_id),
            label,
        )
        .await
    }

    async fn enrol(
        &self,
        user: &User,
        kind: &str,
        public_key: &str,
        credential_id: Option<&str>,
        rp_id: Option<&str>,
        label: &str,
    ) -> anyhow::Result<GrantRow> {
        let current = self.user(&user.username).await?;
        if current.disabled {
            return Err(Refused(format!("user {} is disabled", user.username)).into());
        }
        let label = crate::cli::printable(label.trim()).into_owned();
        if label.is_empty() || label.chars().count() > 64 {
            anyhow::bail!("a key's label is 1 to 64 characters (say which device or file holds it)");
        }
        let key = self
            .store
            .grants()
            .add_key(&NewApproverKey {
                user_id: &current.id,
                kind,
                public_key,
                credential_id,
                rp_id,
                label: &label,
            })
            .await?;
        self.request_grant(
            &current.username,
            "credential",
            &current.username,
            serde_json::json!({
                "key": key.id, "key_kind": kind, "public_key": public_key, "label": label,
                "credential_id": credential_id, "rp_id": rp_id,
            }),
        )
        .await
    }

    /// Approver keys of `user` (every account's when `None`).
    pub async fn approver_keys(&self, user: Option<&User>) -> anyhow::Result<Vec<ApproverKeyRow>> {
        Ok(self.store.grants().keys(user.map(|u| u.id.as_str())).await?)
    }

    /// Revokes key `id`: its owner or an admin may.
    pub async fn revoke_approver_key(&self, by: &User, id: &str) -> anyhow::Result<()> {
        let key = self
            .store
            .grants()
            .key(id)
            .await?
            .ok_or_else(|| NotFound(format!("no approver key {id:?}")))?;
        let current = self.user(&by.username).await?;
        if current.id != key.user_id && (current.role != Role::Admin || current.disabled) {
            return Err(Refused("only the key's owner or an admin may revoke it".into()).into());
        }
        if !self.store.grants().revoke_key(id).await? {
            return Err(Refused(format!("approver key {id} is revoked already")).into());
        }
        self.record(
            &by.username,
            action::KEY_REVOKE,
            id,
            serde_json::json!({ "kind": key.kind, "public_key": key.public_key }),
        )
        .await
    }
}
