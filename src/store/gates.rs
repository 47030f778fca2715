//! Gate decisions: the `gate_decisions` table.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GateDecision {
    pub id: String,
    pub run_id: String,
    pub audit_id: String,
    pub policy_name: String,
    pub policy_sha256: String,
    pub passed: bool,
    /// The per-rule table, as the policy module produced it.
    pub rows: serde_json::Value,
    pub created_by: Option<String>,
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, run_id, audit_id, policy_name, policy_sha256, passed, rows, created_by, created_at";

impl GateDecision {
    fn from_row(row: &AnyRow) -> Result<GateDecision, StoreError> {
        let q = || StoreError::query("reading a gate decision");
        let passed: i64 = row.try_get("passed").map_err(q())?;
        let rows: String = row.try_get("rows").map_err(q())?;
        Ok(GateDecision {
            id: row.try_get("id").map_err(q())?,
            run_id: row.try_get("run_id").map_err(q())?,
            audit_id: row.try_get("audit_id").map_err(q())?,
            policy_name: row.try_get("policy_name").map_err(q())?,
            policy_sha256: row.try_get("policy_sha256").map_err(q())?,
            passed: passed != 0,
            rows: serde_json::from_str(&rows).map_err(|e| StoreError::Corrupt {
                table: "gate_decisions",
                reason: format!("rows is not JSON: {e}"),
            })?,
            created_by: row.try_get("created_by").map_err(q())?,
            created_at: row.try_get("created_at").map_err(q())?,
        })
    }
}

/// Repository over gate decisions.
pub struct Gates<'a> {
    store: &'a Store,
}

impl<'a> Gates<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn record(&self, g: &GateDecision) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO gate_decisions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&g.id)
        .bind(&g.run_id)
        .bind(&g.audit_id)
        .bind(&g.policy_name)
        .bind(&g.policy_sha256)
        .bind(i64::from(g.passed))
        .bind(g.rows.to_string())
        .bind(&g.created_by)
        .bind(g.created_at)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("recording a gate decision"))?;
        Ok(())
    }

    /// Decisions about a run, oldest first.
    pub async fn for_run(&self, run_id: &str) -> Result<Vec<GateDecision>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM gate_decisions WHERE run_id = $1 ORDER BY created_at, id"
        ))
        .bind(run_id)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing gate decisions"))?;
        rows.iter().map(GateDecision::from_row).collect()
    }

    /// The newest decision about a run.
    pub async fn latest(&self, run_id: &str) -> Result<Option<GateDecision>, StoreError> {
        Ok(self.for_run(run_id).await?.pop())
    }
}
