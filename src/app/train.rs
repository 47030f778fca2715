//! Training use cases: start a run on a corpus, resume one, list and show runs, and sample from a run's
//! latest checkpoint. The loop itself runs on a thread of its own; its events come back here to become
//! database rows and, through `progress`, whatever the face shows.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::corpus::unwrap_data_key;
use super::App;
use crate::corpus::{tokenizer::MASK_ID, CorpusTokenizer, SealedCorpus, Split};
use crate::eval::EvalSet;
use crate::model::{ModelConfig, SampleOptions, Transformer};
use crate::store::{CheckpointRow, DataKeyRow, MetricRow, RunRow};
use crate::train::data::{Subset, SubsetRule, TokenWindows};
use crate::train::{self, Event, Objective, RunContext, TrainConfig, TrainSpec};
use crate::vault::stream::DataKey;

/// How long a run's lock lasts without renewal. A process renews it every `RUN_LOCK_RENEW`; one that
/// dies leaves the run to others after this long.
const RUN_LOCK_MS: i64 = 90_000;
const RUN_LOCK_RENEW: std::time::Duration = std::time::Duration::from_secs(20);

/// The database lock that makes one process at a time the writer of a run's checkpoints (`run:<id>`),
/// whichever host it runs on: taken before training starts, renewed in the background, checked before
/// every checkpoint is recorded, released at the end.
///
/// A queued run holds it as its job (`job:<id>`), so the worker that takes over a job whose worker died
/// continues at once, without waiting for the dead worker's lock to lapse: the queue has already
/// decided that worker is gone. The old worker, should it still be running (a pause, a network
/// split), is fenced by the job's attempt count: it changed, so that worker stops and records nothing.
struct RunLock {
    claim: RunClaim,
    /// Names this session's checkpoint files.
    tag: String,
    lost: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    renewer: tokio::task::JoinHandle<()>,
}

/// Who holds a run's lock, as the renewals see it.
#[derive(Clone)]
struct RunClaim {
    store: crate::store::Store,
    name: String,
    holder: String,
    /// The job and the claim (attempt) this process runs it under.
    fence: Option<(String, i64)>,
}

impl RunClaim {
    /// Renews the lock; the other holder when this process no longer holds the run (another took the
    /// lock, or another attempt took the job).
    async fn renew(&self) -> Result<Option<String>, crate::store::StoreError> {
        if let Some(f) = &self.fence {
            if let Some(other) = fenced_out(&self.store, f).await {
                return Ok(Some(other));
            }
        }
        self.store
            .workers()
            .lock(&self.name, &self.holder, RUN_LOCK_MS)
            .await
    }
}

impl RunLock {
    async fn take(app: &App, run_id: &str, job: Option<String>) -> anyhow::Result<RunLock> {
        let tag = crate::vault::random_hex(4)?;
        let host = super::worker::host_name();
        let (holder, fence) = match job {
            Some(j) => {
                let attempts = app.store.jobs().get(&j).await?.attempts;
                (format!("job:{j}"), Some((j, attempts)))
            }
            None => (format!("{host}-{}-{tag}", std::process::id()), None),
        };
        let name = format!("run:{run_id}");
        let mut refused = app.store.workers().lock(&name, &holder, RUN_LOCK_MS).await?;
        // A process of this host that holds the lock but no longer runs (killed, crashed) is known to
        // be gone: `lethe train --resume` after a `kill -9` need not wait for its lock to lapse.
        if let Some(other) = refused.clone() {
            if dead_here(&other, &host)
                && app
                    .store
                    .workers()
                    .take_over(&name, &other, &holder, RUN_LOCK_MS)
                    .await?
            {
                tracing::warn!("took run {run_id}'s lock over from {other}, which no longer runs");
                refused = None;
            }
        }
        if let Some(other) = refused {
            anyhow::bail!(
                "run {run_id} is being trained by {other}; wait for it to stop (or for its lock to lapse, \
                 {} s after it dies)",
                RUN_LOCK_MS / 1000
            );
        }
        let claim = RunClaim {
            store: app.store.clone(),
            name,
            holder,
            fence,
        };
        let lost = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let renewer = {
            let (claim, lost) = (claim.clone(), lost.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RUN_LOCK_RENEW).await;
                    match claim.renew().await {
                        Ok(None) => {}
                        Ok(Some(other)) => {
                            if let Ok(mut l) = lost.lock() {
                                *l = Some(other);
                            }
                            return;
                        }
                        // A database hiccup is not a lost lock; the next renewal or checkpoint decides.
                        Err(e) => tracing::warn!("cannot renew the lock {}: {e}", claim.name),
                    }
                }
            })
        };
        Ok(RunLock {
            claim,
            tag,
            lost,
            renewer,
        })
    }

    /// The other holder when this process no longer holds the run; `confirm` renews first (before a
    /// checkpoint is recorded), otherwise only the background renewal's finding is read.
    async fn lost(&self, confirm: bool) -> Option<String> {
        if let Some(other) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Some(other);
        }
        if confirm {
            return match self.claim.renew().await {
                Ok(other) => other,
                Err(e) => Some(format!("(unknown: the lock could not be renewed: {e})")),
            };
        }
        None
    }

    async fn release(self) {
        self.renewer.abort();
        let c = &self.claim;
        // A fenced-out attempt leaves the lock to the attempt that replaced it.
        if let Some(f) = &c.fence {
            if fenced_out(&c.store, f).await.is_some() {
                return;
            }
        }
        if let Err(e) = c.store.workers().unlock(&c.name, &c.holder).await {
            tracing::warn!("cannot release the lock {}: {e}", c.name);
        }
    }
}

