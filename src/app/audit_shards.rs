//! A queued audit cut into jobs that several workers run at once ([`crate::audit::shards`]): the
//! `audit` job plans (draws the extraction sample, writes the free generations) and queues one
//! `audit-shard` job per corpus shard, one `audit-scores` job, and an `audit-merge` job that waits for
//! all of them and stores the report. A worker that dies costs only the piece it held: finished pieces
//! stay finished, and the lapsed one is run again by whoever takes it.
//!
//! Every piece is written to the run's directory, sealed with the run's data key, and found through
//! the job record that names it with its SHA-256; only the worker holding a job can record its result,
//! so a piece written by a worker that lost its lease is never read.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::audit::{
    blocking_with_progress, load_documents, load_documents_in, run_subset, running_audit, AuditOutcome,
    AuditRequest, TorchModel,
};
use super::App;
use crate::audit::shards::{self, Plan, Scores, ShardOutput};
use crate::audit::{secrets, AuditParams, Stage};
use crate::store::{AuditRow, NewJob, RunRow};

/// Job kinds of a sharded audit's pieces.
pub const SHARD_KIND: &str = "audit-shard";
pub const SCORES_KIND: &str = "audit-scores";
pub const MERGE_KIND: &str = "audit-merge";

/// The plan as sealed on shared storage: the audit's plan and the secret rules it runs with (their
/// text, not their paths: the merge may run on another host, and a deny-list names what must not leak,
/// so it is sealed like the rest).
#[derive(Debug, Serialize, Deserialize)]
struct SealedPlan {
    plan: Plan,
    /// (origin, TOML text) of every extra rule pack.
    rules: Vec<(String, String)>,
    /// (origin, text) of the deny-list.
    deny_list: Option<(String, String)>,
}

impl SealedPlan {
    fn scanner(&self) -> anyhow::Result<secrets::Scanner> {
        let mut packs = vec![secrets::RulePack::builtin()];
        for (origin, text) in &self.rules {
            packs.push(secrets::RulePack::parse(text, origin)?);
        }
        let deny = self
            .deny_list
            .as_ref()
            .map(|(origin, text)| secrets::DenyList::parse(text, origin))
            .transpose()?;
        Ok(secrets::Scanner::new(&packs, deny.as_ref())?)
    }
}

/// Arguments of every piece: the audit and where its plan is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PieceArgs {
    pub audit: String,
    pub plan_file: String,
    pub plan_sha256: String,
    /// The shard, for `audit-shard` jobs.
    #[serde(default)]
    pub shard: Option<usize>,
}

/// What a piece records as its job's result: the sealed file holding its output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PieceResult {
    pub audit: String,
    #[serde(default)]
    pub shard: Option<usize>,
    pub file: String,
    pub sha256: String,
}

fn plan_role(audit: &str) -> String {
    format!("audit-plan/{audit}")
}

fn piece_role(audit: &str, piece: &str) -> String {
    format!("audit-{piece}/{audit}")
}

