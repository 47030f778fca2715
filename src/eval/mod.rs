//! What a checkpoint learned: held-out bits per byte, continuation choice on held-out documents, and a
//! customer's own multiple-choice items. The other half of every audit: a memorization figure means
//! little until it stands beside what the model can do.
//!
//! Estimators (see `docs/study.md`):
//! - **Held-out bits per byte**: `windows` windows of the model's context drawn at random offsets of the
//!   packed holdout stream (fixed by the seed, so every checkpoint of a run is scored on the same text).
//!   Each window's first token is given and the rest scored: exactly `-log p` for the AR baseline; for the
//!   diffusion model the negative conditional ELBO from `mask_draws` stratified mask draws per window, an
//!   upper bound on `-log p` (so diffusion's figure is conservative). Divided by ln 2 and by the UTF-8
//!   bytes the scored tokens stand for, runs with different tokenizers compare.
//! - **Continuation choice**: an item is 64 tokens of a held-out document (a document holds one item per
//!   96 tokens, in non-overlapping slots; items are a seeded sample of the slots), its true next 32 tokens and
//!   3 distractors of 32 tokens from other held-out documents, in a seeded order. The model picks the
//!   continuation with the highest conditional log-likelihood (AR exact; diffusion the conditional ELBO,
//!   the 4 choices of an item under the same masks: common random numbers). Chance is 25%. Accuracy with
//!   a Wilson 95% interval and the item count.
//! - **Custom items** (`--eval FILE.jsonl`): `{"context": …, "choices": […], "answer": i}` per line,
//!   scored the same way (sum of the choice's log-likelihood after `<bos>` and the context).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audit::stats::{wilson, Rng};
use crate::corpus::tokenizer::{CorpusTokenizer, BOS_ID, MASK_ID};
use crate::model::{ModelError, Transformer};

/// Context and continuation lengths of a held-out choice item (shortened for models with less context).
pub const CHOICE_CONTEXT: usize = 64;
pub const CHOICE_CONTINUATION: usize = 32;
/// Choices per held-out item: the truth and three distractors.
pub const CHOICES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{file}:{line}: {why}")]
    Item { file: String, line: usize, why: String },
    #[error("cannot read evaluation file {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("evaluation file {0} holds no items")]
    Empty(String),
    #[error("the model failed during evaluation: {0}")]
    Model(#[from] ModelError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] crate::corpus::CorpusError),
}

/// How much evaluation to do. The trainer uses [`EvalSettings::checkpoint`] at every kept checkpoint;
/// `lethe eval` defaults to [`EvalSettings::full`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Held-out windows scored for bits per byte.
    pub windows: usize,
    /// Diffusion: mask draws per held-out window.
    pub mask_draws: usize,
    /// Held-out continuation-choice items (at most one per 96 tokens of held-out text).
    pub choice_items: usize,
    /// Diffusion: mask draws per choice (the same draws for the choices of one item).
    pub choice_mask_draws: usize,
    /// Fixes the windows, the items and the masks.
    pub seed: u64,
}

impl EvalSettings {
    /// What every kept checkpoint gets when it is saved: cheap enough for a CPU run.
    pub fn checkpoint(seed: u64) -> EvalSettings {
        EvalSettings {
            windows: 256,
            mask_draws: 4,
            choice_items: 200,
            choice_mask_draws: 8,
            seed,
        }
    }

    /// `lethe eval`: more windows, items and draws.
    pub fn full(seed: u64) -> EvalSettings {
        EvalSettings {
            windows: 1024,
            mask_draws: 16,
            choice_items: 1000,
            choice_mask_draws: 32,
            seed,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.windows == 0 || self.mask_draws == 0 || self.choice_mask_draws == 0 {
            return Err("windows and mask draws must be at least 1".into());
        }
        Ok(())
    }
}

/// A multiple-choice item in token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceItem {
    pub context: Vec<u32>,
    pub choices: Vec<Vec<u32>>,
    pub answer: usize,
}

/// A proportion with its Wilson 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    /// Items scored.
    pub n: usize,
    pub correct: usize,
    /// Diffusion: mask draws per choice (0 for the AR baseline, whose score is exact).
    pub mask_draws: usize,
}

impl Accuracy {
    fn of(correct: usize, n: usize, mask_draws: usize) -> Accuracy {
        let r = wilson(correct, n);
        Accuracy {
            value: r.rate,
            low: r.low,
            high: r.high,
            n,
            correct,
            mask_draws,
        }
    }
}

