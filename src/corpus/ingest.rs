//! `lethe corpus ingest`: read the inputs once, and leave behind only sealed files.
//!
//! Three passes, none holding the corpus in memory:
//! 1. read every input, hash each document, and seal it into a staging stream (`staging-text`), so
//!    standard input and huge directories need not be read twice and no plaintext reaches the disk;
//! 2. train the tokenizer on the staging stream;
//! 3. read the staging stream again, plant canaries, encode, and seal the token ids into shards.
//!
//! Everything is written into `corpora/.staging-<id>/`, renamed into place, and only then registered in
//! the database. A failure at any point removes the staging directory; a killed ingest leaves one behind
//! (sealed, so no plaintext) that the next ingest sweeps away once its owner process is gone.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use serde::Serialize;

use super::canary::{self, Canary};
use super::manifest::{CorpusStats, DocMeta, FileMeta, Manifest, MANIFEST_FORMAT};
use super::reader::{self, ReadOptions};
use super::sealed::{self, SealedFileWriter};
use super::tokenizer::CorpusTokenizer;
use super::{shard, CorpusError};
use crate::store::DataKeyRow;
use crate::vault::stream::{DataKey, OpenReader, StreamContext, StreamError};
use crate::vault::MasterKeyRing;

pub const STAGING_PREFIX: &str = ".staging-";
const OWNER_FILE: &str = "owner";

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub name: String,
    pub inputs: Vec<PathBuf>,
    pub read: ReadOptions,
    pub vocab: usize,
    /// Share of documents held out (by document hash), 0 ≤ h < 1.
    pub holdout: f64,
    pub canaries: usize,
    pub canary_repeats: Vec<u32>,
    pub dedup: bool,
    /// A new shard starts once the current one holds this many tokens.
    pub shard_tokens: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            name: String::new(),
            inputs: Vec::new(),
            read: ReadOptions::default(),
            vocab: 8192,
            holdout: 0.02,
            canaries: 0,
            canary_repeats: vec![1, 4, 16, 64],
            dedup: false,
            shard_tokens: 4 << 20,
        }
    }
}

/// Seconds spent in each phase, for the ingest benchmark.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub read_and_stage_s: f64,
    pub tokenizer_training_s: f64,
    pub tokenization_s: f64,
    pub sealing_s: f64,
    pub total_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub corpus_id: String,
    pub name: String,
    pub data_key_id: String,
    pub master_key: String,
    pub stats: CorpusStats,
    pub timings: Timings,
}

/// A corpus sealed into its staging directory, not yet in place or registered.
pub struct Built {
    pub staging: PathBuf,
    pub corpus_id: String,
    pub data_key: DataKeyRow,
    pub report: IngestReport,
}

/// Names are what users type: short, no spaces or path separators.
pub fn validate_name(name: &str) -> Result<(), CorpusError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(CorpusError::Option(format!(
            "corpus name {name:?} must be 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

fn validate(opts: &IngestOptions) -> Result<(), CorpusError> {
    validate_name(&opts.name)?;
    if opts.inputs.is_empty() {
        return Err(CorpusError::Option(
            "no inputs given (paths, or - for standard input)".into(),
        ));
    }
    if !(0.0..0.5).contains(&opts.holdout) {
        return Err(CorpusError::Option(format!(
            "--holdout {} must be in [0, 0.5)",
            opts.holdout
        )));
    }
    if opts.canaries > 10_000 {
        return Err(CorpusError::Option("--canaries is limited to 10000".into()));
    }
    if opts.shard_tokens < 1024 {
        return Err(CorpusError::Option("--shard-tokens must be at least 1024".into()));
    }
    Ok(())
}

/// A staging record: `u32 source length, source, u64 text length, text` (all little-endian).
fn write_staged(w: &mut impl Write, source: &str, text: &str) -> std::io::Result<()> {
    w.write_all(&(source.len() as u32).to_le_bytes())?;
    w.write_all(source.as_bytes())?;
    w.write_all(&(text.len() as u64).to_le_bytes())?;
    w.write_all(text.as_bytes())
}

fn read_staged(r: &mut impl Read) -> std::io::Result<Option<String>> {
    let mut len4 = [0u8; 4];
    match r.read_exact(&mut len4) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut source = vec![0u8; u32::from_le_bytes(len4) as usize];
    r.read_exact(&mut source)?;
    let mut len8 = [0u8; 8];
    r.read_exact(&mut len8)?;
    let mut text = vec![0u8; u64::from_le_bytes(len8) as usize];
    r.read_exact(&mut text)?;
    String::from_utf8(text)
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "staged text is not UTF-8"))
}

/// Reads staged documents back in order; the first error is kept in `error` and ends the iteration
/// (the tokenizer trainer takes a plain iterator of strings).
struct StagedTexts {
    reader: OpenReader<BufReader<File>>,
    error: Arc<Mutex<Option<std::io::Error>>>,
}

impl Iterator for StagedTexts {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        match read_staged(&mut self.reader) {
            Ok(t) => t,
            Err(e) => {
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(e);
                }
                None
            }
        }
    }
}

