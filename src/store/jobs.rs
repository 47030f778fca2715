//! The job queue: the `jobs` table. Ingest, training and audits run as jobs so that the console can start
//! them and several `lethe worker` processes, on several hosts, can share one queue.
//!
//! A claim is one `UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING …` statement: on PostgreSQL the inner
//! select takes `FOR UPDATE SKIP LOCKED`, so concurrent claimers skip each other's rows instead of
//! queueing on them; on SQLite the statement runs under the database's single write lock. Either way a
//! job is handed to exactly one worker. Every later write by the worker names the worker, so a worker
//! whose lease lapsed (its job handed back by [`Jobs::requeue_stale`]) can no longer finish it.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{new_id, now_ms, Engine, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<JobState, StoreError> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => {
                return Err(StoreError::Corrupt {
                    table: "jobs",
                    reason: format!("unknown state {other:?}"),
                })
            }
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub args: serde_json::Value,
    pub created_by: Option<String>,
    /// How many claims the job may take before it is failed for good (a job that kills its worker every
    /// time must not loop forever).
    pub max_attempts: i64,
    /// Only a worker with a GPU may take it.
    pub needs_gpu: bool,
    /// Memory the job is estimated to need; a worker advertising less does not take it (0: any).
    pub needs_memory_bytes: i64,
    /// The job that made this one (the parts of a sharded audit name their planning job).
    pub parent_id: Option<String>,
    /// Jobs that belong together (a sharded audit's parts, under the audit's id).
    pub group_id: Option<String>,
    /// Not claimed until every job of this group has succeeded (a sharded audit's merge).
    pub after_group: Option<String>,
}

impl NewJob {
    pub fn new(kind: &str, args: serde_json::Value) -> Self {
        Self {
            kind: kind.to_string(),
            args,
            created_by: None,
            max_attempts: 3,
            needs_gpu: false,
            needs_memory_bytes: 0,
            parent_id: None,
            group_id: None,
            after_group: None,
        }
    }
}

/// What a claiming worker offers: the kinds it runs, its GPUs and its memory. A job is handed only to a
/// worker that meets its needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Capacity {
    /// Kinds the worker runs (any when empty).
    pub kinds: Vec<String>,
    pub gpus: i64,
    pub memory_bytes: i64,
}

impl Capacity {
    /// Whether a worker offering this can run `job`: the test the claim statement makes in SQL.
    pub fn fits(&self, job: &Job) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&job.kind))
            && (!job.needs_gpu || self.gpus > 0)
            && job.needs_memory_bytes <= self.memory_bytes
    }

    /// Any job of these kinds, whatever it needs (tests and single-host tools).
    pub fn unlimited(kinds: &[&str]) -> Capacity {
        Capacity {
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            gpus: i64::MAX,
            memory_bytes: i64::MAX,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub args: serde_json::Value,
    pub state: JobState,
    pub progress: f64,
    pub message: Option<String>,
    pub owner: Option<String>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub claimed_at: Option<i64>,
    pub heartbeat_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub needs_gpu: bool,
    pub needs_memory_bytes: i64,
    pub parent_id: Option<String>,
    pub group_id: Option<String>,
    pub after_group: Option<String>,
}

const COLUMNS: &str =
    "id, kind, args, state, progress, message, owner, attempts, max_attempts, result, error, \
     created_by, created_at, updated_at, claimed_at, heartbeat_at, finished_at, needs_gpu, \
     needs_memory_bytes, parent_id, group_id, after_group";

fn json_column(row: &AnyRow, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let text: Option<String> = row.try_get(name).map_err(StoreError::query("reading a job"))?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            table: "jobs",
            reason: format!("column {name} is not JSON: {e}"),
        })
    })
    .transpose()
}

