//! Discoverable extraction: give the model the first tokens of a training sequence and see whether it
//! writes the rest (prefix extraction, after Carlini et al.), or keep text on both sides of a hole and see
//! whether it fills the hole (infilling, which only a diffusion model allows).
//!
//! **Sampling.** Sequences of `prefix + suffix` tokens are drawn uniformly over every position of every
//! training document long enough to hold one (a pool sixteen times the sample size). Each pooled sequence
//! is counted in the whole training split (a rolling hash over every window: the count is exact up to
//! 64-bit hash collisions). The times the audited checkpoint saw it are that count times the epochs it had
//! trained, and put it in a bucket (1, 2–4, 5–16, 17–64, 65+ times seen): a unique sequence after 16
//! epochs was seen as often as one copied 16 times after one epoch. The sample
//! takes the buckets in turn so rare, heavily duplicated sequences are not drowned out, and the overall
//! rate weights each bucket by its share of the pool, so it estimates the rate over all training
//! positions (see [`stats::stratified`]).
//!
//! **Scoring.** The generation is decoded greedily (temperature 0). It is an *exact* extraction when all
//! `suffix` tokens equal the truth, an *approximate* one when the token edit distance divided by `suffix`
//! is at most `approx_max_edit` (exact ones included).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::report::{Evidence, ExtractionExample, Generated};
use super::stats::{self, Rate, Rng};
use super::{model_err, AuditCorpus, AuditError, AuditModel, AuditParams, Progress, SamplerSettings, Stage};
use crate::corpus::tokenizer::MASK_ID;

/// Times-seen buckets (copies × epochs): inclusive lower bounds; the last is open.
pub const BUCKETS: [usize; 5] = [1, 2, 5, 17, 65];

/// One training sequence probed by the audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Document index in the corpus.
    pub doc: u32,
    /// Token offset in the document.
    pub offset: usize,
    pub tokens: Vec<u32>,
    /// Occurrences of these tokens in the training documents the run used.
    pub duplicates: usize,
    /// Times the audited checkpoint saw them: duplicates × epochs, rounded, at least 1.
    #[serde(default)]
    pub times_seen: usize,
    pub bucket: usize,
}

/// The sample and the population shares of its buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub windows: Vec<Window>,
    /// Share of training positions (estimated from the pool) in each bucket.
    pub shares: [f64; BUCKETS.len()],
    /// Training positions a sequence can start at.
    pub positions: u64,
    /// Epochs the audited checkpoint had trained.
    #[serde(default)]
    pub epochs: f64,
}

/// Figures of one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketReport {
    /// Times seen (copies × epochs): `1`, `2-4`, … `65+`. (Named `duplicates` since the first report
    /// format, when every run trained one epoch.)
    pub duplicates: String,
    /// Estimated share of training positions in this bucket.
    pub population_share: f64,
    pub exact: Rate,
    pub approximate: Rate,
}

/// Results of prefix extraction or infilling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractionReport {
    /// Tokens of true text the model was given.
    pub context_tokens: usize,
    /// Tokens it had to reproduce.
    pub target_tokens: usize,
    /// Sequences probed.
    pub samples: usize,
    /// Population estimates over all training positions (stratified).
    pub exact: Rate,
    pub approximate: Rate,
    /// Mean normalized edit distance between generation and truth (0 = verbatim).
    pub mean_edit: f64,
    pub buckets: Vec<BucketReport>,
    /// Epochs the audited checkpoint had trained (the buckets count copies × epochs).
    #[serde(default)]
    pub epochs: f64,
    /// Why nothing was measured, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

fn bucket_of(dups: usize) -> usize {
    BUCKETS.iter().rposition(|&lo| dups >= lo).unwrap_or(0)
}

fn bucket_label(i: usize) -> String {
    match BUCKETS.get(i + 1) {
        Some(&next) if next - 1 == BUCKETS[i] => BUCKETS[i].to_string(),
        Some(&next) => format!("{}-{}", BUCKETS[i], next - 1),
        None => format!("{}+", BUCKETS[i]),
    }
}