fn open_staged(
    path: &Path,
    corpus_id: &str,
    key: &DataKey,
) -> Result<OpenReader<BufReader<File>>, CorpusError> {
    let f = File::open(path).map_err(CorpusError::write(path))?;
    OpenReader::new(
        BufReader::with_capacity(1 << 20, f),
        key,
        &StreamContext::new(corpus_id, "staging-text"),
    )
    .map_err(|source| CorpusError::Sealed {
        file: path.display().to_string(),
        source,
    })
}

/// Whether a document goes to the holdout split: a pure function of its hash, so exact duplicates share
/// a split (no duplicate straddles train and holdout) and re-ingesting gives the same split.
pub fn is_holdout(sha: &[u8; 32], fraction: f64) -> bool {
    let x = u64::from_be_bytes([sha[0], sha[1], sha[2], sha[3], sha[4], sha[5], sha[6], sha[7]]);
    (x as f64) / (u64::MAX as f64 + 1.0) < fraction
}

/// Builds the sealed corpus in a staging directory under `corpora_dir`.
pub fn build(opts: &IngestOptions, corpora_dir: &Path, ring: &MasterKeyRing) -> Result<Built, CorpusError> {
    validate(opts)?;
    std::fs::create_dir_all(corpora_dir).map_err(CorpusError::write(corpora_dir))?;
    let corpus_id = format!("c-{}", random_hex(8)?);
    let staging = corpora_dir.join(format!("{STAGING_PREFIX}{corpus_id}"));
    std::fs::create_dir(&staging).map_err(CorpusError::write(&staging))?;
    let result = build_in(opts, &staging, &corpus_id, ring);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result.map(|(data_key, report)| Built {
        staging,
        corpus_id,
        data_key,
        report,
    })
}

fn random_hex(n: usize) -> Result<String, CorpusError> {
    crate::vault::random_hex(n).map_err(|e| CorpusError::Option(e.to_string()))
}

