//! The corpus module owns the customer's data from the moment it is read: input readers, tokenizer
//! training, sealed shards of token ids with their manifest, the holdout split, canaries, the synthetic
//! demo corpus, and the streaming reader the trainer and auditors use. Plaintext exists only in memory.

pub mod canary;
pub mod ingest;
pub mod manifest;
pub mod reader;
pub mod sealed;
pub mod shard;
pub mod synth;
pub mod tokenizer;

pub use ingest::{IngestOptions, IngestReport};
pub use manifest::{CorpusStats, DocMeta, Manifest};
pub use sealed::{Doc, SealedCorpus, Split};
pub use tokenizer::CorpusTokenizer;

use crate::vault::stream::StreamError;

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: {reason}")]
    Input { path: String, reason: String },
    #[error("{path}: invalid UTF-8 at byte offset {offset} (use --lossy to replace invalid bytes)")]
    InvalidUtf8 { path: String, offset: u64 },
    #[error("{path}: looks like a binary file (NUL byte at offset {offset})")]
    Binary { path: String, offset: u64 },
    #[error("{source_name}: document is larger than the {limit}-byte limit (--max-doc-bytes)")]
    DocumentTooLarge { source_name: String, limit: usize },
    #[error("{path} line {line}: {reason}")]
    Jsonl { path: String, line: u64, reason: String },
    #[error("no documents found in the inputs ({skipped} file(s) skipped as not text or code)")]
    Empty { skipped: usize },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{file}: {source}")]
    Sealed { file: String, source: StreamError },
    #[error("{file}: {reason}")]
    Damaged { file: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("invalid option: {0}")]
    Option(String),
}

impl CorpusError {
    pub(crate) fn write(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CorpusError + '_ {
        move |source| CorpusError::Write {
            path: path.display().to_string(),
            source,
        }
    }
}
