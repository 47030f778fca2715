//! The repetition study, run by the appliance itself (`lethe study repetition`): on one corpus and one
//! hash-selected set of unique tokens, train each objective for each epoch budget, evaluate what each
//! final checkpoint learned (held-out bits per byte, continuation choice) and quick-audit what it
//! memorized, and keep the table. The question it answers is the one Lethe exists for (Ni et al. 2025,
//! "Diffusion Language Models are Super Data Learners"): repeated many times, does the masked diffusion
//! model keep improving where the matched AR model stops, and at what memorization cost?
//!
//! **Design: one run per epoch budget, each with its own full schedule** (warmup, cosine decay to a
//! tenth of the peak over exactly that budget), not one long run read at intermediate checkpoints: a
//! checkpoint in the middle of a cosine schedule is still at a high learning rate and would understate
//! what a short budget reaches. A warmup-stable-decay run with decay branches would cost less (the
//! branches share the stable phase) but needs branching the trainer does not do; the sweep's cost is the
//! sum of its budgets, which the CPU configuration in `docs/study.md` keeps within 25 minutes.

use serde::{Deserialize, Serialize};

use super::App;
use crate::audit::AuditParams;
use crate::eval::Accuracy;
use crate::store::StudyRow;
use crate::train::{KeepRule, Objective, TrainSpec};

/// What `lethe study repetition` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepetitionSpec {
    pub corpus: String,
    /// Unique training tokens every run uses (the same hash-selected documents: same seed).
    pub unique_tokens: u64,
    /// Epoch budgets, ascending.
    pub epochs: Vec<u64>,
    pub objectives: Vec<Objective>,
    pub preset: String,
    #[serde(default)]
    pub context: Option<i64>,
    pub batch_size: usize,
    #[serde(default)]
    pub lr: Option<f64>,
    pub seed: u64,
    /// The audit each final checkpoint gets.
    pub audit: AuditParams,
    #[serde(default)]
    pub created_by: Option<String>,
    /// Queued: only a worker with a GPU may run it.
    #[serde(default)]
    pub gpu: bool,
}

impl RepetitionSpec {
    /// The audit a study gives each checkpoint: the quick audit's measures with fewer generations, so a
    /// CPU sweep of a dozen runs stays within minutes.
    pub fn study_audit() -> AuditParams {
        AuditParams {
            extraction_samples: 32,
            regurgitation_samples: 8,
            regurgitation_length: 64,
            canary_candidates: 100,
            canary_mc_samples: 2,
            membership_docs: 48,
            membership_mc_samples: 4,
            bootstrap: 200,
            ..AuditParams::default()
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.epochs.is_empty() || self.epochs.contains(&0) {
            anyhow::bail!("--epochs must list epoch budgets of at least 1, e.g. 1,2,4,8");
        }
        if self.epochs.windows(2).any(|w| w[0] >= w[1]) {
            anyhow::bail!("--epochs must be strictly increasing, e.g. 1,2,4,8");
        }
        if self.objectives.is_empty() {
            anyhow::bail!("--objectives must name diffusion, ar or both");
        }
        if self.unique_tokens == 0 {
            anyhow::bail!("--unique-tokens must be at least 1");
        }
        self.audit.validate()?;
        Ok(())
    }

    fn train_spec(&self, objective: Objective, epochs: u64) -> TrainSpec {
        TrainSpec {
            objective,
            preset: self.preset.clone(),
            overrides: crate::model::ModelOverrides {
                context: self.context,
                ..Default::default()
            },
            epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            seed: self.seed,
            unique_tokens: Some(self.unique_tokens),
            // Only the final checkpoint is the budget's; it is the one evaluated and audited.
            keep: KeepRule::Spaced(1),
            ..TrainSpec::default()
        }
    }
}

/// One run of the sweep: what it learned beside what it memorized.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyPoint {
    pub objective: Objective,
    pub epochs: u64,
    pub run: String,
    pub step: i64,
    pub final_train_loss: Option<f64>,
    pub bits_per_byte: Option<f64>,
    pub nats_per_token: Option<f64>,
    pub choice_accuracy: Option<Accuracy>,
    pub audit: String,
    /// Exact prefix extraction (estimate and upper 95% bound).
    pub exact_extraction: f64,
    pub exact_extraction_high: f64,
    /// Diffusion only.
    pub infill_exact: Option<f64>,
    pub max_canary_exposure: f64,
    pub membership_auc: f64,
    pub train_seconds: f64,
}

/// A study as `lethe study show` prints it.
#[derive(Debug, Serialize)]
pub struct StudyDetails {
    #[serde(flatten)]
    pub row: StudyRow,
    pub corpus: String,
    pub points: Vec<StudyPoint>,
}

impl StudyDetails {
    fn from_row(row: StudyRow, corpus: String) -> StudyDetails {
        let points = row
            .result
            .as_ref()
            .and_then(|r| r.get("points"))
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default();
        StudyDetails { row, corpus, points }
    }
}

impl App {
    /// Queues a study; a worker runs it.
    pub async fn enqueue_study(&self, spec: &RepetitionSpec) -> anyhow::Result<String> {
        spec.validate()?;
        self.corpus_row(&spec.corpus).await?;
        let mut job = crate::store::NewJob::new("study", serde_json::to_value(spec)?);
        job.created_by = spec.created_by.clone();
        job.needs_gpu = spec.gpu;
        Ok(self.store.jobs().enqueue(&job).await?)
    }

