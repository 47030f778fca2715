//! A sealed corpus on disk and the ways to read it back: the manifest, the tokenizer, the canaries, and
//! documents streamed from the shards, decrypted in memory on several threads at once. Also `verify`,
//! which authenticates every segment of every file and checks it against the manifest.
//!
//! Layout of `corpora/<corpus id>/` (every file a sealed stream whose role is bound in):
//!
//! | file | role | holds |
//! | --- | --- | --- |
//! | `manifest.sealed` | `manifest` | [`Manifest`] as JSON |
//! | `tokenizer.sealed` | `tokenizer` | `tokenizer.json` |
//! | `canaries.sealed` | `canaries` | the planted canaries as JSON |
//! | `shard-NNNNNN.sealed` | `shard-NNNNNN` | document records (see `shard`) |

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use ring::digest::{Context, SHA256};
use ring::rand::SystemRandom;

use super::canary::Canary;
use super::manifest::{FileMeta, Manifest, MANIFEST_FORMAT};
use super::tokenizer::CorpusTokenizer;
use super::{shard, CorpusError};
use crate::vault::stream::{DataKey, OpenReader, SealWriter, StreamContext, StreamError};

pub const MANIFEST_FILE: &str = "manifest.sealed";
pub const TOKENIZER_FILE: &str = "tokenizer.sealed";
pub const CANARIES_FILE: &str = "canaries.sealed";

pub fn shard_role(i: u32) -> String {
    format!("shard-{i:06}")
}

pub fn shard_file(i: u32) -> String {
    format!("{}.sealed", shard_role(i))
}

/// A reader that hashes what passes through it, so `verify` authenticates and hashes a file in one pass.
struct HashingReader<R: Read> {
    inner: R,
    state: Rc<RefCell<(Context, u64)>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.state.borrow_mut();
        state.0.update(&buf[..n]);
        state.1 += n as u64;
        Ok(n)
    }
}

/// A writer that hashes what passes through it, so a sealed file's SHA-256 comes for free.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Context,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A sealed file being written. `finish` completes the stream, fsyncs it and returns its [`FileMeta`].
pub struct SealedFileWriter {
    writer: SealWriter<HashingWriter<BufWriter<File>>>,
    path: PathBuf,
    file: String,
    role: String,
}

impl SealedFileWriter {
    /// Creates `dir/file` (never replacing one) sealed under `key` for `corpus_id` and `role`.
    pub fn create(
        dir: &Path,
        file: &str,
        role: &str,
        corpus_id: &str,
        key: &DataKey,
        key_id: &str,
    ) -> Result<SealedFileWriter, CorpusError> {
        let path = dir.join(file);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(CorpusError::write(&path))?;
        let inner = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, f),
            hash: Context::new(&SHA256),
            bytes: 0,
        };
        let ctx = StreamContext::new(corpus_id, role);
        let writer = SealWriter::new(inner, key, key_id, &ctx, &SystemRandom::new()).map_err(|source| {
            CorpusError::Sealed {
                file: path.display().to_string(),
                source,
            }
        })?;
        Ok(SealedFileWriter {
            writer,
            path,
            file: file.to_string(),
            role: role.to_string(),
        })
    }

    pub fn finish(self) -> Result<FileMeta, CorpusError> {
        let path = self.path;
        let hashing = self.writer.finish().map_err(|source| CorpusError::Sealed {
            file: path.display().to_string(),
            source,
        })?;
        let HashingWriter { inner, hash, bytes } = hashing;
        let f = inner
            .into_inner()
            .map_err(|e| CorpusError::write(&path)(e.into_error()))?;
        f.sync_all().map_err(CorpusError::write(&path))?;
        Ok(FileMeta {
            file: self.file,
            role: self.role,
            sha256: hex::encode(hash.finish().as_ref()),
            bytes,
        })
    }
}

impl Write for SealedFileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Seals `bytes` as `dir/file` in one go.
pub fn seal_bytes(
    dir: &Path,
    file: &str,
    role: &str,
    corpus_id: &str,
    key: &DataKey,
    key_id: &str,
    bytes: &[u8],
) -> Result<FileMeta, CorpusError> {
    let mut w = SealedFileWriter::create(dir, file, role, corpus_id, key, key_id)?;
    w.write_all(bytes).map_err(|e| sealed_io(&dir.join(file), e))?;
    w.finish()
}

