//! The signed release bundle: what `lethe release export` writes and
//! `lethe release verify` checks.
//!
//! # Layout
//!
//! A bundle is one directory (mode `0755`) holding only regular files (mode
//! `0644`), no subdirectories and no symbolic links:
//!
//! | file                | content                                                        |
//! |---------------------|----------------------------------------------------------------|
//! | *payload files*     | e.g. `model.safetensors`, `tokenizer.json`, `config.json`, `MODEL_CARD.md`, `audit.json`: chosen by the caller, each listed in the manifest |
//! | `manifest.json`     | the manifest (below), UTF-8 JSON                                |
//! | `manifest.sig`      | Ed25519 signature over the exact bytes of `manifest.json`       |
//!
//! Payload file names are plain names: 1 to 255 bytes of ASCII letters,
//! digits, `.`, `_` and `-`, not starting with `.`, and neither
//! `manifest.json` nor `manifest.sig`. Any other entry in the directory
//! (including hidden files such as `.DS_Store`) makes verification fail.
//!
//! `model.safetensors` is meant to be the output of [`plain_weights`]: a
//! plain safetensors file that the Python `safetensors` package and PyTorch
//! load directly, e.g.
//! `python3 -c "from safetensors.torch import load_file; print({k: v.shape for k, v in load_file('DIR/model.safetensors').items()})"`.
//!
//! # `manifest.json`
//!
//! A JSON object with exactly these keys, in this order, written by
//! `serde_json`'s pretty printer (two-space indent) followed by one `\n`:
//!
//! | key             | type            | meaning                                                       |
//! |-----------------|-----------------|---------------------------------------------------------------|
//! | `format`        | string          | always `"lethe-release-bundle-v1"` ([`FORMAT`])               |
//! | `created_at`    | string          | RFC 3339 time stamp given by the caller                      |
//! | `run_id`        | string          | the training run released                                     |
//! | `audit_id`      | string          | the memorization audit that cleared it                        |
//! | `policy_sha256` | string          | 64 lowercase hex digits: SHA-256 of the release policy        |
//! | `key_id`        | string          | id of the signing key; by default its [`fingerprint`]         |
//! | `public_key`    | string          | 64 lowercase hex digits: the raw 32-byte Ed25519 public key   |
//! | `approvals`     | array           | the release approvals, opaque to this module                  |
//! | `files`         | array of object | one `{"name", "bytes", "sha256"}` per payload file, sorted by name (byte order), names unique; `bytes` is the size, `sha256` 64 lowercase hex digits |
//! | `extra`         | any JSON value  | caller-defined, opaque to this module                         |
//!
//! `manifest.json` and `manifest.sig` are not listed in `files`.
//!
//! # `manifest.sig`
//!
//! Exactly 129 bytes: the 64-byte Ed25519 signature (RFC 8032, as produced by
//! `ring`) over the bytes of `manifest.json` exactly as stored, written as
//! 128 lowercase hex digits, then `\n`. Nothing else is accepted (no
//! uppercase, no other whitespace), so every changed byte is detected.
//!
//! # Verification ([`verify_bundle`]), in this order; the first problem is reported
//!
//! 1. `manifest.json` and `manifest.sig` exist as regular files and the
//!    signature is well formed.
//! 2. The signature verifies over the bytes of `manifest.json` with the
//!    *trusted* public key (given by the operator, never taken from the
//!    bundle). If it does not, but does verify with the key that the manifest
//!    names, the bundle is reported as signed by another key, with both
//!    fingerprints.
//! 3. The manifest parses, has the format above, and its `public_key` is the
//!    trusted key (else both fingerprints are reported).
//! 4. Every listed file, in manifest order, exists as a regular file with the
//!    listed size and SHA-256.
//! 5. The directory holds nothing besides the listed files, `manifest.json`
//!    and `manifest.sig`.
//!
//! # Writing ([`write_bundle`])
//!
//! Files are written into a fresh hidden sibling directory
//! (`.<name>.lethe-tmp-<pid>-<n>` next to the target), payload files first,
//! then `manifest.json`, then `manifest.sig`; every file and the directory are
//! fsynced; the directory is then renamed onto the target and the parent
//! directory fsynced. A crash therefore leaves either no bundle or a complete
//! one (plus, at worst, a hidden temporary directory that can be deleted).
//! An existing target is used only if it is an empty directory; a bundle is
//! never overwritten. This module is Unix-only (file modes, directory fsync).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::digest;
use ring::signature::{UnparsedPublicKey, ED25519};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

/// Value of the manifest's `format` key.
pub const FORMAT: &str = "lethe-release-bundle-v1";
/// Name of the manifest file inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Name of the signature file inside a bundle.
pub const SIGNATURE_FILE: &str = "manifest.sig";

/// Prefix of model weight tensors in a training checkpoint.
const MODEL_PREFIX: &str = "model.";
/// Largest `manifest.json` that verification reads.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// Length of an Ed25519 signature in bytes.
const SIGNATURE_LEN: usize = 64;
/// Length of an Ed25519 public key in bytes.
const PUBLIC_KEY_LEN: usize = 32;

