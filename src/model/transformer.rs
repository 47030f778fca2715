//! The transformer backbone shared by the diffusion model and the autoregressive baseline.
//!
//! Token embedding, `layers` pre-norm blocks (RMSNorm, multi-head attention with RoPE and QK-norm through
//! `scaled_dot_product_attention`, SwiGLU MLP), a final RMSNorm and an untied output head; no biases. The
//! only difference between the two objectives is `config.causal`, which makes attention causal.
//!
//! Variable names are the checkpoint's tensor names, the same as `bench/reference.py`'s PyTorch module
//! `state_dict()` (so a released safetensors file loads there with `load_state_dict`):
//!
//! ```text
//! tok_emb.weight                                  [vocab, width]
//! blocks.{i}.attn_norm.weight                     [width]
//! blocks.{i}.attn.{wq,wk,wv,wo}.weight            [width, width]
//! blocks.{i}.attn.{q_norm,k_norm}.weight          [head_dim]
//! blocks.{i}.mlp_norm.weight                      [width]
//! blocks.{i}.mlp.{w_gate,w_up}.weight             [mlp, width]
//! blocks.{i}.mlp.w_down.weight                    [width, mlp]
//! norm.weight                                     [width]
//! head.weight                                     [vocab, width]
//! ```
//!
//! Matrices are created in variable group [`DECAY_GROUP`] and norm gains in [`NO_DECAY_GROUP`], so the
//! trainer can give AdamW weight decay on matrices only (`Optimizer::set_weight_decay_group`).

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use super::config::{ConfigError, ModelConfig};
use super::error::ModelError;
use super::precision::cuda_autocast_kind;

/// Optimizer group of the weight matrices and embeddings (weight decay applies).
pub const DECAY_GROUP: usize = 0;
/// Optimizer group of the RMSNorm gains (no weight decay: decaying a gain towards zero only shrinks
/// the signal the next layer sees).
pub const NO_DECAY_GROUP: usize = 1;

/// Standard deviation of the initial weights, GPT-2's. Residual output projections (`wo`, `w_down`) get
/// it divided by √(2·layers) so the residual stream's variance does not grow with depth.
const INIT_STD: f64 = 0.02;

/// Root-mean-square normalisation with a learned gain and no bias.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    dim: i64,
    eps: f64,
    /// Whether only matrix multiplies read the output (the pre-attention, pre-MLP and final norms).
    feeds_matmul: bool,
}

impl RmsNorm {
    pub fn new(vs: nn::Path, dim: i64, eps: f64) -> RmsNorm {
        let weight = vs.set_group(NO_DECAY_GROUP).ones("weight", &[dim]);
        RmsNorm {
            weight,
            dim,
            eps,
            feeds_matmul: false,
        }
    }

    /// A norm whose output only matrix multiplies read. Under CUDA autocast it hands them its output
    /// already in the autocast dtype: the residual stream is float32, and autocast would otherwise cast
    /// the same normed tensor once per projection reading it (q, k and v; gate and up). The forward values
    /// are the same bits; the projections' gradients are summed in bf16 before the one cast back.
    pub fn before_matmul(vs: nn::Path, dim: i64, eps: f64) -> RmsNorm {
        RmsNorm {
            feeds_matmul: true,
            ..RmsNorm::new(vs, dim, eps)
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        // Under bf16 autocast the input arrives in bf16 while the gain is an f32 master weight; libtorch's
        // fused kernel needs both in one dtype and otherwise falls back to the slow composite path.
        let y = if x.kind() != self.weight.kind() {
            x.rms_norm([self.dim], Some(&self.weight.to_kind(x.kind())), self.eps)
        } else {
            x.rms_norm([self.dim], Some(&self.weight), self.eps)
        };
        if self.feeds_matmul && y.kind() == Kind::Float && y.device().is_cuda() {
            if let Some(kind) = cuda_autocast_kind() {
                return y.to_kind(kind);
            }
        }
        y
    }
}

/// Rotary position embedding tables (rotate-half layout, as in GPT-NeoX and Llama in HF transformers).
#[derive(Debug)]
pub struct Rope {
    /// `[context, head_dim / 2]`, float32.
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    pub fn new(config: &ModelConfig, device: Device) -> Rope {
        let hd = config.head_dim();
        // Angles in float64, then float32, the same as the reference, so the tables agree to the last bit
        // at long positions where float32 angle arithmetic would drift.
        let opts = (Kind::Double, device);
        let inv_freq = (Tensor::arange_start_step(0, hd, 2, opts) / hd as f64)
            .multiply_scalar(-config.rope_theta.ln())
            .exp();
        let pos = Tensor::arange(config.context, opts);
        let angles = pos.outer(&inv_freq);
        Rope {
            cos: angles.cos().to_kind(Kind::Float),
            sin: angles.sin().to_kind(Kind::Float),
        }
    }