impl Job {
    fn from_row(row: &AnyRow) -> Result<Job, StoreError> {
        let q = || StoreError::query("reading a job");
        let state: String = row.try_get("state").map_err(q())?;
        Ok(Job {
            id: row.try_get("id").map_err(q())?,
            kind: row.try_get("kind").map_err(q())?,
            args: json_column(row, "args")?.unwrap_or(serde_json::Value::Null),
            state: JobState::parse(&state)?,
            progress: row.try_get("progress").map_err(q())?,
            message: row.try_get("message").map_err(q())?,
            owner: row.try_get("owner").map_err(q())?,
            attempts: row.try_get("attempts").map_err(q())?,
            max_attempts: row.try_get("max_attempts").map_err(q())?,
            result: json_column(row, "result")?,
            error: row.try_get("error").map_err(q())?,
            created_by: row.try_get("created_by").map_err(q())?,
            created_at: row.try_get("created_at").map_err(q())?,
            updated_at: row.try_get("updated_at").map_err(q())?,
            claimed_at: row.try_get("claimed_at").map_err(q())?,
            heartbeat_at: row.try_get("heartbeat_at").map_err(q())?,
            finished_at: row.try_get("finished_at").map_err(q())?,
            needs_gpu: row.try_get::<i64, _>("needs_gpu").map_err(q())? != 0,
            needs_memory_bytes: row.try_get("needs_memory_bytes").map_err(q())?,
            parent_id: row.try_get("parent_id").map_err(q())?,
            group_id: row.try_get("group_id").map_err(q())?,
            after_group: row.try_get("after_group").map_err(q())?,
        })
    }
}

/// What [`Jobs::requeue_stale`] did to a job whose worker stopped heartbeating.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reaped {
    pub id: String,
    pub previous_owner: String,
    /// `queued` again, or `failed` when it had used all its attempts.
    pub now: JobState,
}

/// Repository over `jobs`.
pub struct Jobs<'a> {
    store: &'a Store,
}

