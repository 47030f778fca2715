//! The master key ring: 256-bit key-encryption keys under one key id, in numbered versions, kept in a
//! 0600 file (or the `LETHE_MASTER_KEY` environment variable), and the wrapping of data keys under it.
//!
//! Misuse rules:
//! - the master key never encrypts payloads, only other keys (data keys, the signing key);
//! - a wrapped key names the master key id and version that wrapped it, and the purpose it was wrapped
//!   for is bound as associated data, so a wrapped key cannot be replayed for another purpose;
//! - rotation adds a version and re-wraps; it never re-encrypts payloads.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// File format tag of the master key file; bumped if the layout ever changes.
const KEYRING_FORMAT: &str = "lethe-master-key/1";
/// Environment variable that may hold the key ring document instead of the file (for container
/// secrets); the file is used when it is unset.
pub const MASTER_KEY_ENV: &str = "LETHE_MASTER_KEY";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("master key file {path} is missing (run `lethe init` to create one)")]
    MasterKeyMissing { path: PathBuf },
    #[error("master key file {path} cannot be read: {source}")]
    MasterKeyUnreadable { path: PathBuf, source: std::io::Error },
    #[error(
        "master key file {path} is accessible to group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    MasterKeyPermissions { path: PathBuf, mode: u32 },
    #[error("master key {origin} is malformed: {reason}")]
    MasterKeyMalformed { origin: String, reason: String },
    #[error("{path} already exists; refusing to overwrite a key")]
    KeyExists { path: PathBuf },
    #[error("cannot write key file {path}: {source}")]
    KeyWrite { path: PathBuf, source: std::io::Error },
    #[error("key wrapped by master key {wrapped_by} but the key ring holds {have}")]
    WrongMasterKey { wrapped_by: String, have: String },
    #[error("key wrapped by master key {key_id} version {version}, which is retired; current is {key_id} version {current}")]
    RetiredMasterKey {
        key_id: String,
        version: u32,
        current: u32,
    },
    #[error("key wrapped by master key {key_id} version {version}, which this key ring does not have")]
    UnknownMasterKeyVersion { key_id: String, version: u32 },
    #[error("wrapped key for {purpose} failed authentication (corrupt, or wrapped for another purpose)")]
    UnwrapFailed { purpose: String },
    #[error("signing key file {path} cannot be read: {source}")]
    SigningKeyUnreadable { path: PathBuf, source: std::io::Error },
    #[error("signing key is malformed: {0}")]
    SigningKeyMalformed(String),
}

/// A 256-bit secret that zeroizes on drop and never prints its bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn generate() -> Result<Self, VaultError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| VaultError::Random)?;
        Ok(Self(bytes))
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// One version of the master key.
pub struct MasterKeyVersion {
    pub version: u32,
    pub created_at: i64,
    pub retired: bool,
    key: SecretKey,
}

/// The key ring as loaded: one key id, its versions, and which version wraps new keys.
pub struct MasterKeyRing {
    pub key_id: String,
    pub current: u32,
    pub versions: Vec<MasterKeyVersion>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRingFile {
    format: String,
    key_id: String,
    current: u32,
    versions: Vec<KeyVersionFile>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct KeyVersionFile {
    version: u32,
    created_at: i64,
    retired: bool,
    /// base64 of the 32 key bytes.
    key: String,
}

/// A key wrapped by the master key: what the database and key files store in place of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub master_key_id: String,
    pub master_version: u32,
    /// base64 of nonce ‖ ciphertext ‖ tag.
    pub blob: String,
}

impl std::fmt::Debug for MasterKeyRing {
    /// Ids and versions only: key bytes never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyRing")
            .field("key_id", &self.key_id)
            .field("current", &self.current)
            .field(
                "versions",
                &self
                    .versions
                    .iter()
                    .map(|v| (v.version, v.retired))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl MasterKeyRing {
    /// A new ring with one fresh version.
    pub fn generate(now: i64) -> Result<Self, VaultError> {
        Ok(Self {
            key_id: format!("mk-{}", super::random_hex(6)?),
            current: 1,
            versions: vec![MasterKeyVersion {
                version: 1,
                created_at: now,
                retired: false,
                key: SecretKey::generate()?,
            }],
        })
    }

    /// Loads the ring from `LETHE_MASTER_KEY` when set, otherwise from `path`, which must be readable by
    /// its owner only.
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        if let Ok(doc) = std::env::var(MASTER_KEY_ENV) {
            let doc = Zeroizing::new(doc);
            return Self::parse(&doc, &format!("in ${MASTER_KEY_ENV}"));
        }
        check_owner_only(path)?;
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                VaultError::MasterKeyMissing {
                    path: path.to_path_buf(),
                }
            } else {
                VaultError::MasterKeyUnreadable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?);
        Self::parse(&text, &format!("file {}", path.display()))
    }

