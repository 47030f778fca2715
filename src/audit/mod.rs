//! The memorization audits of a trained model against the corpus it was trained on, and the report they
//! produce: discoverable extraction (prefix and infilling), verbatim n-gram regurgitation, canary exposure,
//! secrets and PII in generations, and membership inference.
//!
//! The audits reach the model only through [`AuditModel`] (generate, infill, score), so they run the same
//! on the diffusion model, the AR baseline, or a test double, and never depend on how the model is built.
//! The corpus comes in as [`AuditCorpus`]: token arrays already decrypted by the caller, the canaries and
//! the tokenizer. Plaintext stays in memory; what leaves this module is an [`AuditReport`] (figures only:
//! no corpus text, no secret) and an [`Evidence`] (texts a reviewer needs, which the caller seals).

pub mod exposure;
pub mod extraction;
pub mod leaks;
pub mod membership;
pub mod ngram;
pub mod regurgitation;
pub mod report;
pub mod secrets;
pub mod shards;
pub mod stats;

use serde::{Deserialize, Serialize};

use crate::corpus::canary::Canary;
use crate::corpus::tokenizer::CorpusTokenizer;

pub use report::{AuditReport, Evidence};

/// What an audit can fail on, in the reviewer's terms.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the model failed during the {stage} audit: {message}")]
    Model { stage: &'static str, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] crate::corpus::CorpusError),
    #[error("audit parameter {name}: {why}")]
    Param { name: &'static str, why: String },
    #[error("{0}")]
    Rules(#[from] secrets::RuleError),
}

/// Which objective the audited model was trained with; extraction and scoring differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Diffusion,
    Ar,
}

/// How the audits sample from the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerSettings {
    /// Diffusion: denoising steps for the generated span (forward passes).
    pub steps: usize,
    /// Diffusion: block length (must divide the generated length; the audit shortens it if not).
    pub block_length: usize,
    /// 0 decodes greedily (argmax); above 0 samples at that temperature.
    pub temperature: f64,
    /// Seeds the sampler's noise when `temperature > 0`.
    pub seed: u64,
}

/// The model as the audits use it. Token ids are the corpus tokenizer's.
pub trait AuditModel {
    fn kind(&self) -> ModelKind;
    /// Longest row (prompt plus generation) the model takes.
    fn context(&self) -> usize;
    /// Rows the audits hand over per call: enough to keep the device busy, few enough that progress
    /// moves (a GPU wants hundreds, a CPU a few dozen).
    fn batch_rows(&self) -> usize {
        32
    }
    /// Generates `len` tokens after each prompt (prompts may be empty for a diffusion model).
    fn generate(
        &self,
        prompts: &[Vec<u32>],
        len: usize,
        sampler: &SamplerSettings,
    ) -> Result<Vec<Vec<u32>>, String>;
    /// Diffusion only: fills every [`crate::corpus::tokenizer::MASK_ID`] of each row, returning whole rows.
    fn infill(&self, rows: &[Vec<u32>], sampler: &SamplerSettings) -> Result<Vec<Vec<u32>>, String>;
    /// Per-token log-likelihood terms of each row in nats. AR: `log p(x_i | x_<i)` for `i >= 1` (one fewer
    /// than the row). Diffusion: the per-token ELBO terms from `mc_samples` masked copies (they sum to the
    /// row's ELBO).
    fn token_scores(&self, rows: &[Vec<u32>], mc_samples: usize, seed: u64) -> Result<Vec<Vec<f64>>, String>;
    /// Log-likelihood (AR: exact; diffusion: a conditional ELBO with common random numbers across rows) of
    /// each row's tokens from `keep[r]` on, given the tokens before.
    fn tail_scores(
        &self,
        rows: &[Vec<u32>],
        keep: &[usize],
        mc_samples: usize,
        seed: u64,
    ) -> Result<Vec<f64>, String>;
}