/// How many training threads this process runs, and a signal when one ends.
static TRAINING_THREADS: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// Held by a training thread for as long as it runs.
struct TrainingThread;

impl TrainingThread {
    fn enter() -> TrainingThread {
        *TRAINING_THREADS.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        TrainingThread
    }
}

impl Drop for TrainingThread {
    fn drop(&mut self) {
        let mut n = TRAINING_THREADS.0.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        TRAINING_THREADS.1.notify_all();
    }
}

/// Waits up to `timeout` for this process's training threads to end; true when none is left.
///
/// A worker stopped on a signal drops the training it was awaiting, but the training thread runs on
/// until its next step, when its progress has nowhere to go and it stops. The process must not exit
/// before then: exiting runs libtorch's static destructors under a thread still inside libtorch, and
/// the process dies with SIGSEGV instead of exiting cleanly (a test caught it).
fn wait_for_training_threads(timeout: std::time::Duration) -> bool {
    let n = TRAINING_THREADS.0.lock().unwrap_or_else(|e| e.into_inner());
    let (n, _) = TRAINING_THREADS
        .1
        .wait_timeout_while(n, timeout, |n| *n > 0)
        .unwrap_or_else(|e| e.into_inner());
    *n == 0
}

/// After a stop on a signal: waits (up to a minute) for the training threads to reach their next step and
/// end. Returns false, having said so on stderr, when one is still running; the caller then leaves with
/// [`exit_skipping_destructors`] once it has written what it must.
pub async fn wait_for_training_stop(who: &str) -> bool {
    let waited =
        tokio::task::spawn_blocking(|| wait_for_training_threads(std::time::Duration::from_secs(60)))
            .await
            .unwrap_or(false);
    if !waited {
        eprintln!("{who}: a training step is still running after a minute; leaving without waiting for it");
    }
    waited
}

/// Ends the process at once with `code`, without running exit handlers (libtorch's static destructors
/// among them), for when a training thread may still be inside libtorch. Flushes stdout and stderr first.
pub fn exit_skipping_destructors(code: i32) -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process; nothing runs after it. Every file Lethe writes is complete or
    // renamed into place before it is recorded, and the job in hand was handed back already.
    unsafe { libc::_exit(code) }
}

/// Deletes the checkpoint files in `dir` that none of `recorded` names and whose session tag
/// `chosen` picks. A file that cannot be listed or deleted is a warning, not an error: it only
/// costs disk space, and the next pruning tries again.
fn remove_unrecorded(dir: &Path, recorded: &[CheckpointRow], chosen: impl Fn(&str) -> bool) {
    let names: Vec<&str> = recorded.iter().map(|c| c.file.as_str()).collect();
    let files = match train::checkpoint::unrecorded_files(dir, &names) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cannot list {} for stray checkpoint files: {e}", dir.display());
            return;
        }
    };
    for f in files.into_iter().filter(|f| chosen(&f.tag)) {
        match std::fs::remove_file(dir.join(&f.file)) {
            Ok(()) => tracing::info!("removed {}, a checkpoint file no record names", f.file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove stray checkpoint file {}: {e}", f.file),
        }
    }
}

/// Whether a lock holder named `host-pid-tag` ran on this host in a process that is gone (or is now some
/// other program under a reused pid).
fn dead_here(holder: &str, host: &str) -> bool {
    let mut parts = holder.rsplitn(3, '-');
    let (_tag, pid, on) = (parts.next(), parts.next(), parts.next());
    let (Some(pid), Some(on)) = (pid.and_then(|p| p.parse::<u32>().ok()), on) else {
        return false;
    };
    if on != host || pid == std::process::id() {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => !String::from_utf8_lossy(&cmd).contains("lethe"),
        Err(_) => true,
    }
}

/// Who replaced this attempt of the job, when one did: the job is no longer running under the claim
/// (attempt) this process started with.
async fn fenced_out(store: &crate::store::Store, (job, attempts): &(String, i64)) -> Option<String> {
    match store.jobs().get(job).await {
        Ok(j) if j.state == crate::store::JobState::Running && j.attempts == *attempts => None,
        Ok(j) => Some(format!(
            "attempt {} of job {job} ({}, {})",
            j.attempts,
            j.state.as_str(),
            j.owner.unwrap_or_default()
        )),
        // Unknown is not lost; the lock renewal decides.
        Err(_) => None,
    }
}

