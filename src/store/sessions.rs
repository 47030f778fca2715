//! Console and API sessions: the `sessions` table. The store sees only the SHA-256 of a session token;
//! making tokens and deciding what expiry means is the server's job.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::users::{User, COLUMNS as USER_COLUMNS};
use super::{Store, StoreError};

/// How stale a session's idle clock may get before a request moves it.
pub const TOUCH_EVERY_MS: i64 = 60_000;

/// A live session and the account it belongs to.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub token_sha256: String,
    pub user: User,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// Repository over `sessions`.
pub struct Sessions<'a> {
    store: &'a Store,
}

impl<'a> Sessions<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(
        &self,
        token_sha256: &str,
        user_id: &str,
        csrf: &str,
        address: Option<&str>,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_sha256, user_id, csrf, address, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(token_sha256)
        .bind(user_id)
        .bind(csrf)
        .bind(address)
        .bind(now)
        .bind(expires_at)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("creating a session"))?;
        Ok(())
    }

    /// The session with this token hash, if it exists and is neither past its absolute expiry nor idle
    /// since before `idle_since`. Its idle clock moves to `now` only when it last moved more than
    /// [`TOUCH_EVERY_MS`] ago: idle expiry is counted in minutes, and a write on every request would make
    /// each page view a database write. The move is conditional on the session still being live, so a
    /// session that expired between the read and the write is not revived.
    pub async fn touch(
        &self,
        token_sha256: &str,
        now: i64,
        idle_since: i64,
    ) -> Result<Option<SessionRow>, StoreError> {
        let cols = USER_COLUMNS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(&format!(
            "SELECT s.token_sha256, s.csrf, s.created_at AS s_created_at, s.last_seen_at, s.expires_at, {cols} \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_sha256 = $1"
        ))
        .bind(token_sha256)
        .fetch_optional(self.store.pool())
        .await
        .map_err(StoreError::query("reading a session"))?;
        let Some(session) = row.as_ref().map(session_from_row).transpose()? else {
            return Ok(None);
        };
        if session.expires_at <= now || session.last_seen_at <= idle_since {
            return Ok(None);
        }
        if session.last_seen_at < now - TOUCH_EVERY_MS {
            let touched = sqlx::query(
                "UPDATE sessions SET last_seen_at = $1 \
                 WHERE token_sha256 = $2 AND expires_at > $1 AND last_seen_at > $3",
            )
            .bind(now)
            .bind(token_sha256)
            .bind(idle_since)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("touching a session"))?;
            if touched.rows_affected() == 0 {
                return Ok(None);
            }
        }
        Ok(Some(session))
    }

    /// Ends one session.
    pub async fn delete(&self, token_sha256: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(token_sha256)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("ending a session"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Ends every session of a user (sign-out everywhere, a password change, a disabled account).
    pub async fn delete_for_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("ending a user's sessions"))?;
        Ok(r.rows_affected())
    }

    /// Drops sessions that can no longer be used, so the table does not grow without bound.
    pub async fn purge_expired(&self, now: i64, idle_since: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now)
            .bind(idle_since)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("purging expired sessions"))?;
        Ok(r.rows_affected())
    }
}

fn session_from_row(row: &AnyRow) -> Result<SessionRow, StoreError> {
    let q = || StoreError::query("reading a session");
    Ok(SessionRow {
        token_sha256: row.try_get("token_sha256").map_err(q())?,
        csrf: row.try_get("csrf").map_err(q())?,
        created_at: row.try_get("s_created_at").map_err(q())?,
        last_seen_at: row.try_get("last_seen_at").map_err(q())?,
        expires_at: row.try_get("expires_at").map_err(q())?,
        user: User::from_row(row)?,
    })
}