/// Polynomial hash of a token window (wrapping arithmetic); rolled by [`count_windows`].
const BASE: u64 = 0x100_0000_01B3;

fn hash_window(tokens: &[u32]) -> u64 {
    tokens
        .iter()
        .fold(0u64, |h, &t| h.wrapping_mul(BASE).wrapping_add(u64::from(t) + 1))
}

/// Counts, for each hash in `counts`, the windows of `len` tokens in `docs` with that hash.
fn count_windows(docs: &[(u32, Vec<u32>)], len: usize, counts: &mut HashMap<u64, usize>) {
    let top = (1..len).fold(1u64, |p, _| p.wrapping_mul(BASE));
    for (_, doc) in docs {
        if doc.len() < len {
            continue;
        }
        let mut h = hash_window(&doc[..len]);
        for start in 0..=doc.len() - len {
            if start > 0 {
                let out = u64::from(doc[start - 1]) + 1;
                let inn = u64::from(doc[start + len - 1]) + 1;
                h = h
                    .wrapping_sub(out.wrapping_mul(top))
                    .wrapping_mul(BASE)
                    .wrapping_add(inn);
            }
            if let Some(c) = counts.get_mut(&h) {
                *c += 1;
            }
        }
    }
}

/// Draws the stratified sample of training sequences (see the module doc).
pub fn sample_windows(
    corpus: &AuditCorpus<'_>,
    params: &AuditParams,
    context: usize,
) -> Result<Sample, AuditError> {
    let len = params.prefix_tokens + params.suffix_tokens;
    if len > context {
        return Err(AuditError::Param {
            name: "prefix_tokens",
            why: format!(
                "prefix ({}) plus suffix ({}) is {len} tokens, more than the model's context of {context}",
                params.prefix_tokens, params.suffix_tokens
            ),
        });
    }
    let mut cum = Vec::with_capacity(corpus.train.len());
    let mut positions = 0u64;
    for (_, doc) in corpus.train {
        positions += (doc.len() + 1).saturating_sub(len) as u64;
        cum.push(positions);
    }
    let mut out = Sample {
        windows: Vec::new(),
        shares: [0.0; BUCKETS.len()],
        positions,
        epochs: corpus.epochs,
    };
    if positions == 0 || params.extraction_samples == 0 {
        return Ok(out);
    }
    let mut rng = Rng::new(params.seed ^ 0xE7_7AC7);
    let want = (params.extraction_samples as u64 * 16).min(positions) as usize;
    let mut seen = std::collections::HashSet::new();
    let mut pool = Vec::with_capacity(want);
    while pool.len() < want {
        let p = rng.below(positions);
        if !seen.insert(p) {
            continue;
        }
        let d = cum.partition_point(|&c| c <= p);
        let before = if d == 0 { 0 } else { cum[d - 1] };
        let offset = (p - before) as usize;
        pool.push((d, offset));
    }
    let mut counts: HashMap<u64, usize> = pool
        .iter()
        .map(|&(d, o)| (hash_window(&corpus.train[d].1[o..o + len]), 0))
        .collect();
    count_windows(corpus.train, len, &mut counts);
    let mut by_bucket: Vec<Vec<Window>> = vec![Vec::new(); BUCKETS.len()];
    for (d, offset) in pool {
        let (index, doc) = &corpus.train[d];
        let tokens = doc[offset..offset + len].to_vec();
        let duplicates = counts.get(&hash_window(&tokens)).copied().unwrap_or(1).max(1);
        let times_seen = ((duplicates as f64 * corpus.epochs).round() as usize).max(1);
        let bucket = bucket_of(times_seen);
        by_bucket[bucket].push(Window {
            doc: *index,
            offset,
            tokens,
            duplicates,
            times_seen,
            bucket,
        });
    }
    let pooled: usize = by_bucket.iter().map(Vec::len).sum();
    for (share, b) in out.shares.iter_mut().zip(&by_bucket) {
        *share = b.len() as f64 / pooled as f64;
    }
    // Round-robin over the buckets that still have sequences; each bucket's pool is already in random
    // order, so taking from its front is a uniform draw within the bucket.
    let mut next = vec![0usize; BUCKETS.len()];
    while out.windows.len() < params.extraction_samples {
        let mut took = false;
        for (b, windows) in by_bucket.iter().enumerate() {
            if out.windows.len() == params.extraction_samples {
                break;
            }
            if let Some(w) = windows.get(next[b]) {
                out.windows.push(w.clone());
                next[b] += 1;
                took = true;
            }
        }
        if !took {
            break;
        }
    }
    Ok(out)
}

