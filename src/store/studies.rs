//! Studies the appliance runs itself (`lethe study`): the `studies` table.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Store, StoreError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct StudyRow {
    pub id: String,
    /// `repetition`.
    pub kind: String,
    pub corpus_id: String,
    pub spec: serde_json::Value,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// The measured points so far (a running study fills them in as its runs finish).
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub job_id: Option<String>,
}

const COLUMNS: &str =
    "id, kind, corpus_id, spec, state, result, error, created_by, created_at, finished_at, job_id";

fn json(row: &AnyRow, col: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let text: Option<String> = row.try_get(col).map_err(StoreError::query("reading a study"))?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            table: "studies",
            reason: format!("{col} is not JSON: {e}"),
        })
    })
    .transpose()
}

impl StudyRow {
    fn from_row(row: &AnyRow) -> Result<StudyRow, StoreError> {
        let q = || StoreError::query("reading a study");
        Ok(StudyRow {
            id: row.try_get("id").map_err(q())?,
            kind: row.try_get("kind").map_err(q())?,
            corpus_id: row.try_get("corpus_id").map_err(q())?,
            spec: json(row, "spec")?.unwrap_or(serde_json::Value::Null),
            state: row.try_get("state").map_err(q())?,
            result: json(row, "result")?,
            error: row.try_get("error").map_err(q())?,
            created_by: row.try_get("created_by").map_err(q())?,
            created_at: row.try_get("created_at").map_err(q())?,
            finished_at: row.try_get("finished_at").map_err(q())?,
            job_id: row.try_get("job_id").map_err(q())?,
        })
    }
}

/// Repository over studies.
pub struct Studies<'a> {
    store: &'a Store,
}

impl<'a> Studies<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, s: &StudyRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO studies ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&s.id)
        .bind(&s.kind)
        .bind(&s.corpus_id)
        .bind(s.spec.to_string())
        .bind(&s.state)
        .bind(s.result.as_ref().map(|v| v.to_string()))
        .bind(&s.error)
        .bind(&s.created_by)
        .bind(s.created_at)
        .bind(s.finished_at)
        .bind(&s.job_id)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("recording a study"))?;
        Ok(())
    }

    /// Records the points measured so far, and the state (`running`, or how it ended).
    pub async fn update(
        &self,
        id: &str,
        state: &str,
        result: &serde_json::Value,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let finished = (state != "running").then(now_ms);
        sqlx::query("UPDATE studies SET state = $1, result = $2, error = $3, finished_at = $4 WHERE id = $5")
            .bind(state)
            .bind(result.to_string())
            .bind(error)
            .bind(finished)
            .bind(id)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("recording a study's results"))?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<StudyRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM studies WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("reading a study"))?;
        row.as_ref().map(StudyRow::from_row).transpose()
    }

    pub async fn by_job(&self, job_id: &str) -> Result<Option<StudyRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM studies WHERE job_id = $1"))
            .bind(job_id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("reading a study"))?;
        row.as_ref().map(StudyRow::from_row).transpose()
    }

    /// Newest first.
    pub async fn list(&self) -> Result<Vec<StudyRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM studies ORDER BY created_at DESC, id"
        ))
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing studies"))?;
        rows.iter().map(StudyRow::from_row).collect()
    }
}