fn build_in(
    opts: &IngestOptions,
    dir: &Path,
    corpus_id: &str,
    ring: &MasterKeyRing,
) -> Result<(DataKeyRow, IngestReport), CorpusError> {
    let t0 = Instant::now();
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    std::fs::write(
        dir.join(OWNER_FILE),
        format!("{} {}\n", host.trim(), std::process::id()),
    )
    .map_err(CorpusError::write(dir))?;

    let key = DataKey::generate(&SystemRandom::new()).map_err(|source| CorpusError::Sealed {
        file: "new data key".into(),
        source,
    })?;
    let key_id = format!("dk-{}", random_hex(8)?);
    let purpose = format!("corpus:{corpus_id}/{key_id}");
    let wrapped = ring
        .wrap(key.as_bytes(), &purpose)
        .map_err(|e| CorpusError::Option(format!("cannot wrap the data key: {e}")))?;
    let data_key = DataKeyRow {
        id: key_id.clone(),
        purpose,
        master_key_id: wrapped.master_key_id.clone(),
        master_version: wrapped.master_version,
        wrapped: wrapped.blob.clone(),
    };

    // Pass 1: read, hash, stage.
    let (files, skipped) = reader::expand_inputs(&opts.inputs)?;
    let staged_path = dir.join("staging-text.sealed");
    let mut stage = SealedFileWriter::create(
        dir,
        "staging-text.sealed",
        "staging-text",
        corpus_id,
        &key,
        &key_id,
    )?;
    let mut docs: Vec<DocMeta> = Vec::new();
    let mut hashes: Vec<[u8; 32]> = Vec::new();
    let mut first_of: HashMap<[u8; 32], u32> = HashMap::new();
    let mut stats = CorpusStats {
        input_files: files.len() as u64,
        skipped_files: skipped as u64,
        ..Default::default()
    };
    for file in &files {
        reader::read_file(file, &opts.read, &mut |doc| {
            let sha: [u8; 32] = digest(&SHA256, doc.text.as_bytes())
                .as_ref()
                .try_into()
                .expect("SHA-256 digests are 32 bytes");
            stats.input_bytes += doc.text.len() as u64;
            let duplicate_of = first_of.get(&sha).copied();
            if duplicate_of.is_some() {
                stats.duplicates += 1;
                if opts.dedup {
                    stats.dedup_removed += 1;
                    return Ok(());
                }
            }
            let index = docs.len() as u32;
            first_of.entry(sha).or_insert(index);
            write_staged(&mut stage, &doc.source, &doc.text).map_err(|e| CorpusError::Sealed {
                file: staged_path.display().to_string(),
                source: StreamError::from_io(e),
            })?;
            docs.push(DocMeta {
                source: doc.source,
                sha256: hex::encode(sha),
                bytes: doc.text.len() as u64,
                tokens: 0,
                holdout: is_holdout(&sha, opts.holdout),
                shard: 0,
                duplicate_of,
                copies: 1,
                canaries: Vec::new(),
            });
            hashes.push(sha);
            Ok(())
        })?;
    }
    stage.finish()?;
    if docs.is_empty() {
        return Err(CorpusError::Empty { skipped });
    }
    let mut copies: HashMap<[u8; 32], u32> = HashMap::new();
    for h in &hashes {
        *copies.entry(*h).or_default() += 1;
    }
    stats.duplicate_groups = copies.values().filter(|&&n| n > 1).count() as u64;
    for (d, h) in docs.iter_mut().zip(&hashes) {
        d.copies = copies[h];
    }
    let read_s = t0.elapsed().as_secs_f64();

    // Canaries go into training documents only: a canary in the holdout would measure nothing.
    let train_docs: Vec<u32> = (0..docs.len() as u32)
        .filter(|&i| !docs[i as usize].holdout)
        .collect();
    let canaries: Vec<Canary> = canary::draw(opts.canaries, &opts.canary_repeats, &train_docs)?;
    let mut plant_in: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for c in &canaries {
        for &d in &c.docs {
            plant_in.entry(d).or_default().push(c.text());
            docs[d as usize].canaries.push(c.id);
        }
    }

    // Pass 2: the tokenizer.
    let t1 = Instant::now();
    let error = Arc::new(Mutex::new(None));
    let texts = StagedTexts {
        reader: open_staged(&staged_path, corpus_id, &key)?,
        error: error.clone(),
    };
    let tokenizer = CorpusTokenizer::train(texts, opts.vocab)?;
    if let Some(e) = error.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(CorpusError::Sealed {
            file: staged_path.display().to_string(),
            source: StreamError::from_io(e),
        });
    }
    let tokenizer_s = t1.elapsed().as_secs_f64();

    // Pass 3: plant, encode, seal.
    let mut files_meta: Vec<FileMeta> = Vec::new();
    let mut tokenization_s = 0.0;
    let mut sealing_s = 0.0;
    let mut staged = open_staged(&staged_path, corpus_id, &key)?;
    let mut shard_index = 0u32;
    let mut shard_tokens = 0usize;
    let mut writer = SealedFileWriter::create(
        dir,
        &sealed::shard_file(0),
        &sealed::shard_role(0),
        corpus_id,
        &key,
        &key_id,
    )?;
    let mut pick_rng = SplitMix(u64::from_str_radix(&random_hex(8)?, 16).unwrap_or(0x5EED));
    let mut next_doc = 0u32;
    let batch_bytes = 8 << 20;
    loop {
        // A batch of documents, encoded in parallel.
        let mut batch: Vec<String> = Vec::new();
        let mut size = 0;
        while size < batch_bytes && batch.len() < 4096 {
            let Some(mut text) = read_staged(&mut staged).map_err(|e| CorpusError::Sealed {
                file: staged_path.display().to_string(),
                source: StreamError::from_io(e),
            })?
            else {
                break;
            };
            let index = next_doc + batch.len() as u32;
            if let Some(sentences) = plant_in.get(&index) {
                canary::plant(&mut text, sentences, &mut |n| {
                    (pick_rng.next() % n as u64) as usize
                });
            }
            size += text.len();
            batch.push(text);
        }
        if batch.is_empty() {
            break;
        }
        let t = Instant::now();
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        let encoded = tokenizer.encode_batch(&refs)?;
        tokenization_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for tokens in encoded {
            if shard_tokens >= opts.shard_tokens {
                files_meta.push(writer.finish()?);
                shard_index += 1;
                shard_tokens = 0;
                writer = SealedFileWriter::create(
                    dir,
                    &sealed::shard_file(shard_index),
                    &sealed::shard_role(shard_index),
                    corpus_id,
                    &key,
                    &key_id,
                )?;
            }
            let meta = &mut docs[next_doc as usize];
            meta.tokens = tokens.len() as u32;
            meta.shard = shard_index;
            shard::write_doc(&mut writer, next_doc, &tokens).map_err(|e| CorpusError::Sealed {
                file: dir.join(sealed::shard_file(shard_index)).display().to_string(),
                source: StreamError::from_io(e),
            })?;
            shard_tokens += tokens.len();
            stats.tokens += tokens.len() as u64;
            if meta.holdout {
                stats.holdout_documents += 1;
                stats.holdout_tokens += tokens.len() as u64;
            } else {
                stats.train_documents += 1;
                stats.train_tokens += tokens.len() as u64;
            }
            next_doc += 1;
        }
        sealing_s += t.elapsed().as_secs_f64();
    }
    let t = Instant::now();
    files_meta.push(writer.finish()?);
    std::fs::remove_file(&staged_path).map_err(CorpusError::write(&staged_path))?;

    let tokenizer_json = tokenizer.to_json()?;
    files_meta.push(sealed::seal_bytes(
        dir,
        sealed::TOKENIZER_FILE,
        "tokenizer",
        corpus_id,
        &key,
        &key_id,
        tokenizer_json.as_bytes(),
    )?);
    let canary_json = serde_json::to_vec(&canaries).map_err(|e| CorpusError::Option(e.to_string()))?;
    files_meta.push(sealed::seal_bytes(
        dir,
        sealed::CANARIES_FILE,
        "canaries",
        corpus_id,
        &key,
        &key_id,
        &canary_json,
    )?);

    stats.documents = docs.len() as u64;
    stats.canaries = canaries.len() as u64;
    stats.canary_repeats = canaries.iter().map(|c| c.repeats).collect();
    stats.shards = u64::from(shard_index) + 1;
    stats.vocab = tokenizer.vocab_size() as u64;
    stats.sealed_bytes = files_meta.iter().map(|f| f.bytes).sum();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        corpus_id: corpus_id.to_string(),
        name: opts.name.clone(),
        created_at: crate::store::now_ms(),
        data_key_id: key_id.clone(),
        vocab: tokenizer.vocab_size(),
        holdout_fraction: opts.holdout,
        documents: docs,
        files: files_meta,
        stats: stats.clone(),
    };
    let manifest_json = serde_json::to_vec(&manifest).map_err(|e| CorpusError::Option(e.to_string()))?;
    let manifest_meta = sealed::seal_bytes(
        dir,
        sealed::MANIFEST_FILE,
        "manifest",
        corpus_id,
        &key,
        &key_id,
        &manifest_json,
    )?;
    stats.sealed_bytes += manifest_meta.bytes;
    sync_dir(dir)?;
    sealing_s += t.elapsed().as_secs_f64();

    let report = IngestReport {
        corpus_id: corpus_id.to_string(),
        name: opts.name.clone(),
        data_key_id: key_id,
        master_key: format!("{} v{}", wrapped.master_key_id, wrapped.master_version),
        stats,
        timings: Timings {
            read_and_stage_s: read_s,
            tokenizer_training_s: tokenizer_s,
            tokenization_s,
            sealing_s,
            total_s: t0.elapsed().as_secs_f64(),
        },
    };
    Ok((data_key, report))
}

