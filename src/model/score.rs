//! Likelihood scores for memorization audits: per-token log-likelihoods of the AR baseline, and Monte-Carlo
//! ELBO estimates (with their per-token terms) for the diffusion model.
//!
//! Rows may differ in length; they are batched like generation (sorted, chunked, left-padded behind an
//! attention mask), and every number comes back per row in the callers' order, in nats.

use tch::{Kind, Tensor};

use super::error::ModelError;
use super::objective::{bernoulli_rows, MaskRng};
use super::sampler::{by_length_chunks, left_pad};
use super::transformer::{padding_mask, Transformer};

/// Tokens per forward pass when scoring: rows per chunk = this / longest row. Bounds the logits'
/// memory (masked positions × vocab floats) while keeping a GPU busy.
const SCORE_TOKENS_PER_FORWARD: usize = 16_384;

/// Smallest mask probability of the ELBO's time grid, the same ε as training's.
const ELBO_EPS: f64 = 1e-3;

/// A diffusion model's Monte-Carlo ELBO of each row.
#[derive(Debug, Clone, PartialEq)]
pub struct ElboScore {
    /// Lower bound on log p(row), in nats, per row (higher: more likely).
    pub elbo: Vec<f64>,
    /// Per row, per token: that token's share of the ELBO, the average over samples of
    /// `1[token masked] · log p(token | noisy row) / t`. Each is an unbiased estimate of the token's
    /// contribution and they sum to `elbo`; a token left unmasked in every sample has 0. Min-K% takes the
    /// k% lowest of these (use enough samples that every token is masked a few times).
    pub token_terms: Vec<Vec<f64>>,
}

impl Transformer {
    /// AR baseline: `log p(x_i | x_<i)` for every token but the first of each row (a row of n tokens
    /// gives n - 1 values; the first token has no context to be predicted from).
    pub fn score_tokens(&self, rows: &[Vec<i64>]) -> Result<Vec<Vec<f64>>, ModelError> {
        if !self.config().causal {
            return Err(ModelError::WrongObjective {
                operation: "score_tokens",
                needs: "causal",
                causal: false,
            });
        }
        self.check_rows(rows)?;
        let lens: Vec<usize> = rows.iter().map(Vec::len).collect();
        let chunk = chunk_rows(&lens);
        Ok(self.without_grad(|| {
            by_length_chunks(&lens, chunk, |idx| {
                let batch: Vec<&[i64]> = idx.iter().map(|&i| rows[i].as_slice()).collect();
                let p = left_pad(&batch, 0, self.device());
                let (x, w) = (&p.tokens, p.tokens.size()[1]);
                // The last token predicts nothing, so the window is the first w - 1 columns.
                let mask = p.padded.then(|| padding_mask(&p.real.narrow(1, 0, w - 1), true));
                let logits = self.head(&self.hidden(&x.narrow(1, 0, w - 1), mask.as_ref()));
                let logp = logits
                    .to_kind(Kind::Float)
                    .log_softmax(-1, Kind::Float)
                    .gather(-1, &x.narrow(1, 1, w - 1).unsqueeze(-1), false)
                    .squeeze_dim(-1);
                let logp = to_rows(&logp);
                // Row r's real tokens start at column pad[r]; its first prediction is of column pad[r]+1,
                // which is logp column pad[r].
                logp.into_iter()
                    .zip(&p.pad)
                    .map(|(row, &pad)| row[pad as usize..].to_vec())
                    .collect()
            })
        }))
    }

    /// Diffusion model: an ELBO estimate per row from `n_samples` masked copies of it. Sample k of a row
    /// masks each token with probability t_k = ε + (1-ε)·(k + u)/n (one uniform u per row: stratified, so
    /// few samples cover the time axis) and at least one token. The same rows and `seed` give the same
    /// numbers.
    pub fn score_elbo(
        &self,
        rows: &[Vec<i64>],
        mask_id: i64,
        n_samples: usize,
        seed: u64,
    ) -> Result<ElboScore, ModelError> {
        self.check_elbo_args("score_elbo", rows, mask_id, n_samples)?;
        let lens: Vec<usize> = rows.iter().map(Vec::len).collect();
        let chunk = chunk_rows(&lens);
        let mut rng = MaskRng::new(seed);
        let per_row: Vec<Vec<f64>> = self.without_grad(|| {
            by_length_chunks(&lens, chunk, |idx| {
                let batch: Vec<&[i64]> = idx.iter().map(|&i| rows[i].as_slice()).collect();
                self.elbo_terms(&batch, mask_id, n_samples, &mut rng)
            })
        });
        Ok(ElboScore {
            elbo: per_row.iter().map(|r| r.iter().sum()).collect(),
            token_terms: per_row,
        })
    }

