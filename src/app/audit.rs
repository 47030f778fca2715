//! Audit use cases: audit a run's latest checkpoint against its corpus (in the foreground or as a queued
//! job), show an audit's report and its evidence, and scan generations from any model for regurgitated
//! corpus text. The audits themselves live in [`crate::audit`]; here the model is loaded, the corpus
//! decrypted, the evidence sealed with the run's key and the report stored.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::App;
use crate::audit::{
    self, regurgitation::TextResult, secrets, AuditCorpus, AuditModel, AuditParams, AuditReport, Evidence,
    ModelKind, SamplerSettings, Stage,
};
use crate::corpus::tokenizer::MASK_ID;
use crate::corpus::{SealedCorpus, Split};
use crate::model::{Remasking, SampleOptions, Transformer};
use crate::store::{AuditRow, RunRow};
use crate::train::data::{Subset, Take};
use crate::train::{Objective, TrainConfig};

/// What to audit and how.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditRequest {
    pub run: String,
    /// The checkpoint to audit (a kept one, or the newest); `None`: the newest.
    #[serde(default)]
    pub step: Option<i64>,
    /// A customer's multiple-choice file scored beside the held-out utility (`--eval FILE.jsonl`).
    #[serde(default)]
    pub eval_file: Option<PathBuf>,
    /// The smaller audit ([`AuditParams::quick`]) instead of the full one.
    #[serde(default)]
    pub quick: bool,
    /// Replaces the parameters entirely when given (the policy's audit section).
    #[serde(default)]
    pub params: Option<AuditParams>,
    /// Extra secret rule packs, applied with the built-in one.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// The customer's deny-list of literal strings.
    #[serde(default)]
    pub deny_list: Option<PathBuf>,
    #[serde(default)]
    pub created_by: Option<String>,
    /// The queued job running it, set by the worker.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Only a worker with a GPU may run it (queued audits).
    #[serde(default)]
    pub gpu: bool,
}

/// A finished audit.
#[derive(Debug, Serialize)]
pub struct AuditOutcome {
    pub audit: String,
    pub run: String,
    pub checkpoint_step: i64,
    pub report: AuditReport,
}

/// An audit as `lethe audit show` prints it.
#[derive(Debug, Serialize)]
pub struct AuditDetails {
    #[serde(flatten)]
    pub row: AuditRow,
    /// Present when asked for: secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// The trained model behind the audit's trait.
pub(super) struct TorchModel {
    pub(super) model: Transformer,
    pub(super) kind: ModelKind,
}

impl TorchModel {
    pub(super) fn new(model: Transformer, cfg: &TrainConfig) -> TorchModel {
        let kind = match cfg.objective {
            Objective::Diffusion => ModelKind::Diffusion,
            Objective::Ar => ModelKind::Ar,
        };
        TorchModel { model, kind }
    }
}

impl TorchModel {
    fn options(&self, len: usize, s: &SamplerSettings) -> SampleOptions {
        let mut o = SampleOptions::new(len as i64, i64::from(MASK_ID));
        o.steps = s.steps as i64;
        o.block_length = s.block_length as i64;
        o.temperature = s.temperature;
        o.remasking = Remasking::LowConfidence;
        o.seed = (s.temperature > 0.0).then_some(s.seed);
        o.batch_size = self.batch_rows();
        o
    }
}

fn to_i64(rows: &[Vec<u32>]) -> Vec<Vec<i64>> {
    rows.iter()
        .map(|r| r.iter().map(|&t| i64::from(t)).collect())
        .collect()
}

fn to_u32(rows: Vec<Vec<i64>>) -> Vec<Vec<u32>> {
    rows.into_iter()
        .map(|r| r.into_iter().map(|t| t.max(0) as u32).collect())
        .collect()
}

impl AuditModel for TorchModel {
    fn kind(&self) -> ModelKind {
        self.kind
    }

    fn context(&self) -> usize {
        self.model.config().context as usize
    }

    fn batch_rows(&self) -> usize {
        if self.model.device().is_cuda() {
            256
        } else {
            32
        }
    }

    fn generate(
        &self,
        prompts: &[Vec<u32>],
        len: usize,
        s: &SamplerSettings,
    ) -> Result<Vec<Vec<u32>>, String> {
        self.model
            .generate(&to_i64(prompts), &self.options(len, s))
            .map(to_u32)
            .map_err(|e| e.to_string())
    }

