//! The two training objectives on the shared backbone: masked diffusion and next-token prediction.
//!
//! **Diffusion** (MDLM, LLaDA, the super-data-learners recipe): each row draws a mask probability
//! t ∈ [ε, 1], each token is replaced by the mask token with probability t (at least one a row), and the
//! loss is the cross-entropy on masked positions divided by t, summed and divided by batch × length. That
//! is an unbiased estimate of the negative ELBO per token. Which tokens are masked is decided by a
//! [`MaskPlan`], drawn on the host from a [`MaskRng`]: the masks are then identical on CPU and GPU, a
//! trainer can checkpoint the generator's single `u64` of state to resume bit-exactly, and a validation
//! plan is a pure function of its seed. The host work is one uniform draw per token, tiny next to a step.
//!
//! **AR**: mean next-token cross-entropy under causal attention.

use tch::{Device, Kind, Reduction, Tensor};

use super::transformer::Transformer;

/// SplitMix64 (Steele, Lea and Flood 2014; the seeder of xoshiro): a 64-bit state, statistically sound
/// for mask sampling, and trivially saved and restored by a trainer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskRng {
    state: u64,
}

impl MaskRng {
    pub fn new(seed: u64) -> MaskRng {
        MaskRng { state: seed }
    }

    /// The whole state; `MaskRng::new(rng.state())` continues the same stream.
    pub fn state(&self) -> u64 {
        self.state
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n), n ≥ 1 (Lemire's multiply-shift; the bias is below 2⁻³² for our n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// How training draws mask probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskSchedule {
    /// Smallest mask probability. t near 0 masks almost nothing and weights the loss by 1/t, so the
    /// estimate's variance explodes; MDLM and LLaDA clip at 1e-3.
    pub eps: f64,
    /// Probability that a batch is cut to a random length in [1, length] (LLaDA does this for 1% of its
    /// data so the model also sees short sequences; the trainer may set 0).
    pub random_length_prob: f64,
}

impl Default for MaskSchedule {
    fn default() -> Self {
        MaskSchedule {
            eps: 1e-3,
            random_length_prob: 0.01,
        }
    }
}

/// Which positions of a `[batch, len]` window are masked, and with what probability each row was masked.
#[derive(Debug)]
pub struct MaskPlan {
    /// Mask probability of each row, `[batch]` float32.
    pub t: Tensor,
    /// `[batch, len]` bool, true where the token is replaced by the mask token.
    pub masked: Tensor,
    /// Flat indices (`row * len + column`) of the masked positions, ascending, int64.
    pub positions: Tensor,
    /// Columns used: the window's length, or less when the batch was cut to a random length.
    pub len: i64,
}

impl MaskPlan {
    /// A training plan: low-discrepancy t across the batch (t_i = ε + (1-ε)·((u + i/B) mod 1), one
    /// uniform u per batch, as MDLM does, which lowers the loss variance), independent Bernoulli(t_i)
    /// masks, and at least one masked token a row. Fresh for every batch, so repeated data gets new masks.
    pub fn sample(
        batch: i64,
        len: i64,
        schedule: &MaskSchedule,
        rng: &mut MaskRng,
        device: Device,
    ) -> MaskPlan {
        // Draw the cut unconditionally so the stream stays aligned whatever the probability.
        let cut = rng.next_f64() < schedule.random_length_prob;
        let cut_len = 1 + rng.below(len as u64) as i64;
        let len = if cut { cut_len } else { len };
        let u = rng.next_f64();
        let t: Vec<f64> = (0..batch)
            .map(|i| schedule.eps + (1.0 - schedule.eps) * ((u + i as f64 / batch as f64) % 1.0))
            .collect();
        Self::bernoulli(&t, len, rng, device)
    }

    /// A validation plan: t on a fixed grid (midpoints of B equal strata of [ε, 1]) and masks drawn from
    /// `seed`, so the same seed gives the same masks and the loss is comparable between epochs. The
    /// resulting [`diffusion_loss`] is a deterministic estimate of the negative ELBO per token.
    pub fn validation(batch: i64, len: i64, eps: f64, seed: u64, device: Device) -> MaskPlan {
        let t: Vec<f64> = (0..batch)
            .map(|i| eps + (1.0 - eps) * (i as f64 + 0.5) / batch as f64)
            .collect();
        Self::bernoulli(&t, len, &mut MaskRng::new(seed), device)
    }

    /// A plan from given masks and probabilities (for tests and parity checks against the reference).
    pub fn from_parts(t: Tensor, masked: Tensor) -> MaskPlan {
        let len = masked.size()[1];
        let positions = masked.flatten(0, 1).nonzero().squeeze_dim(1);
        MaskPlan {
            t: t.to_kind(Kind::Float),
            masked: masked.to_kind(Kind::Bool),
            positions,
            len,
        }
    }

