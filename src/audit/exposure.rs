//! Canary exposure, after Carlini et al.'s *Secret Sharer*: each canary planted at ingest is ranked by the
//! model's likelihood among random candidates of the same format, and
//! `exposure = log2(candidate space) − log2(rank)`. A model that never saw the canary ranks it about in
//! the middle (exposure near 1); one that memorized it ranks it first (exposure up to log2 of the space,
//! about 19.9 bits for six digits).
//!
//! **Estimating the rank.** The space (10⁶ secrets) is too large to score whole, so `R` random candidates
//! are scored and the canary's rank in the space is estimated from the fraction that score at least as
//! high. When fewer than [`MIN_AHEAD`] candidates do, that fraction says little, and the tail is
//! extrapolated as the paper describes: a normal distribution is fitted to the candidates' scores and the
//! canary's exposure is `−log2 P(score ≥ canary's)` under it (capped at the space's size). The report says
//! which estimate each canary got.
//!
//! **Scores.** Candidates share the canary's text up to the secret, so only the secret is scored given
//! the text before it: the AR model's exact log-likelihood, or the diffusion model's conditional ELBO with
//! the same masks for every candidate of the same length (common random numbers).

use serde::{Deserialize, Serialize};

use super::stats::{self, Rng};
use super::{model_err, AuditCorpus, AuditError, AuditModel, AuditParams, Progress, Stage};
use crate::corpus::canary::{Canary, DIGITS};

/// Candidates that must outscore the canary for the empirical fraction to be used.
pub const MIN_AHEAD: usize = 10;

/// One canary's exposure (its secret is not part of the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryExposure {
    pub id: u32,
    /// Copies planted in the corpus.
    pub repeats: u32,
    /// Copies inside the documents the run trained on (fewer than `repeats` for a run on a subset).
    #[serde(default)]
    pub copies_trained: u32,
    /// Times the audited checkpoint saw the canary: copies trained × epochs done.
    #[serde(default)]
    pub times_seen: f64,
    /// 1 + candidates scoring at least as high as the canary.
    pub rank: usize,
    pub candidates: usize,
    pub exposure: f64,
    /// `rank` (empirical fraction) or `extrapolated` (normal fit to the candidates' scores).
    pub method: String,
}

/// Exposure of the canaries the run trained on the same number of copies of (`repeats`: copies inside the
/// trained documents; `times_seen`: those copies × epochs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ByRepeats {
    pub repeats: u32,
    #[serde(default)]
    pub times_seen: f64,
    pub canaries: usize,
    pub mean_exposure: f64,
    pub max_exposure: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    /// log2 of the candidate space: the largest possible exposure.
    pub space_bits: f64,
    pub canaries: Vec<CanaryExposure>,
    /// Seen canaries only: a canary none of whose copies the run trained on is a control (below).
    pub by_repeats: Vec<ByRepeats>,
    /// The highest exposure of a canary the model saw.
    pub max_exposure: f64,
    /// Canaries whose every copy fell outside the run's training documents: never seen, so their
    /// exposure is what chance gives (the gate does not count them).
    #[serde(default)]
    pub controls: usize,
    #[serde(default)]
    pub control_max_exposure: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The candidate space of the canary format planted at ingest.
fn space() -> f64 {
    10f64.powi(DIGITS as i32)
}

fn random_secret(rng: &mut Rng) -> String {
    let digits = format!("{:0width$}", rng.below(space() as u64), width = DIGITS);
    digits.chars().map(String::from).collect::<Vec<_>>().join("-")
}

/// Exposure from the canary's score and the candidates' (see the module doc).
pub fn exposure(canary: f64, candidates: &[f64]) -> (usize, f64, &'static str) {
    let ahead = candidates.iter().filter(|&&s| s >= canary).count();
    let bits = space().log2();
    if ahead >= MIN_AHEAD || candidates.len() < 2 {
        let fraction = (ahead as f64 + 1.0) / (candidates.len() as f64 + 1.0);
        return (ahead + 1, (-fraction.log2()).min(bits), "rank");
    }
    let (mean, std) = stats::mean_std(candidates);
    let tail = stats::log2_normal_tail(canary, mean, std);
    (ahead + 1, (-tail).clamp(0.0, bits), "extrapolated")
}