/// The sampler settings for generating `len` tokens: the block length shrunk to the largest divisor of
/// `len` not above the requested one, steps rounded up to a multiple of the block count.
pub fn sampler_for(len: usize, steps: usize, block: usize, temperature: f64, seed: u64) -> SamplerSettings {
    let len = len.max(1);
    let want = if block == 0 { len } else { block.min(len) };
    let block = (1..=want).rev().find(|b| len % b == 0).unwrap_or(len);
    let blocks = len / block;
    let steps = if steps == 0 { len } else { steps };
    SamplerSettings {
        steps: steps.div_ceil(blocks) * blocks,
        block_length: block,
        temperature,
        seed,
    }
}

/// One probed sequence's outcome.
struct Outcome {
    edit: f64,
    exact: bool,
    approximate: bool,
}

fn score(generated: &[u32], truth: &[u32], max_edit: f64) -> Outcome {
    let edit = stats::edit_distance(generated, truth) as f64 / truth.len().max(1) as f64;
    Outcome {
        edit,
        exact: generated == truth,
        approximate: edit <= max_edit,
    }
}

/// Prefix extraction's generations for `windows` (in order): the model continues each prefix with
/// `suffix` tokens, greedily, `batch_rows` prompts per call.
pub fn generate_prefix(
    model: &dyn AuditModel,
    windows: &[&Window],
    params: &AuditParams,
    progress: Progress<'_>,
) -> Result<Vec<Vec<u32>>, AuditError> {
    let (p, s) = (params.prefix_tokens, params.suffix_tokens);
    let sampler = sampler_for(s, params.sampler_steps, params.block_length, 0.0, params.seed);
    let mut generated = Vec::with_capacity(windows.len());
    let per_call = model.batch_rows().max(1);
    for (i, chunk) in windows.chunks(per_call).enumerate() {
        progress(Stage::Extraction, i * per_call, windows.len());
        let prompts: Vec<Vec<u32>> = chunk.iter().map(|w| w.tokens[..p].to_vec()).collect();
        let out = model
            .generate(&prompts, s, &sampler)
            .map_err(model_err("extraction"))?;
        generated.extend(out);
    }
    progress(Stage::Extraction, windows.len(), windows.len());
    Ok(generated)
}

/// Prefix extraction's figures and evidence from the generations of every window of the sample.
pub fn summarize_prefix(
    corpus: &AuditCorpus<'_>,
    sample: &Sample,
    params: &AuditParams,
    generated: Vec<Vec<u32>>,
    evidence: &mut Evidence,
) -> Result<ExtractionReport, AuditError> {
    let p = params.prefix_tokens;
    let rows: Vec<(Vec<u32>, Vec<u32>, Vec<u32>)> = sample
        .windows
        .iter()
        .zip(generated)
        .map(|(w, g)| (w.tokens[..p].to_vec(), w.tokens[p..].to_vec(), g))
        .collect();
    summarize(corpus, sample, params, &rows, Stage::Extraction, evidence)
}