    fn bernoulli(t: &[f64], len: i64, rng: &mut MaskRng, device: Device) -> MaskPlan {
        let masked = bernoulli_rows(t, &vec![(0, len); t.len()], len, rng);
        let positions: Vec<i64> = masked
            .iter()
            .enumerate()
            .filter(|(_, &m)| m)
            .map(|(i, _)| i as i64)
            .collect();
        let tt: Vec<f32> = t.iter().map(|&x| x as f32).collect();
        MaskPlan {
            t: Tensor::from_slice(&tt).to_device(device),
            masked: Tensor::from_slice(&masked)
                .view([t.len() as i64, len])
                .to_device(device),
            positions: Tensor::from_slice(&positions).to_device(device),
            len,
        }
    }
}

/// Bernoulli(t[r]) masks over `[rows, width]`, restricted to columns `span[r] = (start, end)` of each row,
/// with at least one masked position in every non-empty span. Shared with ELBO scoring, whose rows are
/// left-padded.
pub(crate) fn bernoulli_rows(t: &[f64], span: &[(i64, i64)], width: i64, rng: &mut MaskRng) -> Vec<bool> {
    let mut masked = vec![false; t.len() * width as usize];
    for (r, (&tr, &(start, end))) in t.iter().zip(span).enumerate() {
        let row = &mut masked[r * width as usize..(r + 1) * width as usize];
        let mut any = false;
        for m in &mut row[start as usize..end as usize] {
            *m = rng.next_f64() < tr;
            any |= *m;
        }
        if !any && end > start {
            row[(start + rng.below((end - start) as u64) as i64) as usize] = true;
        }
    }
    masked
}

/// The masked-diffusion loss of `tokens` (`[batch, len]` int64) under `plan`: cross-entropy on masked
/// positions, each divided by its row's t, summed and divided by batch × (plan) length. The output head
/// runs on masked positions only, which is the same number as running it everywhere (unmasked positions
/// carry no loss) for about half the head's work.
pub fn diffusion_loss(model: &Transformer, tokens: &Tensor, mask_id: i64, plan: &MaskPlan) -> Tensor {
    let batch = tokens.size()[0];
    let x = tokens.narrow(1, 0, plan.len);
    let noisy = x.masked_fill(&plan.masked, mask_id);
    let hidden = model.hidden(&noisy, None).flatten(0, 1);
    let logits = model.head(&hidden.index_select(0, &plan.positions));
    let targets = x.flatten(0, 1).index_select(0, &plan.positions);
    let nll =
        logits
            .to_kind(Kind::Float)
            .cross_entropy_loss(&targets, None::<Tensor>, Reduction::None, -100, 0.0);
    let rows = plan.positions.floor_divide_scalar(plan.len);
    let inv_t = plan.t.reciprocal().index_select(0, &rows);
    (nll * inv_t).sum(Kind::Float) / (batch * plan.len) as f64
}

/// The autoregressive loss: mean cross-entropy of predicting `tokens[:, 1:]` from `tokens[:, :-1]`, so a
/// window of `len` tokens trains on `len - 1` positions. Meant for a causal model; on a bidirectional one
/// it would be trivially low, since each position sees its target.
pub fn ar_loss(model: &Transformer, tokens: &Tensor) -> Tensor {
    let len = tokens.size()[1];
    let logits = model.forward(&tokens.narrow(1, 0, len - 1));
    let vocab = logits.size()[2];
    logits.to_kind(Kind::Float).view([-1, vocab]).cross_entropy_loss(
        &tokens.narrow(1, 1, len - 1).reshape([-1]),
        None::<Tensor>,
        Reduction::Mean,
        -100,
        0.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{ModelConfig, ModelOverrides};
    use tch::nn::OptimizerConfig;

    fn micro(causal: bool) -> ModelConfig {
        let o = ModelOverrides {
            layers: Some(2),
            width: Some(32),
            heads: Some(4),
            mlp: Some(64),
            context: Some(32),
            ..Default::default()
        };
        ModelConfig::tiny(40)
            .unwrap()
            .with_overrides(&o)
            .unwrap()
            .with_causal(causal)
    }

    #[test]
    fn mask_rng_is_splitmix64() {
        // Reference values of SplitMix64 seeded with 1234567 (from the published C implementation).
        let mut r = MaskRng::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        let s = r.state();
        let mut a = MaskRng::new(s);
        assert_eq!(a.next_u64(), r.next_u64());
    }

    #[test]
    fn training_plan_is_stratified_and_masks_at_least_one_token_a_row() {
        let mut rng = MaskRng::new(7);
        let sched = MaskSchedule {
            eps: 1e-3,
            random_length_prob: 0.0,
        };
        let plan = MaskPlan::sample(8, 16, &sched, &mut rng, Device::Cpu);
        let t: Vec<f32> = Vec::try_from(&plan.t).unwrap();
        let mut strata: Vec<usize> = t
            .iter()
            .map(|&x| ((x as f64 - 1e-3) / (1.0 - 1e-3) * 8.0) as usize)
            .collect();
        strata.sort();
        assert_eq!(strata, (0..8).collect::<Vec<_>>(), "one t per stratum: {t:?}");
        let per_row: Vec<i64> = Vec::try_from(&plan.masked.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
        assert!(per_row.iter().all(|&n| n >= 1), "{per_row:?}");
        assert_eq!(plan.positions.size()[0], per_row.iter().sum::<i64>());
        assert_eq!(plan.len, 16);
    }

    #[test]
    fn random_length_cut_happens_when_asked() {
        let mut rng = MaskRng::new(3);
        let sched = MaskSchedule {
            eps: 1e-3,
            random_length_prob: 1.0,
        };
        let lens: Vec<i64> = (0..20)
            .map(|_| MaskPlan::sample(2, 16, &sched, &mut rng, Device::Cpu).len)
            .collect();
        assert!(lens.iter().all(|&l| (1..=16).contains(&l)));
        assert!(lens.iter().any(|&l| l < 16));
        let plan = MaskPlan::sample(2, 16, &sched, &mut rng, Device::Cpu);
        assert_eq!(plan.masked.size(), vec![2, plan.len]);
    }

    #[test]
    fn validation_loss_is_deterministic_for_a_seed() {
        tch::manual_seed(0);
        let m = Transformer::new(&micro(false), Device::Cpu).unwrap();
        let x = Tensor::randint(39, [4, 20], (Kind::Int64, Device::Cpu));
        let loss = |seed| {
            let plan = MaskPlan::validation(4, 20, 1e-3, seed, Device::Cpu);
            tch::no_grad(|| diffusion_loss(&m, &x, 39, &plan).double_value(&[]))
        };
        assert_eq!(loss(11), loss(11));
        assert_ne!(loss(11), loss(12));
    }

    #[test]
    fn diffusion_loss_equals_full_head_cross_entropy_over_masked_positions() {
        tch::manual_seed(4);
        let m = Transformer::new(&micro(false), Device::Cpu).unwrap();
        let x = Tensor::randint(39, [3, 12], (Kind::Int64, Device::Cpu));
        let plan = MaskPlan::sample(3, 12, &MaskSchedule::default(), &mut MaskRng::new(9), Device::Cpu);
        let (ours, naive) = tch::no_grad(|| {
            let logits = m.forward(&x.masked_fill(&plan.masked, 39));
            let nll = logits.view([-1, 40]).cross_entropy_loss(
                &x.reshape([-1]),
                None::<Tensor>,
                Reduction::None,
                -100,
                0.0,
            );
            let w = plan.masked.to_kind(Kind::Float) / plan.t.unsqueeze(1);
            let naive = (nll.view([3, 12]) * w).sum(Kind::Float) / 36.0;
            (diffusion_loss(&m, &x, 39, &plan), naive)
        });
        assert!(ours.allclose(&naive, 1e-5, 1e-6, false), "{ours} vs {naive}");
    }

    /// Trains on four random sequences, each repeated eight times: the repeats keep the 1/t-weighted
    /// diffusion loss's variance low enough for a short test, as a real batch size would.
    fn overfit(causal: bool) -> (f64, f64) {
        tch::manual_seed(5);
        let m = Transformer::new(&micro(causal), Device::Cpu).unwrap();
        let mut opt = tch::nn::AdamW::default().build(m.var_store(), 3e-3).unwrap();
        let x = Tensor::randint(39, [4, 16], (Kind::Int64, Device::Cpu)).repeat([8, 1]);
        let mut rng = MaskRng::new(1);
        let sched = MaskSchedule {
            eps: 1e-3,
            random_length_prob: 0.0,
        };
        let loss_of = |m: &Transformer, plan: &MaskPlan| {
            if causal {
                ar_loss(m, &x)
            } else {
                diffusion_loss(m, &x, 39, plan)
            }
        };
        let validation = MaskPlan::validation(32, 16, 1e-3, 0, Device::Cpu);
        let before = tch::no_grad(|| loss_of(&m, &validation).double_value(&[]));
        // Diffusion learns more slowly than AR (each step sees only the masked tokens' targets, and
        // high-t rows carry little context), so it gets more steps; 300 take it to about a quarter.
        for _ in 0..if causal { 100 } else { 300 } {
            let plan = MaskPlan::sample(32, 16, &sched, &mut rng, Device::Cpu);
            opt.backward_step(&loss_of(&m, &plan));
        }
        (
            before,
            tch::no_grad(|| loss_of(&m, &validation).double_value(&[])),
        )
    }

    #[test]
    fn diffusion_loss_falls_when_overfitting_a_tiny_batch() {
        let (before, after) = overfit(false);
        assert!(after < before / 2.0, "diffusion loss {before} -> {after}");
    }

    #[test]
    fn ar_loss_falls_when_overfitting_a_tiny_batch() {
        let (before, after) = overfit(true);
        assert!(after < 0.05 * before, "ar loss {before} -> {after}");
    }
}