/// An io::Error from a sealed stream as a corpus error naming the file (and the segment, when the
/// stream says which).
fn sealed_io(path: &Path, e: std::io::Error) -> CorpusError {
    CorpusError::Sealed {
        file: path.display().to_string(),
        source: StreamError::from_io(e),
    }
}

fn open_sealed(
    path: &Path,
    corpus_id: &str,
    role: &str,
    key: &DataKey,
) -> Result<OpenReader<BufReader<File>>, CorpusError> {
    let f = File::open(path).map_err(|e| CorpusError::Damaged {
        file: path.display().to_string(),
        reason: format!("cannot open: {e}"),
    })?;
    OpenReader::new(
        BufReader::with_capacity(1 << 20, f),
        key,
        &StreamContext::new(corpus_id, role),
    )
    .map_err(|source| CorpusError::Sealed {
        file: path.display().to_string(),
        source,
    })
}

/// Reads a whole sealed file into memory (for the small ones: manifest, tokenizer, canaries).
pub fn read_sealed(path: &Path, corpus_id: &str, role: &str, key: &DataKey) -> Result<Vec<u8>, CorpusError> {
    let mut r = open_sealed(path, corpus_id, role, key)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| sealed_io(path, e))?;
    Ok(out)
}

/// Which documents to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Holdout,
    All,
}

impl Split {
    fn wants(self, holdout: bool) -> bool {
        match self {
            Split::Train => !holdout,
            Split::Holdout => holdout,
            Split::All => true,
        }
    }
}

/// A document as the trainer and auditors see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    pub index: u32,
    pub holdout: bool,
    pub tokens: Vec<u32>,
}

/// An opened sealed corpus: its manifest authenticated and in memory, its key ready.
pub struct SealedCorpus {
    pub dir: PathBuf,
    pub manifest: Manifest,
    key: Arc<DataKey>,
}

