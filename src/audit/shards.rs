//! An audit cut into pieces that several workers can run: a **plan** (the extraction sample and the
//! regurgitation generations), one **part per corpus shard** (prefix and infilling extraction of the
//! sampled sequences that lie in that shard's documents, and the regurgitation scan of those
//! documents), the **scores** (canary exposure and membership inference, which rank against the whole
//! corpus) and a **merge** that folds them into the report and its evidence.
//!
//! [`super::run`] is exactly these steps in one process, so an audit run by one worker and the same
//! audit spread over many produce the same report (the per-stage `seconds` aside, which add up the time
//! the pieces took). That holds because nothing a piece computes depends on which process ran it:
//! every random choice is seeded from the audit's parameters, each part generates for its own
//! sequences in plan order in batches of the same size, and the regurgitation scan's partial results
//! merge into the same state in any order (see [`super::ngram`]).
//!
//! **Shards.** The training documents (by corpus index) are cut into `params.shards` contiguous
//! ranges holding about the same number of tokens; a part reads only its range.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::exposure::{self, CanaryReport};
use super::extraction::{self, Sample, Window};
use super::membership::{self, MembershipReport};
use super::ngram::{self, PartialScan};
use super::regurgitation::{self, Sampled};
use super::report::{self, AuditReport, Evidence};
use super::{leaks, secrets, AuditCorpus, AuditError, AuditModel, AuditParams, ModelKind, Progress, Stage};

/// Version tag of the serialized plan and parts.
pub const PLAN_FORMAT: &str = "lethe-audit-plan-v1";

/// Documents `[first, end)` (corpus indices) of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRange {
    pub first: u32,
    pub end: u32,
    /// Training tokens in the range.
    pub tokens: u64,
}

impl ShardRange {
    pub fn holds(&self, doc: u32) -> bool {
        (self.first..self.end).contains(&doc)
    }
}

/// What every part and the merge start from. Holds corpus text (the sampled sequences) and model
/// output: callers seal it at rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub model: ModelKind,
    pub params: AuditParams,
    pub sample: Sample,
    /// The regurgitation audit's free generations.
    pub samples: Vec<Sampled>,
    pub shards: Vec<ShardRange>,
    pub seconds: BTreeMap<String, f64>,
}

/// One shard's share of the work. Holds model output: callers seal it at rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardOutput {
    pub format: String,
    pub shard: usize,
    /// Prefix extraction: the generation for each sampled sequence of this shard, in plan order.
    pub extraction: Vec<Vec<u32>>,
    /// Infilling (diffusion only): what filled each sequence's hole, in plan order.
    pub infilling: Option<Vec<Vec<u32>>>,
    /// The regurgitation scan of this shard's documents.
    pub scan: PartialScan,
    pub seconds: BTreeMap<String, f64>,
}

/// The measures that rank against the whole corpus. Figures only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub format: String,
    pub canaries: CanaryReport,
    pub membership: MembershipReport,
    pub seconds: BTreeMap<String, f64>,
}

fn timed(seconds: &mut BTreeMap<String, f64>, stage: Stage, since: Instant) {
    *seconds.entry(stage.as_str().to_string()).or_default() += since.elapsed().as_secs_f64();
}

/// Cuts `train` (sorted by document index) into `n` contiguous ranges of about equal tokens. The first
/// range starts at document 0 and the last ends past every index, so every document has one shard.
pub fn split(train: &[(u32, Vec<u32>)], n: usize) -> Vec<ShardRange> {
    let n = n.max(1);
    let total: u64 = train.iter().map(|(_, t)| t.len() as u64).sum();
    let mut out = Vec::with_capacity(n);
    let (mut first, mut tokens, mut seen) = (0u32, 0u64, 0u64);
    for (i, (doc, t)) in train.iter().enumerate() {
        // Cut before this document once the running total reached the next shard's share, keeping at
        // least one document per shard and enough documents for the shards still to come.
        let k = out.len() as u64 + 1;
        let left = train.len() - i;
        let must_leave = n - out.len() - 1;
        if out.len() + 1 < n && tokens > 0 && (seen * n as u64 >= total * k || left <= must_leave) {
            out.push(ShardRange {
                first,
                end: *doc,
                tokens,
            });
            first = *doc;
            tokens = 0;
        }
        tokens += t.len() as u64;
        seen += t.len() as u64;
    }
    out.push(ShardRange {
        first,
        end: u32::MAX,
        tokens,
    });
    out
}