/// Resume checkpoints kept per run (older ones are deleted as new ones land). Kept checkpoints (the run's
/// history, see [`train::KeepRule`]) are never pruned, and a resume checkpoint older than the newest kept
/// one serves nothing and goes.
const KEEP_CHECKPOINTS: usize = 3;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainRequest {
    pub corpus: String,
    pub spec: TrainSpec,
    /// Stop after this many steps (the run stays resumable).
    pub max_steps: Option<u64>,
    /// Who started it (the trainer, whom separation of duties keeps from reviewing the run).
    #[serde(default)]
    pub created_by: Option<String>,
    /// The queued job running it, set by the worker.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Only a worker with a GPU may run it (queued runs).
    #[serde(default)]
    pub gpu: bool,
}

#[derive(Debug, Serialize)]
pub struct TrainSummary {
    pub run_id: String,
    pub corpus: String,
    pub objective: Objective,
    pub preset: String,
    pub parameters: i64,
    pub step: u64,
    pub total_steps: u64,
    pub finished: bool,
    pub final_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub weights_sha256: String,
    pub tokens_seen: u64,
    pub seconds: f64,
}

/// What `runs show` prints.
#[derive(Debug, Serialize)]
pub struct RunDetails {
    pub run: RunRow,
    pub corpus: String,
    pub checkpoints: Vec<CheckpointRow>,
    /// The kept checkpoints (and the newest one), with what each learned and, where audited, what it
    /// memorized.
    pub history: Vec<CheckpointView>,
    /// The training documents the run used, by top-level folder of the corpus, against all the
    /// training documents there: a capped run should show the corpus's mix.
    pub subset_folders: Vec<FolderShare>,
    pub epochs: Vec<MetricRow>,
    pub steps_logged: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FolderShare {
    pub folder: String,
    /// Training documents in the folder, and how many of them the run trained on.
    pub documents: usize,
    pub chosen: usize,
}

/// Training documents by top-level folder (below the directory all sources share), with how many of each
/// the subset holds.
fn folder_shares(docs: &[crate::corpus::manifest::DocMeta], subset: &Subset) -> Vec<FolderShare> {
    let train: Vec<(usize, &str)> = docs
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.holdout)
        .map(|(i, d)| (i, d.source.as_str()))
        .collect();
    // The longest directory prefix every source shares.
    let mut common: Option<Vec<&str>> = None;
    for (_, src) in &train {
        let dirs: Vec<&str> = src.split('/').collect();
        let dirs = &dirs[..dirs.len().saturating_sub(1)];
        common = Some(match common {
            None => dirs.to_vec(),
            Some(c) => c
                .iter()
                .zip(dirs)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| *a)
                .collect(),
        });
    }
    let depth = common.map_or(0, |c| c.len());
    let mut out: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (i, src) in train {
        let parts: Vec<&str> = src.split('/').collect();
        let folder = if parts.len() > depth + 1 {
            parts[depth].to_string()
        } else {
            "(top level)".to_string()
        };
        let e = out.entry(folder).or_default();
        e.0 += 1;
        e.1 += usize::from(subset.contains(i as u32));
    }
    out.into_iter()
        .map(|(folder, (documents, chosen))| FolderShare {
            folder,
            documents,
            chosen,
        })
        .collect()
}

/// One checkpoint of a run's history: value beside risk.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    pub step: i64,
    pub epochs: Option<f64>,
    pub kept: bool,
    pub weights_sha256: String,
    pub utility: Option<crate::eval::Utility>,
    /// The newest successful audit of this checkpoint.
    pub audit: Option<AuditFigures>,
}

/// The memorization figures of one audit that the history and the frontier show.
#[derive(Debug, Clone, Serialize)]
pub struct AuditFigures {
    pub id: String,
    pub quick: bool,
    /// Exact extraction rate (prefix extraction) and the upper end of its 95% interval.
    pub extraction_exact: f64,
    pub extraction_exact_high: f64,
    pub max_canary_exposure: f64,
    pub membership_max_auc: f64,
}

impl AuditFigures {
    pub fn of(audit: &crate::store::AuditRow) -> Option<AuditFigures> {
        let r: crate::audit::AuditReport = serde_json::from_value(audit.report.clone()?).ok()?;
        Some(AuditFigures {
            id: audit.id.clone(),
            quick: audit.quick,
            extraction_exact: r.extraction.exact.rate,
            extraction_exact_high: r.extraction.exact.high,
            max_canary_exposure: r.canaries.max_exposure,
            membership_max_auc: r.membership.max_auc,
        })
    }
}