    fn parse(text: &str, origin: &str) -> Result<Self, VaultError> {
        let malformed = |reason: String| VaultError::MasterKeyMalformed {
            origin: origin.to_string(),
            reason,
        };
        let file: KeyRingFile = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
        if file.format != KEYRING_FORMAT {
            return Err(malformed(format!(
                "format is {:?}, expected {KEYRING_FORMAT:?}",
                file.format
            )));
        }
        let mut versions = Vec::with_capacity(file.versions.len());
        for v in &file.versions {
            let bytes = Zeroizing::new(
                B64.decode(v.key.as_bytes())
                    .map_err(|e| malformed(format!("version {}: {e}", v.version)))?,
            );
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                malformed(format!(
                    "version {} is {} bytes, expected 32",
                    v.version,
                    bytes.len()
                ))
            })?;
            versions.push(MasterKeyVersion {
                version: v.version,
                created_at: v.created_at,
                retired: v.retired,
                key: SecretKey::from_bytes(key),
            });
        }
        match versions.iter().find(|v| v.version == file.current) {
            None => Err(malformed(format!(
                "current version {} is not in the ring",
                file.current
            ))),
            Some(v) if v.retired => Err(malformed(format!("current version {} is retired", file.current))),
            Some(_) => Ok(Self {
                key_id: file.key_id.clone(),
                current: file.current,
                versions,
            }),
        }
    }

    fn to_document(&self) -> Result<Zeroizing<String>, VaultError> {
        let file = KeyRingFile {
            format: KEYRING_FORMAT.to_string(),
            key_id: self.key_id.clone(),
            current: self.current,
            versions: self
                .versions
                .iter()
                .map(|v| KeyVersionFile {
                    version: v.version,
                    created_at: v.created_at,
                    retired: v.retired,
                    key: B64.encode(v.key.as_bytes()),
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| VaultError::MasterKeyMalformed {
            origin: "in memory".into(),
            reason: e.to_string(),
        })?;
        Ok(Zeroizing::new(text + "\n"))
    }

    /// Writes the ring to a new file with mode 0600; refuses to replace an existing one.
    pub fn create_file(&self, path: &Path) -> Result<(), VaultError> {
        write_secret_file(path, self.to_document()?.as_bytes())
    }

    /// Adds a fresh version and makes it current; returns its number. Older versions stay usable for
    /// unwrapping until retired.
    pub fn add_version(&mut self, now: i64) -> Result<u32, VaultError> {
        let version = self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        self.versions.push(MasterKeyVersion {
            version,
            created_at: now,
            retired: false,
            key: SecretKey::generate()?,
        });
        self.current = version;
        Ok(version)
    }

    /// Marks `version` retired: keys wrapped by it no longer unwrap. The current version cannot be
    /// retired.
    pub fn retire(&mut self, version: u32) -> Result<(), VaultError> {
        if version == self.current {
            return Err(VaultError::MasterKeyMalformed {
                origin: self.key_id.clone(),
                reason: format!("version {version} is current; rotate first, then retire it"),
            });
        }
        let v = self
            .versions
            .iter_mut()
            .find(|v| v.version == version)
            .ok_or_else(|| VaultError::UnknownMasterKeyVersion {
                key_id: self.key_id.clone(),
                version,
            })?;
        v.retired = true;
        Ok(())
    }

    /// Replaces the key file at `path` with this ring: written to a 0600 temporary file, fsynced, then
    /// renamed over the old one, so a crash leaves either the old ring or the new one, never half of one.
    pub fn replace_file(&self, path: &Path) -> Result<(), VaultError> {
        replace_secret_file(path, self.to_document()?.as_bytes())
    }

    /// Unwraps `wrapped` and wraps it again under the current version.
    pub fn rewrap(&self, wrapped: &WrappedKey, purpose: &str) -> Result<WrappedKey, VaultError> {
        let secret = self.unwrap_key(wrapped, purpose)?;
        self.wrap(&secret, purpose)
    }

    /// The key id and current version, as printed to users: `mk-1a2b3c4d5e6f v1`.
    pub fn label(&self) -> String {
        format!("{} v{}", self.key_id, self.current)
    }

    fn version(&self, key_id: &str, version: u32) -> Result<&MasterKeyVersion, VaultError> {
        if key_id != self.key_id {
            return Err(VaultError::WrongMasterKey {
                wrapped_by: key_id.to_string(),
                have: self.key_id.clone(),
            });
        }
        let v = self
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| VaultError::UnknownMasterKeyVersion {
                key_id: key_id.to_string(),
                version,
            })?;
        if v.retired {
            return Err(VaultError::RetiredMasterKey {
                key_id: key_id.to_string(),
                version,
                current: self.current,
            });
        }
        Ok(v)
    }

    /// Wraps `secret` under the current version. `purpose` (for example `corpus:c-12ab/data-key`) is bound
    /// as associated data and must be given again to unwrap.
    pub fn wrap(&self, secret: &[u8], purpose: &str) -> Result<WrappedKey, VaultError> {
        let v = self.version(&self.key_id, self.current)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| VaultError::Random)?;
        let key = aead_key(&v.key);
        let mut buf = secret.to_vec();
        let aad = wrap_aad(&self.key_id, v.version, purpose);
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut buf)
            .map_err(|_| VaultError::Random)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&buf);
        buf.zeroize();
        Ok(WrappedKey {
            master_key_id: self.key_id.clone(),
            master_version: v.version,
            blob: B64.encode(blob),
        })
    }

    /// Unwraps a key wrapped by [`MasterKeyRing::wrap`] for the same `purpose`.
    pub fn unwrap_key(&self, wrapped: &WrappedKey, purpose: &str) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let v = self.version(&wrapped.master_key_id, wrapped.master_version)?;
        let failed = || VaultError::UnwrapFailed {
            purpose: purpose.to_string(),
        };
        let blob = B64.decode(wrapped.blob.as_bytes()).map_err(|_| failed())?;
        if blob.len() < NONCE_LEN {
            return Err(failed());
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let aad = wrap_aad(&wrapped.master_key_id, wrapped.master_version, purpose);
        let plain = aead_key(&v.key)
            .open_in_place(nonce, Aad::from(&aad), buf.as_mut_slice())
            .map_err(|_| failed())?;
        Ok(Zeroizing::new(plain.to_vec()))
    }
}