    fn infill(&self, rows: &[Vec<u32>], s: &SamplerSettings) -> Result<Vec<Vec<u32>>, String> {
        self.model
            .infill(&to_i64(rows), &self.options(1, s))
            .map(to_u32)
            .map_err(|e| e.to_string())
    }

    fn token_scores(&self, rows: &[Vec<u32>], mc: usize, seed: u64) -> Result<Vec<Vec<f64>>, String> {
        let rows = to_i64(rows);
        match self.kind {
            ModelKind::Ar => self.model.score_tokens(&rows),
            ModelKind::Diffusion => self
                .model
                .score_elbo(&rows, i64::from(MASK_ID), mc, seed)
                .map(|s| s.token_terms),
        }
        .map_err(|e| e.to_string())
    }

    fn tail_scores(
        &self,
        rows: &[Vec<u32>],
        keep: &[usize],
        mc: usize,
        seed: u64,
    ) -> Result<Vec<f64>, String> {
        self.model
            .score_tail(
                &to_i64(rows),
                keep,
                i64::from(MASK_ID),
                mc,
                &vec![seed; rows.len()],
            )
            .map_err(|e| e.to_string())
    }
}

/// The decrypted corpus as the audit needs it, for a run's training subset: the training documents the
/// run used (members), the holdout, and the training documents it left out (never seen; non-members
/// beside the holdout).
pub(super) type Docs = Vec<(u32, Vec<u32>)>;

pub(super) struct AuditDocs {
    pub train: Docs,
    pub holdout: Docs,
    pub unseen: Docs,
}

impl AuditDocs {
    /// The audits' view of these documents; `epochs` is what the audited checkpoint had trained.
    pub fn corpus<'a>(
        &'a self,
        canaries: &'a [crate::corpus::canary::Canary],
        tokenizer: &'a crate::corpus::CorpusTokenizer,
        epochs: f64,
    ) -> AuditCorpus<'a> {
        AuditCorpus {
            train: &self.train,
            holdout: &self.holdout,
            unseen: &self.unseen,
            canaries,
            tokenizer,
            epochs,
        }
    }
}

/// The training subset of a run (all of the training split without `--unique-tokens`).
pub(super) fn run_subset(sealed: &SealedCorpus, cfg: &TrainConfig) -> Subset {
    Subset::select(
        &sealed.manifest.documents,
        cfg.unique_tokens,
        cfg.subset,
        cfg.seed,
    )
}

pub(super) fn load_documents(sealed: &SealedCorpus, subset: &Subset) -> anyhow::Result<AuditDocs> {
    load_documents_in(sealed, subset, 0..u32::MAX)
}

/// [`load_documents`] for the documents whose index lies in `range` only, decrypting only the shards
/// that hold them.
pub(super) fn load_documents_in(
    sealed: &SealedCorpus,
    subset: &Subset,
    range: std::ops::Range<u32>,
) -> anyhow::Result<AuditDocs> {
    let mut out = AuditDocs {
        train: Vec::new(),
        holdout: Vec::new(),
        unseen: Vec::new(),
    };
    for doc in sealed.documents_in(Split::All, range, 2) {
        let doc = doc?;
        if doc.holdout {
            out.holdout.push((doc.index, doc.tokens));
            continue;
        }
        match subset.take(doc.index) {
            Take::None => out.unseen.push((doc.index, doc.tokens)),
            // A prefix-capped run's last document was cut where the trainer cut it.
            Take::Prefix(n) => {
                let mut tokens = doc.tokens;
                tokens.truncate(n as usize);
                out.train.push((doc.index, tokens));
            }
            Take::All => out.train.push((doc.index, doc.tokens)),
        }
    }
    Ok(out)
}

/// A customer's multiple-choice items and the file they came from.
pub(super) struct CustomItems {
    pub name: String,
    pub sha256: String,
    pub items: Vec<crate::eval::ChoiceItem>,
}

/// The held-out evaluation of a run's checkpoints (the settings of its kept checkpoints), with the
/// customer's items when given.
pub(super) fn eval_set(
    holdout: &[(u32, Vec<u32>)],
    tokenizer: &crate::corpus::CorpusTokenizer,
    cfg: &TrainConfig,
    settings: crate::eval::EvalSettings,
    custom: Option<CustomItems>,
) -> crate::eval::EvalSet {
    let set = crate::eval::EvalSet::build(
        holdout,
        tokenizer.token_bytes(),
        cfg.model.context as usize,
        settings,
    );
    match custom {
        Some(c) => set.with_custom(c.name, c.sha256, c.items),
        None => set,
    }
}