    /// Runs the repetition study in this process. `progress` hears one line per stage. A study job
    /// handed back after its worker died continues: the points it recorded are kept.
    pub async fn study_repetition(
        &self,
        spec: RepetitionSpec,
        job_id: Option<String>,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> anyhow::Result<StudyDetails> {
        spec.validate()?;
        let corpus = self.corpus_row(&spec.corpus).await?;
        let previous = match &job_id {
            Some(j) => self.store.studies().by_job(j).await?,
            None => None,
        };
        let (id, mut points) = match previous {
            Some(row) => {
                let d = StudyDetails::from_row(row, corpus.name.clone());
                (d.row.id.clone(), d.points)
            }
            None => {
                let id = format!("study-{}", crate::vault::random_hex(6)?);
                self.store
                    .studies()
                    .create(&StudyRow {
                        id: id.clone(),
                        kind: "repetition".into(),
                        corpus_id: corpus.id.clone(),
                        spec: serde_json::to_value(&spec)?,
                        state: "running".into(),
                        result: Some(serde_json::json!({ "points": [] })),
                        error: None,
                        created_by: spec.created_by.clone(),
                        created_at: crate::store::now_ms(),
                        finished_at: None,
                        job_id: job_id.clone(),
                    })
                    .await?;
                (id, Vec::new())
            }
        };
        let total = spec.epochs.len() * spec.objectives.len();
        let outcome: anyhow::Result<()> = async {
            for &e in &spec.epochs {
                for &objective in &spec.objectives {
                    if points
                        .iter()
                        .any(|p: &StudyPoint| p.epochs == e && p.objective == objective)
                    {
                        continue;
                    }
                    progress(format!(
                        "[{}/{total}] training {} for {e} epoch(s) on {} unique tokens",
                        points.len() + 1,
                        objective.as_str(),
                        spec.unique_tokens
                    ));
                    let summary = self
                        .train(
                            super::train::TrainRequest {
                                corpus: spec.corpus.clone(),
                                spec: spec.train_spec(objective, e),
                                max_steps: None,
                                created_by: spec.created_by.clone(),
                                job_id: None,
                                gpu: false,
                            },
                            &mut |_| {},
                        )
                        .await?;
                    progress(format!(
                        "[{}/{total}] auditing run {}",
                        points.len() + 1,
                        summary.run_id
                    ));
                    let audit = self
                        .audit(
                            super::audit::AuditRequest {
                                run: summary.run_id.clone(),
                                params: Some(spec.audit.clone()),
                                created_by: spec.created_by.clone(),
                                ..Default::default()
                            },
                            &mut |_, _, _| {},
                        )
                        .await?;
                    let r = &audit.report;
                    let u = r.utility.clone();
                    points.push(StudyPoint {
                        objective,
                        epochs: e,
                        run: summary.run_id.clone(),
                        step: audit.checkpoint_step,
                        final_train_loss: summary.final_loss,
                        bits_per_byte: u.as_ref().and_then(|u| u.bits_per_byte),
                        nats_per_token: u.as_ref().and_then(|u| u.nats_per_token),
                        choice_accuracy: u.as_ref().and_then(|u| u.choice_accuracy),
                        audit: audit.audit.clone(),
                        exact_extraction: r.extraction.exact.rate,
                        exact_extraction_high: r.extraction.exact.high,
                        infill_exact: r.infilling.as_ref().map(|i| i.exact.rate),
                        max_canary_exposure: r.canaries.max_exposure,
                        membership_auc: r.membership.max_auc,
                        train_seconds: summary.seconds,
                    });
                    self.store
                        .studies()
                        .update(&id, "running", &serde_json::json!({ "points": points }), None)
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        let result = serde_json::json!({ "points": points });
        match &outcome {
            Ok(()) => {
                self.store
                    .studies()
                    .update(&id, "succeeded", &result, None)
                    .await?
            }
            Err(e) => {
                self.store
                    .studies()
                    .update(&id, "failed", &result, Some(&format!("{e:#}")))
                    .await?
            }
        }
        outcome?;
        self.study_details(&id).await
    }

    pub async fn study_details(&self, id: &str) -> anyhow::Result<StudyDetails> {
        let row = self
            .store
            .studies()
            .get(id)
            .await?
            .ok_or_else(|| super::NotFound(format!("no study {id:?} (see `lethe study list`)")))?;
        let corpus = self
            .store
            .corpora()
            .by_id(&row.corpus_id)
            .await?
            .map_or_else(|| "(removed)".into(), |c| c.name);
        Ok(StudyDetails::from_row(row, corpus))
    }

    pub async fn studies_list(&self) -> anyhow::Result<Vec<StudyDetails>> {
        let mut out = Vec::new();
        for row in self.store.studies().list().await? {
            let corpus = self
                .store
                .corpora()
                .by_id(&row.corpus_id)
                .await?
                .map_or_else(|| "(removed)".into(), |c| c.name);
            out.push(StudyDetails::from_row(row, corpus));
        }
        Ok(out)
    }
}