    /// Diffusion model: a conditional ELBO of each row's tokens from `keep[r]` on, given the first
    /// `keep[r]` tokens, which are never masked (their terms are 0). Each row draws its masks from its own
    /// generator seeded with `seed`, so rows whose scored spans have the same length see exactly the same
    /// masks and times in every sample: common random numbers, which makes the comparison of candidates
    /// that differ in a few tokens (canary ranking) far less noisy than independent estimates.
    pub fn score_elbo_given(
        &self,
        rows: &[Vec<i64>],
        keep: &[usize],
        mask_id: i64,
        n_samples: usize,
        seed: u64,
    ) -> Result<ElboScore, ModelError> {
        self.score_elbo_given_seeded(rows, keep, mask_id, n_samples, &vec![seed; rows.len()])
    }

    /// [`Transformer::score_elbo_given`] with a seed of each row's own: rows with different seeds see
    /// independent masks (held-out windows, whose average wants independent draws), rows with the same
    /// seed and span length the same masks.
    pub fn score_elbo_given_seeded(
        &self,
        rows: &[Vec<i64>],
        keep: &[usize],
        mask_id: i64,
        n_samples: usize,
        seeds: &[u64],
    ) -> Result<ElboScore, ModelError> {
        self.check_elbo_args("score_elbo_given", rows, mask_id, n_samples)?;
        if keep.len() != rows.len() || seeds.len() != rows.len() {
            return Err(ModelError::BadOption {
                name: "keep",
                value: keep.len() as f64,
                why: "needs one kept-prefix length and one seed per row",
            });
        }
        if let Some(row) = rows.iter().zip(keep).position(|(r, &k)| k >= r.len()) {
            return Err(ModelError::EmptyRow {
                row,
                why: "the kept prefix leaves nothing to score",
            });
        }
        self.elbo_given_seeded(rows, keep, mask_id, n_samples, seeds)
    }

    /// The log-likelihood of each row's tokens from `keep[r]` on given the tokens before, in nats:
    /// exact for the AR baseline, a conditional ELBO (a lower bound) for the diffusion model, its masks
    /// drawn from each row's seed in `seeds`. The one scoring rule of candidate continuations and
    /// held-out text, whichever objective the model has.
    pub fn score_tail(
        &self,
        rows: &[Vec<i64>],
        keep: &[usize],
        mask_id: i64,
        n_samples: usize,
        seeds: &[u64],
    ) -> Result<Vec<f64>, ModelError> {
        if self.config().causal {
            if let Some(row) = rows.iter().zip(keep).position(|(r, &k)| k == 0 || k >= r.len()) {
                return Err(ModelError::EmptyRow {
                    row,
                    why: "AR scoring needs a kept prefix of at least one token and a token after it",
                });
            }
            // Term i predicts token i + 1, so the tail from `keep` starts at term keep - 1.
            return Ok(self
                .score_tokens(rows)?
                .iter()
                .zip(keep)
                .map(|(t, &k)| t[k - 1..].iter().sum())
                .collect());
        }
        Ok(self
            .score_elbo_given_seeded(rows, keep, mask_id, n_samples, seeds)?
            .elbo)
    }

