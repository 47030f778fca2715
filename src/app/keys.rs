//! Master key use cases: rotation (a new version, every wrapped key re-wrapped, no payload rewritten),
//! retirement of old versions, and the listing of versions with what each still wraps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde::Serialize;

use super::App;
use crate::store::DataKeyRow;
use crate::vault::keys::MASTER_KEY_ENV;
use crate::vault::{MasterKeyRing, Signer, WrappedKey};

#[derive(Debug, Serialize)]
pub struct RotateReport {
    pub master_key_id: String,
    pub previous_version: u32,
    pub new_version: u32,
    pub data_keys_rewrapped: usize,
    pub signing_key_rewrapped: bool,
}

#[derive(Debug, Serialize)]
pub struct KeyVersionInfo {
    pub version: u32,
    pub created_at: i64,
    pub current: bool,
    pub retired: bool,
    /// Data keys (and the signing key) still wrapped by this version.
    pub wraps: usize,
}

#[derive(Debug, Serialize)]
pub struct KeysReport {
    pub master_key_id: String,
    pub source: String,
    pub versions: Vec<KeyVersionInfo>,
}

fn refuse_env() -> anyhow::Result<()> {
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        anyhow::bail!(
            "the master key comes from ${MASTER_KEY_ENV}; rotate it where that secret is managed, with the key file"
        );
    }
    Ok(())
}

/// An exclusive advisory lock (`flock`) on `<key file>.lock`, held while the key files are rewritten;
/// released when dropped (or when the process dies).
struct KeyFileLock {
    _file: std::fs::File,
}

impl KeyFileLock {
    fn take(key_file: &std::path::Path) -> anyhow::Result<KeyFileLock> {
        use std::os::unix::io::AsRawFd as _;
        let path = key_file.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the key lock {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns; blocks until no other process holds it.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot lock {}", path.display()));
        }
        Ok(KeyFileLock { _file: file })
    }
}

impl App {
    pub async fn keys_rotate(&self) -> anyhow::Result<RotateReport> {
        self.keys_rotate_as(&super::cli_actor()).await
    }

    /// Rotates the master key on behalf of `actor` (the console's admin, or the shell's user).
    pub async fn keys_rotate_as(&self, actor: &str) -> anyhow::Result<RotateReport> {
        refuse_env()?;
        let path = self.config.master_key_file.clone();
        // One rotation at a time on this host (a second waits), and each works on a fresh load of the
        // file, so two rotations cannot overwrite each other's version.
        let _lock = KeyFileLock::take(&path)?;
        let mut ring = MasterKeyRing::load(&path)?;
        let previous = ring.current;
        let new_version = ring.add_version(crate::store::now_ms())?;
        ring.replace_file(&path)
            .with_context(|| format!("cannot save the rotated key ring to {}", path.display()))?;
        let mut rewrapped = 0;
        for row in self.store.corpora().all_data_keys().await? {
            if row.master_version == new_version {
                continue;
            }
            let new = rewrap_row(&ring, &row)?;
            if self.store.corpora().rewrap(&row, &new).await? {
                rewrapped += 1;
            }
            super::fault_point("rotate.rewrapping");
        }
        super::fault_point("rotate.before_signing_key");
        let before = Signer::wrapped_version(&self.config.signing_key_file)?;
        Signer::rewrap_file(&self.config.signing_key_file, &ring)?;
        // The new file is what `self.keys()` reads from here on (the ledger record below among them).
        let report = RotateReport {
            master_key_id: ring.key_id.clone(),
            previous_version: previous,
            new_version,
            data_keys_rewrapped: rewrapped,
            signing_key_rewrapped: before != new_version,
        };
        self.record(
            actor,
            crate::ledger::action::KEYS_ROTATE,
            &report.master_key_id,
            serde_json::json!({
                "previous_version": previous,
                "new_version": new_version,
                "data_keys_rewrapped": rewrapped,
            }),
        )
        .await?;
        Ok(report)
    }

    /// Retires `version`, refusing while any key is still wrapped by it.
    pub async fn keys_retire(&self, version: u32) -> anyhow::Result<KeysReport> {
        refuse_env()?;
        let ring = self.keys();
        if version == ring.current {
            anyhow::bail!(
                "master key {} version {version} is current; rotate first, then retire it",
                ring.key_id
            );
        }
        let usage = self.key_usage().await?;
        if let Some(n) = usage.get(&version).filter(|&&n| n > 0) {
            anyhow::bail!(
                "master key {} version {version} still wraps {n} key(s); run `lethe keys rotate` first",
                ring.key_id
            );
        }
        let path = self.config.master_key_file.clone();
        let _lock = KeyFileLock::take(&path)?;
        let mut ring = MasterKeyRing::load(&path)?;
        ring.retire(version)?;
        ring.replace_file(&path)?;
        self.keys_list().await
    }

