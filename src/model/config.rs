//! The shape of a model: presets, command-line overrides, validation, and the parameter count.
//!
//! Configuration comes in two steps, as in candle and nanoGPT. [`ModelOverrides`] is the serde form a user
//! writes (every field optional); [`ModelConfig::preset`] followed by [`ModelConfig::with_overrides`]
//! resolves it into a [`ModelConfig`] with no `Option`s, which is what the transformer is built from and
//! what a checkpoint stores. Every resolved config has passed [`ModelConfig::validate`], so an
//! impossible combination is refused before any tensor is allocated.

use serde::{Deserialize, Serialize};

/// Longest context a config may ask for. The RoPE tables and, on the CPU path, the attention scores grow
/// with it; nothing in Lethe's corpora or audits needs more, and a typo (`--context 1000000`) should fail
/// at once rather than after allocating gigabytes.
pub const MAX_CONTEXT: i64 = 16_384;

/// The names [`ModelConfig::preset`] knows, smallest first.
pub const PRESETS: [&str; 4] = ["tiny", "small", "base", "1b"];

/// Why a model configuration was refused, in the words of the flag the user typed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown model preset '{name}' (known presets: tiny, small, base, 1b)")]
    UnknownPreset { name: String },
    #[error("--{field} must be at least 1, got {value}")]
    NotPositive { field: &'static str, value: i64 },
    #[error(
        "--heads {heads} does not divide --width {width}: each head must get the same number of channels"
    )]
    HeadsDoNotDivideWidth { heads: i64, width: i64 },
    #[error(
        "--width {width} over --heads {heads} gives heads of {head_dim} channels; rotary position \
         embeddings rotate channel pairs, so the head size must be even"
    )]
    OddHeadDim { width: i64, heads: i64, head_dim: i64 },
    #[error("--context {context} is longer than the largest supported context ({max})")]
    ContextTooLong { context: i64, max: i64 },
    #[error("{field} must be a positive finite number, got {value}")]
    NotPositiveFloat { field: &'static str, value: f64 },
}

/// A resolved, validated model shape. Saved whole in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Vocabulary size, mask token included; comes from the corpus tokenizer, never from a preset.
    pub vocab: i64,
    pub layers: i64,
    /// Width of the residual stream.
    pub width: i64,
    pub heads: i64,
    /// Hidden width of the SwiGLU MLP (each of its gate and up projections).
    pub mlp: i64,
    /// Longest sequence the model is trained and sampled on.
    pub context: i64,
    /// True for the autoregressive baseline (causal attention), false for the diffusion model
    /// (bidirectional). Nothing else differs between the two.
    pub causal: bool,
    /// RoPE base frequency: 10 000 as in the original RoPE paper and Llama 1/2; our contexts are short.
    pub rope_theta: f64,
    /// Epsilon inside every RMSNorm.
    pub norm_eps: f64,
}

/// User overrides of a preset (`--layers --width --heads --mlp --context`), the serde form of a config.
/// A field left `None` keeps the preset's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOverrides {
    pub layers: Option<i64>,
    pub width: Option<i64>,
    pub heads: Option<i64>,
    pub mlp: Option<i64>,
    pub context: Option<i64>,
    pub rope_theta: Option<f64>,
    pub norm_eps: Option<f64>,
}

/// Parameter counts of a config, computed from its shape alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamCount {
    /// Every parameter, as a checkpoint holds them.
    pub total: i64,
    /// The token embedding table (`tok_emb`), vocab × width.
    pub embedding: i64,
    /// The output head (`head`), vocab × width; untied from the embedding.
    pub head: i64,
    /// Everything but `tok_emb` and `head`: the number the preset sizes are chosen by, because it does
    /// not depend on the corpus tokenizer's vocabulary.
    pub non_embedding: i64,
}

/// One row of `lethe model presets`: a preset's shape and its parameter counts for a vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresetSummary {
    pub name: &'static str,
    pub config: ModelConfig,
    pub params: ParamCount,
}

/// Every preset at `vocab`, smallest first.
pub fn presets(vocab: i64) -> Result<Vec<PresetSummary>, ConfigError> {
    PRESETS
        .iter()
        .map(|&name| {
            let config = ModelConfig::preset(name, vocab)?;
            Ok(PresetSummary {
                name,
                params: config.param_count(),
                config,
            })
        })
        .collect()
}