impl<'a> Jobs<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn enqueue(&self, job: &NewJob) -> Result<String, StoreError> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::query("enqueueing a job"))?;
        insert(&mut conn, job).await
    }

    /// Queues the jobs another job made (a sharded audit's parts and merge) and marks that job succeeded
    /// with `result`, in one transaction: a planning job that dies half way leaves no parts behind, and
    /// one whose lease lapsed cannot add any.
    pub async fn spawn_and_succeed(
        &self,
        id: &str,
        worker: &str,
        children: &[NewJob],
        result: &serde_json::Value,
    ) -> Result<Vec<String>, StoreError> {
        let q = || StoreError::query("queueing a job's parts");
        let mut tx = self.store.pool().begin().await.map_err(q())?;
        let rows = finish_on(
            &mut tx,
            id,
            worker,
            JobState::Succeeded,
            Some(result.to_string()),
            None,
        )
        .await?;
        self.held(rows, id, worker)?;
        let mut ids = Vec::with_capacity(children.len());
        for child in children {
            let mut child = child.clone();
            child.parent_id = Some(id.to_string());
            ids.push(insert(&mut tx, &child).await?);
        }
        tx.commit().await.map_err(q())?;
        Ok(ids)
    }

    /// The jobs of a group, oldest first.
    pub async fn group(&self, group_id: &str) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE group_id = $1 ORDER BY created_at, id"
        ))
        .bind(group_id)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("reading a job group"))?;
        rows.iter().map(Job::from_row).collect()
    }

    pub async fn get(&self, id: &str) -> Result<Job, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("reading a job"))?
            .ok_or_else(|| StoreError::JobNotFound(id.to_string()))?;
        Job::from_row(&row)
    }

    /// The most recent jobs first.
    pub async fn list(&self, limit: i64) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("listing jobs"))?;
        rows.iter().map(Job::from_row).collect()
    }

    /// Atomically takes the oldest queued job of one of `kinds` (any kind when empty) for `worker`,
    /// whatever the job needs.
    pub async fn claim(&self, worker: &str, kinds: &[&str]) -> Result<Option<Job>, StoreError> {
        self.claim_for(worker, &Capacity::unlimited(kinds)).await
    }

    /// Atomically takes the oldest queued job that `capacity` can run: one of its kinds, needing no GPU
    /// unless it has one, no more memory than it has, and not waiting for a group that is unfinished.
    pub async fn claim_for(&self, worker: &str, capacity: &Capacity) -> Result<Option<Job>, StoreError> {
        let now = now_ms();
        // $1 worker, $2 now, $3 gpus, $4 memory, $5.. kinds.
        let kind_filter = if capacity.kinds.is_empty() {
            String::new()
        } else {
            let marks: Vec<String> = (0..capacity.kinds.len()).map(|i| format!("${}", i + 5)).collect();
            format!(" AND j.kind IN ({})", marks.join(", "))
        };
        let lock = match self.store.engine() {
            Engine::Postgres => " FOR UPDATE OF j SKIP LOCKED",
            Engine::Sqlite => "",
        };
        // A merge waits for its group; a group member that is still queued or running blocks it.
        let sql = format!(
            "UPDATE jobs SET state = 'running', owner = $1, attempts = attempts + 1, claimed_at = $2, \
             heartbeat_at = $2, updated_at = $2 \
             WHERE state = 'queued' AND id = (SELECT j.id FROM jobs j WHERE j.state = 'queued'{kind_filter} \
             AND (j.needs_gpu = 0 OR $3 > 0) AND j.needs_memory_bytes <= $4 \
             AND (j.after_group IS NULL OR NOT EXISTS (SELECT 1 FROM jobs g \
                  WHERE g.group_id = j.after_group AND g.state <> 'succeeded')) \
             ORDER BY j.created_at, j.id LIMIT 1{lock}) \
             RETURNING {COLUMNS}"
        );
        let mut query = sqlx::query(&sql)
            .bind(worker)
            .bind(now)
            .bind(capacity.gpus)
            .bind(capacity.memory_bytes);
        for kind in &capacity.kinds {
            query = query.bind(kind.as_str());
        }
        let row = query
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("claiming a job"))?;
        row.as_ref().map(Job::from_row).transpose()
    }

    /// Records that `worker` is alive and how far it got. `LeaseLost` when the job is no longer its own.
    pub async fn heartbeat(
        &self,
        id: &str,
        worker: &str,
        progress: f64,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET heartbeat_at = $1, updated_at = $1, progress = $2, message = COALESCE($3, message) \
             WHERE id = $4 AND owner = $5 AND state = 'running'",
        )
        .bind(now)
        .bind(progress.clamp(0.0, 1.0))
        .bind(message.map(str::to_string))
        .bind(id)
        .bind(worker)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("recording a heartbeat"))?;
        self.held(done.rows_affected(), id, worker)
    }

    /// Marks the job done with its result. Exactly one of succeed/fail can win for a claim.
    pub async fn succeed(
        &self,
        id: &str,
        worker: &str,
        result: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.finish(id, worker, JobState::Succeeded, Some(result.to_string()), None)
            .await
    }

    pub async fn fail(&self, id: &str, worker: &str, error: &str) -> Result<(), StoreError> {
        self.finish(id, worker, JobState::Failed, None, Some(error.to_string()))
            .await
    }

    async fn finish(
        &self,
        id: &str,
        worker: &str,
        state: JobState,
        result: Option<String>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::query("finishing a job"))?;
        let rows = finish_on(&mut conn, id, worker, state, result, error).await?;
        self.held(rows, id, worker)
    }

    fn held(&self, rows: u64, id: &str, worker: &str) -> Result<(), StoreError> {
        if rows == 1 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost {
                id: id.to_string(),
                worker: worker.to_string(),
            })
        }
    }

    /// Hands back the jobs `worker` is running because it is stopping on purpose (a signal, a
    /// deployment): queued again at once for another worker, without waiting for the lease to lapse,
    /// and without counting the claim as an attempt (a deliberate stop is not the job's failure).
    pub async fn hand_back(&self, worker: &str) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'queued', updated_at = $1, attempts = attempts - 1, \
             message = 'handed back: worker ' || owner || ' stopped on a signal' \
             WHERE state = 'running' AND owner = $2 \
             RETURNING id",
        )
        .bind(now)
        .bind(worker)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("handing back a stopping worker's jobs"))?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::query("reading a job")))
            .collect()
    }

    /// Fails every queued job waiting for a group in which a job failed or was cancelled (its merge can
    /// never run), naming that job; returns the failed waiters with their group.
    pub async fn fail_orphans(&self) -> Result<Vec<(String, String)>, StoreError> {
        let now = now_ms();
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'failed', finished_at = $1, updated_at = $1, \
             error = 'a job it waits for ended without success: ' || (SELECT MIN(g.id) FROM jobs g \
                 WHERE g.group_id = jobs.after_group AND g.state IN ('failed', 'cancelled')) \
             WHERE state = 'queued' AND after_group IS NOT NULL AND EXISTS (SELECT 1 FROM jobs g \
                 WHERE g.group_id = jobs.after_group AND g.state IN ('failed', 'cancelled')) \
             RETURNING id, after_group",
        )
        .bind(now)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("failing jobs whose group failed"))?;
        rows.iter()
            .map(|r| {
                let q = || StoreError::query("reading a job");
                Ok((
                    r.try_get("id").map_err(q())?,
                    r.try_get("after_group").map_err(q())?,
                ))
            })
            .collect()
    }

    /// Hands back every running job whose heartbeat is older than `lease_ms`: queued again if it has
    /// attempts left, failed (naming the worker that went silent) otherwise.
    pub async fn requeue_stale(&self, lease_ms: i64) -> Result<Vec<Reaped>, StoreError> {
        let now = now_ms();
        let cutoff = now - lease_ms;
        let failed = sqlx::query(
            "UPDATE jobs SET state = 'failed', finished_at = $1, updated_at = $1, \
             error = 'worker ' || owner || ' stopped heartbeating and the job has no attempts left' \
             WHERE state = 'running' AND heartbeat_at < $2 AND attempts >= max_attempts \
             RETURNING id, owner",
        )
        .bind(now)
        .bind(cutoff)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("failing jobs whose worker stopped"))?;
        // `owner` is left as it was: it names the last worker, and a lapsed worker cannot write again
        // because every write requires `state = 'running'` and its own name.
        let requeued = sqlx::query(
            "UPDATE jobs SET state = 'queued', updated_at = $1, \
             message = 'handed back: worker ' || owner || ' stopped heartbeating' \
             WHERE state = 'running' AND heartbeat_at < $2 AND attempts < max_attempts \
             RETURNING id, owner",
        )
        .bind(now)
        .bind(cutoff)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("requeueing jobs whose worker stopped"))?;
        let mut out = Vec::with_capacity(failed.len() + requeued.len());
        for (rows, now) in [(&failed, JobState::Failed), (&requeued, JobState::Queued)] {
            for row in rows {
                out.push(Reaped {
                    id: row.try_get("id").map_err(StoreError::query("reading a job"))?,
                    previous_owner: row.try_get("owner").map_err(StoreError::query("reading a job"))?,
                    now,
                });
            }
        }
        Ok(out)
    }
}