/// Everything that can go wrong building, writing or verifying a bundle.
///
/// The `Display` text is the message the CLI prints; verification errors
/// start with the name of the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The checkpoint given to [`plain_weights`] is not a safetensors file.
    #[error("checkpoint is not a safetensors file: {0}")]
    NotSafetensors(String),
    /// The checkpoint holds no `model.<name>` tensor.
    #[error("checkpoint holds no model weights (no tensor named model.<name>)")]
    NoModelTensors,
    /// The checkpoint is safetensors but cannot be turned into plain weights.
    #[error("checkpoint cannot be converted to plain weights: {0}")]
    BadCheckpoint(String),

    /// A payload file name is not a plain name.
    #[error("invalid bundle file name {name:?}: {reason}")]
    BadFileName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Two payload files have the same name.
    #[error("bundle file {0:?} is given twice")]
    DuplicateFileName(String),
    /// A [`ManifestInput`] field is malformed.
    #[error("invalid release manifest input: {0}")]
    BadInput(String),
    /// The signing callback's output is not a signature by the manifest's key.
    #[error("the signing key does not match the bundle's public key: {0}")]
    BadSigner(String),
    /// The output path exists and is a non-empty directory.
    #[error("{}: already exists and is not empty; refusing to overwrite it", .0.display())]
    TargetNotEmpty(PathBuf),
    /// The output path exists and is not a directory.
    #[error("{}: already exists and is not a directory", .0.display())]
    TargetNotDirectory(PathBuf),

    /// The bundle directory does not exist or is not a directory.
    #[error("{}: not a bundle directory (missing or not a directory)", .0.display())]
    NotABundle(PathBuf),
    /// The trusted public key given by the operator is malformed.
    #[error("trusted public key is not an Ed25519 public key (64 hex digits): {0}")]
    BadTrustedKey(String),
    /// A file that must be in the bundle is absent.
    #[error("{0}: missing")]
    Missing(String),
    /// A bundle entry is a directory, symbolic link or other non-file.
    #[error("{0}: not a regular file")]
    NotARegularFile(String),
    /// `manifest.sig` is not 128 lowercase hex digits and a newline.
    #[error("manifest.sig: malformed signature file: {0}")]
    MalformedSignature(String),
    /// The signature does not verify over `manifest.json` with the trusted key.
    #[error(
        "manifest.sig: not a valid signature of manifest.json by the trusted key \
         (fingerprint {trusted_fingerprint}): manifest.json or manifest.sig was changed, \
         or the bundle was signed by another key"
    )]
    BadSignature {
        /// Fingerprint of the trusted key.
        trusted_fingerprint: String,
    },
    /// The bundle is validly signed, but by a key other than the trusted one.
    #[error(
        "manifest.sig: the bundle is signed by another key \
         (bundle key fingerprint {bundle_fingerprint}, trusted key fingerprint {trusted_fingerprint})"
    )]
    SignedByOtherKey {
        /// Fingerprint of the key named in (and signing) the manifest.
        bundle_fingerprint: String,
        /// Fingerprint of the trusted key.
        trusted_fingerprint: String,
    },
    /// The manifest names a public key other than the trusted one.
    #[error(
        "manifest.json: names public key fingerprint {manifest_fingerprint}, \
         but the trusted key fingerprint is {trusted_fingerprint}"
    )]
    KeyMismatch {
        /// Fingerprint of the manifest's `public_key`.
        manifest_fingerprint: String,
        /// Fingerprint of the trusted key.
        trusted_fingerprint: String,
    },
    /// The manifest is signed but malformed.
    #[error("manifest.json: not a valid release manifest: {0}")]
    InvalidManifest(String),
    /// The manifest's `format` is not [`FORMAT`].
    #[error("manifest.json: unsupported bundle format {0:?} (this version reads {FORMAT:?})")]
    UnsupportedFormat(String),
    /// A listed file has another size than the manifest says.
    #[error("{name}: size differs (expected {expected} bytes, found {found})")]
    SizeDiffers {
        /// File name.
        name: String,
        /// Size in the manifest.
        expected: u64,
        /// Size on disk.
        found: u64,
    },
    /// A listed file has another SHA-256 than the manifest says.
    #[error("{name}: SHA-256 differs (expected {expected}, found {found})")]
    HashDiffers {
        /// File name.
        name: String,
        /// Hex SHA-256 in the manifest.
        expected: String,
        /// Hex SHA-256 of the file on disk.
        found: String,
    },
    /// The bundle directory holds an entry not listed in the manifest.
    #[error("extra file not in the manifest: {0}")]
    ExtraFile(String),

    /// An I/O error on a path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One payload file as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Plain file name inside the bundle directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
}

/// The content of `manifest.json` (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// RFC 3339 creation time, as given by the caller.
    pub created_at: String,
    /// The released training run.
    pub run_id: String,
    /// The audit that cleared the run.
    pub audit_id: String,
    /// SHA-256 of the release policy, 64 lowercase hex digits.
    pub policy_sha256: String,
    /// Id of the signing key.
    pub key_id: String,
    /// Raw Ed25519 public key of the signer, 64 lowercase hex digits.
    pub public_key: String,
    /// Release approvals, opaque to this module.
    pub approvals: Vec<serde_json::Value>,
    /// The payload files, sorted by name.
    pub files: Vec<FileEntry>,
    /// Caller-defined data, opaque to this module.
    pub extra: serde_json::Value,
}

/// What the caller supplies for the manifest; [`write_bundle`] adds the
/// format and the file list.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestInput {
    /// RFC 3339 time stamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`).
    pub created_at: String,
    /// The released training run.
    pub run_id: String,
    /// The audit that cleared the run.
    pub audit_id: String,
    /// SHA-256 of the release policy, 64 hex digits (stored lowercase).
    pub policy_sha256: String,
    /// Id of the signing key; `None` uses [`fingerprint`] of `public_key_hex`.
    pub key_id: Option<String>,
    /// Raw 32-byte Ed25519 public key of the signer, in hex (stored lowercase).
    pub public_key_hex: String,
    /// Release approvals, stored as given.
    pub approvals: Vec<serde_json::Value>,
    /// Caller-defined data, stored as given.
    pub extra: serde_json::Value,
}

/// The result of a successful [`verify_bundle`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBundle {
    /// The verified manifest.
    pub manifest: Manifest,
    /// [`fingerprint`] of the key that signed it (the trusted key).
    pub key_fingerprint: String,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}

/// Fingerprint of a public key: the lowercase hex SHA-256 of the raw key
/// bytes that `public_key_hex` encodes (upper- or lowercase, surrounding
/// whitespace ignored). If the text is not valid hex, the SHA-256 of the text
/// itself is returned, so a malformed key still gets a stable name in
/// messages.
pub fn fingerprint(public_key_hex: &str) -> String {
    let text = public_key_hex.trim();
    match hex::decode(text) {
        Ok(bytes) => sha256_hex(&bytes),
        Err(_) => sha256_hex(text.as_bytes()),
    }
}

/// Turns a training checkpoint into the plain weights file shipped as
/// `model.safetensors`.
///
/// The checkpoint is safetensors bytes holding `model.<name>` tensors (the
/// weights), optimizer tensors (`optim.m.<name>`, `optim.v.<name>`) and
/// metadata `lethe.config` and `lethe.state`. The result holds only the
/// `model.` tensors, renamed to `<name>`, with dtype, shape and data
/// unchanged, laid out in name order (safetensors orders by dtype first, so
/// this is pure name order for the all-F32 checkpoints Lethe writes), and
/// metadata `{"format": "pt"}` only: the configuration travels in the
/// bundle's `config.json`, and one metadata key keeps the file byte-for-byte
/// reproducible (safetensors writes metadata in hash-map order).
/// Every other tensor is dropped.
///
/// # Errors
/// [`BundleError::NotSafetensors`] if the bytes do not parse,
/// [`BundleError::NoModelTensors`] if there is no `model.` tensor,
/// [`BundleError::BadCheckpoint`] for a tensor named just `model.`.
pub fn plain_weights(checkpoint: &[u8]) -> Result<Vec<u8>, BundleError> {
    let tensors =
        SafeTensors::deserialize(checkpoint).map_err(|e| BundleError::NotSafetensors(e.to_string()))?;

    let mut kept: Vec<(String, TensorView<'_>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        if let Some(plain) = name.strip_prefix(MODEL_PREFIX) {
            if plain.is_empty() {
                return Err(BundleError::BadCheckpoint(
                    "a tensor is named \"model.\" with nothing after the prefix".to_string(),
                ));
            }
            kept.push((plain.to_string(), view));
        }
    }
    if kept.is_empty() {
        return Err(BundleError::NoModelTensors);
    }
    kept.sort_by(|a, b| a.0.cmp(&b.0));

    let mut info = HashMap::new();
    info.insert("format".to_string(), "pt".to_string());
    safetensors::serialize(kept, Some(info)).map_err(|e| BundleError::BadCheckpoint(e.to_string()))
}