/// The plan: the extraction sample, the free generations, and the shards.
pub fn plan(
    model: &dyn AuditModel,
    corpus: &AuditCorpus<'_>,
    params: &AuditParams,
    progress: Progress<'_>,
) -> Result<Plan, AuditError> {
    params.validate()?;
    let mut seconds = BTreeMap::new();
    let t = Instant::now();
    let sample = extraction::sample_windows(corpus, params, model.context())?;
    timed(&mut seconds, Stage::Extraction, t);
    let t = Instant::now();
    let samples = regurgitation::generate(model, corpus.tokenizer, params, progress)?;
    timed(&mut seconds, Stage::Regurgitation, t);
    Ok(Plan {
        format: PLAN_FORMAT.to_string(),
        model: model.kind(),
        params: params.clone(),
        sample,
        samples,
        shards: split(corpus.train, params.shards),
        seconds,
    })
}

impl Plan {
    /// The sampled sequences of shard `k`, in plan order.
    pub fn windows_of(&self, k: usize) -> Vec<&Window> {
        match self.shards.get(k) {
            Some(range) => self
                .sample
                .windows
                .iter()
                .filter(|w| range.holds(w.doc))
                .collect(),
            None => Vec::new(),
        }
    }

    fn index(&self) -> ngram::GenerationIndex<u32> {
        let gens: Vec<&[u32]> = self.samples.iter().map(|s| s.tokens.as_slice()).collect();
        ngram::GenerationIndex::<u32>::new(&gens, self.params.min_tokens)
    }

    fn shard_of(&self, doc: u32) -> Option<usize> {
        self.shards.iter().position(|r| r.holds(doc))
    }
}

/// Shard `k`'s part: extraction and infilling of its sequences, and the scan of `docs`, which must be
/// the training documents of that shard (as [`AuditCorpus::train`] holds them).
pub fn run_shard(
    model: &dyn AuditModel,
    plan: &Plan,
    k: usize,
    docs: &[(u32, Vec<u32>)],
    progress: Progress<'_>,
) -> Result<ShardOutput, AuditError> {
    let range = plan.shards.get(k).ok_or_else(|| AuditError::Param {
        name: "shards",
        why: format!("the plan has {} shard(s), not a shard {k}", plan.shards.len()),
    })?;
    if let Some((d, _)) = docs.iter().find(|(d, _)| !range.holds(*d)) {
        return Err(AuditError::Param {
            name: "shards",
            why: format!("document {d} is not in shard {k}"),
        });
    }
    let params = &plan.params;
    let mut seconds = BTreeMap::new();
    let windows = plan.windows_of(k);
    let t = Instant::now();
    let extraction = extraction::generate_prefix(model, &windows, params, progress)?;
    timed(&mut seconds, Stage::Extraction, t);
    let infilling = match plan.model {
        ModelKind::Diffusion => {
            let t = Instant::now();
            let filled = extraction::generate_infill(model, &windows, params, progress)?;
            timed(&mut seconds, Stage::Infilling, t);
            Some(filled)
        }
        ModelKind::Ar => None,
    };
    let t = Instant::now();
    let index = plan.index();
    let mut scan = index.scanner();
    for (d, doc) in docs {
        scan.add_document(*d as usize, doc);
    }
    let scan = scan.to_partial();
    timed(&mut seconds, Stage::Regurgitation, t);
    Ok(ShardOutput {
        format: PLAN_FORMAT.to_string(),
        shard: k,
        extraction,
        infilling,
        scan,
        seconds,
    })
}

/// Canary exposure and membership inference against the whole corpus.
pub fn run_scores(
    model: &dyn AuditModel,
    corpus: &AuditCorpus<'_>,
    params: &AuditParams,
    progress: Progress<'_>,
) -> Result<Scores, AuditError> {
    let mut seconds = BTreeMap::new();
    let t = Instant::now();
    let canaries = exposure::run(model, corpus, params, progress)?;
    timed(&mut seconds, Stage::Canaries, t);
    let t = Instant::now();
    let membership = membership::run(model, corpus, params, progress)?;
    timed(&mut seconds, Stage::Membership, t);
    Ok(Scores {
        format: PLAN_FORMAT.to_string(),
        canaries,
        membership,
        seconds,
    })
}

fn damaged(why: String) -> AuditError {
    AuditError::Param { name: "shards", why }
}

