//! Membership inference: how well an attacker holding the model could tell documents it was trained on
//! (members) from held-out ones (non-members), reported as the ROC AUC of three classic scores with a
//! bootstrap interval. 0.5 means no better than a coin; 1.0 means every member is recognised.
//!
//! Each side is a seeded sample of documents, scored on `<|bos|>` plus the document's first tokens:
//! - **loss**: the mean per-token log-likelihood (AR), or the ELBO per token (diffusion);
//! - **zlib**: the log-likelihood divided by the zlib-compressed size of the text (Carlini et al. 2021):
//!   text that is merely easy scores high on both, memorized text only on the first;
//! - **min-k**: the mean of the lowest k% per-token terms (Shi et al. 2024, Min-K% Prob; for diffusion the
//!   per-token ELBO terms, where a token the samples never masked counts 0).
//!
//! Non-members are the holdout (chosen by document hash at ingest) and, for a run on a subset
//! (`--unique-tokens`), the training documents it left out (chosen by a keyed hash): both are never seen
//! and come from the corpus's distribution.

use std::io::Write as _;

use serde::{Deserialize, Serialize};

use super::stats::{self, Auc, Rng};
use super::{model_err, AuditCorpus, AuditError, AuditModel, AuditParams, Progress, Stage};
use crate::corpus::tokenizer::BOS_ID;

/// Shortest document scored.
const MIN_TOKENS: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodAuc {
    /// `loss`, `zlib` or `min_k`.
    pub method: String,
    #[serde(flatten)]
    pub auc: Auc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipReport {
    pub members: usize,
    pub non_members: usize,
    /// Of the non-members, how many are training documents the run left out (the rest are holdout).
    #[serde(default)]
    pub non_members_unseen: usize,
    /// Tokens scored per document.
    pub window: usize,
    pub methods: Vec<MethodAuc>,
    /// The highest AUC of any method: the attacker picks the best.
    pub max_auc: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// `count` documents of at least [`MIN_TOKENS`] tokens, chosen without replacement by a seeded shuffle.
fn pick(docs: &[(u32, Vec<u32>)], count: usize, rng: &mut Rng) -> Vec<usize> {
    let mut eligible: Vec<usize> = (0..docs.len())
        .filter(|&i| docs[i].1.len() >= MIN_TOKENS)
        .collect();
    for i in (1..eligible.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        eligible.swap(i, j);
    }
    eligible.truncate(count);
    eligible.sort_unstable();
    eligible
}

fn zlib_bytes(text: &str) -> usize {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(text.as_bytes());
    z.finish().map(|v| v.len()).unwrap_or(text.len()).max(1)
}

/// The three scores of each row (higher: more member-like).
fn scores(
    model: &dyn AuditModel,
    corpus: &AuditCorpus<'_>,
    rows: &[Vec<u32>],
    params: &AuditParams,
    progress: &mut dyn FnMut(usize),
) -> Result<[Vec<f64>; 3], AuditError> {
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    let per_call = model.batch_rows().max(1);
    for (i, chunk) in rows.chunks(per_call).enumerate() {
        progress(i * per_call);
        let terms = model
            .token_scores(chunk, params.membership_mc_samples, params.seed ^ 0x3E3B)
            .map_err(model_err("membership inference"))?;
        for (row, t) in chunk.iter().zip(terms) {
            let total: f64 = t.iter().sum();
            out[0].push(total / t.len().max(1) as f64);
            let text = corpus.tokenizer.decode(&row[1..])?;
            out[1].push(total / zlib_bytes(&text) as f64);
            out[2].push(stats::mean_of_lowest(&t, params.min_k_percent).unwrap_or(0.0));
        }
    }
    Ok(out)
}

pub fn run(
    model: &dyn AuditModel,
    corpus: &AuditCorpus<'_>,
    params: &AuditParams,
    progress: Progress<'_>,
) -> Result<MembershipReport, AuditError> {
    let window = params.membership_window.min(model.context());
    let mut rng = Rng::new(params.seed ^ 0x003E_3BE7);
    let members = pick(corpus.train, params.membership_docs, &mut rng);
    // Non-members: the holdout and the training documents the run left out, both never seen.
    let pool: Vec<(u32, Vec<u32>)> = if corpus.unseen.is_empty() {
        corpus.holdout.to_vec()
    } else {
        let mut p: Vec<(u32, Vec<u32>)> = corpus.holdout.iter().chain(corpus.unseen).cloned().collect();
        p.sort_unstable_by_key(|(d, _)| *d);
        p
    };
    let others = pick(&pool, params.membership_docs, &mut rng);
    let unseen_picked = others
        .iter()
        .filter(|&&i| {
            corpus
                .unseen
                .binary_search_by_key(&pool[i].0, |(d, _)| *d)
                .is_ok()
        })
        .count();
    let mut report = MembershipReport {
        members: members.len(),
        non_members: others.len(),
        non_members_unseen: unseen_picked,
        window,
        methods: Vec::new(),
        max_auc: 0.5,
        skipped: None,
    };
    if members.is_empty() || others.is_empty() {
        report.skipped = Some(format!(
            "needs documents of at least {MIN_TOKENS} tokens on both sides; the run has {} training, {} \
             holdout and {} left-out documents (ingest with --holdout above 0)",
            corpus.train.len(),
            corpus.holdout.len(),
            corpus.unseen.len()
        ));
        return Ok(report);
    }
    let rows = |docs: &[(u32, Vec<u32>)], idx: &[usize]| -> Vec<Vec<u32>> {
        idx.iter()
            .map(|&i| {
                let doc = &docs[i].1;
                let mut r = vec![BOS_ID];
                r.extend_from_slice(&doc[..doc.len().min(window - 1)]);
                r
            })
            .collect()
    };
    let total = members.len() + others.len();
    let m_rows = rows(corpus.train, &members);
    let o_rows = rows(&pool, &others);
    let m = scores(model, corpus, &m_rows, params, &mut |d| {
        progress(Stage::Membership, d, total)
    })?;
    let o = scores(model, corpus, &o_rows, params, &mut |d| {
        progress(Stage::Membership, members.len() + d, total)
    })?;
    progress(Stage::Membership, total, total);
    for (k, name) in ["loss", "zlib", "min_k"].iter().enumerate() {
        let auc = stats::auc_bootstrap(&m[k], &o[k], params.bootstrap, params.seed ^ k as u64);
        report.methods.push(MethodAuc {
            method: (*name).to_string(),
            auc,
        });
    }
    report.max_auc = report.methods.iter().map(|m| m.auc.auc).fold(0.0, f64::max);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_seeded_distinct_and_skip_short_documents() {
        let docs: Vec<(u32, Vec<u32>)> = (0..30).map(|i| (i, vec![5; (i as usize % 12) + 1])).collect();
        let a = pick(&docs, 10, &mut Rng::new(4));
        assert_eq!(a, pick(&docs, 10, &mut Rng::new(4)));
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|&i| docs[i].1.len() >= MIN_TOKENS));
        assert!(a.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn zlib_size_grows_with_entropy() {
        assert!(zlib_bytes(&"a".repeat(1000)) < zlib_bytes("the quick brown fox jumps over the lazy dog"));
        assert!(zlib_bytes("") >= 1);
    }
}
