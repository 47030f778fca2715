//! Training runs: the `runs`, `run_metrics` and `checkpoints` tables.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, DataKeyRow, Store, StoreError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: String,
    pub corpus_id: String,
    pub objective: String,
    pub preset: String,
    pub state: String,
    pub config: serde_json::Value,
    pub data_key_id: String,
    pub directory: String,
    pub step: i64,
    pub total_steps: i64,
    pub summary: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// The queued job that started the run, when a worker runs it.
    pub job_id: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct MetricRow {
    pub kind: String,
    pub step: i64,
    pub epoch: i64,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub lr: Option<f64>,
    pub grad_norm: Option<f64>,
    pub tokens_per_s: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointRow {
    pub step: i64,
    pub file: String,
    pub sha256: String,
    pub weights_sha256: String,
    pub bytes: i64,
    pub created_at: i64,
    /// Kept for good in the run's history (not pruned); see `train::KeepRule`.
    pub kept: bool,
    /// `epochs` and `utility` (what the checkpoint learned), as JSON; `None` for a resume checkpoint.
    pub info: Option<serde_json::Value>,
}

impl CheckpointRow {
    /// Epochs done at the checkpoint, when recorded.
    pub fn epochs(&self) -> Option<f64> {
        self.info
            .as_ref()
            .and_then(|i| i.get("epochs"))
            .and_then(|e| e.as_f64())
    }
}

const RUN_COLUMNS: &str =
    "id, corpus_id, objective, preset, state, config, data_key_id, directory, step, total_steps, \
                           summary, error, created_by, created_at, updated_at, finished_at, job_id";

fn json(row: &AnyRow, col: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let text: Option<String> = row.try_get(col).map_err(StoreError::query("reading a run"))?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            table: "runs",
            reason: format!("{col} is not JSON: {e}"),
        })
    })
    .transpose()
}

impl RunRow {
    fn from_row(row: &AnyRow) -> Result<RunRow, StoreError> {
        let q = || StoreError::query("reading a run");
        Ok(RunRow {
            id: row.try_get("id").map_err(q())?,
            corpus_id: row.try_get("corpus_id").map_err(q())?,
            objective: row.try_get("objective").map_err(q())?,
            preset: row.try_get("preset").map_err(q())?,
            state: row.try_get("state").map_err(q())?,
            config: json(row, "config")?.unwrap_or(serde_json::Value::Null),
            data_key_id: row.try_get("data_key_id").map_err(q())?,
            directory: row.try_get("directory").map_err(q())?,
            step: row.try_get("step").map_err(q())?,
            total_steps: row.try_get("total_steps").map_err(q())?,
            summary: json(row, "summary")?,
            error: row.try_get("error").map_err(q())?,
            created_by: row.try_get("created_by").map_err(q())?,
            created_at: row.try_get("created_at").map_err(q())?,
            updated_at: row.try_get("updated_at").map_err(q())?,
            finished_at: row.try_get("finished_at").map_err(q())?,
            job_id: row.try_get("job_id").map_err(q())?,
        })
    }
}

/// Repository over runs, their metrics and checkpoints.
pub struct Runs<'a> {
    store: &'a Store,
}