/// What a checkpoint learned. In the audit report as `utility`, in each kept checkpoint's record, and in
/// the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Utility {
    /// Held-out bits per UTF-8 byte (lower is better); `None` when the holdout holds no full window.
    pub bits_per_byte: Option<f64>,
    /// Held-out nats per token, the same windows.
    pub nats_per_token: Option<f64>,
    /// `exact` (AR) or `elbo_upper_bound` (diffusion).
    pub estimator: String,
    pub windows: usize,
    /// Tokens and bytes scored.
    pub tokens: usize,
    pub bytes: usize,
    /// Diffusion: mask draws per window (0 for AR).
    pub mask_draws: usize,
    /// Held-out continuation choice, 4 choices (chance 25%); `None` when no held-out document is long
    /// enough.
    pub choice_accuracy: Option<Accuracy>,
    /// The customer's own items, when an evaluation file was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomAccuracy>,
    pub settings: EvalSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomAccuracy {
    /// The file's name (not its path) and SHA-256.
    pub file: String,
    pub sha256: String,
    #[serde(flatten)]
    pub accuracy: Accuracy,
}

/// The held-out material of a run, drawn once: the windows and the choice items.
pub struct EvalSet {
    windows: Vec<Vec<u32>>,
    items: Vec<ChoiceItem>,
    custom: Option<(String, String, Vec<ChoiceItem>)>,
    token_bytes: Vec<u32>,
    pub settings: EvalSettings,
}

impl EvalSet {
    /// Draws the windows and items from `holdout` (held-out documents, never trained on) for a model of
    /// `context` tokens. The same documents and settings always give the same set.
    pub fn build(
        holdout: &[(u32, Vec<u32>)],
        tokenizer_bytes: Vec<u32>,
        context: usize,
        settings: EvalSettings,
    ) -> EvalSet {
        let mut stream: Vec<u32> = Vec::new();
        for (_, t) in holdout {
            stream.push(BOS_ID);
            stream.extend_from_slice(t);
            stream.push(crate::corpus::tokenizer::EOS_ID);
        }
        let mut rng = Rng::new(settings.seed ^ 0xE7A1_0000_0000_0001);
        let mut windows = Vec::new();
        if context >= 2 && stream.len() >= context {
            let positions = stream.len() - context + 1;
            for p in sample_without_replacement(positions, settings.windows, &mut rng) {
                windows.push(stream[p..p + context].to_vec());
            }
        }
        let items = heldout_items(holdout, context, settings.choice_items, &mut rng);
        EvalSet {
            windows,
            items,
            custom: None,
            token_bytes: tokenizer_bytes,
            settings,
        }
    }

    /// Adds the customer's items (see [`load_items`]); `name` and `sha256` identify the file.
    pub fn with_custom(mut self, name: String, sha256: String, items: Vec<ChoiceItem>) -> EvalSet {
        self.custom = Some((name, sha256, items));
        self
    }

    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// Scores `model` on the set.
    pub fn evaluate(&self, model: &Transformer) -> Result<Utility, EvalError> {
        let causal = model.config().causal;
        let s = &self.settings;
        let draws = if causal { 0 } else { s.mask_draws };
        let (mut nll, mut tokens, mut bytes) = (0.0, 0usize, 0usize);
        if !self.windows.is_empty() {
            let rows: Vec<Vec<i64>> = self.windows.iter().map(|w| to_i64(w)).collect();
            let keep = vec![1; rows.len()];
            let seeds: Vec<u64> = (0..rows.len() as u64)
                .map(|i| s.seed ^ 0x0BB0_0000 ^ i.wrapping_mul(0x9E37_79B9))
                .collect();
            let ll = model.score_tail(&rows, &keep, i64::from(MASK_ID), s.mask_draws, &seeds)?;
            nll = -ll.iter().sum::<f64>();
            for w in &self.windows {
                tokens += w.len() - 1;
                bytes += w[1..]
                    .iter()
                    .map(|&t| self.token_bytes.get(t as usize).copied().unwrap_or(0) as usize)
                    .sum::<usize>();
            }
        }
        let choice_accuracy = if self.items.is_empty() {
            None
        } else {
            Some(score_items(model, &self.items, s.choice_mask_draws, s.seed)?)
        };
        let custom = match &self.custom {
            Some((file, sha256, items)) => Some(CustomAccuracy {
                file: file.clone(),
                sha256: sha256.clone(),
                accuracy: score_items(model, items, s.choice_mask_draws, s.seed ^ 0xC057)?,
            }),
            None => None,
        };
        Ok(Utility {
            bits_per_byte: (bytes > 0).then(|| nll / std::f64::consts::LN_2 / bytes as f64),
            nats_per_token: (tokens > 0).then(|| nll / tokens as f64),
            estimator: if causal { "exact" } else { "elbo_upper_bound" }.into(),
            windows: self.windows.len(),
            tokens,
            bytes,
            mask_draws: draws,
            choice_accuracy,
            custom,
            settings: s.clone(),
        })
    }
}

