//! What the fuzz targets in `fuzz_targets/` share: the fixed test keys, how an input is cut into parts,
//! a scratch directory for readers that take a path, a bounded drain for streaming readers, the checks on
//! secret-scan findings, and an allocator that turns any single oversized allocation into a crash.
//!
//! Every target feeds arbitrary bytes to Lethe's real parsing and verifying code and asserts that it
//! neither panics, hangs nor allocates without bound; some also check a round trip or a property the
//! format promises (a changed sealed stream never opens, a written bundle always verifies, ...).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub mod ledger;

use lethe::audit::secrets::Finding;
use lethe::vault::stream::{DataKey, StreamContext};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

// ------------------------------------------------------------------------------------------ allocation

/// The largest single allocation a target may make. Every reader here bounds what it allocates by its
/// input (a few KiB) or by a documented constant (a sealed stream's 16 MiB segment, a 1 MiB read
/// buffer); an allocation above this is sized by a value read from the input, and is reported as a crash.
pub const MAX_ALLOC: usize = 256 << 20;

/// The system allocator, aborting (which libFuzzer records as a crash, with the input) on an allocation
/// above [`MAX_ALLOC`]. Allocations are lazy on Linux, so without this a `vec![0; huge]` could pass
/// unnoticed whenever the reader fails before touching the memory.
pub struct CappedAlloc;

// SAFETY: every call is forwarded to the system allocator unchanged, or the process aborts.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn check_size(size: usize) {
    if size > MAX_ALLOC {
        // No formatting machinery that might allocate: write the fixed message and abort.
        let msg = b"lethe-fuzz: a single allocation above MAX_ALLOC (256 MiB): unbounded allocation\n";
        // SAFETY: writing a static buffer to stderr.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        std::process::abort();
    }
}

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

// ------------------------------------------------------------------------------------------------ keys

/// The data key of the vault test vectors (`tests/vault-vectors/*.expect`: bytes 0x00..=0x1f), so that
/// those files are valid seeds for the sealed-stream reader.
pub fn data_key() -> DataKey {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    DataKey::from_bytes(k)
}

/// Corpus id and role of the vault test vectors.
pub const CORPUS_ID: &str = "corpus-a";
pub const ROLE: &str = "shard-000001";
/// Key id written into streams the targets seal.
pub const KEY_ID: &str = "fuzz-key";

/// The stream context the vault test vectors were sealed for.
pub fn context() -> StreamContext {
    StreamContext::new(CORPUS_ID, ROLE)
}

/// RFC 8032, section 7.1, TEST 1: a published Ed25519 key pair, the appliance signing key of every
/// target (bundles, ledger checkpoints). Seeds that name a public key name this one.
const SIGNING_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
pub const SIGNING_PUBLIC_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn signing_key() -> &'static Ed25519KeyPair {
    static KEY: OnceLock<Ed25519KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        let seed = hex::decode(SIGNING_SEED).expect("hex");
        let public = hex::decode(SIGNING_PUBLIC_HEX).expect("hex");
        let kp = Ed25519KeyPair::from_seed_and_public_key(&seed, &public).expect("the RFC 8032 test key");
        assert_eq!(kp.public_key().as_ref(), &public[..]);
        kp
    })
}

/// The Ed25519 signature of `message` under the fixed signing key, as the vault's signer returns it.
pub fn sign(message: &[u8]) -> Vec<u8> {
    signing_key().sign(message).as_ref().to_vec()
}

// ----------------------------------------------------------------------------------------------- input

/// The first byte of an input, which picks a target's mode or options, and the rest; an empty input is
/// byte 0 followed by nothing.
pub fn first_byte(data: &[u8]) -> (u8, &[u8]) {
    data.split_first().map_or((0, data), |(&b, rest)| (b, rest))
}

/// Cuts an input holding several files or texts: a line `-----8<-----` between two parts. Seeds are
/// written this way (see `README.md`), and mutations that touch the separator just move bytes between
/// parts.
pub const SEPARATOR: &[u8] = b"\n-----8<-----\n";

/// The parts of `data` (one part when it holds no separator).
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = find(rest, SEPARATOR) {
        out.push(&rest[..at]);
        rest = &rest[at + SEPARATOR.len()..];
    }
    out.push(rest);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A part as a file of a directory: its first line is the file name, the rest the content.
pub fn named(part: &[u8]) -> (String, &[u8]) {
    match part.iter().position(|&b| b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&part[..i]).into_owned(), &part[i + 1..]),
        None => (String::from_utf8_lossy(part).into_owned(), &[]),
    }
}

/// Whether `name` can be created inside a scratch directory without leaving it: one path component of at
/// most 255 bytes (the readers under test judge every other property of the name).
pub fn stays_inside(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.contains(['/', '\0']) && name != "." && name != ".."
}

// ------------------------------------------------------------------------------------------ filesystem

/// An empty directory `name` in this process's scratch directory (on tmpfs when `/dev/shm` is there),
/// for readers that take a path. Emptied on every call, removed when the process exits normally.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the scratch directory is writable");
    dir
}

/// Writes `bytes` as `dir/name` (which [`stays_inside`]).
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("the scratch directory is writable");
    path
}

/// This process's scratch directory, made on first use.
static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

fn scratch() -> &'static Path {
    SCRATCH.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("lethe-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory can be made");
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe { libc::atexit(remove_scratch) };
        dir
    })
}

extern "C" fn remove_scratch() {
    if let Some(dir) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

// --------------------------------------------------------------------------------------------- readers

/// Reads `r` to its end or until `cap` bytes, whichever comes first, through one fixed buffer: a
/// streaming reader is checked without holding its output. Returns the bytes read, or the error.
pub fn drain(mut r: impl Read, cap: u64) -> std::io::Result<u64> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    while total < cap {
        match r.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    Ok(total)
}

/// What `Scanner::scan` promises about its findings in `text`: each secret is the non-empty text at its
/// span, and the list is sorted by `(start, end, rule)` without repeats.
pub fn check_findings(text: &str, findings: &[Finding]) {
    for f in findings {
        assert!(f.start < f.end, "empty or reversed span {}..{}", f.start, f.end);
        assert_eq!(
            text.get(f.start..f.end),
            Some(f.secret.as_str()),
            "rule {}: the secret is not the text at {}..{}",
            f.rule,
            f.start,
            f.end
        );
    }
    for w in findings.windows(2) {
        let key = |f: &Finding| (f.start, f.end, f.rule.clone());
        assert!(key(&w[0]) < key(&w[1]), "findings out of order or repeated");
    }
}
