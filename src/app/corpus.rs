//! Corpus use cases: ingest, list, show, verify, remove, and the synthetic demo corpus.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::App;
use crate::corpus::{self, ingest, CorpusStats, SealedCorpus};
use crate::store::{CorpusRow, DataKeyRow};
use crate::vault::stream::DataKey;
use crate::vault::WrappedKey;

impl App {
    /// Where sealed corpora live.
    pub fn corpora_dir(&self) -> PathBuf {
        self.config.data_dir.join("corpora")
    }

    /// The registered corpus `name`, or a one-line error listing what exists.
    pub async fn corpus_row(&self, name: &str) -> anyhow::Result<CorpusRow> {
        if let Some(row) = self.store.corpora().by_name(name).await? {
            return Ok(row);
        }
        let names: Vec<String> = self
            .store
            .corpora()
            .list()
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect();
        if names.is_empty() {
            return Err(super::NotFound(format!(
                "no corpus named {name:?} (there are none yet; create one with `lethe corpus ingest`)"
            ))
            .into());
        }
        Err(super::NotFound(format!("no corpus named {name:?} (known: {})", names.join(", "))).into())
    }

    /// Unwraps the data key of a corpus. A key wrapped only by a retired master key version fails here,
    /// naming the data key and both master key versions.
    pub async fn corpus_key(&self, row: &CorpusRow) -> anyhow::Result<DataKey> {
        let key_row = self.store.corpora().data_key(&row.data_key_id).await?;
        unwrap_data_key(&self.keys(), &key_row).with_context(|| {
            format!(
                "cannot unlock corpus {:?} (data key {})",
                row.name, row.data_key_id
            )
        })
    }

    /// Opens a corpus for reading: its manifest authenticated, its key unlocked.
    pub async fn open_corpus(&self, name: &str) -> anyhow::Result<(CorpusRow, SealedCorpus)> {
        let row = self.corpus_row(name).await?;
        let key = self.corpus_key(&row).await?;
        let dir = self.config.inside(&row.directory)?;
        let sealed = SealedCorpus::open(&dir, &row.id, key)
            .with_context(|| format!("corpus {:?} is damaged", row.name))?;
        Ok((row, sealed))
    }

    pub async fn ingest(&self, opts: ingest::IngestOptions) -> anyhow::Result<ingest::IngestReport> {
        self.ingest_as(opts, None).await
    }

    /// Ingests files uploaded through the console (`files`: name and bytes) as `user`. The bytes stay
    /// in memory: see [`Uploads`].
    pub async fn ingest_uploads(
        &self,
        mut opts: ingest::IngestOptions,
        files: Vec<(String, Vec<u8>)>,
        user: &str,
    ) -> anyhow::Result<ingest::IngestReport> {
        if files.is_empty() {
            anyhow::bail!("no files uploaded: choose at least one text, Markdown, code or JSONL file");
        }
        let uploads = tokio::task::spawn_blocking(move || Uploads::new(files))
            .await
            .context("holding the upload was interrupted")??;
        opts.inputs = uploads.paths.clone();
        let report = self.ingest_as(opts, Some(user)).await;
        drop(uploads);
        report
    }