impl<'a> Runs<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Creates a run and its data key in one transaction.
    pub async fn create(&self, run: &RunRow, key: &DataKeyRow) -> Result<(), StoreError> {
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("starting a transaction"))?;
        super::corpora::insert_data_key(&mut tx, key).await?;
        sqlx::query(&format!(
            "INSERT INTO runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .bind(&run.id)
        .bind(&run.corpus_id)
        .bind(&run.objective)
        .bind(&run.preset)
        .bind(&run.state)
        .bind(run.config.to_string())
        .bind(&run.data_key_id)
        .bind(&run.directory)
        .bind(run.step)
        .bind(run.total_steps)
        .bind(run.summary.as_ref().map(|s| s.to_string()))
        .bind(run.error.clone())
        .bind(run.created_by.clone())
        .bind(run.created_at)
        .bind(run.updated_at)
        .bind(run.finished_at)
        .bind(run.job_id.clone())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("creating a run"))?;
        tx.commit().await.map_err(StoreError::query("committing a run"))
    }

    pub async fn get(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("reading a run"))?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    /// The newest run the queued job `job_id` started (a job handed back resumes it).
    pub async fn by_job(&self, job_id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = $1 ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(job_id)
        .fetch_optional(self.store.pool())
        .await
        .map_err(StoreError::query("reading a run"))?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    pub async fn list(&self) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id"
        ))
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing runs"))?;
        rows.iter().map(RunRow::from_row).collect()
    }

    pub async fn count_for_corpus(&self, corpus_id: &str) -> Result<i64, StoreError> {
        sqlx::query("SELECT COUNT(*) AS n FROM runs WHERE corpus_id = $1")
            .bind(corpus_id)
            .fetch_one(self.store.pool())
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(StoreError::query("counting runs"))
    }

    /// Records progress: state, step, summary, and (when finishing) the error and finish time.
    pub async fn update(
        &self,
        id: &str,
        state: &str,
        step: i64,
        summary: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let finished = matches!(state, "succeeded" | "failed").then_some(now);
        sqlx::query(
            "UPDATE runs SET state = $1, step = $2, summary = COALESCE($3, summary), error = $4, updated_at = $5, \
             finished_at = $6 WHERE id = $7",
        )
        .bind(state)
        .bind(step)
        .bind(summary.map(|s| s.to_string()))
        .bind(error.map(str::to_string))
        .bind(now)
        .bind(finished)
        .bind(id)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("updating a run"))?;
        Ok(())
    }

    /// Adds metric rows; a row for a (kind, step) already recorded (a resumed run repeating a step it had
    /// logged before its crash) replaces the old one.
    pub async fn add_metrics(&self, run_id: &str, rows: &[MetricRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("starting a transaction"))?;
        let now = now_ms();
        for m in rows {
            sqlx::query("DELETE FROM run_metrics WHERE run_id = $1 AND kind = $2 AND step = $3")
                .bind(run_id)
                .bind(&m.kind)
                .bind(m.step)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("replacing a metric"))?;
            // Not a cached prepared statement: sqlx 0.8's Any driver sends a missing `f64` as a
            // PostgreSQL `float4` NULL, and a statement first prepared that way then refuses the
            // 8-byte value of a later row ("incorrect binary data format in bind parameter"). Prepared
            // afresh, each execution's parameter types are its own.
            sqlx::query(
                "INSERT INTO run_metrics (run_id, kind, step, epoch, train_loss, val_loss, lr, grad_norm, tokens_per_s, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .persistent(false)
            .bind(run_id)
            .bind(&m.kind)
            .bind(m.step)
            .bind(m.epoch)
            .bind(m.train_loss)
            .bind(m.val_loss)
            .bind(m.lr)
            .bind(m.grad_norm)
            .bind(m.tokens_per_s)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("recording a metric"))?;
        }
        tx.commit().await.map_err(StoreError::query("committing metrics"))
    }

    pub async fn metrics(&self, run_id: &str) -> Result<Vec<MetricRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, step, epoch, train_loss, val_loss, lr, grad_norm, tokens_per_s FROM run_metrics \
             WHERE run_id = $1 ORDER BY step, kind",
        )
        .bind(run_id)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("reading metrics"))?;
        rows.iter()
            .map(|r| {
                let q = || StoreError::query("reading a metric");
                Ok(MetricRow {
                    kind: r.try_get("kind").map_err(q())?,
                    step: r.try_get("step").map_err(q())?,
                    epoch: r.try_get("epoch").map_err(q())?,
                    train_loss: r.try_get("train_loss").map_err(q())?,
                    val_loss: r.try_get("val_loss").map_err(q())?,
                    lr: r.try_get("lr").map_err(q())?,
                    grad_norm: r.try_get("grad_norm").map_err(q())?,
                    tokens_per_s: r.try_get("tokens_per_s").map_err(q())?,
                })
            })
            .collect()
    }

    pub async fn add_checkpoint(&self, run_id: &str, c: &CheckpointRow) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM checkpoints WHERE run_id = $1 AND step = $2")
            .bind(run_id)
            .bind(c.step)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("replacing a checkpoint"))?;
        sqlx::query(
            "INSERT INTO checkpoints (run_id, step, file, sha256, weights_sha256, bytes, created_at, kept, info) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(run_id)
        .bind(c.step)
        .bind(&c.file)
        .bind(&c.sha256)
        .bind(&c.weights_sha256)
        .bind(c.bytes)
        .bind(c.created_at)
        .bind(i64::from(c.kept))
        .bind(c.info.as_ref().map(|v| v.to_string()))
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("recording a checkpoint"))?;
        Ok(())
    }

    pub async fn remove_checkpoint(&self, run_id: &str, step: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM checkpoints WHERE run_id = $1 AND step = $2")
            .bind(run_id)
            .bind(step)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("removing a checkpoint"))?;
        Ok(())
    }

    /// Replaces a checkpoint's `info` (a new evaluation of it).
    pub async fn set_checkpoint_info(
        &self,
        run_id: &str,
        step: i64,
        info: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE checkpoints SET info = $1 WHERE run_id = $2 AND step = $3")
            .bind(info.to_string())
            .bind(run_id)
            .bind(step)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("recording a checkpoint's evaluation"))?;
        Ok(())
    }

    pub async fn checkpoints(&self, run_id: &str) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, file, sha256, weights_sha256, bytes, created_at, kept, info FROM checkpoints \
             WHERE run_id = $1 ORDER BY step",
        )
        .bind(run_id)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing checkpoints"))?;
        rows.iter()
            .map(|r| {
                let q = || StoreError::query("reading a checkpoint");
                Ok(CheckpointRow {
                    step: r.try_get("step").map_err(q())?,
                    file: r.try_get("file").map_err(q())?,
                    sha256: r.try_get("sha256").map_err(q())?,
                    weights_sha256: r.try_get("weights_sha256").map_err(q())?,
                    bytes: r.try_get("bytes").map_err(q())?,
                    created_at: r.try_get("created_at").map_err(q())?,
                    kept: r.try_get::<i64, _>("kept").map_err(q())? != 0,
                    info: {
                        let text: Option<String> = r.try_get("info").map_err(q())?;
                        text.map(|t| {
                            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                                table: "checkpoints",
                                reason: format!("info is not JSON: {e}"),
                            })
                        })
                        .transpose()?
                    },
                })
            })
            .collect()
    }
}