fn to_i64(r: &[u32]) -> Vec<i64> {
    r.iter().map(|&t| i64::from(t)).collect()
}

/// `k` distinct values of `0..n` (all of them when `k >= n`), in increasing order.
fn sample_without_replacement(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    // Floyd's algorithm: k draws, no n-sized array.
    let mut chosen = std::collections::BTreeSet::new();
    for j in (n - k)..n {
        let t = rng.below(j as u64 + 1) as usize;
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

/// Lengths of a held-out item's context and continuations for a model of `context` tokens.
fn item_shape(context: usize) -> (usize, usize) {
    if context >= CHOICE_CONTEXT + CHOICE_CONTINUATION {
        (CHOICE_CONTEXT, CHOICE_CONTINUATION)
    } else {
        let cont = (context / 3).max(1);
        (context - cont, cont)
    }
}

/// Up to `count` items from the held-out documents: each document long enough holds one item per
/// `context + continuation` tokens (non-overlapping slots), and the items are a seeded sample of all
/// slots. Each has three distractors from other documents, the true continuation at a seeded position.
fn heldout_items(
    holdout: &[(u32, Vec<u32>)],
    context: usize,
    count: usize,
    rng: &mut Rng,
) -> Vec<ChoiceItem> {
    if context < 4 {
        return Vec::new();
    }
    let (ctx, cont) = item_shape(context);
    let slots: Vec<(usize, usize)> = (0..holdout.len())
        .flat_map(|d| (0..holdout[d].1.len() / (ctx + cont)).map(move |k| (d, k * (ctx + cont))))
        .collect();
    let spans: Vec<usize> = (0..holdout.len())
        .filter(|&i| holdout[i].1.len() >= cont)
        .collect();
    if slots.is_empty() || spans.len() < CHOICES {
        return Vec::new();
    }
    let picked = sample_without_replacement(slots.len(), count, rng);
    let mut items = Vec::with_capacity(picked.len());
    for p in picked {
        let (d, off) = slots[p];
        let doc = &holdout[d].1;
        let truth = doc[off + ctx..off + ctx + cont].to_vec();
        let mut choices = vec![truth.clone()];
        let mut tries = 0;
        while choices.len() < CHOICES && tries < 64 {
            tries += 1;
            let o = spans[rng.below(spans.len() as u64) as usize];
            if o == d {
                continue;
            }
            let other = &holdout[o].1;
            let at = rng.below((other.len() - cont) as u64 + 1) as usize;
            let span = other[at..at + cont].to_vec();
            if !choices.contains(&span) {
                choices.push(span);
            }
        }
        if choices.len() < CHOICES {
            continue;
        }
        // A seeded shuffle, so the truth is not always first (a tie would otherwise favour it).
        for i in (1..choices.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            choices.swap(i, j);
        }
        let answer = choices.iter().position(|c| *c == truth).unwrap_or(0);
        items.push(ChoiceItem {
            context: doc[off..off + ctx].to_vec(),
            choices,
            answer,
        });
    }
    items
}

/// Accuracy of picking the most likely choice of each item.
fn score_items(
    model: &Transformer,
    items: &[ChoiceItem],
    mask_draws: usize,
    seed: u64,
) -> Result<Accuracy, EvalError> {
    let (mut rows, mut keep, mut seeds) = (Vec::new(), Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        for c in &item.choices {
            let mut r = to_i64(&item.context);
            r.extend(c.iter().map(|&t| i64::from(t)));
            rows.push(r);
            keep.push(item.context.len());
            // One seed per item: its choices see the same masks where their lengths agree.
            seeds.push(seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        }
    }
    let ll = model.score_tail(&rows, &keep, i64::from(MASK_ID), mask_draws, &seeds)?;
    let mut at = 0;
    let mut correct = 0;
    for item in items {
        let scores = &ll[at..at + item.choices.len()];
        at += item.choices.len();
        let best = scores
            .iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |b, (i, &s)| if s > b.1 { (i, s) } else { b },
            )
            .0;
        correct += usize::from(best == item.answer);
    }
    let draws = if model.config().causal { 0 } else { mask_draws };
    Ok(Accuracy::of(correct, items.len(), draws))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemLine {
    context: String,
    choices: Vec<String>,
    answer: i64,
}

/// Reads a customer's multiple-choice file: one JSON object per line with `context` (text), `choices`
/// (at least two non-empty texts) and `answer` (the index of the right choice). Blank lines are skipped.
/// Each row (`<bos>`, context, choice) must fit `context_len` tokens. Any other line is an error that
/// names it.
pub fn load_items(
    path: &Path,
    tokenizer: &CorpusTokenizer,
    context_len: usize,
) -> Result<Vec<ChoiceItem>, EvalError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        file: file.clone(),
        source,
    })?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |why: String| EvalError::Item {
            file: file.clone(),
            line: i + 1,
            why,
        };
        if line.trim().is_empty() {
            continue;
        }
        let it: ItemLine = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "not an item ({e}); each line is {{\"context\": \"…\", \"choices\": [\"…\", \"…\"], \"answer\": 0}}"
            ))
        })?;
        if it.choices.len() < 2 {
            return Err(bad(format!(
                "needs at least two choices, has {}",
                it.choices.len()
            )));
        }
        if let Some(c) = it.choices.iter().position(|c| c.is_empty()) {
            return Err(bad(format!("choice {c} is empty")));
        }
        if it.answer < 0 || it.answer as usize >= it.choices.len() {
            return Err(bad(format!(
                "answer {} is not the index of a choice (0 to {})",
                it.answer,
                it.choices.len() - 1
            )));
        }
        let mut context = vec![BOS_ID];
        context.extend(tokenizer.encode(&it.context)?);
        let mut choices = Vec::with_capacity(it.choices.len());
        for c in &it.choices {
            let t = tokenizer.encode(c)?;
            if context.len() + t.len() > context_len {
                return Err(bad(format!(
                    "context and a choice are {} tokens, more than the model's context of {context_len}",
                    context.len() + t.len()
                )));
            }
            choices.push(t);
        }
        items.push(ChoiceItem {
            context,
            choices,
            answer: it.answer as usize,
        });
    }
    if items.is_empty() {
        return Err(EvalError::Empty(file));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holdout(n: usize, len: usize) -> Vec<(u32, Vec<u32>)> {
        (0..n)
            .map(|i| {
                (
                    i as u32,
                    (0..len).map(|k| 10 + ((i * 7 + k) % 50) as u32).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn windows_and_items_are_fixed_by_the_seed_and_held_out_only() {
        let h = holdout(20, 120);
        let a = EvalSet::build(&h, vec![1; 64], 32, EvalSettings::checkpoint(5));
        let b = EvalSet::build(&h, vec![1; 64], 32, EvalSettings::checkpoint(5));
        let c = EvalSet::build(&h, vec![1; 64], 32, EvalSettings::checkpoint(6));
        assert_eq!(a.windows, b.windows);
        assert_eq!(a.items, b.items);
        assert_ne!(a.windows, c.windows);
        assert_eq!(a.windows.len(), 256);
        assert!(a.windows.iter().all(|w| w.len() == 32));
        // A 32-token model's items are 22 + 10 tokens: each 120-token document holds three slots.
        assert_eq!(a.items.len(), 60);
        for it in &a.items {
            assert_eq!(it.choices.len(), CHOICES);
            assert!(it.answer < CHOICES);
        }
        let answers: std::collections::BTreeSet<usize> = a.items.iter().map(|i| i.answer).collect();
        assert!(answers.len() > 1, "the truth is shuffled among the choices");
    }

    fn micro(causal: bool) -> Transformer {
        let o = crate::model::ModelOverrides {
            layers: Some(2),
            width: Some(32),
            heads: Some(4),
            mlp: Some(64),
            context: Some(32),
            ..Default::default()
        };
        let cfg = crate::model::ModelConfig::tiny(64)
            .unwrap()
            .with_overrides(&o)
            .unwrap()
            .with_causal(causal);
        tch::manual_seed(3);
        Transformer::new(&cfg, tch::Device::Cpu).unwrap()
    }

    #[test]
    fn an_untrained_model_scores_near_a_uniform_guess_and_chance() {
        // Token ids 10..60 (never the special ids), each standing for 2 bytes.
        let h = holdout(40, 120);
        let mut bytes = vec![2u32; 64];
        bytes[..4].fill(0);
        let settings = EvalSettings {
            windows: 64,
            mask_draws: 2,
            choice_items: 80,
            choice_mask_draws: 2,
            seed: 9,
        };
        let set = EvalSet::build(&h, bytes, 32, settings);
        for causal in [true, false] {
            let u = set.evaluate(&micro(causal)).unwrap();
            let nats = u.nats_per_token.unwrap();
            // Random weights give nearly uniform predictions over 64 ids: about ln 64 = 4.16 nats a
            // token (the ELBO a little more); bits per byte is that over ln 2 and over 2 bytes a token
            // (the windows' `<bos>`/`<eos>` tokens carry no bytes, hence a little above).
            assert!((3.9..5.5).contains(&nats), "causal {causal}: {nats}");
            let bpb = u.bits_per_byte.unwrap();
            let want = u.nats_per_token.unwrap() * u.tokens as f64 / std::f64::consts::LN_2 / u.bytes as f64;
            assert!((bpb - want).abs() < 1e-9);
            assert_eq!(u.windows, 64);
            assert_eq!(u.tokens, 64 * 31);
            assert_eq!(u.estimator, if causal { "exact" } else { "elbo_upper_bound" });
            assert_eq!(u.mask_draws, if causal { 0 } else { 2 });
            let a = u.choice_accuracy.unwrap();
            assert_eq!(a.n, 80);
            // An untrained model picks near chance (25%); its interval must hold it.
            assert!(a.low <= 0.25 && 0.25 <= a.high, "causal {causal}: {a:?}");
        }
    }

    #[test]
    fn floyd_sampling_gives_distinct_values() {
        let mut rng = Rng::new(1);
        let s = sample_without_replacement(1000, 300, &mut rng);
        assert_eq!(s.len(), 300);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_without_replacement(5, 10, &mut rng), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn malformed_item_files_name_the_line() {
        let dir = std::env::temp_dir().join(format!("lethe-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let docs = ["alpha beta gamma delta", "epsilon zeta eta theta"];
        let tok = CorpusTokenizer::train(docs.iter(), 600).unwrap();
        let cases = [
            (
                "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0}\nnot json\n",
                ":2: not an item",
            ),
            (
                "{\"context\": \"a\", \"choices\": [\"b\"], \"answer\": 0}\n",
                ":1: needs at least two choices",
            ),
            (
                "\n{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 2}\n",
                ":2: answer 2 is not",
            ),
            (
                "{\"context\": \"a\", \"choices\": [\"b\", \"\"], \"answer\": 0}\n",
                ":1: choice 1 is empty",
            ),
            (
                "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0, \"x\": 1}\n",
                ":1: not an item",
            ),
            ("\n\n", "holds no items"),
        ];
        for (i, (body, want)) in cases.iter().enumerate() {
            let p = dir.join(format!("case{i}.jsonl"));
            std::fs::write(&p, body).unwrap();
            let err = load_items(&p, &tok, 64).unwrap_err().to_string();
            assert!(err.contains(want), "case {i}: {err}");
        }
        let long = format!(
            "{{\"context\": \"{}\", \"choices\": [\"b\", \"c\"], \"answer\": 1}}\n",
            "alpha ".repeat(100)
        );
        let p = dir.join("long.jsonl");
        std::fs::write(&p, long).unwrap();
        let err = load_items(&p, &tok, 16).unwrap_err().to_string();
        assert!(err.contains(":1: context and a choice are"), "{err}");
        let good = dir.join("good.jsonl");
        std::fs::write(
            &good,
            "{\"context\": \"alpha\", \"choices\": [\"beta\", \"zeta\"], \"answer\": 1}\n",
        )
        .unwrap();
        let items = load_items(&good, &tok, 64).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].answer, 1);
        assert_eq!(items[0].context[0], BOS_ID);
        std::fs::remove_dir_all(&dir).ok();
    }
}