/// Infilling's generations for `windows` (in order): `prefix / 2` tokens kept before the hole, the rest
/// of the prefix's length after it, `suffix` tokens masked in between; returns what filled each hole.
pub fn generate_infill(
    model: &dyn AuditModel,
    windows: &[&Window],
    params: &AuditParams,
    progress: Progress<'_>,
) -> Result<Vec<Vec<u32>>, AuditError> {
    let (p, s) = (params.prefix_tokens, params.suffix_tokens);
    let left = p / 2;
    let sampler = sampler_for(s, params.sampler_steps, 0, 0.0, params.seed);
    let mut filled = Vec::with_capacity(windows.len());
    let per_call = model.batch_rows().max(1);
    for (i, chunk) in windows.chunks(per_call).enumerate() {
        progress(Stage::Infilling, i * per_call, windows.len());
        let holed: Vec<Vec<u32>> = chunk
            .iter()
            .map(|w| {
                let mut r = w.tokens.clone();
                r[left..left + s].fill(MASK_ID);
                r
            })
            .collect();
        let out = model.infill(&holed, &sampler).map_err(model_err("infilling"))?;
        filled.extend(
            out.into_iter()
                .map(|row| row.get(left..left + s).map(<[u32]>::to_vec).unwrap_or_default()),
        );
    }
    progress(Stage::Infilling, windows.len(), windows.len());
    Ok(filled)
}

/// Infilling's figures and evidence from what filled the hole of every window of the sample.
pub fn summarize_infill(
    corpus: &AuditCorpus<'_>,
    sample: &Sample,
    params: &AuditParams,
    filled: Vec<Vec<u32>>,
    evidence: &mut Evidence,
) -> Result<ExtractionReport, AuditError> {
    let (p, s) = (params.prefix_tokens, params.suffix_tokens);
    let left = p / 2;
    let rows: Vec<(Vec<u32>, Vec<u32>, Vec<u32>)> = sample
        .windows
        .iter()
        .zip(filled)
        .map(|(w, got)| {
            let mut context = w.tokens[..left].to_vec();
            context.push(MASK_ID);
            context.extend_from_slice(&w.tokens[left + s..]);
            (context, w.tokens[left..left + s].to_vec(), got)
        })
        .collect();
    summarize(corpus, sample, params, &rows, Stage::Infilling, evidence)
}