/// Checks that `name` is a plain payload file name; returns why not.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name == MANIFEST_FILE || name == SIGNATURE_FILE {
        Some("reserved for the bundle's own manifest and signature")
    } else if name.contains('/') || name.contains('\\') {
        Some("must be a plain file name, without '/' or '\\'")
    } else if name.starts_with('.') {
        Some("names starting with '.' (hidden files, '.' and '..') are not allowed")
    } else if name.len() > 255 {
        Some("longer than 255 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Decodes a raw Ed25519 public key from hex (either case, trimmed).
fn parse_public_key(text: &str) -> Option<[u8; PUBLIC_KEY_LEN]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

/// Loose structural check of an RFC 3339 date-time.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| b.get(from..to).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, set: &[u8]| b.get(i).is_some_and(|c| set.contains(c));
    if !(digits(0, 4)
        && at(4, b"-")
        && digits(5, 7)
        && at(7, b"-")
        && digits(8, 10)
        && at(10, b"Tt")
        && digits(11, 13)
        && at(13, b":")
        && digits(14, 16)
        && at(16, b":")
        && digits(17, 19))
    {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let start = i;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            digits(i + 1, i + 3) && at(i + 3, b":") && digits(i + 4, i + 6) && i + 6 == b.len()
        }
        _ => false,
    }
}

/// Serializes a manifest the way it is stored: pretty JSON and a newline.
fn manifest_bytes(manifest: &Manifest) -> Result<Vec<u8>, BundleError> {
    let mut bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BundleError::BadInput(format!("cannot serialize the manifest: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The text stored in `manifest.sig` for a signature.
fn signature_text(signature: &[u8]) -> String {
    let mut text = hex::encode(signature);
    text.push('\n');
    text
}

/// Parses the content of `manifest.sig`, strictly.
fn parse_signature(text: &[u8]) -> Result<[u8; SIGNATURE_LEN], BundleError> {
    let expected = 2 * SIGNATURE_LEN + 1;
    if text.len() != expected {
        return Err(BundleError::MalformedSignature(format!(
            "{} bytes, expected {expected} (128 lowercase hex digits and a newline)",
            text.len()
        )));
    }
    let (digits, end) = text.split_at(2 * SIGNATURE_LEN);
    let digits_ok = digits.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !digits_ok || end != b"\n" {
        return Err(BundleError::MalformedSignature(
            "expected 128 lowercase hex digits and a newline".to_string(),
        ));
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    hex::decode_to_slice(digits, &mut signature)
        .map_err(|e| BundleError::MalformedSignature(e.to_string()))?;
    Ok(signature)
}

fn signature_ok(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

/// Writes a signed release bundle to `dir` and returns its manifest.
///
/// `files` are the payload files (name, content); `manifest` supplies the
/// manifest fields; `sign` returns the 64-byte Ed25519 signature of the
/// message it is given (the exact bytes of `manifest.json`), made with the
/// private key matching `manifest.public_key_hex`. The signature is checked
/// against that public key before anything is written. See the module
/// documentation for the format and the crash-safety guarantees.
///
/// # Errors
/// [`BundleError::BadFileName`] / [`BundleError::DuplicateFileName`] for
/// payload names, [`BundleError::BadInput`] for malformed manifest fields,
/// [`BundleError::BadSigner`] if `sign` does not sign with the manifest's key,
/// [`BundleError::TargetNotEmpty`] / [`BundleError::TargetNotDirectory`] if
/// `dir` exists and is not an empty directory (its parent must exist),
/// [`BundleError::Io`] for I/O failures (the temporary directory is removed).
pub fn write_bundle(
    dir: &Path,
    files: &[(&str, &[u8])],
    manifest: ManifestInput,
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
) -> Result<Manifest, BundleError> {
    // Validate everything before touching the disk.
    let mut seen = BTreeSet::new();
    for (name, _) in files {
        if let Some(reason) = name_problem(name) {
            return Err(BundleError::BadFileName {
                name: (*name).to_string(),
                reason,
            });
        }
        if !seen.insert(*name) {
            return Err(BundleError::DuplicateFileName((*name).to_string()));
        }
    }
    let public_key = parse_public_key(&manifest.public_key_hex).ok_or_else(|| {
        BundleError::BadInput("public key is not 32 bytes in hex (64 hex digits)".to_string())
    })?;
    let policy_sha256 = manifest.policy_sha256.trim().to_ascii_lowercase();
    if !is_lower_hex(&policy_sha256, 64) {
        return Err(BundleError::BadInput(
            "policy_sha256 is not a SHA-256 in hex (64 hex digits)".to_string(),
        ));
    }
    if !is_rfc3339(&manifest.created_at) {
        return Err(BundleError::BadInput(format!(
            "created_at {:?} is not an RFC 3339 time stamp",
            manifest.created_at
        )));
    }
    let public_key_hex = hex::encode(public_key);
    let key_id = manifest.key_id.unwrap_or_else(|| fingerprint(&public_key_hex));

    let mut sorted: Vec<(&str, &[u8])> = files.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let entries = sorted
        .iter()
        .map(|(name, content)| FileEntry {
            name: (*name).to_string(),
            bytes: content.len() as u64,
            sha256: sha256_hex(content),
        })
        .collect();
    let manifest = Manifest {
        format: FORMAT.to_string(),
        created_at: manifest.created_at,
        run_id: manifest.run_id,
        audit_id: manifest.audit_id,
        policy_sha256,
        key_id,
        public_key: public_key_hex,
        approvals: manifest.approvals,
        files: entries,
        extra: manifest.extra,
    };
    let manifest_json = manifest_bytes(&manifest)?;
    let signature = sign(&manifest_json);
    if signature.len() != SIGNATURE_LEN {
        return Err(BundleError::BadSigner(format!(
            "the signer returned {} bytes, expected a {SIGNATURE_LEN}-byte Ed25519 signature",
            signature.len()
        )));
    }
    if !signature_ok(&public_key, &manifest_json, &signature) {
        return Err(BundleError::BadSigner(format!(
            "the signature does not verify with the public key given for the manifest \
             (fingerprint {})",
            fingerprint(&manifest.public_key)
        )));
    }

    check_target(dir)?;
    let (parent, base) = split_target(dir)?;
    let temp = create_temp_dir(&parent, &base)?;
    let written = (|| {
        for (name, content) in &sorted {
            write_file(&temp.join(name), content)?;
        }
        write_file(&temp.join(MANIFEST_FILE), &manifest_json)?;
        write_file(&temp.join(SIGNATURE_FILE), signature_text(&signature).as_bytes())?;
        sync_dir(&temp)?;
        fs::rename(&temp, dir).map_err(|source| match source.kind() {
            // Something appeared at the target since the check.
            io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists => {
                BundleError::TargetNotEmpty(dir.into())
            }
            io::ErrorKind::NotADirectory => BundleError::TargetNotDirectory(dir.into()),
            _ => BundleError::Io {
                path: dir.into(),
                source,
            },
        })
    })();
    if let Err(e) = written {
        // Best effort: the temporary directory is hidden and incomplete anyway.
        let _ = fs::remove_dir_all(&temp);
        return Err(e);
    }
    sync_dir(&parent)?;
    Ok(manifest)
}

/// Refuses a target that exists and is anything but an empty directory.
fn check_target(dir: &Path) -> Result<(), BundleError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
        Ok(meta) if !meta.is_dir() => Err(BundleError::TargetNotDirectory(dir.into())),
        Ok(_) => {
            let mut entries = fs::read_dir(dir).map_err(io_err(dir))?;
            if entries.next().is_some() {
                Err(BundleError::TargetNotEmpty(dir.into()))
            } else {
                Ok(())
            }
        }
    }
}

/// Splits the target into its parent directory and its last component.
fn split_target(dir: &Path) -> Result<(PathBuf, String), BundleError> {
    let base = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BundleError::Io {
            path: dir.into(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the output path must end in a UTF-8 directory name",
            ),
        })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, base.to_string()))
}