/// Folds the parts (one per shard, any order) and the scores into the report and its evidence, and runs
/// the secrets scan over every generation.
pub fn merge(
    corpus: &AuditCorpus<'_>,
    plan: &Plan,
    mut parts: Vec<ShardOutput>,
    scores: Scores,
    scanner: &secrets::Scanner,
    progress: Progress<'_>,
) -> Result<(AuditReport, Evidence), AuditError> {
    let params = &plan.params;
    parts.sort_by_key(|p| p.shard);
    let shards: Vec<usize> = parts.iter().map(|p| p.shard).collect();
    if shards != (0..plan.shards.len()).collect::<Vec<_>>() {
        return Err(damaged(format!(
            "the merge needs one part for each of the {} shard(s), got parts {shards:?}",
            plan.shards.len()
        )));
    }
    let mut seconds = plan.seconds.clone();
    for (stage, s) in parts.iter().flat_map(|p| &p.seconds).chain(&scores.seconds) {
        *seconds.entry(stage.clone()).or_default() += s;
    }
    for p in &parts {
        let want = plan.windows_of(p.shard).len();
        let infill_ok = match (&p.infilling, plan.model) {
            (Some(f), ModelKind::Diffusion) => f.len() == want,
            (None, ModelKind::Ar) => true,
            _ => false,
        };
        if p.extraction.len() != want || !infill_ok {
            return Err(damaged(format!(
                "part {} answers for {} sequence(s), its shard holds {want}",
                p.shard,
                p.extraction.len()
            )));
        }
    }
    // Every sequence's generation, back in plan order.
    let mut next = vec![0usize; parts.len()];
    let mut prefix = Vec::with_capacity(plan.sample.windows.len());
    let mut infill = Vec::with_capacity(plan.sample.windows.len());
    for w in &plan.sample.windows {
        let k = plan
            .shard_of(w.doc)
            .ok_or_else(|| damaged(format!("document {} has no shard", w.doc)))?;
        let part = &mut parts[k];
        let i = next[k];
        next[k] += 1;
        prefix.push(std::mem::take(&mut part.extraction[i]));
        if let Some(f) = part.infilling.as_mut() {
            infill.push(std::mem::take(&mut f[i]));
        }
    }

    let mut evidence = Evidence::default();
    let extraction = extraction::summarize_prefix(corpus, &plan.sample, params, prefix, &mut evidence)?;
    let infilling = match plan.model {
        ModelKind::Diffusion => Some(extraction::summarize_infill(
            corpus,
            &plan.sample,
            params,
            infill,
            &mut evidence,
        )?),
        ModelKind::Ar => None,
    };
    let t = Instant::now();
    let index = plan.index();
    let mut scan = index.scanner();
    for p in parts {
        scan.merge_partial(p.scan)
            .map_err(|e| damaged(format!("part {}: {e}", p.shard)))?;
    }
    let matches = scan.finish();
    let regurgitation = regurgitation::report(corpus, params, &plan.samples, &matches, &mut evidence)?;
    timed(&mut seconds, Stage::Regurgitation, t);
    let t = Instant::now();
    let secrets = leaks::run(corpus, scanner, &mut evidence, progress)?;
    timed(&mut seconds, Stage::Secrets, t);
    let report = AuditReport {
        format: report::REPORT_FORMAT.to_string(),
        model: plan.model,
        params: params.clone(),
        extraction,
        infilling,
        regurgitation,
        canaries: scores.canaries,
        secrets,
        membership: scores.membership,
        utility: None,
        seconds,
    };
    Ok((report, evidence))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(lens: &[(u32, usize)]) -> Vec<(u32, Vec<u32>)> {
        lens.iter().map(|&(d, n)| (d, vec![7; n])).collect()
    }

    #[test]
    fn shards_cover_every_document_once_with_about_equal_tokens() {
        let train = docs(&[(0, 10), (1, 10), (3, 10), (4, 10), (6, 10), (7, 10)]);
        let s = split(&train, 3);
        assert_eq!(
            s.iter().map(|r| (r.first, r.end, r.tokens)).collect::<Vec<_>>(),
            [(0, 3, 20), (3, 6, 20), (6, u32::MAX, 20)]
        );
        // Holdout documents between training ones (2, 5) fall in a shard too; nothing is outside.
        for d in 0..100 {
            assert_eq!(s.iter().filter(|r| r.holds(d)).count(), 1, "document {d}");
        }
    }

    #[test]
    fn more_shards_than_documents_leaves_no_empty_range_but_the_last() {
        let train = docs(&[(0, 5), (1, 500)]);
        let s = split(&train, 4);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(split(&train, 1).len(), 1);
        assert_eq!(split(&[], 3).len(), 1);
    }
}