/// The steps a run's history lists (its kept checkpoints and its newest), for errors naming a step it
/// lacks.
fn listed_steps(all: &[CheckpointRow]) -> String {
    let newest = all.last().map(|l| l.step);
    all.iter()
        .filter(|c| c.kept || Some(c.step) == newest)
        .map(|c| c.step.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a checkpoint record says it learned, when it was evaluated.
pub fn checkpoint_utility(c: &CheckpointRow) -> Option<crate::eval::Utility> {
    c.info
        .as_ref()
        .and_then(|i| i.get("utility"))
        .and_then(|u| serde_json::from_value(u.clone()).ok())
}

/// A run's data, decrypted: the packed training windows of its subset, the subset itself, and the
/// holdout documents (for evaluation).
pub(crate) struct RunData {
    pub train: TokenWindows,
    pub subset: Subset,
    pub train_docs: usize,
    pub holdout: Vec<(u32, Vec<u32>)>,
}

/// Reads the training subset (`cap` unique tokens chosen by `rule` and `seed`) and the holdout.
fn run_data(
    sealed: &SealedCorpus,
    context: i64,
    cap: Option<u64>,
    rule: SubsetRule,
    seed: u64,
) -> anyhow::Result<RunData> {
    let subset = Subset::select(&sealed.manifest.documents, cap, rule, seed);
    let train = TokenWindows::pack(sealed.documents(Split::Train, 2), context as usize, Some(&subset))?;
    let mut holdout = Vec::new();
    for d in sealed.documents(Split::Holdout, 2) {
        let d = d?;
        holdout.push((d.index, d.tokens));
    }
    Ok(RunData {
        train_docs: subset.documents(&sealed.manifest.documents),
        train,
        subset,
        holdout,
    })
}

impl App {
    pub fn runs_dir(&self) -> PathBuf {
        self.config.data_dir.join("runs")
    }

    /// The training configuration a run recorded.
    pub(crate) fn run_config(run: &RunRow) -> anyhow::Result<TrainConfig> {
        serde_json::from_value(run.config.clone())
            .with_context(|| format!("run {} has an unreadable configuration", run.id))
    }

    pub async fn run_row(&self, id: &str) -> anyhow::Result<RunRow> {
        self.store
            .runs()
            .get(id)
            .await?
            .ok_or_else(|| super::NotFound(format!("no training run {id:?} (see `lethe runs list`)")).into())
    }

    pub(crate) async fn run_key(&self, run: &RunRow) -> anyhow::Result<DataKey> {
        let row = self.store.corpora().data_key(&run.data_key_id).await?;
        unwrap_data_key(&self.keys(), &row)
            .with_context(|| format!("cannot unlock run {} (data key {})", run.id, row.id))
    }

    /// The corpus a run trained on, opened.
    pub(crate) async fn run_corpus(&self, run: &RunRow) -> anyhow::Result<(String, SealedCorpus)> {
        let name = self
            .store
            .corpora()
            .by_id(&run.corpus_id)
            .await?
            .map(|c| c.name)
            .ok_or_else(|| anyhow::anyhow!("the corpus of run {} has been removed", run.id))?;
        let (_, sealed) = self.open_corpus(&name).await?;
        Ok((name, sealed))
    }

    /// Starts a new run. Everything is checked before the run is recorded.
    pub async fn train(
        &self,
        req: TrainRequest,
        progress: &mut (dyn FnMut(&Event) + Send),
    ) -> anyhow::Result<TrainSummary> {
        let (corpus_row, sealed) = self.open_corpus(&req.corpus).await?;
        let vocab = sealed.manifest.vocab as i64;
        let context = ModelConfig::preset(&req.spec.preset, vocab)?
            .with_overrides(&req.spec.overrides)?
            .context;
        let (cap, seed) = (req.spec.unique_tokens, req.spec.seed);
        let token_bytes = sealed.tokenizer()?.token_bytes();
        let data =
            tokio::task::spawn_blocking(move || run_data(&sealed, context, cap, SubsetRule::Hash, seed))
                .await
                .context("reading the corpus was interrupted")??;
        let cfg = req
            .spec
            .resolve(vocab, &data.train, &data.subset, data.train_docs)?;
        let eval = EvalSet::build(
            &data.holdout,
            token_bytes,
            cfg.model.context as usize,
            cfg.eval_settings(),
        );
        let train_w = data.train;

        let run_id = format!("run-{}", crate::vault::random_hex(6)?);
        let key = DataKey::generate(&ring::rand::SystemRandom::new())?;
        let key_id = format!("dk-{}", crate::vault::random_hex(8)?);
        let purpose = format!("run:{run_id}/{key_id}");
        let wrapped = self.keys().wrap(key.as_bytes(), &purpose)?;
        let directory = format!("runs/{run_id}");
        let dir = self.config.data_dir.join(&directory);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let now = crate::store::now_ms();
        let row = RunRow {
            id: run_id.clone(),
            corpus_id: corpus_row.id.clone(),
            objective: cfg.objective.as_str().into(),
            preset: cfg.preset.clone(),
            state: "running".into(),
            config: serde_json::to_value(&cfg)?,
            data_key_id: key_id.clone(),
            directory,
            step: 0,
            total_steps: cfg.total_steps as i64,
            summary: None,
            error: None,
            created_by: req.created_by.clone(),
            created_at: now,
            updated_at: now,
            finished_at: None,
            job_id: req.job_id.clone(),
        };
        let key_row = DataKeyRow {
            id: key_id.clone(),
            purpose,
            master_key_id: wrapped.master_key_id,
            master_version: wrapped.master_version,
            wrapped: wrapped.blob,
        };
        self.store.runs().create(&row, &key_row).await?;
        let actor = req.created_by.clone().unwrap_or_else(super::cli_actor);
        self.record(
            &actor,
            crate::ledger::action::TRAIN_START,
            &run_id,
            serde_json::json!({
                "corpus": corpus_row.id,
                "objective": cfg.objective.as_str(),
                "preset": cfg.preset,
                "total_steps": cfg.total_steps,
            }),
        )
        .await?;
        let summary = self
            .drive(
                row,
                corpus_row.name,
                cfg,
                train_w,
                eval,
                key,
                key_id,
                None,
                req.max_steps,
                req.job_id.clone(),
                progress,
            )
            .await;
        let details = match &summary {
            Ok(s) => {
                serde_json::json!({ "finished": s.finished, "step": s.step, "weights_sha256": s.weights_sha256 })
            }
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        self.record(&actor, crate::ledger::action::TRAIN_END, &run_id, details)
            .await?;
        summary
    }

    /// Continues a run from its latest checkpoint (or from the start if it never wrote one).
    pub async fn resume(
        &self,
        run_id: &str,
        max_steps: Option<u64>,
        progress: &mut (dyn FnMut(&Event) + Send),
    ) -> anyhow::Result<TrainSummary> {
        self.resume_for_job(run_id, max_steps, None, progress).await
    }

    /// [`App::resume`] as queued job `job` (a job handed back after its worker died).
    pub async fn resume_for_job(
        &self,
        run_id: &str,
        max_steps: Option<u64>,
        job: Option<String>,
        progress: &mut (dyn FnMut(&Event) + Send),
    ) -> anyhow::Result<TrainSummary> {
        let row = self.run_row(run_id).await?;
        if row.state == "succeeded" {
            anyhow::bail!("run {run_id} already finished ({} steps)", row.step);
        }
        let cfg = App::run_config(&row)?;
        let key = self.run_key(&row).await?;
        let (corpus_name, sealed) = self.run_corpus(&row).await?;
        let (context, cap, rule, seed) = (cfg.model.context, cfg.unique_tokens, cfg.subset, cfg.seed);
        let token_bytes = sealed.tokenizer()?.token_bytes();
        let data = tokio::task::spawn_blocking(move || run_data(&sealed, context, cap, rule, seed))
            .await
            .context("reading the corpus was interrupted")??;
        let eval = EvalSet::build(
            &data.holdout,
            token_bytes,
            cfg.model.context as usize,
            cfg.eval_settings(),
        );
        let train_w = data.train;
        if train_w.count() != cfg.train_windows {
            anyhow::bail!(
                "the corpus now yields {} training windows, the run was configured for {}",
                train_w.count(),
                cfg.train_windows
            );
        }
        let resume = match self.store.runs().checkpoints(&row.id).await?.last() {
            Some(c) => {
                let dir = self.config.inside(&row.directory)?;
                let path = dir.join(&c.file);
                let (run, step, k) = (
                    row.id.clone(),
                    c.step as u64,
                    DataKey::from_bytes(*key.as_bytes()),
                );
                Some(
                    tokio::task::spawn_blocking(move || {
                        train::checkpoint::read_sealed(&path, &run, step, &k)
                    })
                    .await
                    .context("reading the checkpoint was interrupted")??,
                )
            }
            None => None,
        };
        let key_id = row.data_key_id.clone();
        let (run_id, actor) = (
            row.id.clone(),
            row.created_by.clone().unwrap_or_else(super::cli_actor),
        );
        let from_step = resume.as_ref().map(|_| row.step);
        self.record(
            &actor,
            crate::ledger::action::TRAIN_START,
            &run_id,
            serde_json::json!({ "resumed": true, "from_step": from_step }),
        )
        .await?;
        let summary = self
            .drive(
                row,
                corpus_name,
                cfg,
                train_w,
                eval,
                key,
                key_id,
                resume,
                max_steps,
                job,
                progress,
            )
            .await;
        let details = match &summary {
            Ok(s) => {
                serde_json::json!({ "finished": s.finished, "step": s.step, "weights_sha256": s.weights_sha256 })
            }
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        self.record(&actor, crate::ledger::action::TRAIN_END, &run_id, details)
            .await?;
        summary
    }

    #[allow(clippy::too_many_arguments)]
    async fn drive(
        &self,
        row: RunRow,
        corpus: String,
        cfg: TrainConfig,
        train_w: TokenWindows,
        eval: EvalSet,
        key: DataKey,
        key_id: String,
        resume: Option<Vec<u8>>,
        max_steps: Option<u64>,
        job: Option<String>,
        progress: &mut (dyn FnMut(&Event) + Send),
    ) -> anyhow::Result<TrainSummary> {
        let started = std::time::Instant::now();
        let dir = self.config.inside(&row.directory)?;
        let lock = RunLock::take(self, &row.id, job).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let run_id = row.id.clone();
        let thread_cfg = cfg.clone();
        let file_tag = lock.tag.clone();
        let own_tag = lock.tag.clone();
        let running = TrainingThread::enter();
        let handle = std::thread::spawn(move || {
            let _running = running;
            let ctx = RunContext {
                run_id,
                dir,
                key: &key,
                key_id,
                device: tch::Device::cuda_if_available(),
                resume,
                max_steps,
                file_tag,
            };
            train::train(&thread_cfg, &train_w, &eval, &ctx, &mut |e| {
                tx.send(e)
                    .map_err(|_| train::TrainError::Stopped("the caller went away".into()))
            })
        });
        let log_every = (cfg.total_steps / 500).max(1);
        let mut pending: Vec<MetricRow> = Vec::new();
        let mut parameters = 0;
        let mut last_step = row.step;
        let mut record_error: Option<anyhow::Error> = None;
        let mut lost_to: Option<String> = None;
        while let Some(ev) = rx.recv().await {
            // Another process took the run (this one's lock lapsed): stop, and record nothing more.
            // Dropping the receiver stops the training thread at its next event.
            if let Some(holder) = lock.lost(matches!(ev, Event::Checkpoint { .. })).await {
                lost_to = Some(holder);
                break;
            }
            progress(&ev);
            let result: anyhow::Result<()> = async {
                match &ev {
                    Event::Started { parameters: p, .. } => parameters = *p,
                    Event::Step {
                        step,
                        epoch,
                        loss,
                        lr,
                        grad_norm,
                        tokens_per_s,
                        ..
                    } => {
                        last_step = *step as i64;
                        if step % log_every == 0 || *step == cfg.total_steps {
                            pending.push(MetricRow {
                                kind: "step".into(),
                                step: *step as i64,
                                epoch: *epoch as i64,
                                train_loss: Some(*loss),
                                lr: Some(*lr),
                                grad_norm: Some(*grad_norm),
                                tokens_per_s: Some(*tokens_per_s),
                                ..Default::default()
                            });
                        }
                        if pending.len() >= 50 {
                            self.store.runs().add_metrics(&row.id, &pending).await?;
                            pending.clear();
                        }
                    }
                    Event::Epoch {
                        step,
                        epoch,
                        train_loss,
                        val_loss,
                    } => {
                        pending.push(MetricRow {
                            kind: "epoch".into(),
                            step: *step as i64,
                            epoch: *epoch as i64,
                            train_loss: Some(*train_loss),
                            val_loss: *val_loss,
                            ..Default::default()
                        });
                        self.store.runs().add_metrics(&row.id, &pending).await?;
                        pending.clear();
                    }
                    Event::Checkpoint {
                        step,
                        file,
                        sha256,
                        weights_sha256,
                        bytes,
                        kept,
                        epochs,
                        utility,
                    } => {
                        self.store.runs().add_metrics(&row.id, &pending).await?;
                        pending.clear();
                        self.store
                            .runs()
                            .add_checkpoint(
                                &row.id,
                                &CheckpointRow {
                                    step: *step as i64,
                                    file: file.clone(),
                                    sha256: sha256.clone(),
                                    weights_sha256: weights_sha256.clone(),
                                    bytes: *bytes as i64,
                                    created_at: crate::store::now_ms(),
                                    kept: *kept,
                                    info: Some(serde_json::json!({
                                        "epochs": epochs,
                                        "utility": utility,
                                    })),
                                },
                            )
                            .await?;
                        self.store
                            .runs()
                            .update(&row.id, "running", *step as i64, None, None)
                            .await?;
                        self.prune_checkpoints(&row, &own_tag).await?;
                    }
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                record_error.get_or_insert(e);
            }
        }
        drop(rx);
        let outcome = handle
            .join()
            .map_err(|_| anyhow::anyhow!("the training thread panicked"));
        lock.release().await;
        if let Some(holder) = lost_to {
            // The run belongs to another process now: leave its record, metrics and state to it, and
            // take back the checkpoint files this session wrote that it can no longer record.
            match self.store.runs().checkpoints(&row.id).await {
                Ok(recorded) => {
                    let dir = self.config.inside(&row.directory)?;
                    remove_unrecorded(&dir, &recorded, |tag| tag == own_tag);
                }
                Err(e) => tracing::warn!("cannot list run {}'s checkpoints to tidy up: {e}", row.id),
            }
            anyhow::bail!(
                "run {} is now trained by {holder}; this process lost its lock and stopped without recording more",
                row.id
            );
        }
        let outcome = outcome?;
        if !pending.is_empty() {
            self.store.runs().add_metrics(&row.id, &pending).await?;
        }
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let msg = e.to_string();
                self.store
                    .runs()
                    .update(&row.id, "failed", last_step, None, Some(&msg))
                    .await?;
                return Err(anyhow::Error::new(e).context(format!("run {} failed", row.id)));
            }
        };
        if let Some(e) = record_error {
            return Err(e.context(format!(
                "run {} trained but its records could not be saved",
                row.id
            )));
        }
        let summary = TrainSummary {
            run_id: row.id.clone(),
            corpus,
            objective: cfg.objective,
            preset: cfg.preset.clone(),
            parameters,
            step: outcome.step,
            total_steps: cfg.total_steps,
            finished: outcome.finished,
            final_loss: outcome.final_loss,
            val_loss: outcome.val_loss,
            weights_sha256: outcome.weights_sha256.clone(),
            tokens_seen: outcome.tokens_seen,
            seconds: started.elapsed().as_secs_f64(),
        };
        let state = if outcome.finished {
            "succeeded"
        } else {
            "interrupted"
        };
        self.store
            .runs()
            .update(
                &row.id,
                state,
                outcome.step as i64,
                Some(&serde_json::to_value(&summary)?),
                None,
            )
            .await?;
        Ok(summary)
    }

    /// Keeps the newest checkpoints of a run and deletes older ones, records first, files after. Then
    /// deletes the checkpoint files no record names that other sessions left (`own_tag` is the caller's:
    /// its training thread may be writing the next one right now). Only the run's lock holder calls
    /// this, so those sessions are dead or fenced out, and nothing they wrote can be recorded any more.
    async fn prune_checkpoints(&self, row: &RunRow, own_tag: &str) -> anyhow::Result<()> {
        let all = self.store.runs().checkpoints(&row.id).await?;
        let dir = self.config.inside(&row.directory)?;
        let newest_kept = all.iter().filter(|c| c.kept).map(|c| c.step).max();
        let resume: Vec<&CheckpointRow> = all.iter().filter(|c| !c.kept).collect();
        let surplus = resume.len().saturating_sub(KEEP_CHECKPOINTS);
        let (mut stay, mut gone) = (Vec::new(), Vec::new());
        for c in &all {
            let pos = resume.iter().position(|r| r.step == c.step);
            let pruned = match pos {
                None => false,
                Some(p) => p < surplus || newest_kept.is_some_and(|k| c.step < k),
            };
            if pruned {
                gone.push(c)
            } else {
                stay.push(c.clone())
            }
        }
        for c in gone {
            self.store.runs().remove_checkpoint(&row.id, c.step).await?;
            let _ = std::fs::remove_file(dir.join(&c.file));
        }
        remove_unrecorded(&dir, &stay, |tag| tag != own_tag);
        Ok(())
    }

    pub async fn runs_list(&self) -> anyhow::Result<Vec<RunRow>> {
        Ok(self.store.runs().list().await?)
    }

    pub async fn run_details(&self, id: &str) -> anyhow::Result<RunDetails> {
        let run = self.run_row(id).await?;
        let corpus = self
            .store
            .corpora()
            .by_id(&run.corpus_id)
            .await?
            .map(|c| c.name)
            .unwrap_or_else(|| "(removed)".into());
        let metrics = self.store.runs().metrics(&run.id).await?;
        let steps_logged = metrics.iter().filter(|m| m.kind == "step").count();
        let checkpoints = self.store.runs().checkpoints(&run.id).await?;
        let history = self.history(&run.id, &checkpoints).await?;
        let subset_folders = match (self.run_corpus(&run).await, App::run_config(&run)) {
            (Ok((_, sealed)), Ok(cfg)) => {
                let docs = &sealed.manifest.documents;
                folder_shares(
                    docs,
                    &Subset::select(docs, cfg.unique_tokens, cfg.subset, cfg.seed),
                )
            }
            // A removed corpus or an unreadable configuration: the rest of the run still shows.
            _ => Vec::new(),
        };
        Ok(RunDetails {
            checkpoints,
            history,
            subset_folders,
            epochs: metrics.into_iter().filter(|m| m.kind == "epoch").collect(),
            steps_logged,
            corpus,
            run,
        })
    }

    /// The kept checkpoints of a run (and its newest, kept or not), each with its utility and the figures
    /// of its newest successful audit.
    pub async fn history(
        &self,
        run_id: &str,
        checkpoints: &[CheckpointRow],
    ) -> anyhow::Result<Vec<CheckpointView>> {
        let audits = self.store.audits().list(Some(run_id)).await?;
        let newest = checkpoints.last().map(|c| c.step);
        Ok(checkpoints
            .iter()
            .filter(|c| c.kept || Some(c.step) == newest)
            .map(|c| CheckpointView {
                step: c.step,
                epochs: c.epochs(),
                kept: c.kept,
                weights_sha256: c.weights_sha256.clone(),
                utility: checkpoint_utility(c),
                audit: audits
                    .iter()
                    .filter(|a| a.state == "succeeded" && a.checkpoint_sha256 == c.sha256)
                    .max_by_key(|a| a.created_at)
                    .and_then(AuditFigures::of),
            })
            .collect())
    }

    /// Refuses a step that is not one of the run's checkpoints, with the steps that are.
    pub(crate) async fn audit_of_step_exists(&self, run: &RunRow, step: i64) -> anyhow::Result<()> {
        let all = self.store.runs().checkpoints(&run.id).await?;
        if all.iter().any(|c| c.step == step) {
            return Ok(());
        }
        Err(super::NotFound(format!(
            "run {} has no checkpoint at step {step}; its checkpoints are at steps {} (`lethe runs show {}`)",
            run.id,
            listed_steps(&all),
            run.id
        ))
        .into())
    }

    /// The model of a run's newest checkpoint, with its configuration and the corpus tokenizer.
    pub async fn load_run_model(
        &self,
        id: &str,
    ) -> anyhow::Result<(Transformer, TrainConfig, CorpusTokenizer)> {
        let (model, cfg, tokenizer, _) = self.load_run_model_at(id, None).await?;
        Ok((model, cfg, tokenizer))
    }

    /// The model of one checkpoint of a run (the newest when `step` is `None`), with its configuration,
    /// the corpus tokenizer and the checkpoint's record. Work cut into pieces (a sharded audit) names
    /// the step, so every piece sees the same weights even if training goes on meanwhile.
    pub async fn load_run_model_at(
        &self,
        id: &str,
        step: Option<i64>,
    ) -> anyhow::Result<(Transformer, TrainConfig, CorpusTokenizer, CheckpointRow)> {
        let run = self.run_row(id).await?;
        let all = self.store.runs().checkpoints(&run.id).await?;
        let chosen = match step {
            None => all.last(),
            Some(s) => all.iter().find(|c| c.step == s),
        };
        let checkpoint = match (chosen, step) {
            (Some(c), _) => c.clone(),
            (None, None) => anyhow::bail!("run {id} has no checkpoint yet"),
            (None, Some(s)) => {
                let cfg = App::run_config(&run)?;
                let why = if s < 0 || s as u64 > cfg.total_steps {
                    format!("the run has {} steps", cfg.total_steps)
                } else if s as u64 > run.step as u64 {
                    format!("the run has trained {} steps so far", run.step)
                } else {
                    "that step was not kept (or newer training pruned it)".to_string()
                };
                return Err(super::NotFound(format!(
                    "run {id} has no checkpoint at step {s}: {why}; its checkpoints are at steps {} \
                     (`lethe runs show {id}`)",
                    listed_steps(&all)
                ))
                .into());
            }
        };
        let key = self.run_key(&run).await?;
        let (_, sealed) = self.run_corpus(&run).await?;
        let tokenizer = sealed.tokenizer()?;
        let path = self
            .config
            .inside(&run.directory)?
            .join(super::config::plain_file_name(&checkpoint.file)?);
        let (run_id, step) = (run.id.clone(), checkpoint.step as u64);
        let (model, cfg) = tokio::task::spawn_blocking(move || {
            let bytes = train::checkpoint::read_sealed(&path, &run_id, step, &key)?;
            train::load_model(&bytes, tch::Device::cuda_if_available())
        })
        .await
        .context("loading the checkpoint was interrupted")?
        .with_context(|| format!("cannot load run {id}"))?;
        Ok((model, cfg, tokenizer, checkpoint))
    }

    /// Generates from a prompt, or fills `[MASK]` spans (diffusion only).
    pub async fn sample(&self, req: SampleRequest) -> anyhow::Result<Vec<String>> {
        let (model, cfg, tok) = self.load_run_model(&req.run).await?;
        tokio::task::spawn_blocking(move || sample_blocking(&model, &cfg, &tok, &req))
            .await
            .context("sampling was interrupted")?
    }
}

pub struct SampleRequest {
    pub run: String,
    pub prompt: Option<String>,
    pub infill: Option<String>,
    pub infill_span: usize,
    pub opts: SampleOptions,
    pub count: usize,
}

/// The marker `--infill` text uses for a masked span.
pub const MASK_MARKER: &str = "[MASK]";

fn sample_blocking(
    model: &Transformer,
    cfg: &TrainConfig,
    tok: &CorpusTokenizer,
    req: &SampleRequest,
) -> anyhow::Result<Vec<String>> {
    let to_i64 = |v: Vec<u32>| v.into_iter().map(i64::from).collect::<Vec<i64>>();
    let mut opts = req.opts.clone();
    opts.mask_id = i64::from(MASK_ID);
    if let Some(text) = &req.infill {
        if cfg.objective != Objective::Diffusion {
            anyhow::bail!("infilling needs a diffusion model; this run is autoregressive");
        }
        if !text.contains(MASK_MARKER) {
            anyhow::bail!("--infill text must contain at least one {MASK_MARKER}");
        }
        let mut row: Vec<i64> = Vec::new();
        let parts: Vec<&str> = text.split(MASK_MARKER).collect();
        for (i, part) in parts.iter().enumerate() {
            row.extend(to_i64(tok.encode(part)?));
            if i + 1 < parts.len() {
                row.extend(std::iter::repeat_n(i64::from(MASK_ID), req.infill_span));
            }
        }
        if row.len() as i64 > cfg.model.context {
            anyhow::bail!(
                "the infill text is {} tokens, more than the model's context of {}",
                row.len(),
                cfg.model.context
            );
        }
        let rows = vec![row; req.count];
        let out = model.infill(&rows, &opts)?;
        return out
            .into_iter()
            .map(|r| {
                tok.decode(&r.into_iter().map(|t| t as u32).collect::<Vec<_>>())
                    .map_err(Into::into)
            })
            .collect();
    }
    let prompt = to_i64(tok.encode(req.prompt.as_deref().unwrap_or(""))?);
    if prompt.len() as i64 + opts.gen_length > cfg.model.context {
        anyhow::bail!(
            "prompt ({} tokens) plus --length {} exceeds the model's context of {}",
            prompt.len(),
            opts.gen_length,
            cfg.model.context
        );
    }
    let prompts = vec![prompt.clone(); req.count];
    let out = model.generate(&prompts, &opts)?;
    out.into_iter()
        .map(|r| {
            let ids: Vec<u32> = r.into_iter().map(|t| t as u32).collect();
            Ok(format!(
                "{}{}",
                req.prompt.as_deref().unwrap_or(""),
                tok.decode(&ids)?
            ))
        })
        .collect()
}
