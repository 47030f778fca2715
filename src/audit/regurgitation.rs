//! Verbatim regurgitation: the model writes freely (unprompted, and from the policy's prompts) and every
//! span of at least `min_tokens` tokens that it copied word for word from one training document is found,
//! exactly, with where in the corpus it comes from. The matching itself is [`super::ngram`]; this module
//! generates, scans and summarizes, and also serves generations that came from elsewhere
//! ([`scan_texts`], for `lethe audit regurgitation --generations FILE`).

use serde::{Deserialize, Serialize};

use super::extraction::sampler_for;
use super::ngram::{self, Matches};
use super::report::{Evidence, Generated, RegurgitationExample, SpanEvidence};
use super::stats::{self, Rate};
use super::{model_err, AuditCorpus, AuditError, AuditModel, AuditParams, Progress, Stage};
use crate::corpus::tokenizer::{CorpusTokenizer, BOS_ID, EOS_ID, PAD_ID};

/// Corpus tokens shown on each side of a matched span in the evidence.
const SOURCE_CONTEXT_TOKENS: usize = 24;

/// Figures of the regurgitation scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegurgitationReport {
    /// Generations scanned.
    pub samples: usize,
    /// Of which generated from a policy prompt.
    pub prompted: usize,
    /// Tokens generated in all.
    pub generated_tokens: usize,
    /// Shortest span counted, in tokens (or characters when `unit` is `chars`).
    pub min_length: usize,
    /// `tokens` or `chars`.
    pub unit: String,
    /// Generations holding at least one span.
    pub with_span: Rate,
    /// Longest span in any generation.
    pub longest_span: usize,
    /// Mean over generations of the share covered by corpus spans.
    pub mean_covered_share: f64,
    pub max_covered_share: f64,
    /// Spans found in all.
    pub spans: usize,
}

/// A generation to scan, in tokens, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampled {
    pub prompt: String,
    pub tokens: Vec<u32>,
}