/// Builds the secret scanner: the built-in pack, extra packs, and the deny-list.
pub(super) fn scanner(rules: &[PathBuf], deny: Option<&PathBuf>) -> anyhow::Result<secrets::Scanner> {
    let mut packs = vec![secrets::RulePack::builtin()];
    for p in rules {
        packs.push(secrets::RulePack::load(p)?);
    }
    let deny = deny.map(|p| secrets::DenyList::load(p)).transpose()?;
    Ok(secrets::Scanner::new(&packs, deny.as_ref())?)
}

/// The row of an audit that starts now.
pub(super) fn running_audit(
    id: &str,
    run: &RunRow,
    checkpoint: &crate::store::CheckpointRow,
    req: &AuditRequest,
    params: &AuditParams,
    job_id: Option<String>,
) -> anyhow::Result<AuditRow> {
    Ok(AuditRow {
        id: id.to_string(),
        run_id: run.id.clone(),
        checkpoint_step: checkpoint.step,
        checkpoint_sha256: checkpoint.sha256.clone(),
        state: "running".into(),
        quick: req.quick,
        params: serde_json::to_value(params)?,
        report: None,
        evidence_file: None,
        evidence_sha256: None,
        error: None,
        created_by: req.created_by.clone(),
        created_at: crate::store::now_ms(),
        finished_at: None,
        job_id,
    })
}

fn evidence_role(audit_id: &str) -> String {
    format!("audit-evidence/{audit_id}")
}

impl App {
    /// Audits the latest checkpoint of a run and stores the report; `progress` sees each stage's units.
    pub async fn audit(
        &self,
        req: AuditRequest,
        progress: &mut (dyn FnMut(Stage, usize, usize) + Send),
    ) -> anyhow::Result<AuditOutcome> {
        let run = self.run_row(&req.run).await?;
        let params = super::audit_shards::request_params(&req);
        params.validate()?;
        let scanner = scanner(&req.rules, req.deny_list.as_ref())?;
        let (model, cfg, tokenizer, latest) = self.load_run_model_at(&run.id, req.step).await?;
        let (_, sealed) = self.run_corpus(&run).await?;
        let canaries = sealed
            .canaries()
            .with_context(|| format!("cannot read the canaries of run {}'s corpus", run.id))?;
        let custom = self.custom_items(req.eval_file.as_deref(), &tokenizer, &cfg)?;
        let subset = run_subset(&sealed, &cfg);
        let docs = tokio::task::spawn_blocking(move || load_documents(&sealed, &subset))
            .await
            .context("reading the corpus was interrupted")??;

        let id = format!("aud-{}", crate::vault::random_hex(6)?);
        let row = running_audit(&id, &run, &latest, &req, &params, req.job_id.clone())?;
        self.store.audits().create(&row).await?;
        let result = self
            .audit_blocking(
                &run,
                &cfg,
                model,
                tokenizer,
                (docs, canaries, custom, latest.step),
                params,
                scanner,
                progress,
            )
            .await;
        match result {
            Ok((report, evidence)) => self.finish_audit(&run, &row, report, &evidence).await,
            Err(e) => {
                let msg = format!("{e:#}");
                self.store.audits().fail(&id, &msg).await?;
                Err(e.context(format!("audit {id} of run {} failed", run.id)))
            }
        }
    }

    /// Seals an audit's evidence, stores its report, and records it in the ledger under the person who
    /// asked for it.
    pub(super) async fn finish_audit(
        &self,
        run: &RunRow,
        audit: &AuditRow,
        report: AuditReport,
        evidence: &Evidence,
    ) -> anyhow::Result<AuditOutcome> {
        let id = &audit.id;
        let (file, sha) = self.seal_evidence(run, id, evidence).await?;
        self.store
            .audits()
            .succeed(id, &serde_json::to_value(&report)?, &file, &sha)
            .await?;
        let actor = audit.created_by.clone().unwrap_or_else(super::cli_actor);
        self.record(
            &actor,
            crate::ledger::action::AUDIT_RUN,
            &run.id,
            serde_json::json!({
                "audit": id,
                "checkpoint_step": audit.checkpoint_step,
                "checkpoint_sha256": audit.checkpoint_sha256,
                "evidence_sha256": sha,
            }),
        )
        .await?;
        Ok(AuditOutcome {
            audit: id.clone(),
            run: run.id.clone(),
            checkpoint_step: audit.checkpoint_step,
            report,
        })
    }