impl App {
    /// The planning step of a queued sharded audit: creates the audit, seals the plan, and returns the
    /// pieces to queue (the caller queues them and finishes this job in one transaction).
    pub(super) async fn audit_plan(
        &self,
        req: AuditRequest,
        job_id: &str,
        progress: &mut (dyn FnMut(Stage, usize, usize) + Send),
    ) -> anyhow::Result<(serde_json::Value, Vec<NewJob>)> {
        let run = self.run_row(&req.run).await?;
        let params = request_params(&req);
        params.validate()?;
        // (origin, text): what the plan carries instead of the paths.
        let read = |p: &std::path::PathBuf, what: &str| -> anyhow::Result<(String, String)> {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("cannot read {what} {}", p.display()))?;
            Ok((p.display().to_string(), text))
        };
        let rules = req
            .rules
            .iter()
            .map(|p| read(p, "rule pack"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let deny_list = req.deny_list.as_ref().map(|p| read(p, "deny-list")).transpose()?;
        let (model, cfg, tokenizer, checkpoint) = self.load_run_model_at(&run.id, req.step).await?;
        let (_, sealed) = self.run_corpus(&run).await?;
        let subset = run_subset(&sealed, &cfg);
        let docs = tokio::task::spawn_blocking(move || load_documents(&sealed, &subset))
            .await
            .context("reading the corpus was interrupted")??;
        let epochs = cfg.epochs_at(checkpoint.step as u64);

        let id = format!("aud-{}", crate::vault::random_hex(6)?);
        let row = running_audit(&id, &run, &checkpoint, &req, &params, Some(job_id.to_string()))?;
        self.store.audits().create(&row).await?;
        let m = TorchModel::new(model, &cfg);
        let plan = blocking_with_progress(progress, move |send| {
            let corpus = docs.corpus(&[], &tokenizer, epochs);
            shards::plan(&m, &corpus, &params, send)
        })
        .await?;
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                self.store.audits().fail(&id, &e.to_string()).await?;
                return Err(anyhow::Error::new(e).context(format!("planning audit {id} of run {}", run.id)));
            }
        };
        let n = plan.shards.len();
        let sealed_plan = SealedPlan {
            plan,
            rules,
            deny_list,
        };
        let (plan_file, plan_sha256) = self
            .seal_run_file(
                &run,
                &format!("{id}.plan"),
                &plan_role(&id),
                serde_json::to_vec(&sealed_plan)?,
            )
            .await?;
        let piece = |kind: &str, shard: Option<usize>| -> anyhow::Result<NewJob> {
            let args = PieceArgs {
                audit: id.clone(),
                plan_file: plan_file.clone(),
                plan_sha256: plan_sha256.clone(),
                shard,
            };
            let mut job = NewJob::new(kind, serde_json::to_value(args)?);
            job.created_by = req.created_by.clone();
            job.needs_gpu = req.gpu;
            job.group_id = Some(id.clone());
            Ok(job)
        };
        let mut jobs = (0..n)
            .map(|k| piece(SHARD_KIND, Some(k)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        jobs.push(piece(SCORES_KIND, None)?);
        let mut merge = piece(MERGE_KIND, None)?;
        merge.group_id = None;
        merge.after_group = Some(id.clone());
        jobs.push(merge);
        let result = serde_json::json!({ "audit": id, "run": run.id, "shards": n, "plan": plan_file });
        Ok((result, jobs))
    }

    async fn piece_context(&self, args: &PieceArgs) -> anyhow::Result<(AuditRow, RunRow, SealedPlan)> {
        let audit = self.audit_row(&args.audit).await?;
        if audit.state != "running" {
            anyhow::bail!("audit {} is {}, not running", audit.id, audit.state);
        }
        let run = self.run_row(&audit.run_id).await?;
        let bytes = self
            .read_run_file(
                &run,
                &args.plan_file,
                &plan_role(&audit.id),
                Some(&args.plan_sha256),
            )
            .await?;
        let plan: SealedPlan = serde_json::from_slice(&bytes)
            .with_context(|| format!("the plan of audit {} is not valid", audit.id))?;
        Ok((audit, run, plan))
    }

    /// One shard's piece of a sharded audit; its output is sealed and named in the job's result.
    pub(super) async fn audit_shard(
        &self,
        args: &PieceArgs,
        job_id: &str,
        progress: &mut (dyn FnMut(Stage, usize, usize) + Send),
    ) -> anyhow::Result<serde_json::Value> {
        let k = args
            .shard
            .ok_or_else(|| anyhow::anyhow!("job {job_id} names no shard"))?;
        let (audit, run, sealed_plan) = self.piece_context(args).await?;
        let (model, cfg, _, _) = self
            .load_run_model_at(&run.id, Some(audit.checkpoint_step))
            .await?;
        let range = *sealed_plan
            .plan
            .shards
            .get(k)
            .ok_or_else(|| anyhow::anyhow!("audit {} has no shard {k}", audit.id))?;
        let (_, sealed) = self.run_corpus(&run).await?;
        let subset = run_subset(&sealed, &cfg);
        let docs = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            Ok(load_documents_in(&sealed, &subset, range.first..range.end)?.train)
        })
        .await
        .context("reading the corpus was interrupted")??;
        let m = TorchModel::new(model, &cfg);
        let out = blocking_with_progress(progress, move |send| {
            shards::run_shard(&m, &sealed_plan.plan, k, &docs, send)
        })
        .await??;
        self.seal_piece(&run, &audit.id, &format!("shard-{k:04}"), Some(k), &out, job_id)
            .await
    }

    /// The scores piece of a sharded audit (canary exposure, membership inference).
    pub(super) async fn audit_scores(
        &self,
        args: &PieceArgs,
        job_id: &str,
        progress: &mut (dyn FnMut(Stage, usize, usize) + Send),
    ) -> anyhow::Result<serde_json::Value> {
        let (audit, run, sealed_plan) = self.piece_context(args).await?;
        let (model, cfg, tokenizer, _) = self
            .load_run_model_at(&run.id, Some(audit.checkpoint_step))
            .await?;
        let (_, sealed) = self.run_corpus(&run).await?;
        let canaries = sealed.canaries()?;
        let subset = run_subset(&sealed, &cfg);
        let docs = tokio::task::spawn_blocking(move || load_documents(&sealed, &subset))
            .await
            .context("reading the corpus was interrupted")??;
        let epochs = cfg.epochs_at(audit.checkpoint_step as u64);
        let m = TorchModel::new(model, &cfg);
        let params = sealed_plan.plan.params.clone();
        let scores = blocking_with_progress(progress, move |send| {
            let corpus = docs.corpus(&canaries, &tokenizer, epochs);
            shards::run_scores(&m, &corpus, &params, send)
        })
        .await??;
        self.seal_piece(&run, &audit.id, "scores", None, &scores, job_id)
            .await
    }

    /// Seals a piece's output under a name no other attempt uses, and returns the job result naming it.
    async fn seal_piece<T: Serialize>(
        &self,
        run: &RunRow,
        audit: &str,
        piece: &str,
        shard: Option<usize>,
        value: &T,
        job_id: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let file = format!("{audit}.{piece}.{job_id}-{}", crate::vault::random_hex(3)?);
        let (file, sha256) = self
            .seal_run_file(run, &file, &piece_role(audit, piece), serde_json::to_vec(value)?)
            .await?;
        Ok(serde_json::to_value(PieceResult {
            audit: audit.to_string(),
            shard,
            file,
            sha256,
        })?)
    }

    /// The merge of a sharded audit: reads every piece its group's jobs recorded, folds them into the
    /// report and evidence, stores both as a single-worker audit would, and deletes the pieces.
    pub(super) async fn audit_merge(
        &self,
        args: &PieceArgs,
        progress: &mut (dyn FnMut(Stage, usize, usize) + Send),
    ) -> anyhow::Result<AuditOutcome> {
        let (audit, run, sealed_plan) = self.piece_context(args).await?;
        let scanner = sealed_plan.scanner()?;
        let mut parts: Vec<ShardOutput> = Vec::new();
        let mut scores: Option<Scores> = None;
        let mut files = vec![args.plan_file.clone()];
        for job in self.store.jobs().group(&audit.id).await? {
            let result: PieceResult = job
                .result
                .clone()
                .and_then(|r| serde_json::from_value(r).ok())
                .ok_or_else(|| anyhow::anyhow!("piece {} of audit {} has no result", job.id, audit.id))?;
            let piece = match result.shard {
                Some(k) => format!("shard-{k:04}"),
                None => "scores".to_string(),
            };
            let bytes = self
                .read_run_file(
                    &run,
                    &result.file,
                    &piece_role(&audit.id, &piece),
                    Some(&result.sha256),
                )
                .await?;
            files.push(result.file.clone());
            match job.kind.as_str() {
                SHARD_KIND => parts.push(
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("piece {} of audit {} is not valid", job.id, audit.id))?,
                ),
                SCORES_KIND => {
                    scores =
                        Some(serde_json::from_slice(&bytes).with_context(|| {
                            format!("piece {} of audit {} is not valid", job.id, audit.id)
                        })?)
                }
                other => anyhow::bail!("audit {} holds a job of unknown kind {other}", audit.id),
            }
        }
        let scores = scores.ok_or_else(|| anyhow::anyhow!("audit {} has no scores piece", audit.id))?;
        let (_, sealed) = self.run_corpus(&run).await?;
        let tokenizer = sealed.tokenizer()?;
        let cfg = App::run_config(&run)?;
        let subset = run_subset(&sealed, &cfg);
        let docs = tokio::task::spawn_blocking(move || load_documents(&sealed, &subset))
            .await
            .context("reading the corpus was interrupted")??;
        let epochs = cfg.epochs_at(audit.checkpoint_step as u64);
        let plan = sealed_plan.plan;
        // The merge scores what the checkpoint learned, as the single-process audit does, so the merged
        // report is the one a single process produces.
        let (model, _, _, _) = self
            .load_run_model_at(&run.id, Some(audit.checkpoint_step))
            .await?;
        let merged = blocking_with_progress(progress, move |send| {
            let corpus = docs.corpus(&[], &tokenizer, epochs);
            let merged = shards::merge(&corpus, &plan, parts, scores, &scanner, send);
            let set = super::audit::eval_set(&docs.holdout, &tokenizer, &cfg, cfg.eval_settings(), None);
            merged.map(|m| (m, set.evaluate(&model)))
        })
        .await?;
        let ((mut report, evidence), utility) = match merged {
            Ok(r) => r,
            Err(e) => {
                self.store.audits().fail(&audit.id, &e.to_string()).await?;
                return Err(anyhow::Error::new(e).context(format!("merging audit {}", audit.id)));
            }
        };
        report.utility = match utility {
            Ok(u) => Some(u),
            Err(e) => {
                self.store.audits().fail(&audit.id, &e.to_string()).await?;
                return Err(anyhow::Error::new(e).context(format!("scoring audit {}'s checkpoint", audit.id)));
            }
        };
        let outcome = self.finish_audit(&run, &audit, report, &evidence).await?;
        for f in files {
            if let Ok(path) = self.config.inside(&f) {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(outcome)
    }
}

/// The parameters an audit request asks for.
pub fn request_params(req: &AuditRequest) -> AuditParams {
    match &req.params {
        Some(p) => p.clone(),
        None if req.quick => AuditParams::quick(),
        None => AuditParams::default(),
    }
}
