//! The worker: claims queued jobs and runs them, heartbeating while they run, so the console (and
//! `lethe train --queue`, `lethe audit --queue`) can start work that any `lethe worker` process picks up:
//! `train` and `audit` jobs. A training job whose worker died is handed back by the lease and resumed from
//! the run's last checkpoint; an audit job handed back starts its audit again (an audit is minutes, and
//! its partial state is not worth sealing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::train::TrainRequest;
use super::App;
use crate::store::{Job, NewJob};
use crate::train::Event;

/// Job kinds this worker can run.
pub const KINDS: &[&str] = &["train", "audit"];
/// How long a running job may go without a heartbeat before another worker may take it, by default.
pub const LEASE_MS: i64 = 60_000;
const HEARTBEAT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize)]
pub struct WorkerReport {
    pub worker: String,
    pub succeeded: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Jobs given back to the queue when the worker was stopped by a signal.
    pub handed_back: Vec<String>,
}

/// A worker's name in the queue: host, process and a random suffix, unique across hosts.
pub fn worker_name() -> anyhow::Result<String> {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "host".into());
    Ok(format!(
        "{}-{}-{}",
        host.trim(),
        std::process::id(),
        crate::vault::random_hex(3)?
    ))
}

impl App {
    /// Queues a training run; a worker runs it.
    pub async fn enqueue_train(&self, req: &TrainRequest) -> anyhow::Result<String> {
        // Fail now, not in the worker, on what can be checked without training.
        self.corpus_row(&req.corpus).await?;
        let mut job = NewJob::new("train", serde_json::to_value(req)?);
        job.created_by = req.created_by.clone();
        Ok(self.store.jobs().enqueue(&job).await?)
    }

    /// Runs queued jobs until none is left (`once`) or forever, polling every `poll`. Running jobs whose
    /// heartbeat is older than `lease_ms` are handed back first.
    pub async fn work(&self, once: bool, poll: Duration, lease_ms: i64) -> anyhow::Result<WorkerReport> {
        self.work_as(&worker_name()?, once, poll, lease_ms).await
    }

    /// [`App::work`] under a name the caller chose, so that on a signal it can hand back what this
    /// worker holds ([`crate::store::Jobs::hand_back`]).
    pub async fn work_as(
        &self,
        worker: &str,
        once: bool,
        poll: Duration,
        lease_ms: i64,
    ) -> anyhow::Result<WorkerReport> {
        let worker = worker.to_string();
        let mut report = WorkerReport {
            worker: worker.clone(),
            succeeded: Vec::new(),
            failed: Vec::new(),
            handed_back: Vec::new(),
        };
        loop {
            for r in self
                .store
                .jobs()
                .requeue_stale(lease_ms.max(HEARTBEAT.as_millis() as i64 * 2))
                .await?
            {
                tracing::warn!(job = %r.id, previous = %r.previous_owner, now = ?r.now, "handed back a job whose worker went silent");
            }
            let Some(job) = self.store.jobs().claim(&worker, KINDS).await? else {
                if once {
                    return Ok(report);
                }
                tokio::time::sleep(poll).await;
                continue;
            };
            eprintln!(
                "worker {worker}: running {} job {} (attempt {})",
                job.kind, job.id, job.attempts
            );
            match self.run_job(&worker, &job).await {
                Ok(result) => {
                    self.store.jobs().succeed(&job.id, &worker, &result).await?;
                    report.succeeded.push(job.id.clone());
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    eprintln!("worker {worker}: job {} failed: {msg}", job.id);
                    self.store.jobs().fail(&job.id, &worker, &msg).await?;
                    report.failed.push((job.id.clone(), msg));
                }
            }
        }
    }

    async fn run_job(&self, worker: &str, job: &Job) -> anyhow::Result<serde_json::Value> {
        match job.kind.as_str() {
            "train" => {
                let mut req: TrainRequest = serde_json::from_value(job.args.clone())
                    .map_err(|e| anyhow::anyhow!("job {} has invalid arguments: {e}", job.id))?;
                // The trainer is whoever queued the job; the worker is only the hands.
                req.created_by = req.created_by.or_else(|| job.created_by.clone());
                req.job_id = Some(job.id.clone());
                let step = Arc::new(AtomicU64::new(0));
                let total = Arc::new(AtomicU64::new(1));
                let beat = {
                    let (store, id, worker) = (self.store.clone(), job.id.clone(), worker.to_string());
                    let (step, total) = (step.clone(), total.clone());
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(HEARTBEAT).await;
                            let (s, t) = (step.load(Ordering::Relaxed), total.load(Ordering::Relaxed).max(1));
                            let msg = format!("step {s}/{t}");
                            if let Err(e) = store
                                .jobs()
                                .heartbeat(&id, &worker, s as f64 / t as f64, Some(&msg))
                                .await
                            {
                                tracing::error!(job = %id, "heartbeat failed: {e}");
                            }
                        }
                    })
                };
                let mut progress = |ev: &Event| match ev {
                    Event::Started {
                        step: s, total_steps, ..
                    } => {
                        step.store(*s, Ordering::Relaxed);
                        total.store(*total_steps, Ordering::Relaxed);
                    }
                    Event::Step { step: s, .. } => step.store(*s, Ordering::Relaxed),
                    _ => {}
                };
                // A job handed back after its worker died continues the run that worker started.
                let previous = self.store.runs().by_job(&job.id).await?;
                let result = match previous {
                    Some(run) if run.state != "succeeded" => {
                        self.resume(&run.id, req.max_steps, &mut progress).await
                    }
                    _ => self.train(req, &mut progress).await,
                };
                beat.abort();
                Ok(serde_json::to_value(result?)?)
            }
            "audit" => {
                let mut req: super::audit::AuditRequest = serde_json::from_value(job.args.clone())
                    .map_err(|e| anyhow::anyhow!("job {} has invalid arguments: {e}", job.id))?;
                req.created_by = req.created_by.or_else(|| job.created_by.clone());
                req.job_id = Some(job.id.clone());
                // A job handed back after its worker died starts its audit again; the audit that worker
                // left running will never finish, so it is closed as failed with the reason.
                for stale in self.store.audits().running_for_job(&job.id).await? {
                    let why = format!(
                        "the worker running job {} stopped; the job started the audit again",
                        job.id
                    );
                    self.store.audits().fail(&stale.id, &why).await?;
                }
                let done = Arc::new(AtomicU64::new(0));
                let beat = {
                    let (store, id, worker) = (self.store.clone(), job.id.clone(), worker.to_string());
                    let done = done.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(HEARTBEAT).await;
                            // Six stages, each reporting its own fraction: stage index + fraction, in ‰.
                            let d = done.load(Ordering::Relaxed) as f64 / 6000.0;
                            if let Err(e) = store.jobs().heartbeat(&id, &worker, d, None).await {
                                tracing::error!(job = %id, "heartbeat failed: {e}");
                            }
                        }
                    })
                };
                let mut progress = |s: crate::audit::Stage, d: usize, t: usize| {
                    let stage = s as u64;
                    let frac = if t == 0 { 1.0 } else { d as f64 / t as f64 };
                    done.store(stage * 1000 + (frac * 1000.0) as u64, Ordering::Relaxed);
                };
                let result = self.audit(req, &mut progress).await;
                beat.abort();
                let r = result?;
                Ok(serde_json::json!({ "audit": r.audit, "run": r.run }))
            }
            other => anyhow::bail!("this worker cannot run {other} jobs"),
        }
    }
}
