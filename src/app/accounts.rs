//! Accounts after creation: changing one's own password (the first admin must, before anything else),
//! an admin's password reset, role changes and disabling. Each change ends the account's sessions where
//! it should and lands in the ledger. Signing in and creating users are in [`super::release`].

use anyhow::Context as _;

use super::grants::Granted;
use super::{App, NotFound};
use crate::ledger::action;
use crate::release::Refused;
use crate::store::{Role, User};

/// Shortest password a user may choose. One-time passwords are generated, and longer.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Why a new password is refused, or `None`.
pub fn weak_password(username: &str, password: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Some(format!(
            "the new password is {n} characters; it needs at least {MIN_PASSWORD_CHARS}"
        ));
    }
    if n > 1024 {
        return Some("the new password is longer than 1024 characters".into());
    }
    if password.to_lowercase().contains(&username.to_lowercase()) {
        return Some("the new password may not contain the user name".into());
    }
    None
}

impl App {
    pub async fn user(&self, username: &str) -> anyhow::Result<User> {
        self.store
            .users()
            .by_username(username)
            .await?
            .ok_or_else(|| NotFound(format!("no user {username:?}")).into())
    }

    /// Changes `user`'s own password after checking the current one; clears the one-time flag and
    /// ends every session of the account (the caller signs the user in afresh).
    pub async fn change_password(&self, user: &User, current: &str, new: &str) -> anyhow::Result<()> {
        if let Some(why) = weak_password(&user.username, new) {
            anyhow::bail!(why);
        }
        if current == new {
            anyhow::bail!("the new password must differ from the current one");
        }
        let stored = user.password_hash.clone();
        let (cur, next) = (current.to_string(), new.to_string());
        let hash = tokio::task::spawn_blocking(move || {
            if !crate::vault::password::verify(&cur, &stored) {
                return Ok(None);
            }
            crate::vault::password::hash(&next).map(Some)
        })
        .await
        .context("hashing the password was interrupted")??;
        let Some(hash) = hash else {
            return Err(Refused("the current password is wrong".into()).into());
        };
        self.store.users().set_password(&user.id, &hash, false).await?;
        self.store.sessions().delete_for_user(&user.id).await?;
        self.record(
            &user.username,
            action::USER_PASSWORD,
            &user.username,
            serde_json::json!({ "by": "owner" }),
        )
        .await
    }

    /// Gives `username` a new one-time password (returned), ending the account's sessions and revoking
    /// its approver keys. For an account with the approving role in force or admin the reset waits for
    /// a second admin, who then receives the password ([`super::grants`]).
    pub async fn reset_password(&self, admin: &User, username: &str) -> anyhow::Result<Granted> {
        require_admin(admin, "resetting passwords")?;
        let target = self.user(username).await?;
        if self.role_needs_dual_control(target.role).await? {
            let grant = self
                .request_grant(
                    &admin.username,
                    "reset",
                    &target.username,
                    serde_json::json!({ "role": target.role.as_str() }),
                )
                .await?;
            return Ok(Granted::Pending { grant });
        }
        let password = self.issue_reset(&target, &admin.username).await?;
        Ok(Granted::Done {
            one_time_password: Some(password),
        })
    }

    /// Sets a user's role and whether the account is disabled. The last enabled admin can be neither
    /// demoted nor disabled (the appliance would have nobody left to manage it), and a disabled account
    /// loses its sessions at once.
    pub async fn set_user(
        &self,
        admin: &User,
        username: &str,
        role: Role,
        disabled: bool,
    ) -> anyhow::Result<Granted> {
        require_admin(admin, "changing users")?;
        let target = self.user(username).await?;
        // Promotion to an approving or admin role, or enabling such an account again, waits for a
        // second admin.
        let gains = role != target.role || (target.disabled && !disabled);
        if !disabled && gains && self.role_needs_dual_control(role).await? {
            let grant = self
                .request_grant(
                    &admin.username,
                    "role",
                    &target.username,
                    serde_json::json!({
                        "role": role.as_str(), "disabled": false, "from": target.role.as_str(),
                    }),
                )
                .await?;
            return Ok(Granted::Pending { grant });
        }
        // The check and the change are one atomic step: two admins disabling each other at once leave
        // one of them enabled.
        if !self
            .store
            .users()
            .set_role_keeping_an_admin(&target.id, role, disabled)
            .await?
        {
            return Err(Refused(format!(
                "{username} is the last enabled admin; make another admin first"
            ))
            .into());
        }
        if disabled {
            self.store.sessions().delete_for_user(&target.id).await?;
        }
        if role != target.role {
            self.record(
                &admin.username,
                action::USER_ROLE,
                username,
                serde_json::json!({ "from": target.role.as_str(), "to": role.as_str() }),
            )
            .await?;
        }
        if disabled != target.disabled {
            self.record(
                &admin.username,
                action::USER_DISABLE,
                username,
                serde_json::json!({ "disabled": disabled }),
            )
            .await?;
        }
        Ok(Granted::Done {
            one_time_password: None,
        })
    }
}

impl App {
    /// The host operator's way back when no enabled admin is left (`lethe users recover NAME`, run on
    /// the host with the master key): makes NAME an enabled admin (creating it if needed) with a new
    /// one-time password, returned. Refused while an enabled admin exists: ask that admin instead.
    pub async fn recover_admin(&self, username: &str) -> anyhow::Result<String> {
        check_username(username)?;
        let admins = self.store.users().active_admins().await?;
        if admins > 0 {
            let names: Vec<String> = self
                .store
                .users()
                .list()
                .await?
                .into_iter()
                .filter(|u| u.role == Role::Admin && !u.disabled)
                .map(|u| u.username)
                .collect();
            return Err(Refused(format!(
                "{admins} enabled admin(s) remain ({}); recovery is only for a data directory with none",
                names.join(", ")
            ))
            .into());
        }
        let (password, hash) = super::one_time_password().await?;
        let existing = self.store.users().by_username(username).await?;
        let created = existing.is_none();
        let user = match existing {
            Some(u) => u,
            None => {
                self.store
                    .users()
                    .create(username, Role::Admin, &hash, true)
                    .await?
            }
        };
        self.store.users().set_role(&user.id, Role::Admin, false).await?;
        let host = super::host_actor();
        self.store.users().reset_password(&user.id, &hash, &host).await?;
        self.store.sessions().delete_for_user(&user.id).await?;
        self.store.grants().revoke_keys(&user.id).await?;
        self.record(
            &super::cli_actor(),
            action::USER_RECOVER,
            username,
            serde_json::json!({ "created": created, "previous_role": user.role.as_str() }),
        )
        .await?;
        Ok(password)
    }
}

/// A new account's name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_username(username: &str) -> anyhow::Result<()> {
    if username.is_empty()
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        anyhow::bail!("user name {username:?} must be 1 to 64 letters, digits, '.', '_' or '-'");
    }
    Ok(())
}

pub(super) fn require_admin(user: &User, what: &str) -> Result<(), Refused> {
    if user.role != Role::Admin || user.disabled {
        return Err(Refused(format!(
            "{what} needs the admin role; {} is {}",
            user.username, user.role
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_named() {
        assert!(weak_password("rita", "short").unwrap().contains("5 characters"));
        assert!(weak_password("rita", "xxRITAxxxxxxxxxx")
            .unwrap()
            .contains("user name"));
        assert_eq!(weak_password("rita", "correct horse battery"), None);
    }
}