impl ModelConfig {
    /// Builds a preset for a vocabulary. The preset sizes (about 1M, 25M, 125M and 1B) are
    /// **non-embedding** parameter counts, because the vocabulary comes from the corpus;
    /// [`ModelConfig::param_count`] gives the total for a given vocabulary.
    ///
    /// SwiGLU MLP widths are about 8/3 of the width rounded to a multiple of 64 (Llama's rule, which keeps
    /// the MLP's parameters near a 4× GELU MLP's), except `tiny`, whose 4× keeps it near 1M. Head size
    /// is 64 from `small` up (32 for `tiny`), which the fused attention kernels handle best.
    pub fn preset(name: &str, vocab: i64) -> Result<ModelConfig, ConfigError> {
        let (layers, width, heads, mlp, context) = match name {
            "tiny" => (4, 128, 4, 512, 256),
            "small" => (8, 512, 8, 1408, 512),
            "base" => (12, 896, 14, 2560, 1024),
            "1b" => (20, 2048, 32, 5632, 2048),
            _ => {
                return Err(ConfigError::UnknownPreset {
                    name: name.to_string(),
                })
            }
        };
        let config = ModelConfig {
            vocab,
            layers,
            width,
            heads,
            mlp,
            context,
            causal: false,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn tiny(vocab: i64) -> Result<ModelConfig, ConfigError> {
        Self::preset("tiny", vocab)
    }

    pub fn small(vocab: i64) -> Result<ModelConfig, ConfigError> {
        Self::preset("small", vocab)
    }

    pub fn base(vocab: i64) -> Result<ModelConfig, ConfigError> {
        Self::preset("base", vocab)
    }

    pub fn one_b(vocab: i64) -> Result<ModelConfig, ConfigError> {
        Self::preset("1b", vocab)
    }

    /// The same shape with causal attention (the autoregressive baseline) or bidirectional attention
    /// (the diffusion model).
    pub fn with_causal(mut self, causal: bool) -> ModelConfig {
        self.causal = causal;
        self
    }

    /// Applies user overrides and validates the result, so a combination that cannot work (heads that
    /// do not divide the width) is refused here, before any training starts.
    pub fn with_overrides(mut self, o: &ModelOverrides) -> Result<ModelConfig, ConfigError> {
        self.layers = o.layers.unwrap_or(self.layers);
        self.width = o.width.unwrap_or(self.width);
        self.heads = o.heads.unwrap_or(self.heads);
        self.mlp = o.mlp.unwrap_or(self.mlp);
        self.context = o.context.unwrap_or(self.context);
        self.rope_theta = o.rope_theta.unwrap_or(self.rope_theta);
        self.norm_eps = o.norm_eps.unwrap_or(self.norm_eps);
        self.validate()?;
        Ok(self)
    }

    /// Checks that a transformer of this shape can be built. A config read back from a checkpoint goes
    /// through this too, since its bytes could have been written by anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("vocab", self.vocab),
            ("layers", self.layers),
            ("width", self.width),
            ("heads", self.heads),
            ("mlp", self.mlp),
            ("context", self.context),
        ] {
            if value < 1 {
                return Err(ConfigError::NotPositive { field, value });
            }
        }
        if self.width % self.heads != 0 {
            return Err(ConfigError::HeadsDoNotDivideWidth {
                heads: self.heads,
                width: self.width,
            });
        }
        let head_dim = self.width / self.heads;
        if head_dim % 2 != 0 {
            return Err(ConfigError::OddHeadDim {
                width: self.width,
                heads: self.heads,
                head_dim,
            });
        }
        if self.context > MAX_CONTEXT {
            return Err(ConfigError::ContextTooLong {
                context: self.context,
                max: MAX_CONTEXT,
            });
        }
        for (field, value) in [("rope_theta", self.rope_theta), ("norm_eps", self.norm_eps)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ConfigError::NotPositiveFloat { field, value });
            }
        }
        Ok(())
    }

    /// Channels per attention head.
    pub fn head_dim(&self) -> i64 {
        self.width / self.heads
    }

    /// Parameter counts, computed from the shape; a test checks them against a built model.
    pub fn param_count(&self) -> ParamCount {
        let (d, l) = (self.width, self.layers);
        let attention = 4 * d * d + 2 * self.head_dim(); // wq wk wv wo, q_norm k_norm
        let mlp = 3 * d * self.mlp; // w_gate w_up w_down
        let norms = 2 * d; // attn_norm mlp_norm
        let non_embedding = l * (attention + mlp + norms) + d; // + final norm
        let embedding = self.vocab * d;
        let head = self.vocab * d;
        ParamCount {
            total: non_embedding + embedding + head,
            embedding,
            head,
            non_embedding,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_advertised_non_embedding_sizes() {
        let sizes: Vec<(&str, i64)> = PRESETS
            .iter()
            .map(|p| {
                (
                    *p,
                    ModelConfig::preset(p, 8192).unwrap().param_count().non_embedding,
                )
            })
            .collect();
        for ((name, n), (lo, hi)) in
            sizes
                .iter()
                .zip([(0.9e6, 1.2e6), (23e6, 28e6), (115e6, 130e6), (0.95e9, 1.1e9)])
        {
            assert!(
                (*n as f64) >= lo && (*n as f64) <= hi,
                "{name}: {n} not in [{lo}, {hi}]"
            );
        }
    }

    #[test]
    fn preset_table_lists_every_preset_with_its_counts() {
        let table = presets(8192).unwrap();
        assert_eq!(table.iter().map(|p| p.name).collect::<Vec<_>>(), PRESETS.to_vec());
        let json = serde_json::to_value(&table[1]).unwrap();
        assert_eq!(json["config"]["width"], 512);
        assert_eq!(json["params"]["total"], table[1].config.param_count().total);
    }

    #[test]
    fn unknown_preset_is_refused_by_name() {
        assert_eq!(
            ModelConfig::preset("huge", 100),
            Err(ConfigError::UnknownPreset { name: "huge".into() })
        );
    }

    #[test]
    fn heads_that_do_not_divide_the_width_are_refused() {
        let o = ModelOverrides {
            heads: Some(3),
            ..Default::default()
        };
        let err = ModelConfig::tiny(100).unwrap().with_overrides(&o).unwrap_err();
        assert_eq!(err, ConfigError::HeadsDoNotDivideWidth { heads: 3, width: 128 });
        assert!(err.to_string().contains("--heads 3 does not divide --width 128"));
    }

    #[test]
    fn odd_head_size_is_refused_for_rope() {
        let o = ModelOverrides {
            width: Some(96),
            heads: Some(32),
            ..Default::default()
        };
        let err = ModelConfig::tiny(100).unwrap().with_overrides(&o).unwrap_err();
        assert_eq!(
            err,
            ConfigError::OddHeadDim {
                width: 96,
                heads: 32,
                head_dim: 3
            }
        );
    }

    #[test]
    fn zero_and_negative_sizes_are_refused() {
        let o = ModelOverrides {
            layers: Some(0),
            ..Default::default()
        };
        assert_eq!(
            ModelConfig::tiny(100).unwrap().with_overrides(&o),
            Err(ConfigError::NotPositive {
                field: "layers",
                value: 0
            })
        );
        let o = ModelOverrides {
            mlp: Some(-4),
            ..Default::default()
        };
        assert_eq!(
            ModelConfig::tiny(100).unwrap().with_overrides(&o),
            Err(ConfigError::NotPositive {
                field: "mlp",
                value: -4
            })
        );
        assert_eq!(
            ModelConfig::tiny(0),
            Err(ConfigError::NotPositive {
                field: "vocab",
                value: 0
            })
        );
    }

    #[test]
    fn context_beyond_the_maximum_is_refused() {
        let o = ModelOverrides {
            context: Some(MAX_CONTEXT + 1),
            ..Default::default()
        };
        assert_eq!(
            ModelConfig::tiny(100).unwrap().with_overrides(&o),
            Err(ConfigError::ContextTooLong {
                context: MAX_CONTEXT + 1,
                max: MAX_CONTEXT
            })
        );
    }

    #[test]
    fn non_finite_or_zero_floats_are_refused() {
        let o = ModelOverrides {
            norm_eps: Some(0.0),
            ..Default::default()
        };
        assert_eq!(
            ModelConfig::tiny(100).unwrap().with_overrides(&o),
            Err(ConfigError::NotPositiveFloat {
                field: "norm_eps",
                value: 0.0
            })
        );
        let o = ModelOverrides {
            rope_theta: Some(f64::NAN),
            ..Default::default()
        };
        assert!(matches!(
            ModelConfig::tiny(100).unwrap().with_overrides(&o),
            Err(ConfigError::NotPositiveFloat {
                field: "rope_theta",
                ..
            })
        ));
    }

    #[test]
    fn overrides_replace_only_the_fields_given_and_round_trip_through_json() {
        let o: ModelOverrides = serde_json::from_str(r#"{"layers": 2, "context": 64}"#).unwrap();
        let c = ModelConfig::small(1000).unwrap().with_overrides(&o).unwrap();
        assert_eq!((c.layers, c.width, c.heads, c.context), (2, 512, 8, 64));
        let back: ModelConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<ModelOverrides>(r#"{"layer": 2}"#).is_err());
    }
}
