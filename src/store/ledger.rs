//! The ledger's tables: `ledger_entries` and `ledger_checkpoints`. Insert and read only: there is no
//! update or delete of either, by design.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::ledger::{Checkpoint, Entry};

const ENTRY_COLUMNS: &str = "seq, at_ms, actor, action, subject, details, prev_hash, hash";
const CHECKPOINT_COLUMNS: &str = "seq, head_hash, at_ms, public_key, signature, root";

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
        root: row.try_get("root").map_err(q())?,
    })
}

/// `true` when the insert happened, `false` when the key was taken (a concurrent writer came first).
fn inserted(
    r: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
    context: &'static str,
) -> Result<bool, StoreError> {
    match r {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(false),
        Err(source) => Err(StoreError::Query { context, source }),
    }
}

async fn read_head<'e, E>(ex: E) -> Result<Option<Entry>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries ORDER BY seq DESC LIMIT 1"
    ))
    .fetch_optional(ex)
    .await
    .map_err(StoreError::query("reading the ledger head"))?
    .as_ref()
    .map(entry)
    .transpose()
}

async fn read_entries<'e, E>(ex: E, since_ms: Option<i64>) -> Result<Vec<Entry>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE at_ms >= $1 ORDER BY seq"
    ))
    .bind(since_ms.unwrap_or(i64::MIN))
    .fetch_all(ex)
    .await
    .map_err(StoreError::query("reading the ledger"))?;
    rows.iter().map(entry).collect()
}

async fn read_checkpoints<'e, E>(ex: E) -> Result<Vec<Checkpoint>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM ledger_checkpoints ORDER BY seq"
    ))
    .fetch_all(ex)
    .await
    .map_err(StoreError::query("reading ledger checkpoints"))?;
    rows.iter().map(checkpoint).collect()
}

/// One append to the ledger: a transaction that reads the head, inserts the entry and, when one is
/// due, its checkpoint, so that an entry and the checkpoint the cadence requires land together or not
/// at all. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so the head it reads is the
/// head it appends to; on PostgreSQL a concurrent append of the same seq makes [`LedgerTx::insert`]
/// return `false` (the caller drops the transaction and tries again).
pub struct LedgerTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl LedgerTx {
    /// The newest entry, as this transaction sees it.
    pub async fn head(&mut self) -> Result<Option<Entry>, StoreError> {
        read_head(&mut *self.tx).await
    }

    /// Inserts `e`; `Ok(false)` when its seq is taken (the transaction is then spent: drop it).
    pub async fn insert(&mut self, e: &Entry) -> Result<bool, StoreError> {
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
        .execute(&mut *self.tx)
        .await;
        inserted(r, "appending to the ledger")
    }

    /// Every entry, by seq.
    pub async fn entries(&mut self) -> Result<Vec<Entry>, StoreError> {
        read_entries(&mut *self.tx, None).await
    }

    /// Every checkpoint, by seq.
    pub async fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        read_checkpoints(&mut *self.tx).await
    }

    /// Seq of the newest checkpoint (0 when there is none).
    pub async fn last_checkpoint_seq(&mut self) -> Result<i64, StoreError> {
        let last: Option<i64> = sqlx::query("SELECT MAX(seq) AS last FROM ledger_checkpoints")
            .fetch_one(&mut *self.tx)
            .await
            .and_then(|r| r.try_get("last"))
            .map_err(StoreError::query("reading the last ledger checkpoint"))?;
        Ok(last.unwrap_or(0))
    }

    /// Inserts `c`; `Ok(false)` when a checkpoint at its seq exists already.
    pub async fn insert_checkpoint(&mut self, c: &Checkpoint) -> Result<bool, StoreError> {
        let r = sqlx::query(&format!(
            "INSERT INTO ledger_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(c.seq)
        .bind(&c.head_hash)
        .bind(c.at_ms)
        .bind(&c.public_key)
        .bind(&c.signature)
        .bind(c.root.as_deref())
        .execute(&mut *self.tx)
        .await;
        inserted(r, "recording a ledger checkpoint")
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx
            .commit()
            .await
            .map_err(StoreError::query("committing a ledger append"))
    }
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
        read_head(self.store.pool()).await
    }

    /// Every entry, by seq (or those at or after `since_ms`).
    pub async fn entries(&self, since_ms: Option<i64>) -> Result<Vec<Entry>, StoreError> {
        read_entries(self.store.pool(), since_ms).await
    }

    /// Every entry and every checkpoint, read in one snapshot (a verifier that read them apart would
    /// see an entry committed in between without the checkpoint committed with it).
    pub async fn snapshot(&self) -> Result<(Vec<Entry>, Vec<Checkpoint>), StoreError> {
        let begin = match self.store.engine() {
            super::Engine::Sqlite => "BEGIN",
            super::Engine::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        let tx = self
            .store
            .pool()
            .begin_with(begin)
            .await
            .map_err(StoreError::query("starting a ledger read"))?;
        let mut tx = LedgerTx { tx };
        let entries = tx.entries().await?;
        let checkpoints = tx.checkpoints().await?;
        tx.tx
            .rollback()
            .await
            .map_err(StoreError::query("ending a ledger read"))?;
        Ok((entries, checkpoints))
    }

    /// Starts an append (see [`LedgerTx`]).
    pub async fn begin(&self) -> Result<LedgerTx, StoreError> {
        let tx = match self.store.engine() {
            super::Engine::Sqlite => self.store.pool().begin_with("BEGIN IMMEDIATE").await,
            super::Engine::Postgres => self.store.pool().begin().await,
        }
        .map_err(StoreError::query("starting a ledger append"))?;
        Ok(LedgerTx { tx })
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        read_checkpoints(self.store.pool()).await
    }
}