    /// Rotates `x` of shape `[batch, time, heads, head_dim]`; position `p` is row `p` of the window.
    ///
    /// It works on the projections' own layout, before heads are moved to the front for attention: on a
    /// transposed view the halves are strided and every multiply takes libtorch's slow strided kernel
    /// (an H200 spent 7% more time on the attention block that way; `bench/attention_variants.py`).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let (t, hd) = (x.size()[1], x.size()[3]);
        let half = hd / 2;
        // Cast the tables to the activations' dtype (bf16 under autocast): mixing f32 tables with bf16
        // activations would silently promote q and k to f32. `[time, 1, half]` broadcasts over heads.
        let cos = self.cos.narrow(0, 0, t).unsqueeze(1).to_kind(x.kind());
        let sin = self.sin.narrow(0, 0, t).unsqueeze(1).to_kind(x.kind());
        let x1 = x.narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        Tensor::cat(&[&x1 * &cos - &x2 * &sin, &x2 * &cos + &x1 * &sin], 3)
    }
}

fn linear(vs: nn::Path, input: i64, output: i64, std: f64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        },
        bs_init: None,
        bias: false,
    };
    nn::linear(vs.set_group(DECAY_GROUP), input, output, cfg)
}

/// Multi-head self-attention with QK-norm and RoPE.
#[derive(Debug)]
pub struct Attention {
    wq: nn::Linear,
    wk: nn::Linear,
    wv: nn::Linear,
    wo: nn::Linear,
    /// RMSNorm over each head's channels of q and k (QK-norm, as in OLMo 2 and Qwen 3): bounds the
    /// attention logits, which keeps long runs at high learning rates stable.
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    heads: i64,
    head_dim: i64,
    causal: bool,
}

impl Attention {
    pub fn new(vs: nn::Path, c: &ModelConfig) -> Attention {
        let out_std = INIT_STD / (2.0 * c.layers as f64).sqrt();
        Attention {
            wq: linear(&vs / "wq", c.width, c.width, INIT_STD),
            wk: linear(&vs / "wk", c.width, c.width, INIT_STD),
            wv: linear(&vs / "wv", c.width, c.width, INIT_STD),
            wo: linear(&vs / "wo", c.width, c.width, out_std),
            q_norm: RmsNorm::new(&vs / "q_norm", c.head_dim(), c.norm_eps),
            k_norm: RmsNorm::new(&vs / "k_norm", c.head_dim(), c.norm_eps),
            heads: c.heads,
            head_dim: c.head_dim(),
            causal: c.causal,
        }
    }

    /// `x`: `[batch, time, width]`. `attn_mask`, when given, is a boolean `[batch, 1, time, time]` (true:
    /// may attend) that already includes causality; it is only used to hide left padding when a batch
    /// of prompts of different lengths is sampled.
    pub fn forward(&self, x: &Tensor, rope: &Rope, attn_mask: Option<&Tensor>) -> Tensor {
        let (b, t, d) = x.size3().expect("attention input is [batch, time, width]");
        let split = |y: Tensor| y.view([b, t, self.heads, self.head_dim]);
        let q = rope
            .apply(&self.q_norm.forward(&split(self.wq.forward(x))))
            .transpose(1, 2);
        let k = rope
            .apply(&self.k_norm.forward(&split(self.wk.forward(x))))
            .transpose(1, 2);
        let v = split(self.wv.forward(x)).transpose(1, 2);
        let is_causal = self.causal && attn_mask.is_none();
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, attn_mask, 0.0, is_causal, None, false);
        self.wo.forward(&y.transpose(1, 2).reshape([b, t, d]))
    }
}

