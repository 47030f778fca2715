//! The sign-in throttle's rows: the `sign_in_attempts` table. The limits are the server's
//! (`server::auth`); this is the counting, made atomic on both engines so that attempts from several
//! processes at once are each counted before any password is checked.

use sqlx::Row;

use super::{new_id, Store, StoreError};

/// One key an attempt counts against: the key, its failure limit in the window, and the checks of it
/// that may be in flight at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleKey {
    pub key: String,
    pub limit: usize,
    pub in_flight: usize,
}

/// Repository over `sign_in_attempts`.
pub struct Throttle<'a> {
    store: &'a Store,
}

/// The seconds to wait for one key, if it is at a limit: the failures in the window and the checks in
/// flight count together against `limit`, and the checks in flight against `cap`.
pub fn wait_for(
    failures: &[i64],
    flying: usize,
    limit: usize,
    cap: usize,
    now: i64,
    window_ms: i64,
) -> Option<u64> {
    if failures.len() >= limit {
        let oldest = failures.iter().copied().min().unwrap_or(now);
        return Some(((oldest + window_ms - now).max(1000) / 1000) as u64);
    }
    (failures.len() + flying >= limit || flying >= cap).then_some(1)
}

impl<'a> Throttle<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Reserves one attempt under every key (ids of the rows made, to resolve later), or the seconds to
    /// wait when a key is at a limit. `flight_ms`: how long a check may hold its slot if its process
    /// dies. One transaction that takes the write lock first (SQLite) or a transaction-scoped advisory
    /// lock (PostgreSQL), so concurrent reservations are counted one after the other.
    pub async fn reserve(
        &self,
        keys: &[ThrottleKey],
        now: i64,
        window_ms: i64,
        flight_ms: i64,
    ) -> Result<Result<Vec<String>, u64>, StoreError> {
        let q = || StoreError::query("reserving a sign-in attempt");
        let mut tx = match self.store.engine() {
            super::Engine::Sqlite => self.store.pool().begin_with("BEGIN IMMEDIATE").await,
            super::Engine::Postgres => self.store.pool().begin().await,
        }
        .map_err(q())?;
        if self.store.engine() == super::Engine::Postgres {
            // One lock for the whole table: reservations are rare and short.
            sqlx::query("SELECT pg_advisory_xact_lock(7301458201) AS locked")
                .fetch_one(&mut *tx)
                .await
                .map_err(q())?;
        }
        sqlx::query("DELETE FROM sign_in_attempts WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q())?;
        let mut wait: Option<u64> = None;
        for k in keys {
            let rows = sqlx::query("SELECT state, at FROM sign_in_attempts WHERE key = $1")
                .bind(&k.key)
                .fetch_all(&mut *tx)
                .await
                .map_err(q())?;
            let mut failures = Vec::new();
            let mut flying = 0;
            for r in &rows {
                let state: String = r.try_get("state").map_err(q())?;
                let at: i64 = r.try_get("at").map_err(q())?;
                if state == "failed" {
                    if at > now - window_ms {
                        failures.push(at);
                    }
                } else {
                    flying += 1;
                }
            }
            if let Some(s) = wait_for(&failures, flying, k.limit, k.in_flight, now, window_ms) {
                wait = Some(wait.map_or(s, |w| w.max(s)));
            }
        }
        if let Some(w) = wait {
            tx.rollback().await.map_err(q())?;
            return Ok(Err(w));
        }
        let mut ids = Vec::with_capacity(keys.len());
        for k in keys {
            let id = new_id("try");
            sqlx::query(
                "INSERT INTO sign_in_attempts (id, key, state, at, expires_at) VALUES ($1, $2, 'checking', $3, $4)",
            )
            .bind(&id)
            .bind(&k.key)
            .bind(now)
            .bind(now + flight_ms)
            .execute(&mut *tx)
            .await
            .map_err(q())?;
            ids.push(id);
        }
        tx.commit().await.map_err(q())?;
        Ok(Ok(ids))
    }

    /// The attempts `ids` failed at `now`: they count for the window.
    pub async fn failed(&self, ids: &[String], now: i64, window_ms: i64) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query(
                "UPDATE sign_in_attempts SET state = 'failed', at = $1, expires_at = $2 WHERE id = $3",
            )
            .bind(now)
            .bind(now + window_ms)
            .bind(id)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("recording a failed sign-in"))?;
        }
        Ok(())
    }

    /// Frees the slots of attempts `ids` (checked, or abandoned before the check ended).
    pub async fn release(&self, ids: &[String]) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query("DELETE FROM sign_in_attempts WHERE id = $1 AND state = 'checking'")
                .bind(id)
                .execute(self.store.pool())
                .await
                .map_err(StoreError::query("freeing a sign-in slot"))?;
        }
        Ok(())
    }

    /// A successful sign-in forgets the failures under `key` (the account's).
    pub async fn forget(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sign_in_attempts WHERE key = $1 AND state = 'failed'")
            .bind(key)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("forgetting failed sign-ins"))?;
        Ok(())
    }
}