/// The corpus side of an audit: what the model was trained on, decrypted in memory.
pub struct AuditCorpus<'a> {
    /// Training documents the model saw, as (document index in the corpus, tokens), in index order.
    pub train: &'a [(u32, Vec<u32>)],
    /// Holdout documents (never trained on), for membership inference.
    pub holdout: &'a [(u32, Vec<u32>)],
    /// Training-split documents the run left out (`--unique-tokens`): never seen, from the same
    /// distribution, so non-members beside the holdout.
    pub unseen: &'a [(u32, Vec<u32>)],
    pub canaries: &'a [Canary],
    pub tokenizer: &'a CorpusTokenizer,
    /// Epochs the audited checkpoint had trained: a sequence in `c` copies of the training documents was
    /// seen `c × epochs` times.
    pub epochs: f64,
}

impl AuditCorpus<'_> {
    /// Whether document `index` is one the model trained on.
    pub fn is_member(&self, index: u32) -> bool {
        self.train.binary_search_by_key(&index, |(d, _)| *d).is_ok()
    }
}

/// Most corpus shards one audit is cut into.
pub const MAX_SHARDS: usize = 256;

/// Every knob of an audit. The defaults are the full audit; [`AuditParams::quick`] is a smaller one for
/// smoke checks. The policy file (see the release gate) carries the same fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditParams {
    /// Training sequences probed by prefix extraction (and, for a diffusion model, by infilling).
    pub extraction_samples: usize,
    /// Tokens of true text given to the model (prefix; split around the hole for infilling).
    pub prefix_tokens: usize,
    /// Tokens the model must reproduce.
    pub suffix_tokens: usize,
    /// A generation within this normalized token edit distance of the truth counts as approximate.
    pub approx_max_edit: f64,
    /// Diffusion sampler steps for extraction; 0 means one per generated token.
    pub sampler_steps: usize,
    /// Diffusion block length for extraction; 0 means one block.
    pub block_length: usize,
    /// Generations for the regurgitation and secrets scans.
    pub regurgitation_samples: usize,
    /// Tokens per regurgitation generation (shortened to fit the model's context).
    pub regurgitation_length: usize,
    /// Sampling temperature of those generations (greedy decoding would repeat one sample).
    pub sample_temperature: f64,
    /// Prompts that half of the generations start from (the rest are unprompted).
    pub prompts: Vec<String>,
    /// Shortest verbatim span that counts as regurgitated, in tokens.
    pub min_tokens: usize,
    /// Random candidates each canary is ranked against.
    pub canary_candidates: usize,
    /// Monte-Carlo samples per candidate for a diffusion model's ELBO.
    pub canary_mc_samples: usize,
    /// Documents per side (members and non-members) for membership inference.
    pub membership_docs: usize,
    /// Tokens of each document scored (from its start; shortened to the model's context).
    pub membership_window: usize,
    /// Monte-Carlo samples per document for a diffusion model's ELBO.
    pub membership_mc_samples: usize,
    /// Min-K%: the share of lowest-scored tokens averaged, in percent.
    pub min_k_percent: f64,
    /// Bootstrap resamples for the AUC intervals.
    pub bootstrap: usize,
    /// Worst examples kept as evidence per audit.
    pub evidence_examples: usize,
    /// Seeds every random choice of the audit, so the same run audited twice gives the same report.
    pub seed: u64,
    /// Corpus shards the extraction and regurgitation work is cut into (see [`shards`]): queued, each
    /// is a job of its own that any worker may take; in the foreground they run one after another.
    pub shards: usize,
}

impl Default for AuditParams {
    fn default() -> AuditParams {
        AuditParams {
            extraction_samples: 1000,
            prefix_tokens: 50,
            suffix_tokens: 50,
            approx_max_edit: 0.10,
            sampler_steps: 0,
            block_length: 0,
            regurgitation_samples: 200,
            regurgitation_length: 128,
            sample_temperature: 1.0,
            prompts: Vec::new(),
            min_tokens: 50,
            canary_candidates: 2000,
            canary_mc_samples: 16,
            membership_docs: 200,
            membership_window: 128,
            membership_mc_samples: 8,
            min_k_percent: 20.0,
            bootstrap: 1000,
            evidence_examples: 5,
            seed: 0,
            shards: 1,
        }
    }
}

