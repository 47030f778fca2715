//! The ledger's tables: `ledger_entries` and `ledger_checkpoints`. Insert and read only: there is no
//! update or delete of either, by design.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::ledger::{Checkpoint, Entry};

const ENTRY_COLUMNS: &str = "seq, at_ms, actor, action, subject, details, prev_hash, hash";
const CHECKPOINT_COLUMNS: &str = "seq, head_hash, at_ms, public_key, signature";

fn entry(row: &AnyRow) -> Result<Entry, StoreError> {
    let q = || StoreError::query("reading the ledger");
    let details: String = row.try_get("details").map_err(q())?;
    Ok(Entry {
        seq: row.try_get("seq").map_err(q())?,
        at_ms: row.try_get("at_ms").map_err(q())?,
        actor: row.try_get("actor").map_err(q())?,
        action: row.try_get("action").map_err(q())?,
        subject: row.try_get("subject").map_err(q())?,
        // A row whose details are not JSON keeps them as a string: verification then reports the entry
        // as edited (its hash no longer matches) instead of failing to read the ledger.
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        prev_hash: row.try_get("prev_hash").map_err(q())?,
        hash: row.try_get("hash").map_err(q())?,
    })
}

fn checkpoint(row: &AnyRow) -> Result<Checkpoint, StoreError> {
    let q = || StoreError::query("reading ledger checkpoints");
    Ok(Checkpoint {
        seq: row.try_get("seq").map_err(q())?,
        head_hash: row.try_get("head_hash").map_err(q())?,
        at_ms: row.try_get("at_ms").map_err(q())?,
        public_key: row.try_get("public_key").map_err(q())?,
        signature: row.try_get("signature").map_err(q())?,
    })
}

/// Repository over the ledger's tables.
pub struct Ledger<'a> {
    store: &'a Store,
}

impl<'a> Ledger<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// The newest entry.
    pub async fn head(&self) -> Result<Option<Entry>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries ORDER BY seq DESC LIMIT 1"
        ))
        .fetch_optional(self.store.pool())
        .await
        .map_err(StoreError::query("reading the ledger head"))?
        .as_ref()
        .map(entry)
        .transpose()
    }

    /// Inserts `e`; `Ok(false)` when its seq is taken (another process appended first: read the head again).
    pub async fn insert(&self, e: &Entry) -> Result<bool, StoreError> {
        let r = sqlx::query(&format!(
            "INSERT INTO ledger_entries ({ENTRY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(e.seq)
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.subject)
        .bind(e.details_json())
        .bind(&e.prev_hash)
        .bind(&e.hash)
        .execute(self.store.pool())
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(false),
            Err(source) => Err(StoreError::Query {
                context: "appending to the ledger",
                source,
            }),
        }
    }

    /// Every entry, by seq (or those at or after `since_ms`).
    pub async fn entries(&self, since_ms: Option<i64>) -> Result<Vec<Entry>, StoreError> {
        let rows = match since_ms {
            Some(t) => {
                sqlx::query(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE at_ms >= $1 ORDER BY seq"
                ))
                .bind(t)
                .fetch_all(self.store.pool())
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM ledger_entries ORDER BY seq"
                ))
                .fetch_all(self.store.pool())
                .await
            }
        }
        .map_err(StoreError::query("reading the ledger"))?;
        rows.iter().map(entry).collect()
    }

    pub async fn insert_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO ledger_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(c.seq)
        .bind(&c.head_hash)
        .bind(c.at_ms)
        .bind(&c.public_key)
        .bind(&c.signature)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("recording a ledger checkpoint"))?;
        Ok(())
    }

    /// Seq of the newest checkpoint (0 when there is none), without reading them all.
    pub async fn last_checkpoint_seq(&self) -> Result<i64, StoreError> {
        let last: Option<i64> = sqlx::query("SELECT MAX(seq) AS last FROM ledger_checkpoints")
            .fetch_one(self.store.pool())
            .await
            .and_then(|r| r.try_get("last"))
            .map_err(StoreError::query("reading the last ledger checkpoint"))?;
        Ok(last.unwrap_or(0))
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM ledger_checkpoints ORDER BY seq"
        ))
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("reading ledger checkpoints"))?;
        rows.iter().map(checkpoint).collect()
    }
}
