//! Dual control and approvers' credentials: the `grants`, `approver_keys` and `settings` tables. The
//! rules (what needs a second admin, who may confirm) live in `app::grants`; this is storage with the
//! conditional updates that make a confirmation happen once.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{new_id, now_ms, Store, StoreError};

/// A change waiting for (or past) a second admin's confirmation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GrantRow {
    pub id: String,
    /// `create`, `role`, `reset`, `credential` or `approver_role`.
    pub kind: String,
    /// The account's name (or, for `approver_role`, the role asked for).
    pub target: String,
    pub details: serde_json::Value,
    pub requested_by: String,
    pub requested_at: i64,
    /// `pending`, `confirmed` or `cancelled`.
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

const GRANT_COLUMNS: &str =
    "id, kind, target, details, requested_by, requested_at, state, decided_by, decided_at";

impl GrantRow {
    fn from_row(row: &AnyRow) -> Result<GrantRow, StoreError> {
        let q = || StoreError::query("reading a grant");
        let details: String = row.try_get("details").map_err(q())?;
        Ok(GrantRow {
            id: row.try_get("id").map_err(q())?,
            kind: row.try_get("kind").map_err(q())?,
            target: row.try_get("target").map_err(q())?,
            details: serde_json::from_str(&details).map_err(|e| StoreError::Corrupt {
                table: "grants",
                reason: format!("details are not JSON: {e}"),
            })?,
            requested_by: row.try_get("requested_by").map_err(q())?,
            requested_at: row.try_get("requested_at").map_err(q())?,
            state: row.try_get("state").map_err(q())?,
            decided_by: row.try_get("decided_by").map_err(q())?,
            decided_at: row.try_get("decided_at").map_err(q())?,
        })
    }
}

/// An approver's public key.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApproverKeyRow {
    pub id: String,
    pub user_id: String,
    /// `ed25519` or `webauthn`.
    pub kind: String,
    /// Hex: 32 bytes for Ed25519, the 65-byte uncompressed P-256 point for a passkey.
    pub public_key: String,
    pub credential_id: Option<String>,
    pub rp_id: Option<String>,
    pub label: String,
    /// `pending`, `active` or `revoked`.
    pub state: String,
    pub created_at: i64,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const KEY_COLUMNS: &str = "id, user_id, kind, public_key, credential_id, rp_id, label, state, created_at, \
                           confirmed_by, confirmed_at, revoked_at";

impl ApproverKeyRow {
    fn from_row(row: &AnyRow) -> Result<ApproverKeyRow, StoreError> {
        let q = || StoreError::query("reading an approver key");
        Ok(ApproverKeyRow {
            id: row.try_get("id").map_err(q())?,
            user_id: row.try_get("user_id").map_err(q())?,
            kind: row.try_get("kind").map_err(q())?,
            public_key: row.try_get("public_key").map_err(q())?,
            credential_id: row.try_get("credential_id").map_err(q())?,
            rp_id: row.try_get("rp_id").map_err(q())?,
            label: row.try_get("label").map_err(q())?,
            state: row.try_get("state").map_err(q())?,
            created_at: row.try_get("created_at").map_err(q())?,
            confirmed_by: row.try_get("confirmed_by").map_err(q())?,
            confirmed_at: row.try_get("confirmed_at").map_err(q())?,
            revoked_at: row.try_get("revoked_at").map_err(q())?,
        })
    }
}

/// What a new approver key is.
pub struct NewApproverKey<'a> {
    pub user_id: &'a str,
    pub kind: &'a str,
    pub public_key: &'a str,
    pub credential_id: Option<&'a str>,
    pub rp_id: Option<&'a str>,
    pub label: &'a str,
}

/// Repository over `grants`, `approver_keys` and `settings`.
pub struct Grants<'a> {
    store: &'a Store,
}

