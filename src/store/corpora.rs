//! Sealed corpora and data keys: the `corpora` and `data_keys` tables.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Store, StoreError};

/// A wrapped data key as stored: the wrapping is opaque here (the vault makes and opens it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRow {
    pub id: String,
    pub purpose: String,
    pub master_key_id: String,
    pub master_version: u32,
    /// The vault's wrapped-key blob (base64).
    pub wrapped: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CorpusRow {
    pub id: String,
    pub name: String,
    pub data_key_id: String,
    /// Directory of the sealed files, relative to the data directory.
    pub directory: String,
    pub documents: i64,
    pub tokens: i64,
    pub vocab: i64,
    pub stats: serde_json::Value,
    pub created_by: Option<String>,
    pub created_at: i64,
}

const CORPUS_COLUMNS: &str =
    "id, name, data_key_id, directory, documents, tokens, vocab, stats, created_by, created_at";

impl CorpusRow {
    fn from_row(row: &AnyRow) -> Result<CorpusRow, StoreError> {
        let q = || StoreError::query("reading a corpus");
        let stats: String = row.try_get("stats").map_err(q())?;
        Ok(CorpusRow {
            id: row.try_get("id").map_err(q())?,
            name: row.try_get("name").map_err(q())?,
            data_key_id: row.try_get("data_key_id").map_err(q())?,
            directory: row.try_get("directory").map_err(q())?,
            documents: row.try_get("documents").map_err(q())?,
            tokens: row.try_get("tokens").map_err(q())?,
            vocab: row.try_get("vocab").map_err(q())?,
            stats: serde_json::from_str(&stats).map_err(|e| StoreError::Corrupt {
                table: "corpora",
                reason: format!("stats is not JSON: {e}"),
            })?,
            created_by: row.try_get("created_by").map_err(q())?,
            created_at: row.try_get("created_at").map_err(q())?,
        })
    }
}

/// Repository over `corpora` and `data_keys`.
pub struct Corpora<'a> {
    store: &'a Store,
}

impl<'a> Corpora<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Registers a corpus and its data key in one transaction: both rows or neither.
    pub async fn register(&self, corpus: &CorpusRow, key: &DataKeyRow) -> Result<(), StoreError> {
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("starting a transaction"))?;
        insert_data_key(&mut tx, key).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO corpora ({CORPUS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&corpus.id)
        .bind(&corpus.name)
        .bind(&corpus.data_key_id)
        .bind(&corpus.directory)
        .bind(corpus.documents)
        .bind(corpus.tokens)
        .bind(corpus.vocab)
        .bind(corpus.stats.to_string())
        .bind(corpus.created_by.clone())
        .bind(corpus.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::CorpusExists(corpus.name.clone()))
            }
            Err(source) => {
                return Err(StoreError::Query {
                    context: "registering a corpus",
                    source,
                })
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing a corpus"))
    }

    pub async fn by_name(&self, name: &str) -> Result<Option<CorpusRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {CORPUS_COLUMNS} FROM corpora WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("looking up a corpus"))?;
        row.as_ref().map(CorpusRow::from_row).transpose()
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<CorpusRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {CORPUS_COLUMNS} FROM corpora WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("looking up a corpus"))?;
        row.as_ref().map(CorpusRow::from_row).transpose()
    }

    pub async fn list(&self) -> Result<Vec<CorpusRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {CORPUS_COLUMNS} FROM corpora ORDER BY name"))
            .fetch_all(self.store.pool())
            .await
            .map_err(StoreError::query("listing corpora"))?;
        rows.iter().map(CorpusRow::from_row).collect()
    }

    /// Removes the corpus row and its data key (crypto-shredding its files) in one transaction.
    pub async fn remove(&self, corpus: &CorpusRow) -> Result<(), StoreError> {
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("starting a transaction"))?;
        sqlx::query("DELETE FROM corpora WHERE id = $1")
            .bind(&corpus.id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("removing a corpus"))?;
        sqlx::query("DELETE FROM data_keys WHERE id = $1")
            .bind(&corpus.data_key_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("removing a data key"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a removal"))
    }

    pub async fn data_key(&self, id: &str) -> Result<DataKeyRow, StoreError> {
        let row = sqlx::query(
            "SELECT id, purpose, master_key_id, master_version, wrapped FROM data_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.store.pool())
        .await
        .map_err(StoreError::query("reading a data key"))?
        .ok_or_else(|| StoreError::Corrupt {
            table: "data_keys",
            reason: format!("data key {id} is missing"),
        })?;
        data_key_from_row(&row)
    }

    /// Every data key, for rotation.
    pub async fn all_data_keys(&self) -> Result<Vec<DataKeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, purpose, master_key_id, master_version, wrapped FROM data_keys ORDER BY id",
        )
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing data keys"))?;
        rows.iter().map(data_key_from_row).collect()
    }

    /// Replaces a data key's wrapping, provided it is still the wrapping the caller read (so two
    /// concurrent rotations cannot lose a key).
    pub async fn rewrap(&self, old: &DataKeyRow, new: &DataKeyRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE data_keys SET master_key_id = $1, master_version = $2, wrapped = $3, rewrapped_at = $4 \
             WHERE id = $5 AND wrapped = $6",
        )
        .bind(&new.master_key_id)
        .bind(i64::from(new.master_version))
        .bind(&new.wrapped)
        .bind(now_ms())
        .bind(&old.id)
        .bind(&old.wrapped)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("re-wrapping a data key"))?;
        Ok(done.rows_affected() == 1)
    }
}

/// Stores a new wrapped data key inside the caller's transaction (a corpus or a run is registered together
/// with its key, or not at all).
pub(super) async fn insert_data_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    key: &DataKeyRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO data_keys (id, purpose, master_key_id, master_version, wrapped, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key.id)
    .bind(&key.purpose)
    .bind(&key.master_key_id)
    .bind(i64::from(key.master_version))
    .bind(&key.wrapped)
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("storing a data key"))?;
    Ok(())
}

fn data_key_from_row(row: &AnyRow) -> Result<DataKeyRow, StoreError> {
    let q = || StoreError::query("reading a data key");
    let version: i64 = row.try_get("master_version").map_err(q())?;
    Ok(DataKeyRow {
        id: row.try_get("id").map_err(q())?,
        purpose: row.try_get("purpose").map_err(q())?,
        master_key_id: row.try_get("master_key_id").map_err(q())?,
        master_version: u32::try_from(version).map_err(|_| StoreError::Corrupt {
            table: "data_keys",
            reason: format!("master_version {version} out of range"),
        })?,
        wrapped: row.try_get("wrapped").map_err(q())?,
    })
}