/// SwiGLU feed-forward: `w_down(silu(w_gate x) * w_up x)`.
#[derive(Debug)]
pub struct Mlp {
    w_gate: nn::Linear,
    w_up: nn::Linear,
    w_down: nn::Linear,
}

impl Mlp {
    pub fn new(vs: nn::Path, c: &ModelConfig) -> Mlp {
        let out_std = INIT_STD / (2.0 * c.layers as f64).sqrt();
        Mlp {
            w_gate: linear(&vs / "w_gate", c.width, c.mlp, INIT_STD),
            w_up: linear(&vs / "w_up", c.width, c.mlp, INIT_STD),
            w_down: linear(&vs / "w_down", c.mlp, c.width, out_std),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.w_down
            .forward(&(self.w_gate.forward(x).silu() * self.w_up.forward(x)))
    }
}

/// One pre-norm residual block.
#[derive(Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    pub fn new(vs: nn::Path, c: &ModelConfig) -> Block {
        Block {
            attn_norm: RmsNorm::before_matmul(&vs / "attn_norm", c.width, c.norm_eps),
            attn: Attention::new(&vs / "attn", c),
            mlp_norm: RmsNorm::before_matmul(&vs / "mlp_norm", c.width, c.norm_eps),
            mlp: Mlp::new(&vs / "mlp", c),
        }
    }

    pub fn forward(&self, x: &Tensor, rope: &Rope, attn_mask: Option<&Tensor>) -> Tensor {
        let x = x + self.attn.forward(&self.attn_norm.forward(x), rope, attn_mask);
        &x + self.mlp.forward(&self.mlp_norm.forward(&x))
    }
}

