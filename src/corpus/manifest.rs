//! The corpus manifest: every document's metadata (source, hash, size, tokens, split, shard) and every
//! sealed file's hash. Sealed with role `manifest`, since source paths and hashes reveal the corpus.
//! The public summary, [`CorpusStats`], holds counts only and is what the database and console show.

use serde::{Deserialize, Serialize};

pub const MANIFEST_FORMAT: &str = "lethe-corpus/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub corpus_id: String,
    pub name: String,
    pub created_at: i64,
    pub data_key_id: String,
    pub vocab: usize,
    pub holdout_fraction: f64,
    pub documents: Vec<DocMeta>,
    pub files: Vec<FileMeta>,
    pub stats: CorpusStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocMeta {
    /// Path the document came from (`file:LINE` for JSONL, `-` for stdin).
    pub source: String,
    /// SHA-256 of the document text as read (before any canary was planted), hex.
    pub sha256: String,
    pub bytes: u64,
    pub tokens: u32,
    pub holdout: bool,
    pub shard: u32,
    /// Index of the first document with the same text, when this one is an exact duplicate.
    pub duplicate_of: Option<u32>,
    /// How many documents share this text (1 for a unique one).
    pub copies: u32,
    /// Canary ids planted in this document.
    pub canaries: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMeta {
    /// File name in the corpus directory.
    pub file: String,
    /// Role bound into the sealed stream.
    pub role: String,
    /// SHA-256 of the sealed bytes, hex.
    pub sha256: String,
    pub bytes: u64,
}

/// Counts only, never corpus text: safe for the database, the console and logs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CorpusStats {
    pub documents: u64,
    pub tokens: u64,
    pub input_bytes: u64,
    pub input_files: u64,
    pub skipped_files: u64,
    /// Documents whose text equals an earlier document's.
    pub duplicates: u64,
    /// Distinct texts that occur more than once.
    pub duplicate_groups: u64,
    /// Duplicates dropped because `--dedup` was given.
    pub dedup_removed: u64,
    pub holdout_documents: u64,
    pub holdout_tokens: u64,
    pub train_documents: u64,
    pub train_tokens: u64,
    pub canaries: u64,
    pub canary_repeats: Vec<u32>,
    pub shards: u64,
    pub sealed_bytes: u64,
    pub vocab: u64,
}
