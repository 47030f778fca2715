//! The `workers` table: who is running jobs and what each can run (GPUs, memory, kinds), for people
//! (`lethe workers list`, the console) and for `lethe jobs show`, which says whether any live worker can
//! take a queued job. Claims do not read it: a worker passes its own figures with each claim.
//!
//! Also the `locks` table: named locks with an expiry, for files on shared storage that one process at a
//! time may write (a run's checkpoints).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Store, StoreError};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerRow {
    pub name: String,
    pub host: String,
    pub pid: i64,
    pub gpus: i64,
    pub memory_bytes: i64,
    pub kinds: Vec<String>,
    pub version: String,
    pub started_at: i64,
    pub seen_at: i64,
    pub stopped_at: Option<i64>,
}

impl WorkerRow {
    fn from_row(row: &AnyRow) -> Result<WorkerRow, StoreError> {
        let q = || StoreError::query("reading a worker");
        let kinds: String = row.try_get("kinds").map_err(q())?;
        Ok(WorkerRow {
            name: row.try_get("name").map_err(q())?,
            host: row.try_get("host").map_err(q())?,
            pid: row.try_get("pid").map_err(q())?,
            gpus: row.try_get("gpus").map_err(q())?,
            memory_bytes: row.try_get("memory_bytes").map_err(q())?,
            kinds: serde_json::from_str(&kinds).map_err(|e| StoreError::Corrupt {
                table: "workers",
                reason: format!("kinds is not a JSON list: {e}"),
            })?,
            version: row.try_get("version").map_err(q())?,
            started_at: row.try_get("started_at").map_err(q())?,
            seen_at: row.try_get("seen_at").map_err(q())?,
            stopped_at: row.try_get("stopped_at").map_err(q())?,
        })
    }
}

impl WorkerRow {
    /// What the worker offers with its claims.
    pub fn capacity(&self) -> super::Capacity {
        super::Capacity {
            kinds: self.kinds.clone(),
            gpus: self.gpus,
            memory_bytes: self.memory_bytes,
        }
    }
}

const COLUMNS: &str = "name, host, pid, gpus, memory_bytes, kinds, version, started_at, seen_at, stopped_at";

/// Repository over `workers` and `locks`.
pub struct Workers<'a> {
    store: &'a Store,
}

impl<'a> Workers<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Records a worker that is starting.
    pub async fn register(&self, w: &WorkerRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO workers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, NULL)"
        ))
        .bind(&w.name)
        .bind(&w.host)
        .bind(w.pid)
        .bind(w.gpus)
        .bind(w.memory_bytes)
        .bind(serde_json::to_string(&w.kinds).unwrap_or_else(|_| "[]".into()))
        .bind(&w.version)
        .bind(w.started_at)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("registering a worker"))?;
        Ok(())
    }

    /// Records that the worker is alive.
    pub async fn seen(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE workers SET seen_at = $1 WHERE name = $2")
            .bind(now_ms())
            .bind(name)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("recording a worker's heartbeat"))?;
        Ok(())
    }

    /// Records that the worker stopped on purpose.
    pub async fn stopped(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE workers SET stopped_at = $1, seen_at = $1 WHERE name = $2")
            .bind(now_ms())
            .bind(name)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("recording a worker's stop"))?;
        Ok(())
    }

    /// Workers seen since `since_ms` that have not stopped, newest first.
    pub async fn live(&self, since_ms: i64) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM workers WHERE stopped_at IS NULL AND seen_at >= $1 \
             ORDER BY started_at DESC, name"
        ))
        .bind(since_ms)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing workers"))?;
        rows.iter().map(WorkerRow::from_row).collect()
    }

    /// Every worker ever registered, newest first (at most `limit`).
    pub async fn list(&self, limit: i64) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM workers ORDER BY started_at DESC, name LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing workers"))?;
        rows.iter().map(WorkerRow::from_row).collect()
    }

    /// Takes lock `name` for `holder` until `ttl_ms` from now: when nobody holds it, when it expired, or
    /// when `holder` already holds it (a renewal). Returns the current holder when it is someone else's.
    pub async fn lock(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<Option<String>, StoreError> {
        let q = || StoreError::query("taking a lock");
        let now = now_ms();
        // Insert-or-take in one statement each engine runs atomically: the row changes only if it is
        // free, expired or ours.
        let taken = sqlx::query(
            "INSERT INTO locks (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 acquired_at = CASE WHEN locks.holder = excluded.holder THEN locks.acquired_at ELSE excluded.acquired_at END, \
                 expires_at = excluded.expires_at \
             WHERE locks.holder = excluded.holder OR locks.expires_at < $3",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(self.store.pool())
        .await
        .map_err(q())?;
        if taken.rows_affected() == 1 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT holder FROM locks WHERE name = $1")
            .bind(name)
            .fetch_optional(self.store.pool())
            .await
            .map_err(q())?;
        Ok(Some(match row {
            Some(r) => r.try_get("holder").map_err(q())?,
            None => "(released meanwhile)".to_string(),
        }))
    }

    /// Takes lock `name` from `from` (a holder known to be dead) for `holder`; false when `from` no
    /// longer holds it.
    pub async fn take_over(
        &self,
        name: &str,
        from: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE locks SET holder = $1, acquired_at = $2, expires_at = $3 WHERE name = $4 AND holder = $5",
        )
        .bind(holder)
        .bind(now)
        .bind(now + ttl_ms)
        .bind(name)
        .bind(from)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("taking over a lock"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases lock `name` if `holder` holds it.
    pub async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM locks WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("releasing a lock"))?;
        Ok(())
    }
}