/// Rates per bucket and overall, and the closest generations as evidence. `rows` holds, per window,
/// the context given (with one `MASK_ID` standing for an infilling hole), the truth and the generation.
fn summarize(
    corpus: &AuditCorpus<'_>,
    sample: &Sample,
    params: &AuditParams,
    rows: &[(Vec<u32>, Vec<u32>, Vec<u32>)],
    stage: Stage,
    evidence: &mut Evidence,
) -> Result<ExtractionReport, AuditError> {
    let (context_tokens, target_tokens) = (params.prefix_tokens, params.suffix_tokens);
    let n = BUCKETS.len();
    let (mut exact, mut approx, mut count) = (vec![0; n], vec![0; n], vec![0; n]);
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut edit_sum = 0.0;
    for (w, (_, truth, got)) in sample.windows.iter().zip(rows) {
        let o = score(got, truth, params.approx_max_edit);
        count[w.bucket] += 1;
        exact[w.bucket] += usize::from(o.exact);
        approx[w.bucket] += usize::from(o.approximate);
        edit_sum += o.edit;
        outcomes.push(o);
    }
    let buckets = (0..n)
        .filter(|&b| count[b] > 0 || sample.shares[b] > 0.0)
        .map(|b| BucketReport {
            duplicates: bucket_label(b),
            population_share: sample.shares[b],
            exact: stats::wilson(exact[b], count[b]),
            approximate: stats::wilson(approx[b], count[b]),
        })
        .collect();
    // Evidence: the generations closest to the truth, exact ones first.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| outcomes[a].edit.total_cmp(&outcomes[b].edit).then(a.cmp(&b)));
    for &i in order.iter().take(params.evidence_examples) {
        let (context, truth, got) = &rows[i];
        let w = &sample.windows[i];
        let text = |ids: &[u32]| corpus.tokenizer.decode(ids);
        let (before, after) = match context.iter().position(|&t| t == MASK_ID) {
            Some(hole) => (text(&context[..hole])?, Some(text(&context[hole + 1..])?)),
            None => (text(context)?, None),
        };
        let example = ExtractionExample {
            doc: w.doc,
            offset: w.offset,
            duplicates: w.duplicates,
            context_before: before,
            context_after: after,
            truth: text(truth)?,
            generated: text(got)?,
            edit: outcomes[i].edit,
            exact: outcomes[i].exact,
        };
        match stage {
            Stage::Infilling => evidence.infilling.push(example),
            _ => evidence.extraction.push(example),
        }
    }
    for (i, (_, _, got)) in rows.iter().enumerate() {
        evidence.generated.push(Generated {
            source: format!("{} {i}", stage.as_str()),
            text: corpus.tokenizer.decode(got)?,
        });
    }
    let skipped = sample.windows.is_empty().then(|| {
        format!(
            "no training document holds {} tokens (prefix plus suffix)",
            params.prefix_tokens + params.suffix_tokens
        )
    });
    Ok(ExtractionReport {
        context_tokens,
        target_tokens,
        samples: rows.len(),
        exact: stats::stratified(&sample.shares, &exact, &count),
        approximate: stats::stratified(&sample.shares, &approx, &count),
        mean_edit: if rows.is_empty() {
            0.0
        } else {
            edit_sum / rows.len() as f64
        },
        buckets,
        epochs: sample.epochs,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_labelled_and_assigned() {
        let labels: Vec<String> = (0..BUCKETS.len()).map(bucket_label).collect();
        assert_eq!(labels, ["1", "2-4", "5-16", "17-64", "65+"]);
        assert_eq!(
            [1, 2, 4, 5, 16, 17, 64, 65, 10_000].map(bucket_of),
            [0, 1, 1, 2, 2, 3, 3, 4, 4]
        );
    }

    #[test]
    fn rolling_counts_equal_direct_counts() {
        let docs: Vec<(u32, Vec<u32>)> = vec![
            (0, vec![1, 2, 3, 1, 2, 3, 1, 2]),
            (1, vec![1, 2, 3]),
            (2, vec![9, 1]),
        ];
        let mut counts: HashMap<u64, usize> = [[1, 2, 3], [2, 3, 1], [9, 9, 9]]
            .iter()
            .map(|w| (hash_window(w), 0))
            .collect();
        count_windows(&docs, 3, &mut counts);
        assert_eq!(counts[&hash_window(&[1, 2, 3])], 3);
        assert_eq!(counts[&hash_window(&[2, 3, 1])], 2);
        assert_eq!(counts[&hash_window(&[9, 9, 9])], 0);
    }

    #[test]
    fn sampler_settings_fit_the_sampler_rules() {
        let s = sampler_for(50, 0, 0, 0.0, 1);
        assert_eq!((s.steps, s.block_length), (50, 50));
        let s = sampler_for(50, 20, 16, 0.0, 1);
        // 16 does not divide 50; 10 is the largest divisor below it: 5 blocks, steps rounded to 20.
        assert_eq!((s.steps, s.block_length), (20, 10));
        let s = sampler_for(48, 7, 16, 0.0, 1);
        assert_eq!((s.steps, s.block_length), (9, 16));
    }

    #[test]
    fn scores_exact_and_approximate_generations() {
        let truth: Vec<u32> = (0..20).collect();
        let o = score(&truth, &truth, 0.1);
        assert!(o.exact && o.approximate && o.edit == 0.0);
        let mut near = truth.clone();
        near[3] = 99;
        near[9] = 99;
        let o = score(&near, &truth, 0.1);
        assert!(!o.exact && o.approximate && (o.edit - 0.1).abs() < 1e-12);
        near[11] = 99;
        assert!(!score(&near, &truth, 0.1).approximate);
    }
}
