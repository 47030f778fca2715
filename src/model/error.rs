//! Why the model refused a request: a bad configuration, or sampling and scoring inputs it cannot serve.

use super::config::ConfigError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("row {row}: {len} tokens do not fit the model's context of {context}")]
    TooLong { row: usize, len: i64, context: i64 },
    #[error("row {row}: token id {id} is outside the vocabulary (0..{vocab})")]
    TokenOutOfRange { row: usize, id: i64, vocab: i64 },
    #[error("row {row} contains the mask token {mask_id} as text (to fill masked positions, use infill)")]
    MaskInText { row: usize, mask_id: i64 },
    #[error("row {row} is empty; {why}")]
    EmptyRow { row: usize, why: &'static str },
    #[error("the mask token {mask_id} is outside the vocabulary (0..{vocab})")]
    MaskIdOutOfRange { mask_id: i64, vocab: i64 },
    #[error("generation length {gen_length} is not a multiple of the block length {block_length}")]
    BlockLength { gen_length: i64, block_length: i64 },
    #[error("{steps} steps cannot be split evenly over {blocks} blocks of the generation")]
    StepsPerBlock { steps: i64, blocks: i64 },
    #[error("{name} = {value}: {why}")]
    BadOption {
        name: &'static str,
        value: f64,
        why: &'static str,
    },
    #[error("the checkpoint has no tensor '{name}', which this model's config needs")]
    MissingTensor { name: String },
    #[error("the checkpoint's tensor '{name}' has shape {found:?}; this model's config needs {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("the checkpoint's tensor '{name}' holds {kind}, not floating-point weights")]
    TensorKind { name: String, kind: String },
    #[error("the checkpoint has a tensor '{name}' that this model's config does not have")]
    UnexpectedTensor { name: String },
    #[error("{operation} needs a {needs} model (config.causal = {causal})")]
    WrongObjective {
        operation: &'static str,
        needs: &'static str,
        causal: bool,
    },
}