    fn elbo_given_seeded(
        &self,
        rows: &[Vec<i64>],
        keep: &[usize],
        mask_id: i64,
        n_samples: usize,
        seeds: &[u64],
    ) -> Result<ElboScore, ModelError> {
        let lens: Vec<usize> = rows.iter().map(Vec::len).collect();
        let chunk = chunk_rows(&lens);
        let per_row: Vec<Vec<f64>> = self.without_grad(|| {
            by_length_chunks(&lens, chunk, |idx| {
                let batch: Vec<&[i64]> = idx.iter().map(|&i| rows[i].as_slice()).collect();
                let kept: Vec<usize> = idx.iter().map(|&i| keep[i]).collect();
                let mut rngs: Vec<MaskRng> = idx.iter().map(|&i| MaskRng::new(seeds[i])).collect();
                self.elbo_terms_with(&batch, &kept, mask_id, n_samples, RowRng::PerRow(&mut rngs))
            })
        });
        Ok(ElboScore {
            elbo: per_row.iter().map(|r| r.iter().sum()).collect(),
            token_terms: per_row,
        })
    }

    fn elbo_terms(&self, rows: &[&[i64]], mask_id: i64, n: usize, rng: &mut MaskRng) -> Vec<Vec<f64>> {
        let kept = vec![0; rows.len()];
        self.elbo_terms_with(rows, &kept, mask_id, n, RowRng::Shared(rng))
    }

    /// The ELBO terms of `rows` with the first `kept[r]` tokens of each row never masked.
    fn elbo_terms_with(
        &self,
        rows: &[&[i64]],
        kept: &[usize],
        mask_id: i64,
        n: usize,
        mut rng: RowRng<'_>,
    ) -> Vec<Vec<f64>> {
        let p = left_pad(rows, 0, self.device());
        let attn_mask = p.padded.then(|| padding_mask(&p.real, false));
        let (b, w) = (rows.len(), p.tokens.size()[1]);
        let spans: Vec<(i64, i64)> = p
            .pad
            .iter()
            .zip(kept)
            .map(|(&pad, &k)| (pad + k as i64, w))
            .collect();
        let offsets: Vec<f64> = (0..b).map(|r| rng.row(r).next_f64()).collect();
        let mut terms = Tensor::zeros([b as i64 * w], (Kind::Float, self.device()));
        let flat = p.tokens.reshape([-1]);
        for k in 0..n {
            let t: Vec<f64> = offsets
                .iter()
                .map(|u| ELBO_EPS + (1.0 - ELBO_EPS) * (k as f64 + u) / n as f64)
                .collect();
            let masked = match &mut rng {
                RowRng::Shared(rng) => bernoulli_rows(&t, &spans, w, rng),
                RowRng::PerRow(rngs) => (0..b)
                    .flat_map(|r| bernoulli_rows(&t[r..=r], &spans[r..=r], w, &mut rngs[r]))
                    .collect(),
            };
            let positions: Vec<i64> = masked
                .iter()
                .enumerate()
                .filter(|(_, &m)| m)
                .map(|(i, _)| i as i64)
                .collect();
            let weights: Vec<f32> = positions
                .iter()
                .map(|&p| (1.0 / t[(p / w) as usize] / n as f64) as f32)
                .collect();
            let positions = Tensor::from_slice(&positions).to_device(self.device());
            let weights = Tensor::from_slice(&weights).to_device(self.device());
            let noisy = flat.index_fill(0, &positions, mask_id).view([b as i64, w]);
            let hidden = self
                .hidden(&noisy, attn_mask.as_ref())
                .flatten(0, 1)
                .index_select(0, &positions);
            let logp = self
                .head(&hidden)
                .to_kind(Kind::Float)
                .log_softmax(-1, Kind::Float)
                .gather(-1, &flat.index_select(0, &positions).unsqueeze(-1), false)
                .squeeze_dim(-1);
            terms = terms.index_add(0, &positions, &(logp * weights));
        }
        let terms = to_rows(&terms.view([b as i64, w]));
        terms
            .into_iter()
            .zip(&p.pad)
            .map(|(row, &pad)| row[pad as usize..].to_vec())
            .collect()
    }