/// Creates a fresh hidden sibling directory with mode 0755.
fn create_temp_dir(parent: &Path, base: &str) -> Result<PathBuf, BundleError> {
    let pid = std::process::id();
    let mut attempt = 0u32;
    loop {
        let temp = parent.join(format!(".{base}.lethe-tmp-{pid}-{attempt}"));
        match fs::create_dir(&temp) {
            Ok(()) => {
                fs::set_permissions(&temp, fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&temp))
                    .inspect_err(|_| {
                        let _ = fs::remove_dir(&temp);
                    })?;
                return Ok(temp);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => attempt += 1,
            Err(e) => return Err(io_err(&temp)(e)),
        }
    }
}

/// Creates `path` (which must not exist) with mode 0644, writes and fsyncs.
fn write_file(path: &Path, content: &[u8]) -> Result<(), BundleError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(io_err(path))?;
    // The umask may have cleared bits; a release is meant to be readable.
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_err(path))?;
    file.write_all(content).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), BundleError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Opens `name` in the bundle as a regular file (symbolic links refused).
fn open_regular(dir: &Path, name: &str) -> Result<(File, u64), BundleError> {
    let path = dir.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BundleError::Missing(name.to_string())),
        Err(e) => return Err(io_err(&path)(e)),
        Ok(meta) => meta,
    };
    if !meta.file_type().is_file() {
        return Err(BundleError::NotARegularFile(name.to_string()));
    }
    let file = File::open(&path).map_err(io_err(&path))?;
    Ok((file, meta.len()))
}

/// Reads a small bundle file whole, up to `limit` bytes; a larger one is
/// reported through `too_large`.
fn read_small(
    dir: &Path,
    name: &str,
    limit: u64,
    too_large: fn(String) -> BundleError,
) -> Result<Vec<u8>, BundleError> {
    let (file, len) = open_regular(dir, name)?;
    if len > limit {
        return Err(too_large(format!("{len} bytes, more than the {limit} accepted")));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(&dir.join(name)))?;
    Ok(bytes)
}

/// Size and hex SHA-256 of a bundle file, streamed.
fn hash_file(dir: &Path, entry: &FileEntry) -> Result<(), BundleError> {
    let (mut file, len) = open_regular(dir, &entry.name)?;
    let size_differs = |found| BundleError::SizeDiffers {
        name: entry.name.clone(),
        expected: entry.bytes,
        found,
    };
    if len != entry.bytes {
        return Err(size_differs(len));
    }
    let path = dir.join(&entry.name);
    let mut context = digest::Context::new(&digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        context.update(buffer.get(..n).unwrap_or_default());
        total += n as u64;
    }
    if total != entry.bytes {
        return Err(size_differs(total));
    }
    let found = hex::encode(context.finish());
    if found != entry.sha256 {
        return Err(BundleError::HashDiffers {
            name: entry.name.clone(),
            expected: entry.sha256.clone(),
            found,
        });
    }
    Ok(())
}

/// Structural checks of a parsed, signed manifest.
fn check_manifest(manifest: &Manifest) -> Result<(), BundleError> {
    if manifest.format != FORMAT {
        return Err(BundleError::UnsupportedFormat(manifest.format.clone()));
    }
    if !is_lower_hex(&manifest.public_key, 2 * PUBLIC_KEY_LEN) {
        return Err(BundleError::InvalidManifest(
            "public_key is not 64 lowercase hex digits".to_string(),
        ));
    }
    if !is_lower_hex(&manifest.policy_sha256, 64) {
        return Err(BundleError::InvalidManifest(
            "policy_sha256 is not 64 lowercase hex digits".to_string(),
        ));
    }
    let mut previous: Option<&str> = None;
    for entry in &manifest.files {
        if let Some(reason) = name_problem(&entry.name) {
            return Err(BundleError::InvalidManifest(format!(
                "file name {:?}: {reason}",
                entry.name
            )));
        }
        if previous.is_some_and(|p| p >= entry.name.as_str()) {
            return Err(BundleError::InvalidManifest(format!(
                "files are not sorted by name or not unique at {:?}",
                entry.name
            )));
        }
        if !is_lower_hex(&entry.sha256, 64) {
            return Err(BundleError::InvalidManifest(format!(
                "sha256 of {:?} is not 64 lowercase hex digits",
                entry.name
            )));
        }
        previous = Some(&entry.name);
    }
    Ok(())
}

