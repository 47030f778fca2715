//! The model: everything that runs on libtorch, and nothing that touches files or the database.
//!
//! - [`config`]: model shapes, presets, overrides and their validation, parameter counts.
//! - [`transformer`]: the backbone shared by the diffusion model and the AR baseline.
//! - [`objective`]: the masked-diffusion and next-token losses, and the mask plans behind the first.
//! - [`sampler`]: batched LLaDA-style generation and infilling, and AR sampling.
//! - [`score`]: per-token log-likelihoods (AR) and ELBO estimates (diffusion) for audits.
//! - [`precision`]: bf16 autocast on CUDA.
//! - [`runtime`]: which libtorch and devices this process runs on.
//!
//! `bench/reference.py` is a PyTorch twin of this module (same names, same math); the parity tests in
//! `parity.rs` hold the two together.

pub mod config;
pub mod error;
pub mod objective;
pub mod precision;
pub mod runtime;
pub mod sampler;
pub mod score;
pub mod transformer;

#[cfg(test)]
mod parity;

pub use config::{
    presets, ConfigError, ModelConfig, ModelOverrides, ParamCount, PresetSummary, MAX_CONTEXT, PRESETS,
};
pub use error::ModelError;
pub use objective::{ar_loss, diffusion_loss, MaskPlan, MaskRng, MaskSchedule};
pub use precision::autocast_bf16;
pub use sampler::{Remasking, SampleOptions};
pub use score::ElboScore;
pub use transformer::{padding_mask, Transformer, DECAY_GROUP, NO_DECAY_GROUP};