impl SealedCorpus {
    /// Opens the corpus in `dir` with its data key, authenticating and parsing the manifest.
    pub fn open(dir: &Path, corpus_id: &str, key: DataKey) -> Result<SealedCorpus, CorpusError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = read_sealed(&path, corpus_id, "manifest", &key)?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| CorpusError::Damaged {
            file: path.display().to_string(),
            reason: format!("manifest is not valid: {e}"),
        })?;
        if manifest.format != MANIFEST_FORMAT || manifest.corpus_id != corpus_id {
            return Err(CorpusError::Damaged {
                file: path.display().to_string(),
                reason: format!(
                    "manifest is for {} ({}), expected {corpus_id} ({MANIFEST_FORMAT})",
                    manifest.corpus_id, manifest.format
                ),
            });
        }
        Ok(SealedCorpus {
            dir: dir.to_path_buf(),
            manifest,
            key: Arc::new(key),
        })
    }

    pub fn id(&self) -> &str {
        &self.manifest.corpus_id
    }

    pub fn tokenizer(&self) -> Result<CorpusTokenizer, CorpusError> {
        let bytes = read_sealed(&self.dir.join(TOKENIZER_FILE), self.id(), "tokenizer", &self.key)?;
        CorpusTokenizer::from_json(&bytes)
    }

    /// The planted canaries (secret values included: for the audit only).
    pub fn canaries(&self) -> Result<Vec<Canary>, CorpusError> {
        let path = self.dir.join(CANARIES_FILE);
        let bytes = read_sealed(&path, self.id(), "canaries", &self.key)?;
        serde_json::from_slice(&bytes).map_err(|e| CorpusError::Damaged {
            file: path.display().to_string(),
            reason: format!("canary list is not valid: {e}"),
        })
    }

    fn shard_count(&self) -> u32 {
        self.manifest.stats.shards as u32
    }

    /// Decrypts one shard completely.
    fn read_shard(
        dir: &Path,
        corpus_id: &str,
        key: &DataKey,
        i: u32,
        manifest_docs: &[super::DocMeta],
    ) -> Result<Vec<Doc>, CorpusError> {
        let path = dir.join(shard_file(i));
        let mut r = open_sealed(&path, corpus_id, &shard_role(i), key)?;
        let max_tokens = manifest_docs.iter().map(|d| d.tokens).max().unwrap_or(0);
        let mut docs = Vec::new();
        loop {
            let rec = shard::read_doc(&mut r, max_tokens).map_err(|e| {
                if e.get_ref().is_some_and(|inner| inner.is::<StreamError>()) {
                    sealed_io(&path, e)
                } else {
                    CorpusError::Damaged {
                        file: path.display().to_string(),
                        reason: e.to_string(),
                    }
                }
            })?;
            let Some((index, tokens)) = rec else { break };
            let meta = manifest_docs
                .get(index as usize)
                .ok_or_else(|| CorpusError::Damaged {
                    file: path.display().to_string(),
                    reason: format!("holds document {index}, which the manifest does not list"),
                })?;
            if meta.shard != i || meta.tokens as usize != tokens.len() {
                return Err(CorpusError::Damaged {
                    file: path.display().to_string(),
                    reason: format!("document {index} does not match the manifest"),
                });
            }
            docs.push(Doc {
                index,
                holdout: meta.holdout,
                tokens,
            });
        }
        Ok(docs)
    }

    /// Streams the documents of `split` in corpus order. Shards are decrypted ahead on up to `threads`
    /// threads; at most that many decrypted shards are in memory at once.
    pub fn documents(&self, split: Split, threads: usize) -> DocIter {
        DocIter {
            dir: self.dir.clone(),
            corpus_id: self.id().to_string(),
            key: self.key.clone(),
            docs: Arc::new(self.manifest.documents.clone()),
            split,
            next_shard: 0,
            shards: self.shard_count(),
            lookahead: threads.max(1),
            pending: VecDeque::new(),
            current: Vec::new().into_iter(),
            failed: false,
            range: 0..u32::MAX,
        }
    }

    /// Streams the documents of `split` whose index lies in `range`, in corpus order, decrypting only
    /// the shards that hold them (a sharded audit's piece reads its own part of the corpus).
    pub fn documents_in(&self, split: Split, range: std::ops::Range<u32>, threads: usize) -> DocIter {
        let mut it = self.documents(split, threads);
        let shards = self
            .manifest
            .documents
            .iter()
            .enumerate()
            .filter(|(i, _)| range.contains(&(*i as u32)))
            .map(|(_, d)| d.shard);
        let (lo, hi) = shards.fold((u32::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s + 1)));
        if lo == u32::MAX {
            it.shards = 0;
        } else {
            it.next_shard = lo;
            it.shards = hi.min(it.shards);
        }
        it.range = range;
        it
    }

    /// Authenticates every segment of every file and checks each against the manifest. The first
    /// problem found is the error, naming the file and, for a damaged segment, its number.
    pub fn verify(&self) -> Result<VerifyReport, CorpusError> {
        // The manifest was authenticated when the corpus was opened.
        let manifest_path = self.dir.join(MANIFEST_FILE);
        let manifest_bytes = std::fs::metadata(&manifest_path)
            .map_err(|e| CorpusError::Damaged {
                file: manifest_path.display().to_string(),
                reason: e.to_string(),
            })?
            .len();
        let mut report = VerifyReport {
            files: 1,
            sealed_bytes: manifest_bytes,
            ..Default::default()
        };
        for meta in &self.manifest.files {
            let path = self.dir.join(&meta.file);
            // One pass over the file: the bytes are hashed as the stream reader takes them in. The reader
            // reads to the end of the file (it must, to refuse trailing data), so the hash covers it all.
            let f = File::open(&path).map_err(|e| CorpusError::Damaged {
                file: path.display().to_string(),
                reason: format!("cannot open: {e}"),
            })?;
            let hashed = Rc::new(RefCell::new((Context::new(&SHA256), 0u64)));
            let source = HashingReader {
                inner: f,
                state: hashed.clone(),
            };
            let mut r = OpenReader::new(
                BufReader::with_capacity(1 << 20, source),
                &self.key,
                &StreamContext::new(self.id(), meta.role.as_str()),
            )
            .map_err(|source| CorpusError::Sealed {
                file: path.display().to_string(),
                source,
            })?;
            let mut buf = vec![0u8; 1 << 20];
            let mut plain = 0u64;
            loop {
                let n = r.read(&mut buf).map_err(|e| sealed_io(&path, e))?;
                if n == 0 {
                    break;
                }
                plain += n as u64;
            }
            drop(r);
            let (ctx, bytes) =
                Rc::try_unwrap(hashed)
                    .map(RefCell::into_inner)
                    .map_err(|_| CorpusError::Damaged {
                        file: path.display().to_string(),
                        reason: "internal: the hashing reader outlived its stream".into(),
                    })?;
            let sha = hex::encode(ctx.finish().as_ref());
            if sha != meta.sha256 || bytes != meta.bytes {
                return Err(CorpusError::Damaged {
                    file: path.display().to_string(),
                    reason: "authenticates but is not the file the manifest recorded (replaced by another sealing)"
                        .into(),
                });
            }
            report.files += 1;
            report.sealed_bytes += bytes;
            report.plaintext_bytes += plain;
        }
        // Records inside shards must match the manifest document by document.
        let mut seen = 0u64;
        for doc in self.documents(Split::All, 2) {
            doc?;
            seen += 1;
        }
        if seen != self.manifest.documents.len() as u64 {
            return Err(CorpusError::Damaged {
                file: self.dir.display().to_string(),
                reason: format!(
                    "shards hold {seen} documents, the manifest lists {}",
                    self.manifest.documents.len()
                ),
            });
        }
        report.documents = seen;
        // A sealed file that the manifest does not list was put there by someone else.
        let listed: std::collections::HashSet<&str> = self
            .manifest
            .files
            .iter()
            .map(|f| f.file.as_str())
            .chain([MANIFEST_FILE])
            .collect();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| CorpusError::Damaged {
            file: self.dir.display().to_string(),
            reason: e.to_string(),
        })?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".sealed") && !listed.contains(name.as_str()) {
                return Err(CorpusError::Damaged {
                    file: e.path().display().to_string(),
                    reason: "is not listed in the manifest".into(),
                });
            }
        }
        Ok(report)
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub files: u64,
    pub documents: u64,
    pub sealed_bytes: u64,
    pub plaintext_bytes: u64,
}

