//! The worker: claims queued jobs it can run and runs them, heartbeating while they run, so the console
//! (and `lethe train --queue`, `lethe audit --queue`) can start work that any `lethe worker` process,
//! on any host sharing the database and the storage root, picks up.
//!
//! A worker registers in the `workers` table with what it has (GPUs, memory, kinds) and offers the same
//! with every claim, so it only takes jobs it can run: a job queued with `gpu` waits for a GPU worker,
//! and a job whose memory estimate exceeds a worker's memory is left for a bigger one.
//!
//! A training job whose worker died is handed back by the lease and resumed from the run's last
//! checkpoint. A queued audit with more than one shard runs as pieces ([`super::audit_shards`]), so a
//! dead worker costs only its piece; an unsharded audit handed back starts again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::audit_shards::{PieceArgs, MERGE_KIND, SCORES_KIND, SHARD_KIND};
use super::train::TrainRequest;
use super::App;
use crate::audit::Stage;
use crate::store::{Capacity, Job, NewJob, WorkerRow};
use crate::train::Event;

/// Job kinds this worker can run.
pub const KINDS: &[&str] = &[
    "train",
    "audit",
    SHARD_KIND,
    SCORES_KIND,
    MERGE_KIND,
    "study",
    "select",
];
/// How long a running job may go without a heartbeat before another worker may take it, by default.
pub const LEASE_MS: i64 = 60_000;
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A worker not seen for this long is not listed as live (it polls every few seconds when idle and
/// heartbeats every five while it runs a job).
const LIVE_MS: i64 = 120_000;
/// Memory every job needs besides its data: libtorch, the runtime, buffers.
const BASE_MEMORY: i64 = 512 << 20;

#[derive(Debug, Default, Serialize)]
pub struct WorkerReport {
    pub worker: String,
    pub capacity: Option<Capacity>,
    pub succeeded: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Jobs given back to the queue when the worker was stopped by a signal.
    pub handed_back: Vec<String>,
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub name: String,
    /// Exit once nothing is left that this worker can run.
    pub once: bool,
    pub poll: Duration,
    pub lease_ms: i64,
    pub capacity: Capacity,
}

impl WorkerOptions {
    /// A worker named for this process, offering what this host has.
    pub fn detect(once: bool, poll: Duration, lease_ms: i64, memory: Option<i64>) -> anyhow::Result<Self> {
        Ok(WorkerOptions {
            name: worker_name()?,
            once,
            poll,
            lease_ms,
            capacity: detect_capacity(memory),
        })
    }
}

/// A worker's name in the queue: host, process and a random suffix, unique across hosts.
pub fn worker_name() -> anyhow::Result<String> {
    Ok(format!(
        "{}-{}-{}",
        host_name(),
        std::process::id(),
        crate::vault::random_hex(3)?
    ))
}

/// This host's name (`host` when it has none), as worker names and run locks carry it.
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// What this host offers: the CUDA devices libtorch sees, and memory: physical memory, or the cgroup
/// limit when there is a lower one (a container), or `memory` when the operator says less.
pub fn detect_capacity(memory: Option<i64>) -> Capacity {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(i64::MAX);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(i64::MAX);
    let found = physical.min(cgroup);
    Capacity {
        kinds: KINDS.iter().map(|k| k.to_string()).collect(),
        gpus: crate::model::runtime::TorchRuntime::probe().cuda_devices,
        memory_bytes: memory.map_or(found, |m| m.min(found)),
    }
}

/// Memory a training job is estimated to need: fp32 weights, gradients and two AdamW moments (16 bytes
/// a parameter), activations kept for the backward pass (about 34 values a position per layer and
/// width unit, after Korthikanti et al.), and the packed corpus (8 bytes a token). A GPU job's
/// weights and activations live on the card, but the host still loads them, so the figure is a
/// conservative bound for either.
pub fn train_memory(parameters: i64, batch: i64, context: i64, width: i64, layers: i64, tokens: i64) -> i64 {
    BASE_MEMORY + parameters * 16 + batch * context * width * layers * 34 * 4 / 8 + tokens * 8
}

/// Memory an audit is estimated to need: the weights (4 bytes a parameter), the corpus in memory
/// (token arrays, a decoded copy for the secret lookups: about 16 bytes a token), and its sampling.
pub fn audit_memory(parameters: i64, tokens: i64) -> i64 {
    BASE_MEMORY + parameters * 4 + tokens * 16
}

/// Sends heartbeats for a job while it runs; stops when dropped.
struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    /// Progress in millionths.
    progress: Arc<AtomicU64>,
    message: Arc<Mutex<Option<String>>>,
}