/// The whole model. It owns its variables (a `VarStore` on one device); the trainer builds its optimizer
/// from [`Transformer::var_store`] and saves checkpoints from it.
pub struct Transformer {
    config: ModelConfig,
    vs: nn::VarStore,
    tok_emb: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: nn::Linear,
    rope: Rope,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Transformer {
    /// Builds a randomly initialised model on `device` (seed libtorch with `tch::manual_seed` first for
    /// reproducible weights). The config is validated again here, since it may come from a checkpoint.
    pub fn new(config: &ModelConfig, device: Device) -> Result<Transformer, ConfigError> {
        config.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let tok_emb = (&root / "tok_emb").set_group(DECAY_GROUP).randn(
            "weight",
            &[config.vocab, config.width],
            0.0,
            INIT_STD,
        );
        let blocks = (0..config.layers)
            .map(|i| Block::new(&root / "blocks" / i, config))
            .collect();
        let norm = RmsNorm::before_matmul(&root / "norm", config.width, config.norm_eps);
        let head = linear(&root / "head", config.width, config.vocab, INIT_STD);
        let rope = Rope::new(config, device);
        Ok(Transformer {
            config: config.clone(),
            vs,
            tok_emb,
            blocks,
            norm,
            head,
            rope,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Mutable access, for `VarStore::load` / `copy` when restoring a checkpoint.
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Number of parameters actually held, for checking [`ModelConfig::param_count`].
    pub fn num_parameters(&self) -> i64 {
        self.vs.variables().values().map(|t| t.numel() as i64).sum()
    }

    /// Every variable under its checkpoint name, sorted by name so that a checkpoint's bytes (and their
    /// hash) do not depend on hash-map order. The tensors share storage with the model.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut all: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Copies weights (a checkpoint's tensors, by name) into this model. Every variable must be there with
    /// its exact shape and nothing else may be: a checkpoint of another shape is refused, not half loaded.
    /// Floating-point kinds are converted (a bf16 release loads into f32 weights).
    pub fn load_named_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ModelError> {
        let vars = self.vs.variables();
        let given: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        if let Some((name, _)) = tensors.iter().find(|(n, _)| !vars.contains_key(n)) {
            return Err(ModelError::UnexpectedTensor { name: name.clone() });
        }
        for (name, var) in &vars {
            let src = given
                .get(name.as_str())
                .ok_or_else(|| ModelError::MissingTensor { name: name.clone() })?;
            if src.size() != var.size() {
                return Err(ModelError::TensorShape {
                    name: name.clone(),
                    expected: var.size(),
                    found: src.size(),
                });
            }
            if !src.is_floating_point() {
                return Err(ModelError::TensorKind {
                    name: name.clone(),
                    kind: format!("{:?}", src.kind()),
                });
            }
        }
        tch::no_grad(|| {
            for (name, mut var) in vars {
                var.copy_(given[name.as_str()]);
            }
        });
        Ok(())
    }

    /// Logits `[batch, time, vocab]` for token ids `[batch, time]` (int64, on the model's device).
    pub fn forward(&self, tokens: &Tensor) -> Tensor {
        self.head(&self.hidden(tokens, None))
    }

    /// The final-normed hidden states `[batch, time, width]`. Split from [`Transformer::head`] so the
    /// diffusion loss can run the (vocab-wide, expensive) head on masked positions only.
    pub fn hidden(&self, tokens: &Tensor, attn_mask: Option<&Tensor>) -> Tensor {
        let mut x = Tensor::embedding(&self.tok_emb, tokens, -1, false, false);
        for block in &self.blocks {
            x = block.forward(&x, &self.rope, attn_mask);
        }
        self.norm.forward(&x)
    }

    /// The output head: hidden states `[..., width]` to logits `[..., vocab]`.
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        self.head.forward(hidden)
    }
}

/// A boolean attention mask `[batch, 1, time, time]` that hides left padding: `real` is `[batch, time]`,
/// true on real tokens. Every query may always see itself, so a padding query has one key to attend to:
/// otherwise its softmax would be over nothing, give NaN, and NaN times a zero attention weight is
/// still NaN in the next layer's values.
pub fn padding_mask(real: &Tensor, causal: bool) -> Tensor {
    let (b, t) = real.size2().expect("real is [batch, time]");
    let eye = Tensor::eye(t, (Kind::Bool, real.device()));
    let mut mask = real.view([b, 1, 1, t]).logical_or(&eye);
    if causal {
        mask = mask.logical_and(&Tensor::ones([t, t], (Kind::Bool, real.device())).tril(0));
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ModelOverrides;

    pub(crate) fn micro(causal: bool) -> ModelConfig {
        let o = ModelOverrides {
            layers: Some(2),
            width: Some(32),
            heads: Some(4),
            mlp: Some(64),
            context: Some(24),
            ..Default::default()
        };
        ModelConfig::tiny(50)
            .unwrap()
            .with_overrides(&o)
            .unwrap()
            .with_causal(causal)
    }

    #[test]
    fn logits_have_shape_batch_time_vocab() {
        tch::manual_seed(0);
        let m = Transformer::new(&micro(false), Device::Cpu).unwrap();
        let x = Tensor::randint(50, [3, 10], (Kind::Int64, Device::Cpu));
        assert_eq!(m.forward(&x).size(), vec![3, 10, 50]);
        assert_eq!(m.hidden(&x, None).size(), vec![3, 10, 32]);
    }

    #[test]
    fn param_count_matches_the_variables_built_for_every_preset_shape() {
        for name in ["tiny", "small"] {
            let c = ModelConfig::preset(name, 300).unwrap();
            let m = Transformer::new(&c, Device::Cpu).unwrap();
            assert_eq!(m.num_parameters(), c.param_count().total, "{name}");
        }
        let c = micro(true);
        assert_eq!(
            Transformer::new(&c, Device::Cpu).unwrap().num_parameters(),
            c.param_count().total
        );
    }

    #[test]
    fn variables_carry_checkpoint_names() {
        let m = Transformer::new(&micro(false), Device::Cpu).unwrap();
        let vars = m.var_store().variables();
        for name in [
            "tok_emb.weight",
            "blocks.0.attn_norm.weight",
            "blocks.1.attn.wq.weight",
            "blocks.1.attn.k_norm.weight",
            "blocks.0.mlp.w_down.weight",
            "norm.weight",
            "head.weight",
        ] {
            assert!(vars.contains_key(name), "{name} missing from {:?}", vars.keys());
        }
        assert_eq!(vars["blocks.0.mlp.w_gate.weight"].size(), vec![64, 32]);
        assert_eq!(vars["blocks.0.attn.q_norm.weight"].size(), vec![8]);
        assert_eq!(vars.len() as i64, 2 * 11 + 3);
    }

    #[test]
    fn named_tensors_round_trip_into_another_model() {
        tch::manual_seed(6);
        let a = Transformer::new(&micro(false), Device::Cpu).unwrap();
        let mut b = Transformer::new(&micro(false), Device::Cpu).unwrap();
        let named = a.named_tensors();
        assert_eq!(
            named.first().map(|(n, _)| n.as_str()),
            Some("blocks.0.attn.k_norm.weight")
        );
        b.load_named_tensors(&named).unwrap();
        let x = Tensor::randint(50, [2, 7], (Kind::Int64, Device::Cpu));
        let (ya, yb) = tch::no_grad(|| (a.forward(&x), b.forward(&x)));
        assert!(ya.equal(&yb));
    }

    #[test]
    fn a_checkpoint_of_another_shape_is_refused_by_tensor_name() {
        let mut m = Transformer::new(&micro(false), Device::Cpu).unwrap();
        let mut named = m.named_tensors();
        named.retain(|(n, _)| n != "norm.weight");
        assert_eq!(
            m.load_named_tensors(&named),
            Err(ModelError::MissingTensor {
                name: "norm.weight".into()
            })
        );
        let mut named = m.named_tensors();
        named.push((
            "blocks.2.attn.wq.weight".into(),
            Tensor::zeros([32, 32], (Kind::Float, Device::Cpu)),
        ));
        assert_eq!(
            m.load_named_tensors(&named),
            Err(ModelError::UnexpectedTensor {
                name: "blocks.2.attn.wq.weight".into()
            })
        );
        let mut named = m.named_tensors();
        for (n, t) in &mut named {
            if n == "head.weight" {
                *t = Tensor::zeros([60, 32], (Kind::Float, Device::Cpu));
            }
        }
        assert_eq!(
            m.load_named_tensors(&named),
            Err(ModelError::TensorShape {
                name: "head.weight".into(),
                expected: vec![50, 32],
                found: vec![60, 32]
            })
        );
    }

    /// Changes token `j` and reports which output positions moved.
    fn positions_changed_by(m: &Transformer, j: i64) -> Vec<bool> {
        let x = Tensor::randint(50, [1, 12], (Kind::Int64, Device::Cpu));
        let y = x.copy();
        let _ = y.narrow(1, j, 1).fill_((x.int64_value(&[0, j]) + 1) % 50);
        let (a, b) = tch::no_grad(|| (m.forward(&x), m.forward(&y)));
        let diff = (a - b).abs().amax([2], false).squeeze_dim(0);
        (0..12).map(|i| diff.double_value(&[i]) > 1e-6).collect()
    }

    #[test]
    fn causal_model_output_does_not_depend_on_later_tokens() {
        tch::manual_seed(1);
        let m = Transformer::new(&micro(true), Device::Cpu).unwrap();
        let moved = positions_changed_by(&m, 7);
        assert_eq!(moved, (0..12).map(|i| i >= 7).collect::<Vec<_>>());
    }

    #[test]
    fn bidirectional_model_output_depends_on_later_tokens() {
        tch::manual_seed(1);
        let m = Transformer::new(&micro(false), Device::Cpu).unwrap();
        assert_eq!(positions_changed_by(&m, 7), vec![true; 12]);
    }

    #[test]
    fn left_padding_under_the_padding_mask_does_not_change_real_positions() {
        tch::manual_seed(2);
        for causal in [false, true] {
            let m = Transformer::new(&micro(causal), Device::Cpu).unwrap();
            let x = Tensor::randint(50, [1, 9], (Kind::Int64, Device::Cpu));
            let padded = Tensor::cat(&[Tensor::zeros([1, 3], (Kind::Int64, Device::Cpu)), x.copy()], 1);
            let real = Tensor::cat(
                &[
                    Tensor::zeros([1, 3], (Kind::Bool, Device::Cpu)),
                    Tensor::ones([1, 9], (Kind::Bool, Device::Cpu)),
                ],
                1,
            );
            let mask = padding_mask(&real, causal);
            let (plain, masked) = tch::no_grad(|| {
                (
                    m.head(&m.hidden(&x, None)),
                    m.head(&m.hidden(&padded, Some(&mask))),
                )
            });
            let masked = masked.narrow(1, 3, 9);
            assert!(masked.isfinite().all().int64_value(&[]) == 1);
            assert!(plain.allclose(&masked, 1e-5, 1e-5, false), "causal={causal}");
        }
    }
}