/// Iterator over documents, decrypting shards ahead on background threads.
pub struct DocIter {
    dir: PathBuf,
    corpus_id: String,
    key: Arc<DataKey>,
    docs: Arc<Vec<super::DocMeta>>,
    split: Split,
    next_shard: u32,
    shards: u32,
    lookahead: usize,
    pending: VecDeque<Receiver<Result<Vec<Doc>, CorpusError>>>,
    current: std::vec::IntoIter<Doc>,
    failed: bool,
    /// Document indices wanted.
    range: std::ops::Range<u32>,
}

impl DocIter {
    fn spawn_ahead(&mut self) {
        while self.pending.len() < self.lookahead && self.next_shard < self.shards {
            let (tx, rx) = sync_channel(1);
            let (dir, id, key, docs, i) = (
                self.dir.clone(),
                self.corpus_id.clone(),
                self.key.clone(),
                self.docs.clone(),
                self.next_shard,
            );
            std::thread::spawn(move || {
                let _ = tx.send(SealedCorpus::read_shard(&dir, &id, &key, i, &docs));
            });
            self.pending.push_back(rx);
            self.next_shard += 1;
        }
    }
}

impl Iterator for DocIter {
    type Item = Result<Doc, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            for doc in self.current.by_ref() {
                if self.split.wants(doc.holdout) && self.range.contains(&doc.index) {
                    return Some(Ok(doc));
                }
            }
            self.spawn_ahead();
            let rx = self.pending.pop_front()?;
            match rx.recv() {
                Ok(Ok(docs)) => self.current = docs.into_iter(),
                Ok(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                Err(_) => {
                    self.failed = true;
                    return Some(Err(CorpusError::Damaged {
                        file: self.dir.display().to_string(),
                        reason: "a shard reader thread stopped unexpectedly".into(),
                    }));
                }
            }
        }
    }
}