    async fn ingest_as(
        &self,
        opts: ingest::IngestOptions,
        user: Option<&str>,
    ) -> anyhow::Result<ingest::IngestReport> {
        ingest::validate_name(&opts.name)?;
        if self.store.corpora().by_name(&opts.name).await?.is_some() {
            anyhow::bail!(
                "a corpus named {:?} already exists (remove it with `lethe corpus rm`)",
                opts.name
            );
        }
        let corpora_dir = self.corpora_dir();
        let registered: HashSet<String> = self
            .store
            .corpora()
            .list()
            .await?
            .into_iter()
            .filter_map(|c| {
                Path::new(&c.directory)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .collect();
        for removed in ingest::sweep_stale(&corpora_dir, &registered) {
            tracing::info!(path = %removed.display(), "removed what an interrupted ingest left behind");
        }
        let keys = self.keys();
        let dir = corpora_dir.clone();
        let built = tokio::task::spawn_blocking(move || ingest::build(&opts, &dir, &keys))
            .await
            .context("ingest was interrupted")??;
        super::fault_point("ingest.built");
        let target = ingest::move_into_place(&built, &corpora_dir)?;
        super::fault_point("ingest.moved");
        let report = built.report.clone();
        let row = CorpusRow {
            id: built.corpus_id.clone(),
            name: report.name.clone(),
            data_key_id: built.data_key.id.clone(),
            directory: format!("corpora/{}", built.corpus_id),
            documents: report.stats.documents as i64,
            tokens: report.stats.tokens as i64,
            vocab: report.stats.vocab as i64,
            stats: serde_json::to_value(&report.stats)?,
            created_by: user.map(str::to_string),
            created_at: crate::store::now_ms(),
        };
        if let Err(e) = self.store.corpora().register(&row, &built.data_key).await {
            let _ = std::fs::remove_dir_all(&target);
            return Err(e.into());
        }
        ingest::mark_registered(&target)?;
        let actor = user.map(str::to_string).unwrap_or_else(super::cli_actor);
        self.record(
            &actor,
            crate::ledger::action::CORPUS_INGEST,
            &row.id,
            serde_json::json!({
                "name": row.name,
                "documents": row.documents,
                "tokens": row.tokens,
                "data_key": row.data_key_id,
            }),
        )
        .await?;
        Ok(report)
    }

    pub async fn corpus_list(&self) -> anyhow::Result<Vec<CorpusSummary>> {
        let rows = self.store.corpora().list().await?;
        rows.into_iter().map(|r| self.summary(r, None)).collect()
    }

    pub async fn corpus_show(&self, name: &str) -> anyhow::Result<CorpusSummary> {
        let row = self.corpus_row(name).await?;
        let key = self.store.corpora().data_key(&row.data_key_id).await?;
        self.summary(row, Some(key))
    }

    fn summary(&self, row: CorpusRow, key: Option<DataKeyRow>) -> anyhow::Result<CorpusSummary> {
        let stats: CorpusStats = serde_json::from_value(row.stats.clone())
            .with_context(|| format!("corpus {:?} has an unreadable summary", row.name))?;
        // A row naming a directory outside the data directory is listed as it is, with nothing read
        // there; using it (open, verify, rm) is refused.
        let (dir, size_on_disk) = match self.config.inside(&row.directory) {
            Ok(dir) => {
                let size = std::fs::read_dir(&dir)
                    .map(|it| {
                        it.flatten()
                            .filter_map(|e| e.metadata().ok())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0);
                (dir, size)
            }
            Err(_) => (PathBuf::from(&row.directory), 0),
        };
        Ok(CorpusSummary {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            directory: dir,
            size_on_disk,
            data_key_id: row.data_key_id,
            master_key: key.map(|k| format!("{} v{}", k.master_key_id, k.master_version)),
            stats,
        })
    }

    pub async fn corpus_verify(&self, name: &str) -> anyhow::Result<corpus::sealed::VerifyReport> {
        let (row, sealed) = self.open_corpus(name).await?;
        let report = tokio::task::spawn_blocking(move || sealed.verify())
            .await
            .context("verification was interrupted")?
            .with_context(|| format!("corpus {:?} failed verification", row.name))?;
        Ok(report)
    }

    /// Deletes the corpus's row and data key first (which makes its files unreadable), then its files.
    pub async fn corpus_rm(&self, name: &str) -> anyhow::Result<CorpusRow> {
        let row = self.corpus_row(name).await?;
        let runs = self.store.runs().count_for_corpus(&row.id).await?;
        if runs > 0 {
            anyhow::bail!(
                "corpus {name:?} has {runs} training run(s); their checkpoints and audits refer to it, so it is kept"
            );
        }
        // Where the files are, checked before anything is removed: a row edited to name a directory
        // outside the data directory is refused with everything left as it was.
        let dir = self.config.inside(&row.directory)?;
        self.store.corpora().remove(&row).await?;
        std::fs::remove_dir_all(&dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| {
                format!(
                    "corpus removed from the database, but {} could not be deleted",
                    dir.display()
                )
            })?;
        Ok(row)
    }
}

/// What `corpus list` and `corpus show` print: counts, sizes and key ids, never corpus text.
#[derive(Debug, Serialize)]
pub struct CorpusSummary {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub directory: PathBuf,
    pub size_on_disk: u64,
    pub data_key_id: String,
    pub master_key: Option<String>,
    pub stats: CorpusStats,
}

pub(crate) fn unwrap_data_key(
    ring: &crate::vault::MasterKeyRing,
    row: &DataKeyRow,
) -> anyhow::Result<DataKey> {
    let wrapped = WrappedKey {
        master_key_id: row.master_key_id.clone(),
        master_version: row.master_version,
        blob: row.wrapped.clone(),
    };
    let bytes = ring.unwrap_key(&wrapped, &row.purpose)?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("data key {} unwraps to {} bytes, not 32", row.id, bytes.len()))?;
    Ok(DataKey::from_bytes(arr))
}

/// `lethe corpus synth`: needs no data directory.
pub fn synth(out: &Path, docs: usize, seed: u64) -> anyhow::Result<corpus::synth::SynthSummary> {
    Ok(corpus::synth::generate(
        out,
        &corpus::synth::SynthOptions { docs, seed },
    )?)
}

/// Uploaded files held in anonymous memory (Linux `memfd_create`), never in a file on disk, so an upload
/// keeps the promise that plaintext lives only in memory. The ingest reads them through symlinks named
/// like the uploads (so JSONL is told from text by its extension), in a temporary directory that holds
/// nothing but the links; dropping this closes the memory files and removes the links.
pub struct Uploads {
    _memory: Vec<std::fs::File>,
    dir: PathBuf,
    pub paths: Vec<PathBuf>,
}

/// Files one upload may hold: each is an open in-memory file while the ingest runs (an upload of
/// 21,000 small files once ran the process out of descriptors). More files: pack them into JSONL, or
/// upload in parts.
pub const MAX_UPLOAD_FILES: usize = 2000;

impl Uploads {
    pub fn new(files: Vec<(String, Vec<u8>)>) -> anyhow::Result<Uploads> {
        Uploads::new_in(&std::env::temp_dir(), files)
    }

    /// As [`Uploads::new`], with the links in a directory made under `parent`.
    pub fn new_in(parent: &Path, files: Vec<(String, Vec<u8>)>) -> anyhow::Result<Uploads> {
        use std::io::Write as _;
        if files.len() > MAX_UPLOAD_FILES {
            anyhow::bail!(
                "an upload holds at most {MAX_UPLOAD_FILES} files and this one has {}: pack small files \
                 into one JSONL file (one {{\"text\": …}} object a line) or upload in parts",
                files.len()
            );
        }
        let dir = parent.join(format!("lethe-upload-{}", crate::vault::random_hex(8)?));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut up = Uploads {
            _memory: Vec::new(),
            dir,
            paths: Vec::new(),
        };
        for (i, (name, bytes)) in files.into_iter().enumerate() {
            let mut f = memory_file(&name)?;
            f.write_all(&bytes)
                .with_context(|| format!("cannot hold upload {name:?} in memory"))?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
            let link = up.dir.join(format!("{i:04}-{}", safe_name(&name)));
            std::os::unix::fs::symlink(format!("/proc/self/fd/{fd}"), &link)
                .with_context(|| format!("cannot link upload {name:?}"))?;
            up._memory.push(f);
            up.paths.push(link);
        }
        Ok(up)
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        // The memory files first: with every descriptor in use (the failure that brings us here, at
        // times), removing the directory could not even open it.
        self._memory.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An anonymous in-memory file.
fn memory_file(name: &str) -> anyhow::Result<std::fs::File> {
    use std::os::fd::FromRawFd as _;
    let label = std::ffi::CString::new("lethe-upload").expect("a constant without NUL bytes");
    // SAFETY: memfd_create takes a NUL-terminated name and flags and returns a new descriptor this
    // process owns, or -1; ownership moves into the File, which closes it.
    let fd = unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot make an in-memory file for upload {name:?}"));
    }
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// The base name of an uploaded file, cut to letters, digits, `.`, `_` and `-` (the browser names it).
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("upload");
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if clean.trim_matches('.').is_empty() {
        "upload.txt".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod upload_tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// The security review's low finding 9: an upload of 21,000 small files ran out of descriptors and
    /// left a `lethe-upload-*` folder of links behind. Uploads are bounded, and a failure part way
    /// (here: descriptors exhausted on purpose) leaves nothing.
    #[test]
    fn uploads_are_bounded_and_a_failed_one_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let many: Vec<(String, Vec<u8>)> = (0..=MAX_UPLOAD_FILES)
            .map(|i| (format!("f{i}.txt"), b"x".to_vec()))
            .collect();
        let e = Uploads::new_in(tmp.path(), many).err().unwrap();
        assert!(e.to_string().contains("at most 2000 files"), "{e}");
        assert!(leftovers(tmp.path()).is_empty());

        let ok = Uploads::new_in(tmp.path(), vec![("a.txt".into(), b"hello".to_vec())]).unwrap();
        assert_eq!(std::fs::read_to_string(&ok.paths[0]).unwrap(), "hello");
        drop(ok);
        assert!(leftovers(tmp.path()).is_empty());

        // Run out of descriptors part way: lower the soft limit just above what is open now.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit on this process with a valid struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let low = libc::rlimit {
            rlim_cur: open_now + 20,
            rlim_max: lim.rlim_max,
        };
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        let files: Vec<(String, Vec<u8>)> = (0..100).map(|i| (format!("f{i}.txt"), b"x".to_vec())).collect();
        let r = Uploads::new_in(tmp.path(), files);
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        assert!(r.is_err(), "100 files fit in 20 descriptors?");
        assert!(leftovers(tmp.path()).is_empty(), "{:?}", leftovers(tmp.path()));
    }
}