    /// Reads a customer's multiple-choice file for a run's model, or nothing without one.
    pub(super) fn custom_items(
        &self,
        path: Option<&std::path::Path>,
        tokenizer: &crate::corpus::CorpusTokenizer,
        cfg: &TrainConfig,
    ) -> anyhow::Result<Option<CustomItems>> {
        let Some(path) = path else { return Ok(None) };
        let items = crate::eval::load_items(path, tokenizer, cfg.model.context as usize)?;
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Some(CustomItems {
            name,
            sha256: crate::release::bundle::sha256_hex(&bytes),
            items,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit_blocking(
        &self,
        run: &RunRow,
        cfg: &TrainConfig,
        model: Transformer,
        tokenizer: crate::corpus::CorpusTokenizer,
        data: (
            AuditDocs,
            Vec<crate::corpus::canary::Canary>,
            Option<CustomItems>,
            i64,
        ),
        params: AuditParams,
        scanner: secrets::Scanner,
        progress: &mut (dyn FnMut(Stage, usize, usize) + Send),
    ) -> anyhow::Result<(AuditReport, Evidence)> {
        let cfg = cfg.clone();
        let m = TorchModel::new(model, &cfg);
        blocking_with_progress(progress, move |send| -> anyhow::Result<_> {
            let (docs, canaries, custom, step) = data;
            let corpus = docs.corpus(&canaries, &tokenizer, cfg.epochs_at(step as u64));
            let (mut report, evidence) = audit::run(&m, &corpus, &params, &scanner, send)?;
            let set = eval_set(&docs.holdout, &tokenizer, &cfg, cfg.eval_settings(), custom);
            report.utility = Some(set.evaluate(&m.model)?);
            Ok((report, evidence))
        })
        .await?
        .with_context(|| format!("auditing run {}", run.id))
    }

    async fn seal_evidence(
        &self,
        run: &RunRow,
        id: &str,
        evidence: &Evidence,
    ) -> anyhow::Result<(String, String)> {
        let bytes = serde_json::to_vec(evidence)?;
        self.seal_run_file(run, &format!("{id}.evidence"), &evidence_role(id), bytes)
            .await
            .context("cannot write the audit's sealed evidence")
    }

    /// Seals `bytes` as `file` in the run's directory under the run's data key, bound to `role`;
    /// returns its path under the data directory and its SHA-256.
    pub(super) async fn seal_run_file(
        &self,
        run: &RunRow,
        file: &str,
        role: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<(String, String)> {
        let key = self.run_key(run).await?;
        let dir = self.config.inside(&run.directory)?;
        let (run_id, key_id, role, file) = (
            run.id.clone(),
            run.data_key_id.clone(),
            role.to_string(),
            file.to_string(),
        );
        let meta = tokio::task::spawn_blocking(move || {
            crate::corpus::sealed::seal_bytes(&dir, &file, &role, &run_id, &key, &key_id, &bytes)
        })
        .await
        .context("sealing was interrupted")??;
        Ok((format!("{}/{}", run.directory, meta.file), meta.sha256))
    }

    /// Reads a file [`App::seal_run_file`] wrote, checking its role and, when given, its SHA-256.
    pub(super) async fn read_run_file(
        &self,
        run: &RunRow,
        file: &str,
        role: &str,
        sha256: Option<&str>,
    ) -> anyhow::Result<Vec<u8>> {
        let key = self.run_key(run).await?;
        let path = self.config.inside(file)?;
        let (run_id, role_owned, want) = (run.id.clone(), role.to_string(), sha256.map(str::to_string));
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
            if let Some(want) = want {
                let raw = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let got = crate::release::bundle::sha256_hex(&raw);
                if got != want {
                    anyhow::bail!(
                        "{} is not the file that was recorded (SHA-256 differs)",
                        path.display()
                    );
                }
            }
            Ok(crate::corpus::sealed::read_sealed(
                &path,
                &run_id,
                &role_owned,
                &key,
            )?)
        })
        .await
        .context("reading was interrupted")?
        .with_context(|| format!("the sealed {role} of run {} cannot be read", run.id))
    }

    pub async fn audit_row(&self, id: &str) -> anyhow::Result<AuditRow> {
        self.store
            .audits()
            .get(id)
            .await?
            .ok_or_else(|| super::NotFound(format!("no audit {id:?} (see `lethe audit list`)")).into())
    }

    /// An audit's row, and its evidence when asked for: secrets masked, unless `unmask_as` is an admin,
    /// which the ledger records.
    pub async fn audit_details(
        &self,
        id: &str,
        evidence: bool,
        unmask_as: Option<&crate::store::User>,
    ) -> anyhow::Result<AuditDetails> {
        if let Some(u) = unmask_as {
            if u.role != crate::store::Role::Admin {
                return Err(crate::release::Refused(format!(
                    "unmasking evidence needs the admin role; {} is {}",
                    u.username, u.role
                ))
                .into());
            }
        }
        let row = self.audit_row(id).await?;
        let evidence = match (evidence, &row.evidence_file) {
            (false, _) => None,
            (true, None) => anyhow::bail!("audit {id} has no evidence ({})", row.state),
            (true, Some(file)) => {
                let run = self.run_row(&row.run_id).await?;
                let key = self.run_key(&run).await?;
                let path = self.config.inside(file)?;
                let (run_id, role) = (run.id.clone(), evidence_role(id));
                let bytes = tokio::task::spawn_blocking(move || {
                    crate::corpus::sealed::read_sealed(&path, &run_id, &role, &key)
                })
                .await
                .context("reading the evidence was interrupted")?
                .with_context(|| format!("the sealed evidence of audit {id} cannot be read"))?;
                let ev: Evidence = serde_json::from_slice(&bytes)
                    .with_context(|| format!("the evidence of audit {id} is not valid"))?;
                match unmask_as {
                    Some(admin) => {
                        self.record(
                            &admin.username,
                            crate::ledger::action::EVIDENCE_UNMASK,
                            id,
                            serde_json::json!({ "run": row.run_id, "secrets": ev.secrets.len() }),
                        )
                        .await?;
                        Some(ev)
                    }
                    None => Some(ev.masked()),
                }
            }
        };
        Ok(AuditDetails { row, evidence })
    }

    pub async fn audit_list(&self, run: Option<&str>) -> anyhow::Result<Vec<AuditRow>> {
        if let Some(r) = run {
            self.run_row(r).await?;
        }
        Ok(self.store.audits().list(run).await?)
    }

    /// Scans generations from any model (`texts`: line number and text) for verbatim corpus spans.
    pub async fn scan_generations(
        &self,
        corpus: &str,
        texts: Vec<(usize, String)>,
        min_len: usize,
        chars: bool,
    ) -> anyhow::Result<(audit::regurgitation::RegurgitationReport, Vec<TextResult>)> {
        let (_, sealed) = self.open_corpus(corpus).await?;
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let tokenizer = sealed.tokenizer()?;
            let docs = load_documents(
                &sealed,
                &Subset::select(&sealed.manifest.documents, None, Default::default(), 0),
            )?;
            let corpus = docs.corpus(&[], &tokenizer, 1.0);
            Ok(audit::regurgitation::scan_texts(&corpus, &texts, min_len, chars)?)
        })
        .await
        .context("the scan was interrupted")?
    }
}