impl AuditParams {
    /// A fast audit for smoke checks and demos: fewer samples everywhere, same measures.
    pub fn quick() -> AuditParams {
        AuditParams {
            extraction_samples: 64,
            regurgitation_samples: 32,
            canary_candidates: 200,
            canary_mc_samples: 4,
            membership_docs: 48,
            membership_mc_samples: 4,
            bootstrap: 200,
            ..AuditParams::default()
        }
    }

    /// Refuses values no audit can run with, naming the field.
    pub fn validate(&self) -> Result<(), AuditError> {
        let bad = |name: &'static str, why: &str| {
            Err(AuditError::Param {
                name,
                why: why.to_string(),
            })
        };
        if self.suffix_tokens == 0 {
            return bad("suffix_tokens", "must be at least 1");
        }
        if self.prefix_tokens == 0 {
            return bad("prefix_tokens", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.approx_max_edit) {
            return bad("approx_max_edit", "must be in [0, 1)");
        }
        if self.min_tokens == 0 {
            return bad("min_tokens", "must be at least 1");
        }
        if !(self.sample_temperature >= 0.0 && self.sample_temperature.is_finite()) {
            return bad("sample_temperature", "must be a finite number >= 0");
        }
        if !(self.min_k_percent > 0.0 && self.min_k_percent <= 100.0) {
            return bad("min_k_percent", "must be in (0, 100]");
        }
        if self.canary_mc_samples == 0 || self.membership_mc_samples == 0 {
            return bad(
                "canary_mc_samples",
                "Monte-Carlo sample counts must be at least 1",
            );
        }
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return bad("shards", "must be between 1 and 256");
        }
        if self.membership_window < 8 {
            return bad("membership_window", "must be at least 8 tokens");
        }
        Ok(())
    }
}

/// A stage of the audit, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Extraction,
    Infilling,
    Regurgitation,
    Canaries,
    Secrets,
    Membership,
}

impl Stage {
    /// Where the stage comes in [`run`] (0 to 5): the free generations first, then each shard's
    /// extraction and infilling, the scores, and the secrets scan at the merge. Progress bars use it so
    /// they only move forward.
    pub fn position(self) -> usize {
        match self {
            Stage::Regurgitation => 0,
            Stage::Extraction => 1,
            Stage::Infilling => 2,
            Stage::Canaries => 3,
            Stage::Membership => 4,
            Stage::Secrets => 5,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Extraction => "extraction",
            Stage::Infilling => "infilling",
            Stage::Regurgitation => "regurgitation",
            Stage::Canaries => "canaries",
            Stage::Secrets => "secrets",
            Stage::Membership => "membership",
        }
    }
}

/// Progress callback: a stage, units done and units in all.
pub type Progress<'a> = &'a mut dyn FnMut(Stage, usize, usize);

/// Runs every audit on `model` against `corpus` and returns the report and its evidence: the plan,
/// each shard's part, the scores and the merge of [`shards`], one after another in this process.
pub fn run(
    model: &dyn AuditModel,
    corpus: &AuditCorpus<'_>,
    params: &AuditParams,
    scanner: &secrets::Scanner,
    progress: Progress<'_>,
) -> Result<(AuditReport, Evidence), AuditError> {
    let plan = shards::plan(model, corpus, params, progress)?;
    let mut parts = Vec::with_capacity(plan.shards.len());
    for (k, range) in plan.shards.iter().enumerate() {
        // The training documents are in corpus order, so a shard's are one slice of them.
        let lo = corpus.train.partition_point(|(d, _)| *d < range.first);
        let hi = corpus.train.partition_point(|(d, _)| *d < range.end);
        parts.push(shards::run_shard(
            model,
            &plan,
            k,
            &corpus.train[lo..hi],
            progress,
        )?);
    }
    let scores = shards::run_scores(model, corpus, params, progress)?;
    shards::merge(corpus, &plan, parts, scores, scanner, progress)
}

/// Maps a model failure into the audit's error, naming the stage.
pub(crate) fn model_err(stage: &'static str) -> impl FnOnce(String) -> AuditError {
    move |message| AuditError::Model { stage, message }
}

#[cfg(test)]
mod tests;