impl<'a> Grants<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(
        &self,
        kind: &str,
        target: &str,
        details: &serde_json::Value,
        requested_by: &str,
    ) -> Result<GrantRow, StoreError> {
        let row = GrantRow {
            id: new_id("grant"),
            kind: kind.to_string(),
            target: target.to_string(),
            details: details.clone(),
            requested_by: requested_by.to_string(),
            requested_at: now_ms(),
            state: "pending".into(),
            decided_by: None,
            decided_at: None,
        };
        sqlx::query(&format!(
            "INSERT INTO grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)"
        ))
        .bind(&row.id)
        .bind(&row.kind)
        .bind(&row.target)
        .bind(details.to_string())
        .bind(&row.requested_by)
        .bind(row.requested_at)
        .bind(&row.state)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("recording a grant"))?;
        Ok(row)
    }

    pub async fn get(&self, id: &str) -> Result<Option<GrantRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("reading a grant"))?;
        row.as_ref().map(GrantRow::from_row).transpose()
    }

    /// Grants in `state` (all when `None`), oldest first.
    pub async fn list(&self, state: Option<&str>) -> Result<Vec<GrantRow>, StoreError> {
        let rows = match state {
            Some(state) => {
                sqlx::query(&format!(
                    "SELECT {GRANT_COLUMNS} FROM grants WHERE state = $1 ORDER BY requested_at, id"
                ))
                .bind(state)
                .fetch_all(self.store.pool())
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {GRANT_COLUMNS} FROM grants ORDER BY requested_at, id"
                ))
                .fetch_all(self.store.pool())
                .await
            }
        }
        .map_err(StoreError::query("listing grants"))?;
        rows.iter().map(GrantRow::from_row).collect()
    }

    /// Pending grants of `kind` about `target`.
    pub async fn pending_for(&self, kind: &str, target: &str) -> Result<Vec<GrantRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE state = 'pending' AND kind = $1 AND target = $2"
        ))
        .bind(kind)
        .bind(target)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing grants"))?;
        rows.iter().map(GrantRow::from_row).collect()
    }

    /// Moves a grant from `from` to `to`, recording who and when; `false` when it was not in `from`
    /// (someone else decided it first).
    pub async fn decide(&self, id: &str, from: &str, to: &str, by: Option<&str>) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE grants SET state = $1, decided_by = $2, decided_at = $3 WHERE id = $4 AND state = $5",
        )
        .bind(to)
        .bind(by)
        .bind(by.map(|_| now_ms()))
        .bind(id)
        .bind(from)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("deciding a grant"))?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn add_key(&self, k: &NewApproverKey<'_>) -> Result<ApproverKeyRow, StoreError> {
        let id = new_id("key");
        let now = now_ms();
        let done = sqlx::query(&format!(
            "INSERT INTO approver_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, NULL, NULL, NULL)"
        ))
        .bind(&id)
        .bind(k.user_id)
        .bind(k.kind)
        .bind(k.public_key)
        .bind(k.credential_id)
        .bind(k.rp_id)
        .bind(k.label)
        .bind(now)
        .execute(self.store.pool())
        .await;
        match done {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let existing = sqlx::query("SELECT id FROM approver_keys WHERE public_key = $1")
                    .bind(k.public_key)
                    .fetch_optional(self.store.pool())
                    .await
                    .map_err(StoreError::query("reading an approver key"))?
                    .and_then(|r| r.try_get::<String, _>("id").ok())
                    .unwrap_or_default();
                return Err(StoreError::KeyExists(existing));
            }
            Err(source) => {
                return Err(StoreError::Query {
                    context: "enrolling an approver key",
                    source,
                })
            }
        }
        self.key(&id).await?.ok_or_else(|| StoreError::Corrupt {
            table: "approver_keys",
            reason: format!("key {id} vanished after it was written"),
        })
    }

    pub async fn key(&self, id: &str) -> Result<Option<ApproverKeyRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM approver_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("reading an approver key"))?;
        row.as_ref().map(ApproverKeyRow::from_row).transpose()
    }

    /// Every key of `user_id` (all accounts when `None`), oldest first.
    pub async fn keys(&self, user_id: Option<&str>) -> Result<Vec<ApproverKeyRow>, StoreError> {
        let rows = match user_id {
            Some(user_id) => {
                sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM approver_keys WHERE user_id = $1 ORDER BY created_at, id"
                ))
                .bind(user_id)
                .fetch_all(self.store.pool())
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM approver_keys ORDER BY created_at, id"
                ))
                .fetch_all(self.store.pool())
                .await
            }
        }
        .map_err(StoreError::query("listing approver keys"))?;
        rows.iter().map(ApproverKeyRow::from_row).collect()
    }

    /// Makes a pending key active; `false` if it was not pending.
    pub async fn activate_key(&self, id: &str, by: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE approver_keys SET state = 'active', confirmed_by = $1, confirmed_at = $2 \
             WHERE id = $3 AND state = 'pending'",
        )
        .bind(by)
        .bind(now_ms())
        .bind(id)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("confirming an approver key"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Revokes every key of `user_id` that is not revoked yet (a password reset does); how many.
    pub async fn revoke_keys(&self, user_id: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE approver_keys SET state = 'revoked', revoked_at = $1 WHERE user_id = $2 AND state <> 'revoked'",
        )
        .bind(now_ms())
        .bind(user_id)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("revoking approver keys"))?;
        Ok(r.rows_affected())
    }

    /// Revokes one key; `false` if it was revoked already or does not exist.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE approver_keys SET state = 'revoked', revoked_at = $1 WHERE id = $2 AND state <> 'revoked'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("revoking an approver key"))?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("reading a setting"))?
            .map(|r| r.try_get("value"))
            .transpose()
            .map_err(StoreError::query("reading a setting"))
    }

    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("changing a setting"))?;
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("changing a setting"))?;
        sqlx::query("INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(value)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("changing a setting"))?;
        tx.commit().await.map_err(StoreError::query("changing a setting"))
    }
}