    /// What every ELBO estimate needs: a diffusion model, a mask id in the vocabulary, at least one
    /// sample, and rows that fit and hold no mask token.
    fn check_elbo_args(
        &self,
        operation: &'static str,
        rows: &[Vec<i64>],
        mask_id: i64,
        n_samples: usize,
    ) -> Result<(), ModelError> {
        let c = self.config();
        if c.causal {
            return Err(ModelError::WrongObjective {
                operation,
                needs: "diffusion",
                causal: true,
            });
        }
        if mask_id < 0 || mask_id >= c.vocab {
            return Err(ModelError::MaskIdOutOfRange {
                mask_id,
                vocab: c.vocab,
            });
        }
        if n_samples == 0 {
            return Err(ModelError::BadOption {
                name: "n_samples",
                value: 0.0,
                why: "must be at least 1",
            });
        }
        self.check_rows(rows)?;
        // A mask token in the text would be scored as if it were masked noise; the tokenizer never
        // produces one, so it means the caller passed an infill template.
        if let Some(row) = rows.iter().position(|r| r.contains(&mask_id)) {
            return Err(ModelError::MaskInText { row, mask_id });
        }
        Ok(())
    }

    fn check_rows(&self, rows: &[Vec<i64>]) -> Result<(), ModelError> {
        let c = self.config();
        for (row, r) in rows.iter().enumerate() {
            let min = if c.causal { 2 } else { 1 };
            if r.len() < min {
                let why = if c.causal {
                    "AR scoring needs at least two tokens"
                } else {
                    "nothing to score"
                };
                return Err(ModelError::EmptyRow { row, why });
            }
            if r.len() as i64 > c.context {
                return Err(ModelError::TooLong {
                    row,
                    len: r.len() as i64,
                    context: c.context,
                });
            }
            if let Some(&id) = r.iter().find(|&&id| id < 0 || id >= c.vocab) {
                return Err(ModelError::TokenOutOfRange {
                    row,
                    id,
                    vocab: c.vocab,
                });
            }
        }
        Ok(())
    }
}

/// Where the ELBO's masks come from: one stream for the whole chunk, or one per row.
enum RowRng<'a> {
    Shared(&'a mut MaskRng),
    PerRow(&'a mut [MaskRng]),
}

impl RowRng<'_> {
    fn row(&mut self, r: usize) -> &mut MaskRng {
        match self {
            RowRng::Shared(rng) => rng,
            RowRng::PerRow(rngs) => &mut rngs[r],
        }
    }
}

fn chunk_rows(lens: &[usize]) -> usize {
    (SCORE_TOKENS_PER_FORWARD / lens.iter().copied().max().unwrap_or(1).max(1)).max(1)
}