/// Verifies the bundle in `dir` with only the trusted public key (raw
/// 32-byte Ed25519 key in hex, as printed by `lethe keys public`).
///
/// Checks, in order, the signature of `manifest.json`, the manifest itself,
/// every listed file's size and SHA-256, and that no unlisted file is present
/// (see the module documentation). Returns the first problem found.
///
/// # Errors
/// [`BundleError::BadTrustedKey`], [`BundleError::NotABundle`],
/// [`BundleError::Missing`], [`BundleError::NotARegularFile`],
/// [`BundleError::MalformedSignature`], [`BundleError::BadSignature`],
/// [`BundleError::SignedByOtherKey`], [`BundleError::InvalidManifest`],
/// [`BundleError::UnsupportedFormat`], [`BundleError::KeyMismatch`],
/// [`BundleError::SizeDiffers`], [`BundleError::HashDiffers`],
/// [`BundleError::ExtraFile`], [`BundleError::Io`].
pub fn verify_bundle(dir: &Path, trusted_public_key_hex: &str) -> Result<VerifiedBundle, BundleError> {
    let trusted = parse_public_key(trusted_public_key_hex)
        .ok_or_else(|| BundleError::BadTrustedKey(format!("{:?}", trusted_public_key_hex.trim())))?;
    let trusted_fingerprint = sha256_hex(&trusted);
    if !fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Err(BundleError::NotABundle(dir.into()));
    }

    let manifest_json = read_small(
        dir,
        MANIFEST_FILE,
        MAX_MANIFEST_BYTES,
        BundleError::InvalidManifest,
    )?;
    let signature_file = read_small(dir, SIGNATURE_FILE, 4096, BundleError::MalformedSignature)?;
    let signature = parse_signature(&signature_file)?;

    if !signature_ok(&trusted, &manifest_json, &signature) {
        // Name the other key when the bundle is consistently signed by it.
        let claimed = serde_json::from_slice::<serde_json::Value>(&manifest_json)
            .ok()
            .and_then(|v| {
                v.get("public_key")
                    .and_then(|k| k.as_str())
                    .and_then(parse_public_key)
            });
        if let Some(claimed) = claimed {
            if claimed != trusted && signature_ok(&claimed, &manifest_json, &signature) {
                return Err(BundleError::SignedByOtherKey {
                    bundle_fingerprint: sha256_hex(&claimed),
                    trusted_fingerprint,
                });
            }
        }
        return Err(BundleError::BadSignature { trusted_fingerprint });
    }

    let manifest: Manifest =
        serde_json::from_slice(&manifest_json).map_err(|e| BundleError::InvalidManifest(e.to_string()))?;
    check_manifest(&manifest)?;
    if manifest.public_key != hex::encode(trusted) {
        return Err(BundleError::KeyMismatch {
            manifest_fingerprint: fingerprint(&manifest.public_key),
            trusted_fingerprint,
        });
    }

    for entry in &manifest.files {
        hash_file(dir, entry)?;
    }

    let listed: BTreeSet<&str> = manifest
        .files
        .iter()
        .map(|e| e.name.as_str())
        .chain([MANIFEST_FILE, SIGNATURE_FILE])
        .collect();
    let mut extra = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !listed.contains(name.as_str()) {
            extra.push(name);
        }
    }
    extra.sort();
    if let Some(name) = extra.into_iter().next() {
        return Err(BundleError::ExtraFile(name));
    }

    Ok(VerifiedBundle {
        manifest,
        key_fingerprint: trusted_fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use safetensors::Dtype;
    use serde_json::json;

    fn key(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn public_hex(kp: &Ed25519KeyPair) -> String {
        hex::encode(kp.public_key().as_ref())
    }

    fn signer(kp: &Ed25519KeyPair) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
        move |m| kp.sign(m).as_ref().to_vec()
    }

    fn input(kp: &Ed25519KeyPair) -> ManifestInput {
        ManifestInput {
            created_at: "2025-01-02T03:04:05Z".to_string(),
            run_id: "run-7".to_string(),
            audit_id: "audit-3".to_string(),
            policy_sha256: sha256_hex(b"policy"),
            key_id: None,
            public_key_hex: public_hex(kp),
            approvals: vec![json!({"by": "alice", "at": "2025-01-02T00:00:00Z"})],
            extra: json!({"lethe_version": "0.1.0"}),
        }
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A checkpoint like the trainer writes: model., optim.m., optim.v.
    fn checkpoint() -> Vec<u8> {
        let tensors: Vec<(&str, Vec<usize>, Vec<u8>)> = vec![
            (
                "model.wte",
                vec![4, 2],
                f32_bytes(&[0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]),
            ),
            ("model.ln_f.bias", vec![2], f32_bytes(&[-1.0, 1.0])),
            (
                "model.blocks.0.attn.w",
                vec![2, 2],
                f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
            ),
            ("optim.m.wte", vec![4, 2], f32_bytes(&[0.0; 8])),
            ("optim.v.wte", vec![4, 2], f32_bytes(&[9.0; 8])),
            ("optim.m.ln_f.bias", vec![2], f32_bytes(&[7.0; 2])),
            ("optim.v.ln_f.bias", vec![2], f32_bytes(&[8.0; 2])),
        ];
        let views: Vec<(&str, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, s, d)| (*n, TensorView::new(Dtype::F32, s.clone(), d).unwrap()))
            .collect();
        let mut meta = HashMap::new();
        meta.insert("lethe.config".to_string(), r#"{"d_model":2}"#.to_string());
        meta.insert("lethe.state".to_string(), r#"{"step":10}"#.to_string());
        safetensors::serialize(views, Some(meta)).unwrap()
    }

    /// Writes a typical bundle into `<tmp>/bundle`.
    fn make_bundle(tmp: &Path, kp: &Ed25519KeyPair) -> PathBuf {
        let dir = tmp.join("bundle");
        let model = plain_weights(&checkpoint()).unwrap();
        let files: Vec<(&str, &[u8])> = vec![
            ("model.safetensors", &model),
            ("tokenizer.json", br#"{"model":{"type":"BPE"}}"#),
            ("config.json", br#"{"d_model":2}"#),
            ("MODEL_CARD.md", b"# Model card\n"),
            ("audit.json", br#"{"verdict":"pass"}"#),
        ];
        write_bundle(&dir, &files, input(kp), &signer(kp)).unwrap();
        dir
    }

    fn all_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Rewrites manifest.json through `edit` and signs it with `kp`.
    fn resign(dir: &Path, kp: &Ed25519KeyPair, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut value: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
        edit(&mut value);
        let bytes = serde_json::to_vec_pretty(&value).unwrap();
        fs::write(dir.join(MANIFEST_FILE), &bytes).unwrap();
        fs::write(dir.join(SIGNATURE_FILE), signature_text(kp.sign(&bytes).as_ref())).unwrap();
    }

    #[test]
    fn round_trip_verifies_and_returns_the_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        let verified = verify_bundle(&dir, &public_hex(&kp)).unwrap();
        let m = &verified.manifest;
        assert_eq!(m.format, FORMAT);
        assert_eq!(m.run_id, "run-7");
        assert_eq!(m.audit_id, "audit-3");
        assert_eq!(m.policy_sha256, sha256_hex(b"policy"));
        assert_eq!(m.public_key, public_hex(&kp));
        assert_eq!(m.key_id, fingerprint(&public_hex(&kp)));
        assert_eq!(verified.key_fingerprint, fingerprint(&public_hex(&kp)));
        assert_eq!(m.approvals[0]["by"], "alice");
        assert_eq!(m.extra["lethe_version"], "0.1.0");
        let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "MODEL_CARD.md",
                "audit.json",
                "config.json",
                "model.safetensors",
                "tokenizer.json"
            ]
        );
        for f in &m.files {
            let content = fs::read(dir.join(&f.name)).unwrap();
            assert_eq!(f.bytes, content.len() as u64);
            assert_eq!(f.sha256, sha256_hex(&content));
        }
        // The stored manifest is the pretty JSON that write_bundle returned.
        let stored = fs::read(dir.join(MANIFEST_FILE)).unwrap();
        assert_eq!(stored, manifest_bytes(m).unwrap());
        // Only the bundle itself is left in the parent: no temporary directory.
        assert_eq!(all_files(tmp.path()), ["bundle"]);
    }

    #[test]
    fn signature_file_is_lowercase_hex_and_a_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = make_bundle(tmp.path(), &key(1));
        let sig = fs::read_to_string(dir.join(SIGNATURE_FILE)).unwrap();
        assert_eq!(sig.len(), 129);
        assert!(sig.ends_with('\n'));
        assert!(is_lower_hex(&sig[..128], 128));
    }

    #[test]
    fn trusted_key_may_be_uppercase_with_whitespace() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        let key_text = format!("  {}\n", public_hex(&kp).to_uppercase());
        verify_bundle(&dir, &key_text).unwrap();
    }

    #[test]
    fn explicit_key_id_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let mut inp = input(&kp);
        inp.key_id = Some("ops-2025".to_string());
        let dir = tmp.path().join("b");
        let m = write_bundle(&dir, &[("a.txt", b"a")], inp, &signer(&kp)).unwrap();
        assert_eq!(m.key_id, "ops-2025");
        assert_eq!(
            verify_bundle(&dir, &public_hex(&kp)).unwrap().manifest.key_id,
            "ops-2025"
        );
    }

    #[test]
    fn modes_are_0644_for_files_and_0755_for_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = make_bundle(tmp.path(), &key(1));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o755);
        for name in all_files(&dir) {
            assert_eq!(mode(&dir.join(&name)), 0o644, "{name}");
        }
    }

    #[test]
    fn every_single_byte_change_fails_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        let names = all_files(&dir);
        assert_eq!(names.len(), 7);
        for name in &names {
            let path = dir.join(name);
            let original = fs::read(&path).unwrap();
            let len = original.len();
            for pos in [0, 1, len / 3, len / 2, len - 2, len - 1] {
                for mask in [0x01u8, 0x20, 0x80] {
                    let mut changed = original.clone();
                    changed[pos] ^= mask;
                    fs::write(&path, &changed).unwrap();
                    let err = verify_bundle(&dir, &public_hex(&kp)).unwrap_err();
                    let msg = err.to_string();
                    assert!(msg.contains(name.as_str()), "{name}@{pos}^{mask:#x}: {msg}");
                    match name.as_str() {
                        MANIFEST_FILE => {
                            assert!(matches!(err, BundleError::BadSignature { .. }), "{msg}")
                        }
                        SIGNATURE_FILE => assert!(
                            matches!(
                                err,
                                BundleError::BadSignature { .. } | BundleError::MalformedSignature(_)
                            ),
                            "{msg}"
                        ),
                        _ => assert!(
                            matches!(&err, BundleError::HashDiffers { name: n, .. } if n == name),
                            "{msg}"
                        ),
                    }
                }
            }
            fs::write(&path, &original).unwrap();
            verify_bundle(&dir, &public_hex(&kp)).unwrap();
        }
    }

    #[test]
    fn hash_difference_names_both_hashes() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        let expected = sha256_hex(&fs::read(dir.join("config.json")).unwrap());
        fs::write(dir.join("config.json"), br#"{"d_model":3}"#).unwrap();
        let msg = verify_bundle(&dir, &public_hex(&kp)).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "config.json: SHA-256 differs (expected {expected}, found {})",
                sha256_hex(br#"{"d_model":3}"#)
            )
        );
    }

    #[test]
    fn changed_size_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        let mut content = fs::read(dir.join("model.safetensors")).unwrap();
        let len = content.len();
        content.push(0);
        fs::write(dir.join("model.safetensors"), &content).unwrap();
        let msg = verify_bundle(&dir, &public_hex(&kp)).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "model.safetensors: size differs (expected {len} bytes, found {})",
                len + 1
            )
        );
    }

    #[test]
    fn removed_file_fails_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        for name in all_files(&dir) {
            let path = dir.join(&name);
            let original = fs::read(&path).unwrap();
            fs::remove_file(&path).unwrap();
            let err = verify_bundle(&dir, &public_hex(&kp)).unwrap_err();
            assert_eq!(err.to_string(), format!("{name}: missing"));
            fs::write(&path, &original).unwrap();
        }
        verify_bundle(&dir, &public_hex(&kp)).unwrap();
    }

    #[test]
    fn extra_file_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        fs::write(dir.join("backdoor.bin"), b"x").unwrap();
        let msg = verify_bundle(&dir, &public_hex(&kp)).unwrap_err().to_string();
        assert_eq!(msg, "extra file not in the manifest: backdoor.bin");
        fs::remove_file(dir.join("backdoor.bin")).unwrap();

        fs::write(dir.join(".hidden"), b"x").unwrap();
        let msg = verify_bundle(&dir, &public_hex(&kp)).unwrap_err().to_string();
        assert_eq!(msg, "extra file not in the manifest: .hidden");
        fs::remove_file(dir.join(".hidden")).unwrap();

        fs::create_dir(dir.join("sub")).unwrap();
        let msg = verify_bundle(&dir, &public_hex(&kp)).unwrap_err().to_string();
        assert_eq!(msg, "extra file not in the manifest: sub");
    }

    #[test]
    fn symlinked_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        let outside = tmp.path().join("config.json");
        fs::rename(dir.join("config.json"), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("config.json")).unwrap();
        let msg = verify_bundle(&dir, &public_hex(&kp)).unwrap_err().to_string();
        assert_eq!(msg, "config.json: not a regular file");
    }

    #[test]
    fn bundle_signed_by_another_key_fails_naming_both_fingerprints() {
        let tmp = tempfile::tempdir().unwrap();
        let (trusted, other) = (key(1), key(2));
        let dir = make_bundle(tmp.path(), &other);
        let err = verify_bundle(&dir, &public_hex(&trusted)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "manifest.sig: the bundle is signed by another key (bundle key fingerprint {}, \
                 trusted key fingerprint {})",
                fingerprint(&public_hex(&other)),
                fingerprint(&public_hex(&trusted))
            )
        );
    }

    #[test]
    fn manifest_edited_and_resigned_by_another_key_fails() {
        let (trusted, other) = (key(1), key(2));

        // Edited (a file hash swapped), re-signed, public_key left as the trusted key.
        let tmp = tempfile::tempdir().unwrap();
        let dir = make_bundle(tmp.path(), &trusted);
        fs::write(dir.join("audit.json"), br#"{"verdict":"fail"}"#).unwrap();
        resign(&dir, &other, |m| {
            m["files"][1]["sha256"] = json!(sha256_hex(br#"{"verdict":"fail"}"#));
        });
        let err = verify_bundle(&dir, &public_hex(&trusted)).unwrap_err();
        assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains(&fingerprint(&public_hex(&trusted))));

        // Edited, re-signed, and public_key switched to the other key.
        let tmp = tempfile::tempdir().unwrap();
        let dir = make_bundle(tmp.path(), &trusted);
        resign(&dir, &other, |m| {
            m["run_id"] = json!("run-evil");
            m["public_key"] = json!(public_hex(&other));
        });
        let err = verify_bundle(&dir, &public_hex(&trusted)).unwrap_err();
        match err {
            BundleError::SignedByOtherKey {
                bundle_fingerprint,
                trusted_fingerprint,
            } => {
                assert_eq!(bundle_fingerprint, fingerprint(&public_hex(&other)));
                assert_eq!(trusted_fingerprint, fingerprint(&public_hex(&trusted)));
            }
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn manifest_naming_another_key_fails_even_if_signed_by_the_trusted_key() {
        let tmp = tempfile::tempdir().unwrap();
        let (trusted, other) = (key(1), key(2));
        let dir = make_bundle(tmp.path(), &trusted);
        resign(&dir, &trusted, |m| m["public_key"] = json!(public_hex(&other)));
        let msg = verify_bundle(&dir, &public_hex(&trusted))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            format!(
                "manifest.json: names public key fingerprint {}, but the trusted key \
                 fingerprint is {}",
                fingerprint(&public_hex(&other)),
                fingerprint(&public_hex(&trusted))
            )
        );
    }

    #[test]
    fn signed_manifest_with_unsafe_or_unsorted_names_is_invalid() {
        let kp = key(1);
        for (edit, expect) in [
            (json!("../../etc/passwd"), "file name"),
            (json!("zzz.txt"), "not sorted"),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = make_bundle(tmp.path(), &kp);
            resign(&dir, &kp, |m| m["files"][0]["name"] = edit.clone());
            let err = verify_bundle(&dir, &public_hex(&kp)).unwrap_err();
            assert!(matches!(err, BundleError::InvalidManifest(_)), "{err}");
            assert!(err.to_string().contains(expect), "{err}");
        }
    }

    #[test]
    fn signed_manifest_with_another_format_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        resign(&dir, &kp, |m| m["format"] = json!("lethe-release-bundle-v2"));
        let err = verify_bundle(&dir, &public_hex(&kp)).unwrap_err();
        assert!(matches!(err, BundleError::UnsupportedFormat(_)), "{err}");
    }

    #[test]
    fn truncated_signature_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        let sig = fs::read(dir.join(SIGNATURE_FILE)).unwrap();
        for cut in [0, 1, 64, 127, 128] {
            fs::write(dir.join(SIGNATURE_FILE), &sig[..cut]).unwrap();
            let err = verify_bundle(&dir, &public_hex(&kp)).unwrap_err();
            assert!(matches!(err, BundleError::MalformedSignature(_)), "{err}");
            assert!(err.to_string().starts_with("manifest.sig: "), "{err}");
        }
    }

    #[test]
    fn oversized_signature_file_names_manifest_sig() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        fs::write(dir.join(SIGNATURE_FILE), vec![b'0'; 10_000]).unwrap();
        let err = verify_bundle(&dir, &public_hex(&kp)).unwrap_err();
        assert!(matches!(err, BundleError::MalformedSignature(_)), "{err}");
        assert!(err.to_string().starts_with("manifest.sig: "), "{err}");
    }

    #[test]
    fn bad_trusted_key_and_missing_dir_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = make_bundle(tmp.path(), &kp);
        for bad in ["", "abc", &public_hex(&kp)[2..], "zz"] {
            let err = verify_bundle(&dir, bad).unwrap_err();
            assert!(matches!(err, BundleError::BadTrustedKey(_)), "{err}");
        }
        let err = verify_bundle(&tmp.path().join("nope"), &public_hex(&kp)).unwrap_err();
        assert!(matches!(err, BundleError::NotABundle(_)), "{err}");
    }

    #[test]
    fn non_empty_target_dir_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = tmp.path().join("out");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("keep.txt"), b"precious").unwrap();
        let err = write_bundle(&dir, &[("a.txt", b"a")], input(&kp), &signer(&kp)).unwrap_err();
        assert!(matches!(err, BundleError::TargetNotEmpty(_)), "{err}");
        assert!(err.to_string().contains("refusing to overwrite"));
        assert_eq!(all_files(&dir), ["keep.txt"]);
        assert_eq!(all_files(tmp.path()), ["out"]);

        // An existing bundle is never overwritten either.
        let first = make_bundle(tmp.path(), &kp);
        let err = write_bundle(&first, &[("a.txt", b"a")], input(&kp), &signer(&kp)).unwrap_err();
        assert!(matches!(err, BundleError::TargetNotEmpty(_)), "{err}");
        verify_bundle(&first, &public_hex(&kp)).unwrap();

        // A file in the way is refused.
        fs::write(tmp.path().join("file"), b"x").unwrap();
        let err = write_bundle(&tmp.path().join("file"), &[], input(&kp), &signer(&kp)).unwrap_err();
        assert!(matches!(err, BundleError::TargetNotDirectory(_)), "{err}");
    }

    #[test]
    fn empty_existing_target_dir_is_used() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = tmp.path().join("out");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        write_bundle(&dir, &[("a.txt", b"a")], input(&kp), &signer(&kp)).unwrap();
        verify_bundle(&dir, &public_hex(&kp)).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(all_files(tmp.path()), ["out"]);
    }

    #[test]
    fn bad_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = tmp.path().join("out");
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/abs",
            "a\\b",
            ".hidden",
            "manifest.json",
            "manifest.sig",
            "sp ace",
            "new\nline",
            "ünï",
        ] {
            let err = write_bundle(&dir, &[(bad, b"x")], input(&kp), &signer(&kp)).unwrap_err();
            assert!(matches!(err, BundleError::BadFileName { .. }), "{bad:?}: {err}");
        }
        let long = "a".repeat(256);
        let err = write_bundle(&dir, &[(&long, b"x")], input(&kp), &signer(&kp)).unwrap_err();
        assert!(matches!(err, BundleError::BadFileName { .. }), "{err}");
        let err = write_bundle(&dir, &[("a", b"x"), ("a", b"y")], input(&kp), &signer(&kp)).unwrap_err();
        assert!(matches!(err, BundleError::DuplicateFileName(_)), "{err}");
        assert!(!dir.exists());
        assert!(all_files(tmp.path()).is_empty());
    }

    #[test]
    fn bad_manifest_input_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = key(1);
        let dir = tmp.path().join("out");
        let cases: Vec<fn(&mut ManifestInput)> = vec![
            |i| i.public_key_hex = "abcd".to_string(),
            |i| i.policy_sha256 = "not a hash".to_string(),
            |i| i.created_at = "yesterday".to_string(),
            |i| i.created_at = "2025-01-02T03:04:05".to_string(),
        ];
        for case in cases {
            let mut inp = input(&kp);
            case(&mut inp);
            let err = write_bundle(&dir, &[("a", b"x")], inp, &signer(&kp)).unwrap_err();
            assert!(matches!(err, BundleError::BadInput(_)), "{err}");
        }
        assert!(!dir.exists());
    }

    #[test]
    fn rfc3339_forms() {
        for ok in [
            "2025-01-02T03:04:05Z",
            "2025-01-02t03:04:05z",
            "2025-01-02T03:04:05.123456Z",
            "2025-01-02T03:04:05+02:00",
            "2025-01-02T03:04:05.5-07:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2025-01-02",
            "2025-01-02T03:04:05",
            "2025-01-02T03:04:05.Z",
            "2025-01-02T03:04:05+0200",
            "2025-01-02T03:04:05Zx",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn signer_with_another_key_is_refused_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let (kp, other) = (key(1), key(2));
        let dir = tmp.path().join("out");
        let err = write_bundle(&dir, &[("a", b"x")], input(&kp), &signer(&other)).unwrap_err();
        assert!(matches!(err, BundleError::BadSigner(_)), "{err}");
        let short = |_: &[u8]| vec![0u8; 10];
        let err = write_bundle(&dir, &[("a", b"x")], input(&kp), &short).unwrap_err();
        assert!(matches!(err, BundleError::BadSigner(_)), "{err}");
        assert!(!dir.exists());
        assert!(all_files(tmp.path()).is_empty());
    }

    #[test]
    fn fingerprint_is_sha256_of_the_key_bytes() {
        let kp = key(1);
        let hex_key = public_hex(&kp);
        assert_eq!(fingerprint(&hex_key), sha256_hex(kp.public_key().as_ref()));
        assert_eq!(fingerprint(&hex_key.to_uppercase()), fingerprint(&hex_key));
        assert_eq!(fingerprint(&format!(" {hex_key}\n")), fingerprint(&hex_key));
        assert_ne!(fingerprint(&public_hex(&key(2))), fingerprint(&hex_key));
        assert_eq!(fingerprint("not hex").len(), 64);
    }

    #[test]
    fn plain_weights_keeps_exactly_the_model_tensors() {
        let ckpt = checkpoint();
        let source = SafeTensors::deserialize(&ckpt).unwrap();
        let plain = plain_weights(&ckpt).unwrap();
        let out = SafeTensors::deserialize(&plain).unwrap();
        let mut names = out.names();
        names.sort();
        assert_eq!(names, ["blocks.0.attn.w", "ln_f.bias", "wte"]);
        for name in names {
            let got = out.tensor(name).unwrap();
            let want = source.tensor(&format!("model.{name}")).unwrap();
            assert_eq!(got.dtype(), Dtype::F32);
            assert_eq!(got.dtype(), want.dtype());
            assert_eq!(got.shape(), want.shape());
            assert_eq!(got.data(), want.data());
        }
        // Laid out in name order.
        let (_, meta) = SafeTensors::read_metadata(&plain).unwrap();
        let mut by_offset: Vec<(usize, String)> = meta
            .tensors()
            .into_iter()
            .map(|(n, info)| (info.data_offsets.0, n))
            .collect();
        by_offset.sort();
        let order: Vec<&str> = by_offset.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(order, ["blocks.0.attn.w", "ln_f.bias", "wte"]);
        // Metadata: format pt only (the checkpoint's config and state are dropped).
        let info = meta.metadata().clone().unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info["format"], "pt");
        // Deterministic, byte for byte.
        for _ in 0..8 {
            assert_eq!(plain_weights(&ckpt).unwrap(), plain);
        }
    }

    #[test]
    fn plain_weights_without_config_has_only_format() {
        let data = f32_bytes(&[1.0, 2.0]);
        let views = vec![("model.w", TensorView::new(Dtype::F32, vec![2], &data).unwrap())];
        let ckpt = safetensors::serialize(views, None).unwrap();
        let plain = plain_weights(&ckpt).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&plain).unwrap();
        let info = meta.metadata().clone().unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info["format"], "pt");
    }

    #[test]
    fn plain_weights_rejects_non_safetensors() {
        for bad in [&b""[..], b"not a safetensors file", &[0xff; 64]] {
            let err = plain_weights(bad).unwrap_err();
            assert!(matches!(err, BundleError::NotSafetensors(_)), "{err}");
        }
        let mut truncated = checkpoint();
        truncated.pop();
        let err = plain_weights(&truncated).unwrap_err();
        assert!(matches!(err, BundleError::NotSafetensors(_)), "{err}");
    }

    #[test]
    fn plain_weights_rejects_checkpoint_without_model_tensors() {
        let data = f32_bytes(&[1.0, 2.0]);
        let views = vec![
            ("optim.m.w", TensorView::new(Dtype::F32, vec![2], &data).unwrap()),
            ("optim.v.w", TensorView::new(Dtype::F32, vec![2], &data).unwrap()),
        ];
        let ckpt = safetensors::serialize(views, None).unwrap();
        let err = plain_weights(&ckpt).unwrap_err();
        assert!(matches!(err, BundleError::NoModelTensors), "{err}");
        let empty = safetensors::serialize(Vec::<(&str, TensorView<'_>)>::new(), None).unwrap();
        assert!(matches!(plain_weights(&empty), Err(BundleError::NoModelTensors)));
    }
}