fn aead_key(key: &SecretKey) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key.as_bytes()).expect("a 32-byte key is valid for AES-256-GCM"),
    )
}

fn wrap_aad(key_id: &str, version: u32, purpose: &str) -> Vec<u8> {
    format!("lethe/wrap/v1\0{key_id}\0{version}\0{purpose}").into_bytes()
}

/// Fails unless `path` exists and is readable by its owner only (no group or other bits).
pub fn check_owner_only(path: &Path) -> Result<(), VaultError> {
    let meta = fs::metadata(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            VaultError::MasterKeyMissing {
                path: path.to_path_buf(),
            }
        } else {
            VaultError::MasterKeyUnreadable {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(VaultError::MasterKeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Creates `path` with mode 0600 from the first byte on (never a moment world-readable), fsyncs it, and
/// refuses to replace an existing file.
/// Replaces the secret file at `path` with `bytes`: written to a 0600 temporary file of a name no
/// other process uses (process id and random digits: two rotations at once once raced on a shared
/// name), fsynced, renamed over the old one, and the directory synced.
pub fn replace_secret_file(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let tmp = path.with_extension(format!(
        "key.new.{}.{}",
        std::process::id(),
        super::random_hex(6)?
    ));
    if let Err(e) = write_secret_file(&tmp, bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(VaultError::KeyWrite {
            path: path.to_path_buf(),
            source,
        });
    }
    if let Some(dir) = path.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let io_err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            VaultError::KeyExists {
                path: path.to_path_buf(),
            }
        } else {
            VaultError::KeyWrite {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err)?;
    // The umask cannot widen 0600, but make the mode explicit in case the file system ignores `mode`.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_then_unwrap_returns_the_key() {
        let ring = MasterKeyRing::generate(0).unwrap();
        let wrapped = ring
            .wrap(b"0123456789abcdef0123456789abcdef", "corpus:a/data-key")
            .unwrap();
        let back = ring.unwrap_key(&wrapped, "corpus:a/data-key").unwrap();
        assert_eq!(back.as_slice(), b"0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn unwrap_for_another_purpose_fails() {
        let ring = MasterKeyRing::generate(0).unwrap();
        let wrapped = ring.wrap(&[7u8; 32], "corpus:a/data-key").unwrap();
        let err = ring.unwrap_key(&wrapped, "corpus:b/data-key").unwrap_err();
        assert!(matches!(err, VaultError::UnwrapFailed { .. }), "{err}");
    }

    #[test]
    fn unwrap_with_another_ring_names_both_key_ids() {
        let a = MasterKeyRing::generate(0).unwrap();
        let b = MasterKeyRing::generate(0).unwrap();
        let wrapped = a.wrap(&[7u8; 32], "p").unwrap();
        let err = b.unwrap_key(&wrapped, "p").unwrap_err().to_string();
        assert!(err.contains(&a.key_id) && err.contains(&b.key_id), "{err}");
    }

    #[test]
    fn key_file_round_trips_and_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let ring = MasterKeyRing::generate(42).unwrap();
        ring.create_file(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let loaded = MasterKeyRing::load(&path).unwrap();
        assert_eq!(loaded.key_id, ring.key_id);
        let wrapped = ring.wrap(&[1u8; 32], "p").unwrap();
        assert_eq!(loaded.unwrap_key(&wrapped, "p").unwrap().as_slice(), &[1u8; 32]);
        let again = ring.create_file(&path).unwrap_err();
        assert!(matches!(again, VaultError::KeyExists { .. }));
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKeyRing::generate(0).unwrap().create_file(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKeyRing::load(&path).unwrap_err();
        assert!(
            matches!(err, VaultError::MasterKeyPermissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        write_secret_file(&path, b"{\"format\":\"nope\"}").unwrap();
        let err = MasterKeyRing::load(&path).unwrap_err();
        assert!(matches!(err, VaultError::MasterKeyMalformed { .. }), "{err}");
    }

    #[test]
    fn rotation_rewraps_and_retired_versions_name_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let mut ring = MasterKeyRing::generate(0).unwrap();
        ring.create_file(&path).unwrap();
        let old = ring.wrap(&[9u8; 32], "p").unwrap();
        assert_eq!(ring.add_version(1).unwrap(), 2);
        let new = ring.rewrap(&old, "p").unwrap();
        assert_eq!(new.master_version, 2);
        assert!(ring.retire(2).is_err(), "current version cannot be retired");
        ring.retire(1).unwrap();
        ring.replace_file(&path).unwrap();
        let loaded = MasterKeyRing::load(&path).unwrap();
        assert_eq!(loaded.current, 2);
        assert_eq!(loaded.unwrap_key(&new, "p").unwrap().as_slice(), &[9u8; 32]);
        let err = loaded.unwrap_key(&old, "p").unwrap_err();
        assert!(
            matches!(
                err,
                VaultError::RetiredMasterKey {
                    version: 1,
                    current: 2,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{} version 1", ring.key_id)) && msg.contains("version 2"),
            "{msg}"
        );
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn secret_key_debug_hides_bytes() {
        let k = SecretKey::from_bytes([0xAB; 32]);
        assert_eq!(format!("{k:?}"), "SecretKey(..)");
    }
}