fn to_rows(t: &Tensor) -> Vec<Vec<f64>> {
    Vec::<Vec<f64>>::try_from(t.to_kind(Kind::Double).to_device(tch::Device::Cpu))
        .expect("a float matrix converts to Vec<Vec<f64>>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{ModelConfig, ModelOverrides};
    use crate::model::objective::{ar_loss, diffusion_loss, MaskPlan};
    use tch::Device;

    fn model(causal: bool) -> Transformer {
        let o = ModelOverrides {
            layers: Some(2),
            width: Some(32),
            heads: Some(4),
            mlp: Some(64),
            context: Some(40),
            ..Default::default()
        };
        tch::manual_seed(8);
        let c = ModelConfig::tiny(50)
            .unwrap()
            .with_overrides(&o)
            .unwrap()
            .with_causal(causal);
        Transformer::new(&c, Device::Cpu).unwrap()
    }

    #[test]
    fn ar_token_scores_match_the_loss_and_ignore_padding() {
        let m = model(true);
        let rows = vec![vec![3, 4, 5, 6, 7, 8], vec![9, 1, 2]];
        let scores = m.score_tokens(&rows).unwrap();
        assert_eq!(scores.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 2]);
        let alone = m.score_tokens(&rows[1..]).unwrap();
        for (a, b) in scores[1].iter().zip(&alone[0]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let x = Tensor::from_slice(&rows[0]).view([1, 6]);
        let loss = tch::no_grad(|| ar_loss(&m, &x).double_value(&[]));
        let mean = -scores[0].iter().sum::<f64>() / 5.0;
        assert!((loss - mean).abs() < 1e-5, "{loss} vs {mean}");
    }

    #[test]
    fn elbo_is_deterministic_for_a_seed_and_its_terms_sum_to_it() {
        let m = model(false);
        let rows = vec![vec![3, 4, 5, 6, 7, 8, 1, 2], vec![9, 1, 2]];
        let a = m.score_elbo(&rows, 49, 4, 17).unwrap();
        assert_eq!(a, m.score_elbo(&rows, 49, 4, 17).unwrap());
        assert_ne!(a.elbo, m.score_elbo(&rows, 49, 4, 18).unwrap().elbo);
        assert_eq!(a.token_terms.iter().map(Vec::len).collect::<Vec<_>>(), vec![8, 3]);
        for (e, terms) in a.elbo.iter().zip(&a.token_terms) {
            assert!(*e < 0.0);
            assert!((e - terms.iter().sum::<f64>()).abs() < 1e-9);
        }
    }

    #[test]
    fn elbo_with_many_samples_agrees_with_the_training_loss() {
        // The negative ELBO per token and the diffusion loss estimate the same quantity; with many
        // samples both settle near it.
        let m = model(false);
        let row: Vec<i64> = (0..16).map(|i| (i * 7) % 49).collect();
        let elbo = m.score_elbo(std::slice::from_ref(&row), 49, 256, 1).unwrap().elbo[0] / -16.0;
        let x = Tensor::from_slice(&row).view([1, 16]).repeat([256, 1]);
        let plan = MaskPlan::validation(256, 16, 1e-3, 2, Device::Cpu);
        let loss = tch::no_grad(|| diffusion_loss(&m, &x, 49, &plan).double_value(&[]));
        assert!(
            (elbo - loss).abs() < 0.05 * loss,
            "elbo/token {elbo} vs loss {loss}"
        );
    }

    #[test]
    fn conditional_elbo_scores_only_the_tail_with_common_random_numbers() {
        let m = model(false);
        let rows = vec![vec![3, 4, 5, 6, 7, 8], vec![3, 4, 5, 6, 9, 10], vec![11, 3, 4]];
        let s = m.score_elbo_given(&rows, &[4, 4, 1], 49, 8, 5).unwrap();
        for (terms, keep) in s.token_terms.iter().zip([4, 4, 1]) {
            assert!(terms[..keep].iter().all(|&x| x == 0.0), "{terms:?}");
            assert!(terms[keep..].iter().all(|&x| x <= 0.0), "{terms:?}");
        }
        // Same row scored alone or among others: identical numbers (its own generator, no padding effect).
        let alone = m.score_elbo_given(&rows[1..2], &[4], 49, 8, 5).unwrap();
        assert!(
            (alone.elbo[0] - s.elbo[1]).abs() < 1e-5,
            "{} vs {}",
            alone.elbo[0],
            s.elbo[1]
        );
        // A row identical to another gets the identical estimate (same masks).
        let twins = m
            .score_elbo_given(&[rows[0].clone(), rows[0].clone()], &[4, 4], 49, 8, 5)
            .unwrap();
        assert_eq!(twins.elbo[0], twins.elbo[1]);
        assert_eq!(
            m.score_elbo_given(&rows[..1], &[6], 49, 8, 5),
            Err(ModelError::EmptyRow {
                row: 0,
                why: "the kept prefix leaves nothing to score"
            })
        );
        assert!(matches!(
            model(true).score_elbo_given(&rows[..1], &[1], 49, 1, 0),
            Err(ModelError::WrongObjective { .. })
        ));
    }

    #[test]
    fn scoring_refuses_the_wrong_model_and_bad_rows() {
        assert!(matches!(
            model(false).score_tokens(&[vec![1, 2]]),
            Err(ModelError::WrongObjective { .. })
        ));
        assert!(matches!(
            model(true).score_elbo(&[vec![1, 2]], 49, 1, 0),
            Err(ModelError::WrongObjective { .. })
        ));
        assert_eq!(
            model(true).score_tokens(&[vec![1]]),
            Err(ModelError::EmptyRow {
                row: 0,
                why: "AR scoring needs at least two tokens"
            })
        );
        assert_eq!(
            model(false).score_elbo(&[vec![1, 2], vec![3, 49]], 49, 1, 0),
            Err(ModelError::MaskInText { row: 1, mask_id: 49 })
        );
        assert_eq!(
            model(false).score_elbo(&[vec![1, 99]], 49, 1, 0),
            Err(ModelError::TokenOutOfRange {
                row: 0,
                id: 99,
                vocab: 50
            })
        );
    }
}