    async fn key_usage(&self) -> anyhow::Result<BTreeMap<u32, usize>> {
        let mut usage: BTreeMap<u32, usize> = BTreeMap::new();
        for row in self.store.corpora().all_data_keys().await? {
            *usage.entry(row.master_version).or_default() += 1;
        }
        *usage
            .entry(Signer::wrapped_version(&self.config.signing_key_file)?)
            .or_default() += 1;
        Ok(usage)
    }

    pub async fn keys_list(&self) -> anyhow::Result<KeysReport> {
        let usage = self.key_usage().await?;
        let ring = self.keys();
        Ok(KeysReport {
            master_key_id: ring.key_id.clone(),
            source: if std::env::var_os(MASTER_KEY_ENV).is_some() {
                format!("${MASTER_KEY_ENV}")
            } else {
                self.config.master_key_file.display().to_string()
            },
            versions: ring
                .versions
                .iter()
                .map(|v| KeyVersionInfo {
                    version: v.version,
                    created_at: v.created_at,
                    current: v.version == ring.current,
                    retired: v.retired,
                    wraps: usage.get(&v.version).copied().unwrap_or(0),
                })
                .collect(),
        })
    }
}

fn rewrap_row(ring: &MasterKeyRing, row: &DataKeyRow) -> anyhow::Result<DataKeyRow> {
    let old = WrappedKey {
        master_key_id: row.master_key_id.clone(),
        master_version: row.master_version,
        blob: row.wrapped.clone(),
    };
    let new = ring
        .rewrap(&old, &row.purpose)
        .with_context(|| format!("cannot re-wrap data key {}", row.id))?;
    Ok(DataKeyRow {
        id: row.id.clone(),
        purpose: row.purpose.clone(),
        master_key_id: new.master_key_id,
        master_version: new.master_version,
        wrapped: new.blob,
    })
}

/// Identifies one version of the key ring file: rotation and retirement replace it by renaming a new
/// file into place, so the inode changes even when size and modification time do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            len: m.size(),
        })
    }
}

/// The master key ring of a running process, re-read from its file when the file changes.
///
/// Every process used to hold the ring it loaded at start, so after `lethe keys rotate` a worker or
/// console started before it failed every job and request that needed a re-wrapped key (the signing
/// key included) until it was restarted. Each use now checks the file's identity (one `stat`) and
/// loads it again when another process (or this one, rotating or retiring) replaced it. A ring given in `LETHE_MASTER_KEY` cannot change
/// under a running process and is never re-read. A file that changed but does not load (half-copied
/// by hand, wrong mode) leaves the ring in use as it was, with a warning.
#[derive(Debug)]
pub struct LiveKeyRing {
    /// `None` when the ring came from the environment.
    path: Option<PathBuf>,
    state: Mutex<(Option<FileStamp>, Arc<MasterKeyRing>)>,
}

impl LiveKeyRing {
    pub fn load(path: &Path) -> Result<LiveKeyRing, crate::vault::VaultError> {
        let from_env = std::env::var_os(MASTER_KEY_ENV).is_some();
        // The stamp before the read: a change made while reading is then seen at the next use.
        let stamp = if from_env { None } else { FileStamp::of(path) };
        let ring = MasterKeyRing::load(path)?;
        Ok(LiveKeyRing {
            path: (!from_env).then(|| path.to_path_buf()),
            state: Mutex::new((stamp, Arc::new(ring))),
        })
    }

    /// The ring, re-read first when its file changed since it was last read.
    pub fn get(&self) -> Arc<MasterKeyRing> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(path) = &self.path {
            let now = FileStamp::of(path);
            if now.is_some() && now != state.0 {
                state.0 = now;
                match MasterKeyRing::load(path) {
                    Ok(ring) => {
                        if ring.label() != state.1.label() {
                            tracing::info!("master key ring reloaded: now {}", ring.label());
                        }
                        state.1 = Arc::new(ring);
                    }
                    Err(e) => tracing::warn!(
                        "the master key ring file changed but cannot be loaded ({e}); still using {}",
                        state.1.label()
                    ),
                }
            }
        }
        state.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_ring_follows_its_file_and_keeps_the_last_good_ring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let mut ring = MasterKeyRing::generate(1).unwrap();
        ring.create_file(&path).unwrap();
        let live = LiveKeyRing::load(&path).unwrap();
        assert_eq!(live.get().current, 1);
        let wrapped = live.get().wrap(b"a data key", "test").unwrap();

        // Another process rotates: the running one sees version 2 at its next use, and still unwraps
        // what version 1 wrapped.
        assert_eq!(ring.add_version(2).unwrap(), 2);
        ring.replace_file(&path).unwrap();
        let now = live.get();
        assert_eq!(now.current, 2);
        assert_eq!(&now.unwrap_key(&wrapped, "test").unwrap()[..], b"a data key");

        // A file that changed but does not load leaves the ring as it was.
        std::fs::remove_file(&path).unwrap();
        crate::vault::keys::write_secret_file(&path, b"not a key ring").unwrap();
        assert_eq!(live.get().current, 2);
        // Put right again, it is read again.
        ring.add_version(3).unwrap();
        ring.replace_file(&path).unwrap();
        assert_eq!(live.get().current, 3);
    }
}
