//! Memorization audits: the `audits` table.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Store, StoreError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub id: String,
    pub run_id: String,
    pub checkpoint_step: i64,
    pub checkpoint_sha256: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub quick: bool,
    pub params: serde_json::Value,
    /// The report's figures; `None` until the audit succeeds.
    pub report: Option<serde_json::Value>,
    /// Sealed evidence, relative to the data directory.
    pub evidence_file: Option<String>,
    pub evidence_sha256: Option<String>,
    pub error: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// The queued job that ran the audit, when a worker ran it.
    pub job_id: Option<String>,
}

const COLUMNS: &str = "id, run_id, checkpoint_step, checkpoint_sha256, state, quick, params, report, \
                       evidence_file, evidence_sha256, error, created_by, created_at, finished_at, job_id";

fn json(row: &AnyRow, col: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let text: Option<String> = row.try_get(col).map_err(StoreError::query("reading an audit"))?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            table: "audits",
            reason: format!("{col} is not JSON: {e}"),
        })
    })
    .transpose()
}

impl AuditRow {
    fn from_row(row: &AnyRow) -> Result<AuditRow, StoreError> {
        let q = || StoreError::query("reading an audit");
        let quick: i64 = row.try_get("quick").map_err(q())?;
        Ok(AuditRow {
            id: row.try_get("id").map_err(q())?,
            run_id: row.try_get("run_id").map_err(q())?,
            checkpoint_step: row.try_get("checkpoint_step").map_err(q())?,
            checkpoint_sha256: row.try_get("checkpoint_sha256").map_err(q())?,
            state: row.try_get("state").map_err(q())?,
            quick: quick != 0,
            params: json(row, "params")?.unwrap_or(serde_json::Value::Null),
            report: json(row, "report")?,
            evidence_file: row.try_get("evidence_file").map_err(q())?,
            evidence_sha256: row.try_get("evidence_sha256").map_err(q())?,
            error: row.try_get("error").map_err(q())?,
            created_by: row.try_get("created_by").map_err(q())?,
            created_at: row.try_get("created_at").map_err(q())?,
            finished_at: row.try_get("finished_at").map_err(q())?,
            job_id: row.try_get("job_id").map_err(q())?,
        })
    }
}

/// Repository over audits.
pub struct Audits<'a> {
    store: &'a Store,
}

impl<'a> Audits<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Records an audit that has started.
    pub async fn create(&self, a: &AuditRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO audits ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(&a.id)
        .bind(&a.run_id)
        .bind(a.checkpoint_step)
        .bind(&a.checkpoint_sha256)
        .bind(&a.state)
        .bind(i64::from(a.quick))
        .bind(a.params.to_string())
        .bind(a.report.as_ref().map(|r| r.to_string()))
        .bind(&a.evidence_file)
        .bind(&a.evidence_sha256)
        .bind(&a.error)
        .bind(&a.created_by)
        .bind(a.created_at)
        .bind(a.finished_at)
        .bind(&a.job_id)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("recording an audit"))?;
        Ok(())
    }

    /// Audits the queued job `job_id` left running (its worker died before finishing them).
    pub async fn running_for_job(&self, job_id: &str) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audits WHERE job_id = $1 AND state = 'running'"
        ))
        .bind(job_id)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing a job's audits"))?;
        rows.iter().map(AuditRow::from_row).collect()
    }

    /// Marks an audit succeeded with its report and sealed evidence.
    pub async fn succeed(
        &self,
        id: &str,
        report: &serde_json::Value,
        evidence_file: &str,
        evidence_sha256: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE audits SET state = 'succeeded', report = $1, evidence_file = $2, evidence_sha256 = $3, \
             finished_at = $4 WHERE id = $5 AND state = 'running'",
        )
        .bind(report.to_string())
        .bind(evidence_file)
        .bind(evidence_sha256)
        .bind(now_ms())
        .bind(id)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("finishing an audit"))?;
        Ok(())
    }

    /// Marks an audit failed with its reason.
    pub async fn fail(&self, id: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE audits SET state = 'failed', error = $1, finished_at = $2 WHERE id = $3")
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("failing an audit"))?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<AuditRow>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM audits WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("reading an audit"))?
            .as_ref()
            .map(AuditRow::from_row)
            .transpose()
    }

    /// The run's newest audit that succeeded.
    pub async fn latest_succeeded(&self, run_id: &str) -> Result<Option<AuditRow>, StoreError> {
        Ok(self
            .list(Some(run_id))
            .await?
            .into_iter()
            .rev()
            .find(|a| a.state == "succeeded"))
    }

    /// Audits of one run (or all), oldest first.
    pub async fn list(&self, run_id: Option<&str>) -> Result<Vec<AuditRow>, StoreError> {
        let rows = match run_id {
            Some(run) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM audits WHERE run_id = $1 ORDER BY created_at, id"
                ))
                .bind(run)
                .fetch_all(self.store.pool())
                .await
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM audits ORDER BY created_at, id"))
                    .fetch_all(self.store.pool())
                    .await
            }
        }
        .map_err(StoreError::query("listing audits"))?;
        rows.iter().map(AuditRow::from_row).collect()
    }
}