/// Finishes job `id` on `conn` (a pool connection or a transaction) if `worker` still runs it; returns
/// the rows changed (0 when the job is no longer the worker's).
async fn finish_on(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    worker: &str,
    state: JobState,
    result: Option<String>,
    error: Option<String>,
) -> Result<u64, StoreError> {
    let now = now_ms();
    // A succeeded job is complete by definition; a failed one keeps the progress it reached.
    let progress = if state == JobState::Succeeded {
        "progress = 1, "
    } else {
        ""
    };
    let done = sqlx::query(&format!(
        "UPDATE jobs SET {progress}state = $1, result = $2, error = $3, finished_at = $4, updated_at = $4 \
         WHERE id = $5 AND owner = $6 AND state = 'running'"
    ))
    .bind(state.as_str())
    .bind(result)
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(worker)
    .execute(conn)
    .await
    .map_err(StoreError::query("finishing a job"))?;
    Ok(done.rows_affected())
}

/// Inserts a queued job on `conn` (a pool connection or a transaction).
async fn insert(conn: &mut sqlx::AnyConnection, job: &NewJob) -> Result<String, StoreError> {
    let id = new_id("job");
    let now = now_ms();
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, state, progress, attempts, max_attempts, created_by, created_at, \
         updated_at, needs_gpu, needs_memory_bytes, parent_id, group_id, after_group) \
         VALUES ($1, $2, $3, 'queued', 0, 0, $4, $5, $6, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&id)
    .bind(&job.kind)
    .bind(job.args.to_string())
    .bind(job.max_attempts.max(1))
    .bind(job.created_by.clone())
    .bind(now)
    .bind(i64::from(job.needs_gpu))
    .bind(job.needs_memory_bytes.max(0))
    .bind(job.parent_id.clone())
    .bind(job.group_id.clone())
    .bind(job.after_group.clone())
    .execute(conn)
    .await
    .map_err(StoreError::query("enqueueing a job"))?;
    Ok(id)
}