impl Heartbeat {
    fn start(app: &App, job: &Job, worker: &str) -> Heartbeat {
        let progress = Arc::new(AtomicU64::new(0));
        let message = Arc::new(Mutex::new(None::<String>));
        let (store, id, worker) = (app.store.clone(), job.id.clone(), worker.to_string());
        let (p, m) = (progress.clone(), message.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let done = p.load(Ordering::Relaxed) as f64 / 1e6;
                let msg = m.lock().ok().and_then(|g| g.clone());
                if let Err(e) = store.jobs().heartbeat(&id, &worker, done, msg.as_deref()).await {
                    tracing::error!(job = %id, "heartbeat failed: {e}");
                }
                let _ = store.workers().seen(&worker).await;
            }
        });
        Heartbeat {
            task,
            progress,
            message,
        }
    }

    fn set(&self, fraction: f64, message: Option<String>) {
        self.progress
            .store((fraction.clamp(0.0, 1.0) * 1e6) as u64, Ordering::Relaxed);
        if let (Some(m), Ok(mut g)) = (message, self.message.lock()) {
            *g = Some(m);
        }
    }

    /// A progress callback for audit stages: six stages in the order they run, each reporting its own
    /// fraction.
    fn audit_progress(&self) -> impl FnMut(crate::audit::Stage, usize, usize) + Send + '_ {
        move |s, d, t| {
            let frac = if t == 0 { 1.0 } else { d as f64 / t as f64 };
            self.set(
                (s.position() as f64 + frac) / 6.0,
                Some(format!("{} {d}/{t}", s.as_str())),
            );
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    /// Stops worker `name` on purpose (a signal, the server stopping): the jobs it holds go back to the
    /// queue at once, without using an attempt, and it is recorded as stopped. Returns the jobs.
    pub async fn stop_worker(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let back = self.store.jobs().hand_back(name).await?;
        self.store.workers().stopped(name).await?;
        Ok(back)
    }

    /// Workers seen in the last two minutes that have not stopped, newest first.
    pub async fn live_workers(&self) -> anyhow::Result<Vec<WorkerRow>> {
        Ok(self
            .store
            .workers()
            .live(crate::store::now_ms() - LIVE_MS)
            .await?)
    }

    /// Why a queued job may wait for a long time: no live worker can run it (it needs a GPU, more
    /// memory, or a kind nobody runs). `None` when some live worker could take it, or it is not queued.
    pub async fn waiting_reason(&self, job: &Job) -> anyhow::Result<Option<String>> {
        if job.state != crate::store::JobState::Queued {
            return Ok(None);
        }
        let live = self.live_workers().await?;
        if live.iter().any(|w| w.capacity().fits(job)) {
            return Ok(None);
        }
        let gib = |b: i64| b as f64 / (1u64 << 30) as f64;
        let mut needs = Vec::new();
        if job.needs_gpu {
            needs.push("a GPU".to_string());
        }
        if job.needs_memory_bytes > 0 {
            needs.push(format!("{:.1} GiB of memory", gib(job.needs_memory_bytes)));
        }
        let needs = if needs.is_empty() {
            String::new()
        } else {
            format!(" (it needs {})", needs.join(" and "))
        };
        Ok(Some(if live.is_empty() {
            "no worker is running: start `lethe worker` (or `lethe serve` without --no-worker)".to_string()
        } else {
            let best = live.iter().map(|w| w.memory_bytes).max().unwrap_or(0);
            let gpus = live.iter().filter(|w| w.gpus > 0).count();
            format!(
                "none of the {} live worker(s) can run it{needs}: {gpus} with a GPU, the largest offers {:.1} GiB",
                live.len(),
                gib(best)
            )
        }))
    }

    /// Queues a training run; a worker runs it.
    pub async fn enqueue_train(&self, req: &TrainRequest) -> anyhow::Result<String> {
        // Fail now, not in the worker, on what can be checked without training.
        let corpus = self.corpus_row(&req.corpus).await?;
        let cfg = crate::model::ModelConfig::preset(&req.spec.preset, corpus.vocab)?
            .with_overrides(&req.spec.overrides)?;
        let tokens = req
            .spec
            .unique_tokens
            .map_or(corpus.tokens, |u| (u as i64).min(corpus.tokens));
        let mut job = NewJob::new("train", serde_json::to_value(req)?);
        job.created_by = req.created_by.clone();
        job.needs_gpu = req.gpu;
        job.needs_memory_bytes = train_memory(
            cfg.param_count().total,
            req.spec.batch_size as i64,
            cfg.context,
            cfg.width,
            cfg.layers,
            tokens,
        );
        Ok(self.store.jobs().enqueue(&job).await?)
    }

    /// Queues an audit; a worker runs it (as pieces when it has more than one shard).
    pub async fn enqueue_audit(&self, req: &super::audit::AuditRequest) -> anyhow::Result<String> {
        let run = self.run_row(&req.run).await?;
        if let Some(step) = req.step {
            // Refused now, not in the worker: a step the run never kept.
            self.audit_of_step_exists(&run, step).await?;
        }
        super::audit_shards::request_params(req).validate()?;
        super::audit::scanner(&req.rules, req.deny_list.as_ref())?;
        let cfg = App::run_config(&run)?;
        let tokens = self
            .store
            .corpora()
            .by_id(&run.corpus_id)
            .await?
            .map_or(0, |c| c.tokens);
        let mut job = NewJob::new("audit", serde_json::to_value(req)?);
        job.created_by = req.created_by.clone();
        job.needs_gpu = req.gpu;
        job.needs_memory_bytes = audit_memory(cfg.model.param_count().total, tokens);
        Ok(self.store.jobs().enqueue(&job).await?)
    }

    /// Runs queued jobs until none is left that this worker can run (`once`) or forever. Running jobs
    /// whose heartbeat is older than the lease are handed back first. What it did is kept in `report`,
    /// which the caller still holds when it stops this future on a signal.
    pub async fn work(&self, opts: &WorkerOptions, report: &mut WorkerReport) -> anyhow::Result<()> {
        report.worker = opts.name.clone();
        report.capacity = Some(opts.capacity.clone());
        let worker = opts.name.as_str();
        self.store
            .workers()
            .register(&WorkerRow {
                name: worker.to_string(),
                host: host_name(),
                pid: i64::from(std::process::id()),
                gpus: opts.capacity.gpus,
                memory_bytes: opts.capacity.memory_bytes,
                kinds: opts.capacity.kinds.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at: crate::store::now_ms(),
                seen_at: 0,
                stopped_at: None,
            })
            .await?;
        let lease = opts.lease_ms.max(HEARTBEAT.as_millis() as i64 * 2);
        let result = async {
            loop {
                self.reap(lease).await?;
                self.store.workers().seen(worker).await?;
                let Some(job) = self.store.jobs().claim_for(worker, &opts.capacity).await? else {
                    if opts.once && !self.waiting_on_running(&opts.capacity).await? {
                        return Ok(());
                    }
                    tokio::time::sleep(opts.poll).await;
                    continue;
                };
                eprintln!(
                    "worker {worker}: running {} job {} (attempt {})",
                    job.kind, job.id, job.attempts
                );
                let outcome = self.run_job(worker, &job).await;
                let recorded = match &outcome {
                    Ok(Finished::Result(result)) => self.store.jobs().succeed(&job.id, worker, result).await,
                    Ok(Finished::Spawned(result, children)) => self
                        .store
                        .jobs()
                        .spawn_and_succeed(&job.id, worker, children, result)
                        .await
                        .map(|ids| {
                            eprintln!("worker {worker}: job {} queued {} piece(s)", job.id, ids.len());
                        }),
                    Err(e) => self.store.jobs().fail(&job.id, worker, &format!("{e:#}")).await,
                };
                match (outcome, recorded) {
                    // This worker was too slow to heartbeat and the job went to another: that one's
                    // outcome counts, and this worker goes on with the queue.
                    (_, Err(crate::store::StoreError::LeaseLost { .. })) => {
                        eprintln!(
                            "worker {worker}: job {} was handed to another worker meanwhile; its result here is dropped",
                            job.id
                        );
                    }
                    (_, Err(e)) => return Err(e.into()),
                    (Ok(_), Ok(())) => report.succeeded.push(job.id.clone()),
                    (Err(e), Ok(())) => {
                        let msg = format!("{e:#}");
                        eprintln!("worker {worker}: job {} failed: {msg}", job.id);
                        self.fail_piece_audit(&job, &msg).await?;
                        report.failed.push((job.id.clone(), msg));
                    }
                }
            }
        }
        .await;
        let _ = self.store.workers().stopped(worker).await;
        result
    }

    /// Hands back jobs whose worker went silent, and fails merges whose pieces can no longer succeed.
    async fn reap(&self, lease_ms: i64) -> anyhow::Result<()> {
        for r in self.store.jobs().requeue_stale(lease_ms).await? {
            tracing::warn!(job = %r.id, previous = %r.previous_owner, now = ?r.now, "handed back a job whose worker went silent");
            eprintln!(
                "worker: job {} of silent worker {} is {} again",
                r.id,
                r.previous_owner,
                r.now.as_str()
            );
        }
        for (merge, audit) in self.store.jobs().fail_orphans().await? {
            let why = format!("a piece of the audit failed, so its merge {merge} cannot run");
            if let Some(row) = self.store.audits().get(&audit).await? {
                if row.state == "running" {
                    self.store.audits().fail(&audit, &why).await?;
                }
            }
        }
        Ok(())
    }

    /// With `--once`: whether a job this worker could run may still come back to the queue (a running
    /// job whose worker has missed heartbeats), so the worker should wait for its lease instead of
    /// exiting.
    async fn waiting_on_running(&self, capacity: &Capacity) -> anyhow::Result<bool> {
        let silent_since = crate::store::now_ms() - 3 * HEARTBEAT.as_millis() as i64;
        let jobs = self.store.jobs().list(1000).await?;
        Ok(jobs.iter().any(|j| {
            capacity.fits(j)
                && j.state == crate::store::JobState::Running
                && j.heartbeat_at.is_some_and(|h| h < silent_since)
        }))
    }

    /// When an audit job or a piece of a sharded audit fails for good, the audit fails with it (a
    /// sharded audit's merge follows).
    async fn fail_piece_audit(&self, job: &Job, msg: &str) -> anyhow::Result<()> {
        if job.kind == "audit" {
            for row in self.store.audits().running_for_job(&job.id).await? {
                self.store.audits().fail(&row.id, msg).await?;
            }
            return Ok(());
        }
        if !job.kind.starts_with("audit-") {
            return Ok(());
        }
        if let Some(audit) = &job
            .group_id
            .clone()
            .or_else(|| job.args.get("audit").and_then(|a| a.as_str()).map(str::to_string))
        {
            if let Some(row) = self.store.audits().get(audit).await? {
                if row.state == "running" {
                    let why = format!("piece {} ({}) failed: {msg}", job.id, job.kind);
                    self.store.audits().fail(audit, &why).await?;
                }
            }
        }
        Ok(())
    }

    async fn run_job(&self, worker: &str, job: &Job) -> anyhow::Result<Finished> {
        let beat = Heartbeat::start(self, job, worker);
        let invalid = |e: serde_json::Error| anyhow::anyhow!("job {} has invalid arguments: {e}", job.id);
        match job.kind.as_str() {
            "train" => {
                let mut req: TrainRequest = serde_json::from_value(job.args.clone()).map_err(invalid)?;
                // The trainer is whoever queued the job; the worker is only the hands.
                req.created_by = req.created_by.or_else(|| job.created_by.clone());
                req.job_id = Some(job.id.clone());
                let total = AtomicU64::new(1);
                let mut progress = |ev: &Event| {
                    let step = match ev {
                        Event::Started {
                            step, total_steps, ..
                        } => {
                            total.store((*total_steps).max(1), Ordering::Relaxed);
                            *step
                        }
                        Event::Step { step, .. } => *step,
                        _ => return,
                    };
                    let t = total.load(Ordering::Relaxed);
                    beat.set(step as f64 / t as f64, Some(format!("step {step}/{t}")));
                };
                // A job handed back after its worker died continues the run that worker started.
                let previous = self.store.runs().by_job(&job.id).await?;
                let result = match previous {
                    Some(run) if run.state != "succeeded" => {
                        self.resume_for_job(&run.id, req.max_steps, Some(job.id.clone()), &mut progress)
                            .await
                    }
                    _ => self.train(req, &mut progress).await,
                };
                Ok(Finished::Result(serde_json::to_value(result?)?))
            }
            "audit" => {
                let mut req: super::audit::AuditRequest =
                    serde_json::from_value(job.args.clone()).map_err(invalid)?;
                req.created_by = req.created_by.or_else(|| job.created_by.clone());
                req.job_id = Some(job.id.clone());
                // A job handed back after its worker died starts (or plans) its audit again; the audit
                // that worker left running will never finish, so it is closed as failed with the reason.
                for stale in self.store.audits().running_for_job(&job.id).await? {
                    let why = format!(
                        "the worker running job {} stopped; the job started the audit again",
                        job.id
                    );
                    self.store.audits().fail(&stale.id, &why).await?;
                }
                let mut progress = beat.audit_progress();
                if super::audit_shards::request_params(&req).shards > 1 {
                    let (result, pieces) = self.audit_plan(req, &job.id, &mut progress).await?;
                    return Ok(Finished::Spawned(result, pieces));
                }
                let r = self.audit(req, &mut progress).await?;
                Ok(Finished::Result(
                    serde_json::json!({ "audit": r.audit, "run": r.run }),
                ))
            }
            SHARD_KIND | SCORES_KIND | MERGE_KIND => {
                let args: PieceArgs = serde_json::from_value(job.args.clone()).map_err(invalid)?;
                let mut progress = beat.audit_progress();
                let result = match job.kind.as_str() {
                    SHARD_KIND => self.audit_shard(&args, &job.id, &mut progress).await?,
                    SCORES_KIND => self.audit_scores(&args, &job.id, &mut progress).await?,
                    _ => {
                        let r = self.audit_merge(&args, &mut progress).await?;
                        serde_json::json!({ "audit": r.audit, "run": r.run })
                    }
                };
                Ok(Finished::Result(result))
            }
            "study" => {
                let mut spec: super::study::RepetitionSpec =
                    serde_json::from_value(job.args.clone()).map_err(invalid)?;
                spec.created_by = spec.created_by.or_else(|| job.created_by.clone());
                let total = (spec.epochs.len() * spec.objectives.len()).max(1);
                let done = AtomicU64::new(0);
                let mut progress = |line: String| {
                    if line.contains("auditing") {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    let d = done.load(Ordering::Relaxed) as f64;
                    beat.set(d / total as f64, Some(line));
                };
                let d = self
                    .study_repetition(spec, Some(job.id.clone()), &mut progress)
                    .await?;
                Ok(Finished::Result(serde_json::json!({ "study": d.row.id })))
            }
            "select" => {
                let req: super::gate::SelectRequest =
                    serde_json::from_value(job.args.clone()).map_err(invalid)?;
                let policy = req.policy()?;
                let by = req.created_by.clone().or_else(|| job.created_by.clone());
                let mut progress = |step: i64, stage: Stage, _: usize, _: usize| {
                    beat.set(0.0, Some(format!("auditing step {step}: {}", stage.as_str())));
                };
                let sel = self
                    .gate_select(&req.run, &policy, by.as_deref(), &mut progress)
                    .await?;
                Ok(Finished::Result(serde_json::json!({
                    "run": sel.run, "step": sel.step,
                    "gate": sel.gate.as_ref().map(|g| g.decision.clone()),
                })))
            }
            other => anyhow::bail!("this worker cannot run {other} jobs"),
        }
    }
}

/// How a job ended well: with its result, or with its result and jobs it made (queued atomically with
/// its success).
enum Finished {
    Result(serde_json::Value),
    Spawned(serde_json::Value, Vec<NewJob>),
}