/// Ranks every canary of the corpus.
pub fn run(
    model: &dyn AuditModel,
    corpus: &AuditCorpus<'_>,
    params: &AuditParams,
    progress: Progress<'_>,
) -> Result<CanaryReport, AuditError> {
    let mut report = CanaryReport {
        space_bits: space().log2(),
        canaries: Vec::new(),
        by_repeats: Vec::new(),
        max_exposure: 0.0,
        controls: 0,
        control_max_exposure: 0.0,
        skipped: None,
    };
    if corpus.canaries.is_empty() {
        report.skipped = Some("no canaries were planted in this corpus (ingest --canaries N)".into());
        return Ok(report);
    }
    if params.canary_candidates == 0 {
        report.skipped = Some("canary_candidates is 0".into());
        return Ok(report);
    }
    let known = format!("digits{DIGITS}-dashed");
    for (i, c) in corpus.canaries.iter().enumerate() {
        progress(Stage::Canaries, i, corpus.canaries.len());
        if c.format != known {
            return Err(AuditError::Param {
                name: "canaries",
                why: format!(
                    "canary {} has format {:?}, which this audit cannot rank",
                    c.id, c.format
                ),
            });
        }
        report.canaries.push(rank_one(model, corpus, params, c)?);
    }
    progress(Stage::Canaries, corpus.canaries.len(), corpus.canaries.len());
    let mut repeats: Vec<u32> = report
        .canaries
        .iter()
        .map(|c| c.copies_trained)
        .filter(|&c| c > 0)
        .collect();
    repeats.sort_unstable();
    repeats.dedup();
    for r in repeats {
        let e: Vec<f64> = report
            .canaries
            .iter()
            .filter(|c| c.copies_trained == r)
            .map(|c| c.exposure)
            .collect();
        report.by_repeats.push(ByRepeats {
            repeats: r,
            times_seen: f64::from(r) * corpus.epochs,
            canaries: e.len(),
            mean_exposure: e.iter().sum::<f64>() / e.len() as f64,
            max_exposure: e.iter().copied().fold(0.0, f64::max),
        });
    }
    let (seen, controls): (Vec<&CanaryExposure>, Vec<&CanaryExposure>) =
        report.canaries.iter().partition(|c| c.copies_trained > 0);
    report.max_exposure = seen.iter().map(|c| c.exposure).fold(0.0, f64::max);
    report.controls = controls.len();
    report.control_max_exposure = controls.iter().map(|c| c.exposure).fold(0.0, f64::max);
    Ok(report)
}

fn rank_one(
    model: &dyn AuditModel,
    corpus: &AuditCorpus<'_>,
    params: &AuditParams,
    canary: &Canary,
) -> Result<CanaryExposure, AuditError> {
    let tok = corpus.tokenizer;
    let prefix = tok.encode(canary.prefix.trim_end())?;
    let mut rng = Rng::new(params.seed ^ (u64::from(canary.id) << 32) ^ 0xCA_7A_8E);
    let mut seen = std::collections::HashSet::from([canary.secret.clone()]);
    let mut texts = vec![canary.text()];
    let want = params.canary_candidates.min(space() as usize - 1);
    while texts.len() <= want {
        let s = random_secret(&mut rng);
        if seen.insert(s.clone()) {
            texts.push(format!("{}{s}", canary.prefix));
        }
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rows = tok.encode_batch(&refs)?;
    let keep: Vec<usize> = rows
        .iter()
        .map(|r| {
            let common = r.iter().zip(&prefix).take_while(|(a, b)| a == b).count();
            common.clamp(1, r.len().saturating_sub(1).max(1))
        })
        .collect();
    let scores = model
        .tail_scores(&rows, &keep, params.canary_mc_samples, params.seed ^ 0x5EC)
        .map_err(model_err("canary exposure"))?;
    let (rank, exposure, method) = exposure(scores[0], &scores[1..]);
    let copies_trained = canary.docs.iter().filter(|&&d| corpus.is_member(d)).count() as u32;
    Ok(CanaryExposure {
        id: canary.id,
        repeats: canary.repeats,
        copies_trained,
        times_seen: f64::from(copies_trained) * corpus.epochs,
        rank,
        candidates: scores.len() - 1,
        exposure,
        method: method.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_in_the_middle_has_exposure_near_one() {
        let cands: Vec<f64> = (0..1000).map(f64::from).collect();
        let (rank, e, method) = exposure(499.5, &cands);
        assert_eq!((rank, method), (501, "rank"));
        assert!((e - 1.0).abs() < 0.01, "{e}");
    }

    #[test]
    fn a_canary_above_every_candidate_is_extrapolated_and_capped() {
        let cands: Vec<f64> = (0..1000).map(|i| f64::from(i % 10)).collect();
        let (rank, e, method) = exposure(9.5, &cands);
        assert_eq!((rank, method), (1, "extrapolated"));
        assert!(e > 2.0 && e < 19.94, "{e}");
        let (_, e, _) = exposure(1e9, &cands);
        assert_eq!(e, space().log2());
    }

    #[test]
    fn random_secrets_have_the_canary_format() {
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let s = random_secret(&mut rng);
            assert_eq!(s.len(), 11);
            assert!(s
                .split('-')
                .all(|d| d.len() == 1 && d.as_bytes()[0].is_ascii_digit()));
        }
    }
}