/// Reads a generations file: one JSON object per line, the text under `field`. Blank lines are skipped;
/// anything else that is not such an object is an error naming the line.
pub fn read_generations(path: &std::path::Path, field: &str) -> anyhow::Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read generations file {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{n}: not a JSON object", path.display()))?;
        let value = v
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("{}:{n}: not a JSON object", path.display()))?
            .get(field)
            .ok_or_else(|| anyhow::anyhow!("{}:{n}: has no field {field:?}", path.display()))?;
        let s = value
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{}:{n}: field {field:?} is not a string", path.display()))?;
        out.push((n, s.to_string()));
    }
    if out.is_empty() {
        anyhow::bail!("generations file {} holds no generations", path.display());
    }
    Ok(out)
}

/// Runs `f` (an audit step, CPU- and model-bound) off the async threads, passing what it reports to
/// `progress` as it goes.
pub(super) async fn blocking_with_progress<T: Send + 'static>(
    progress: &mut (dyn FnMut(Stage, usize, usize) + Send),
    f: impl FnOnce(&mut dyn FnMut(Stage, usize, usize)) -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Stage, usize, usize)>();
    let handle = tokio::task::spawn_blocking(move || {
        let mut send = |s: Stage, d: usize, t: usize| {
            let _ = tx.send((s, d, t));
        };
        f(&mut send)
    });
    while let Some((s, d, t)) = rx.recv().await {
        progress(s, d, t);
    }
    handle.await.context("the audit was interrupted")
}