fn sync_dir(dir: &Path) -> Result<(), CorpusError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CorpusError::write(dir))
}

/// Moves a built corpus from staging to `corpora_dir/<id>`; returns the final directory.
pub fn move_into_place(built: &Built, corpora_dir: &Path) -> Result<PathBuf, CorpusError> {
    let target = corpora_dir.join(&built.corpus_id);
    std::fs::rename(&built.staging, &target).map_err(CorpusError::write(&target))?;
    sync_dir(corpora_dir)?;
    Ok(target)
}

/// Marks a corpus directory as registered (its owner file goes), so sweeps leave it alone.
pub fn mark_registered(dir: &Path) -> Result<(), CorpusError> {
    match std::fs::remove_file(dir.join(OWNER_FILE)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CorpusError::write(dir)(e)),
    }
}

/// Removes what killed ingests left behind: staging directories, and unregistered corpus directories
/// still carrying an owner file, whose owner process on this host is gone. Returns what was removed.
pub fn sweep_stale(corpora_dir: &Path, registered: &std::collections::HashSet<String>) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(corpora_dir) else {
        return removed;
    };
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if registered.contains(&name) {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(e.path().join(OWNER_FILE)) else {
            continue;
        };
        let mut parts = owner.split_whitespace();
        let (Some(h), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        // Only this host can tell whether the owner still runs; another host's ingest is left alone.
        if h != host.trim() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// A small PRNG for canary placement within a document (the canary values come from the system CSPRNG).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