/// Generates the audit's free samples: half unprompted (a bare `<|bos|>`), half spread over the policy's
/// prompts (all unprompted when there are none), each cut at its first end-of-document token.
pub fn generate(
    model: &dyn AuditModel,
    tokenizer: &CorpusTokenizer,
    params: &AuditParams,
    progress: Progress<'_>,
) -> Result<Vec<Sampled>, AuditError> {
    let m = params.regurgitation_samples;
    let prompted = if params.prompts.is_empty() { 0 } else { m / 2 };
    let mut jobs: Vec<(String, Vec<u32>)> = Vec::with_capacity(m);
    for i in 0..m {
        if i < prompted {
            let text = &params.prompts[i % params.prompts.len()];
            let mut ids = vec![BOS_ID];
            ids.extend(tokenizer.encode(text)?);
            jobs.push((text.clone(), ids));
        } else {
            jobs.push((String::new(), vec![BOS_ID]));
        }
    }
    let context = model.context();
    if let Some((text, ids)) = jobs.iter().find(|(_, ids)| ids.len() >= context) {
        return Err(AuditError::Param {
            name: "prompts",
            why: format!(
                "prompt {text:?} is {} tokens, leaving no room in the model's context of {context}",
                ids.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(m);
    let mut done = 0;
    // Equal prompts go together so each call shares one generation length.
    let per_call = model.batch_rows().max(1);
    let mut start = 0;
    while start < jobs.len() {
        let end = (start..jobs.len())
            .find(|&j| jobs[j].1 != jobs[start].1 || j - start == per_call)
            .unwrap_or(jobs.len());
        progress(Stage::Regurgitation, done, m);
        let prompt_len = jobs[start].1.len();
        let len = params.regurgitation_length.min(context - prompt_len).max(1);
        let sampler = sampler_for(
            len,
            0,
            params.block_length,
            params.sample_temperature,
            params.seed.wrapping_add(start as u64),
        );
        let prompts: Vec<Vec<u32>> = jobs[start..end].iter().map(|j| j.1.clone()).collect();
        let gens = model
            .generate(&prompts, len, &sampler)
            .map_err(model_err("regurgitation"))?;
        for ((text, _), g) in jobs[start..end].iter().zip(gens) {
            let cut = g.iter().position(|&t| t == EOS_ID).unwrap_or(g.len());
            let tokens: Vec<u32> = g[..cut]
                .iter()
                .copied()
                .filter(|&t| t != PAD_ID && t != BOS_ID)
                .collect();
            out.push(Sampled {
                prompt: text.clone(),
                tokens,
            });
        }
        done += end - start;
        start = end;
    }
    progress(Stage::Regurgitation, m, m);
    Ok(out)
}

/// Finds every span of at least `min_len` symbols of each generation inside one training document.
pub fn scan_tokens(train: &[(u32, Vec<u32>)], gens: &[Vec<u32>], min_len: usize) -> Vec<Matches> {
    let index = ngram::GenerationIndex::<u32>::new(gens, min_len);
    let mut scan = index.scanner();
    for (d, doc) in train {
        scan.add_document(*d as usize, doc);
    }
    scan.finish()
}

/// Summarizes matches of `gens` (lengths in `unit`s).
pub fn summarize(
    matches: &[Matches],
    lens: &[usize],
    prompted: usize,
    min_length: usize,
    unit: &str,
) -> RegurgitationReport {
    let with_span = matches.iter().filter(|m| !m.spans.is_empty()).count();
    RegurgitationReport {
        samples: matches.len(),
        prompted,
        generated_tokens: lens.iter().sum(),
        min_length,
        unit: unit.to_string(),
        with_span: stats::wilson(with_span, matches.len()),
        longest_span: matches.iter().map(|m| m.longest).max().unwrap_or(0),
        mean_covered_share: if matches.is_empty() {
            0.0
        } else {
            matches.iter().map(|m| m.covered_share).sum::<f64>() / matches.len() as f64
        },
        max_covered_share: matches.iter().map(|m| m.covered_share).fold(0.0, f64::max),
        spans: matches.iter().map(|m| m.spans.len()).sum(),
    }
}

/// The regurgitation audit of `model`: generate, scan, summarize; the generations with the longest
/// spans become evidence, and every generation is handed to the secrets scan.
pub fn run(
    model: &dyn AuditModel,
    corpus: &AuditCorpus<'_>,
    params: &AuditParams,
    evidence: &mut Evidence,
    progress: Progress<'_>,
) -> Result<RegurgitationReport, AuditError> {
    let samples = generate(model, corpus.tokenizer, params, progress)?;
    let gens: Vec<Vec<u32>> = samples.iter().map(|s| s.tokens.clone()).collect();
    let matches = scan_tokens(corpus.train, &gens, params.min_tokens);
    report(corpus, params, &samples, &matches, evidence)
}

/// Summarizes the matches of the audit's own generations (`samples`, in order); the generations with
/// the longest spans become evidence, and every generation is handed to the secrets scan.
pub fn report(
    corpus: &AuditCorpus<'_>,
    params: &AuditParams,
    samples: &[Sampled],
    matches: &[Matches],
    evidence: &mut Evidence,
) -> Result<RegurgitationReport, AuditError> {
    let lens: Vec<usize> = samples.iter().map(|s| s.tokens.len()).collect();
    let prompted = samples.iter().filter(|s| !s.prompt.is_empty()).count();
    let report = summarize(matches, &lens, prompted, params.min_tokens, "tokens");

    let mut order: Vec<usize> = (0..matches.len())
        .filter(|&i| !matches[i].spans.is_empty())
        .collect();
    order.sort_by(|&a, &b| matches[b].longest.cmp(&matches[a].longest).then(a.cmp(&b)));
    for &i in order.iter().take(params.evidence_examples) {
        evidence.regurgitation.push(example(
            corpus,
            &samples[i].prompt,
            &samples[i].tokens,
            &matches[i],
        )?);
    }
    for (i, s) in samples.iter().enumerate() {
        evidence.generated.push(Generated {
            source: format!("regurgitation sample {i}"),
            text: corpus.tokenizer.decode(&s.tokens)?,
        });
    }
    Ok(report)
}

/// A generation's evidence: its text cut into pieces, matched pieces naming their corpus source with
/// some corpus text around it.
pub fn example(
    corpus: &AuditCorpus<'_>,
    prompt: &str,
    tokens: &[u32],
    m: &Matches,
) -> Result<RegurgitationExample, AuditError> {
    let tok = corpus.tokenizer;
    let mut spans = Vec::with_capacity(m.spans.len());
    for s in &m.spans {
        let source = corpus
            .train
            .binary_search_by_key(&(s.doc as u32), |(d, _)| *d)
            .ok()
            .map(|k| &corpus.train[k].1);
        let (before, after) = match source {
            Some(doc) => {
                let from = s.doc_offset.saturating_sub(SOURCE_CONTEXT_TOKENS);
                let to = (s.doc_offset + s.len + SOURCE_CONTEXT_TOKENS).min(doc.len());
                (
                    tok.decode(&doc[from..s.doc_offset])?,
                    tok.decode(&doc[(s.doc_offset + s.len).min(doc.len())..to])?,
                )
            }
            None => (String::new(), String::new()),
        };
        spans.push(SpanEvidence {
            gen_start: s.gen_start,
            len: s.len,
            doc: s.doc as u32,
            doc_offset: s.doc_offset,
            text: tok.decode(&tokens[s.gen_start..s.gen_start + s.len])?,
            source_before: before,
            source_after: after,
        });
    }
    Ok(RegurgitationExample {
        prompt: prompt.to_string(),
        text: tok.decode(tokens)?,
        tokens: tokens.len(),
        longest: m.longest,
        covered_share: m.covered_share,
        spans,
    })
}

/// One line of a bring-your-own generations file, as scanned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextResult {
    /// Line number in the file (1-based).
    pub line: usize,
    pub length: usize,
    pub longest: usize,
    pub covered_share: f64,
    pub spans: Vec<ngram::Span>,
}

/// Scans texts from any model against the corpus: in tokens (the corpus tokenizer's) when `chars` is
/// false, else in characters against the decoded documents.
pub fn scan_texts(
    corpus: &AuditCorpus<'_>,
    texts: &[(usize, String)],
    min_len: usize,
    chars: bool,
) -> Result<(RegurgitationReport, Vec<TextResult>), AuditError> {
    let (matches, lens): (Vec<Matches>, Vec<usize>) = if chars {
        let docs: Vec<(u32, String)> = corpus
            .train
            .iter()
            .map(|(d, t)| Ok((*d, corpus.tokenizer.decode(t)?)))
            .collect::<Result<_, AuditError>>()?;
        let gens: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        let index = ngram::GenerationIndex::<u8>::text(&gens, min_len);
        let mut scan = index.scanner();
        for (d, text) in &docs {
            scan.add_text(*d as usize, text);
        }
        let lens = texts.iter().map(|(_, t)| t.chars().count()).collect();
        (scan.finish(), lens)
    } else {
        let refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        let gens = corpus.tokenizer.encode_batch(&refs)?;
        let lens = gens.iter().map(Vec::len).collect();
        (scan_tokens(corpus.train, &gens, min_len), lens)
    };
    let report = summarize(
        &matches,
        &lens,
        0,
        min_len,
        if chars { "chars" } else { "tokens" },
    );
    let results = texts
        .iter()
        .zip(matches)
        .zip(&lens)
        .map(|(((line, _), m), &length)| TextResult {
            line: *line,
            length,
            longest: m.longest,
            covered_share: m.covered_share,
            spans: m.spans,
        })
        .collect();
    Ok((report, results))
}
