//! Sealed streams: the format of every encrypted file in the vault, and its streaming writer and
//! reader.
//!
//! The format is specified in `docs/vault-format.md`; this module implements version 1. Key points:
//!
//! - A file is a plaintext header followed by segments. The header holds the magic `LETHEVLT`,
//!   version, algorithm, compression, segment size, a random 16-byte stream salt, a random 7-byte
//!   nonce prefix, the **key id** of the data key (never the key itself: master-key rotation
//!   re-wraps data keys without rewriting files), and the **corpus id** and **role**
//!   (`shard-000003`, `tokenizer`, ...) of the file.
//! - The payload is compressed as one zstd frame, then cut into segments of `segment size` payload
//!   bytes (default 64 KiB; the size counts compressed-stream bytes, i.e. ciphertext without the
//!   16-byte tag), each sealed with AES-256-GCM under `HKDF-SHA256(salt, data key)`, with `nonce =
//!   prefix (7) ‖ segment counter (4, big-endian) ‖ last flag (1)` and **the whole header as
//!   associated data**, as in age's STREAM and Tink's streaming AEAD.
//! - The final segment carries the last flag and may be full: a full chunk is held back until more
//!   data proves it is not the last. An empty payload still produces one (final) segment.
//! - Readers compare the header's corpus id and role with what they expect before decrypting
//!   anything. Because the header is the associated data, editing it to claim the expected context
//!   fails authentication. Bit flips, truncation (also at a segment boundary), reordered, dropped
//!   or foreign segments, appended data and the wrong key are all detected.
//! - Memory does not grow with the file: a writer holds one segment, a reader two (ciphertext and
//!   plaintext), plus the zstd window (at most 8 MiB; 2 MiB at the default level).
//!
//! [`SealWriter`] and [`OpenReader`] stream in both directions; [`seal_to_vec`] and
//! [`open_from_slice`] are the in-memory shortcuts; [`read_header`] reads the key id and context
//! without a key.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::SecureRandom;
use zeroize::{Zeroize, Zeroizing};

/// First bytes of every sealed stream.
pub const MAGIC: [u8; 8] = *b"LETHEVLT";
/// The format version this module writes and the only one it reads.
pub const VERSION: u8 = 1;
/// Algorithm byte: AES-256-GCM segments under an HKDF-SHA256 stream key, STREAM nonces.
pub const ALGORITHM_AES_256_GCM_HKDF_SHA256: u8 = 1;
/// Compression byte: the payload is one zstd frame.
pub const COMPRESSION_ZSTD: u8 = 1;
/// Length of a data key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the per-stream HKDF salt in the header.
pub const SALT_LEN: usize = 16;
/// Length of the random nonce prefix in the header.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Length of the GCM tag at the end of every segment.
pub const TAG_LEN: usize = 16;
/// Default payload bytes per segment (each full segment is this plus [`TAG_LEN`] bytes on disk).
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;
/// Smallest allowed segment size; small enough for tiny test vectors.
pub const MIN_SEGMENT_SIZE: u32 = 64;
/// Largest allowed segment size. Readers allocate this much on the word of an unauthenticated
/// header, so the bound is also what a hostile header can make a reader allocate.
pub const MAX_SEGMENT_SIZE: u32 = 16 * 1024 * 1024;
/// Longest key id, corpus id or role, in bytes (the length is one byte in the header).
pub const MAX_ID_LEN: usize = 255;
/// Default zstd level: fast, and the window stays at 2 MiB.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Highest zstd level a writer accepts. Levels 20 to 22 need windows up to 128 MiB on the reader.
pub const MAX_ZSTD_LEVEL: i32 = 19;

/// log2 of the largest zstd window a reader accepts: 8 MiB, the most that levels 1 to 19 use.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// Header bytes before the key id: magic, version, algorithm, compression, segment size, salt,
/// prefix.
const FIXED_HEADER_LEN: usize = 8 + 1 + 1 + 1 + 4 + SALT_LEN + NONCE_PREFIX_LEN;
/// HKDF `info` for the stream key; it separates this use of a data key from any other.
const HKDF_INFO: &[u8] = b"lethe vault stream v1: AES-256-GCM segment key";
const LAST_SEGMENT: u8 = 0x01;
const NOT_LAST_SEGMENT: u8 = 0x00;

/// A 256-bit data key: the key a corpus or a training run seals its files with.
///
/// Zeroized on drop; `Debug` never shows the bytes. Misuse rules: the key never appears in a sealed
/// file (only its id does), and every stream gets a fresh random salt and nonce prefix, which
/// [`SealWriter`] draws itself, so one key can seal many files.
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    /// Wraps existing key bytes, e.g. just unwrapped by the master key. The caller should zeroize
    /// its own copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Draws a fresh random key.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, StreamError> {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill(&mut bytes).map_err(|_| StreamError::Rng)?;
        Ok(Self(bytes))
    }

    /// The raw key bytes, for wrapping under the master key.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// What a file is for: the corpus (or training run) it belongs to and its role in it.
///
/// Both are stored in the header and authenticated. A reader states the context it expects, so a
/// shard copied into another corpus, or a tokenizer file put where a shard should be, is refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamContext {
    /// Id of the corpus or training run, printable ASCII without spaces, 1 to 255 bytes.
    pub corpus_id: String,
    /// Role of the file, e.g. `shard-000003`, `tokenizer`, `manifest`, `canaries`, `checkpoint`;
    /// same character rules as the corpus id.
    pub role: String,
}

impl StreamContext {
    /// A context from a corpus (or run) id and a role; checked when a writer uses it.
    pub fn new(corpus_id: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            corpus_id: corpus_id.into(),
            role: role.into(),
        }
    }
}

/// Writer settings that are not part of the file's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealOptions {
    /// Payload bytes per segment, [`MIN_SEGMENT_SIZE`] to [`MAX_SEGMENT_SIZE`]. Larger segments
    /// cost less tag overhead and fewer GCM calls; smaller ones let a reader reject damage sooner.
    pub segment_size: u32,
    /// zstd level, 1 to [`MAX_ZSTD_LEVEL`]. Not recorded in the file; the reader does not need it.
    pub zstd_level: i32,
}

impl Default for SealOptions {
    fn default() -> Self {
        Self {
            segment_size: DEFAULT_SEGMENT_SIZE,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

impl SealOptions {
    fn validate(&self) -> Result<(), StreamError> {
        check_segment_size(self.segment_size).map_err(StreamError::InvalidParameter)?;
        if !(1..=MAX_ZSTD_LEVEL).contains(&self.zstd_level) {
            return Err(StreamError::InvalidParameter(format!(
                "zstd level {} is outside 1..={MAX_ZSTD_LEVEL}",
                self.zstd_level
            )));
        }
        Ok(())
    }
}

/// Everything that can go wrong sealing or opening a stream, in the terms of the file.
///
/// Segments are numbered from 0. Errors that pass through [`std::io::Read`] or [`std::io::Write`]
/// arrive as `io::Error`; [`StreamError::from_io`] (or `?` into a `StreamError`) gets them back.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("not a Lethe sealed stream (the file does not start with the vault magic bytes)")]
    BadMagic,
    #[error("sealed stream format version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("sealed stream algorithm {0} is not supported")]
    UnsupportedAlgorithm(u8),
    #[error("sealed stream compression {0} is not supported")]
    UnsupportedCompression(u8),
    #[error("invalid sealed stream header: {0}")]
    BadHeader(String),
    #[error("the sealed stream header is truncated")]
    HeaderTruncated,
    #[error(
        "this file belongs to corpus {found_corpus} role {found_role}, \
         expected corpus {expected_corpus} role {expected_role}"
    )]
    WrongContext {
        found_corpus: String,
        found_role: String,
        expected_corpus: String,
        expected_role: String,
    },
    #[error("segment {segment} failed authentication (corrupt, truncated, reordered or wrong key)")]
    SegmentAuth { segment: u64 },
    #[error(
        "the sealed stream is truncated: it ends after {after_segments} segments \
         without a final one"
    )]
    Truncated { after_segments: u64 },
    #[error(
        "unexpected data after the final segment (segment {})",
        after_segments.saturating_sub(1)
    )]
    TrailingData { after_segments: u64 },
    #[error("the stream is longer than the format allows (2^32 segments)")]
    TooLong,
    #[error("the authenticated payload is not a valid compressed stream: {0}")]
    Decompress(String),
    #[error(
        "an earlier write to this sealed stream failed; the file is incomplete \
         and must be discarded"
    )]
    WriterFailed,
    #[error("invalid sealing parameter: {0}")]
    InvalidParameter(String),
    #[error("the system random number generator failed")]
    Rng,
    #[error("I/O error: {0}")]
    Io(io::Error),
}

impl StreamError {
    /// Recovers the `StreamError` carried by an `io::Error` from [`SealWriter`] or [`OpenReader`];
    /// any other `io::Error` becomes [`StreamError::Io`].
    pub fn from_io(err: io::Error) -> Self {
        // Check before `into_inner`, which would throw away the OS error code of a plain I/O error.
        if !err.get_ref().is_some_and(|inner| inner.is::<StreamError>()) {
            return Self::Io(err);
        }
        let kind = err.kind();
        match err.into_inner() {
            Some(inner) => match inner.downcast::<StreamError>() {
                Ok(stream_err) => *stream_err,
                Err(other) => Self::Io(io::Error::new(kind, other)),
            },
            None => Self::Io(io::Error::from(kind)),
        }
    }

    /// A copy of this error. A failed reader or writer keeps failing with the same error rather
    /// than carry on past the damage, and `io::Error` is not `Clone`.
    fn duplicate(&self) -> Self {
        match self {
            Self::BadMagic => Self::BadMagic,
            Self::UnsupportedVersion(v) => Self::UnsupportedVersion(*v),
            Self::UnsupportedAlgorithm(a) => Self::UnsupportedAlgorithm(*a),
            Self::UnsupportedCompression(c) => Self::UnsupportedCompression(*c),
            Self::BadHeader(why) => Self::BadHeader(why.clone()),
            Self::HeaderTruncated => Self::HeaderTruncated,
            Self::WrongContext {
                found_corpus,
                found_role,
                expected_corpus,
                expected_role,
            } => Self::WrongContext {
                found_corpus: found_corpus.clone(),
                found_role: found_role.clone(),
                expected_corpus: expected_corpus.clone(),
                expected_role: expected_role.clone(),
            },
            Self::SegmentAuth { segment } => Self::SegmentAuth { segment: *segment },
            Self::Truncated { after_segments } => Self::Truncated {
                after_segments: *after_segments,
            },
            Self::TrailingData { after_segments } => Self::TrailingData {
                after_segments: *after_segments,
            },
            Self::TooLong => Self::TooLong,
            Self::Decompress(why) => Self::Decompress(why.clone()),
            Self::WriterFailed => Self::WriterFailed,
            Self::InvalidParameter(why) => Self::InvalidParameter(why.clone()),
            Self::Rng => Self::Rng,
            Self::Io(e) => Self::Io(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl From<io::Error> for StreamError {
    fn from(err: io::Error) -> Self {
        Self::from_io(err)
    }
}

impl From<StreamError> for io::Error {
    fn from(err: StreamError) -> Self {
        // Every StreamError is wrapped, `Io` included, so that `from_io` can tell errors that
        // already passed through this module from errors zstd raises about the data (see
        // `OpenReader::read`).
        let kind = match &err {
            StreamError::Io(inner) => inner.kind(),
            StreamError::HeaderTruncated | StreamError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            StreamError::InvalidParameter(_) => io::ErrorKind::InvalidInput,
            StreamError::Rng | StreamError::WriterFailed => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

/// The parsed header of a sealed stream; everything in it is public information.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    segment_size: u32,
    salt: [u8; SALT_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    key_id: String,
    context: StreamContext,
    /// The exact header bytes: written to the file and used as every segment's associated data.
    encoded: Vec<u8>,
}

impl StreamHeader {
    /// Builds a writer's header, rejecting parameters the format cannot carry.
    fn new(
        segment_size: u32,
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        key_id: &str,
        context: &StreamContext,
    ) -> Result<Self, StreamError> {
        check_segment_size(segment_size).map_err(StreamError::InvalidParameter)?;
        let ids = [
            ("key id", key_id),
            ("corpus id", context.corpus_id.as_str()),
            ("role", context.role.as_str()),
        ];
        let ids_len: usize = ids.iter().map(|(_, id)| 1 + id.len()).sum();
        let mut encoded = Vec::with_capacity(FIXED_HEADER_LEN + ids_len);
        encoded.extend_from_slice(&MAGIC);
        encoded.extend_from_slice(&[VERSION, ALGORITHM_AES_256_GCM_HKDF_SHA256, COMPRESSION_ZSTD]);
        encoded.extend_from_slice(&segment_size.to_be_bytes());
        encoded.extend_from_slice(&salt);
        encoded.extend_from_slice(&nonce_prefix);
        for (what, id) in ids {
            check_id(id.as_bytes()).map_err(|why| StreamError::InvalidParameter(format!("{what} {why}")))?;
            let len = u8::try_from(id.len()).expect("check_id bounds ids to 255 bytes");
            encoded.push(len);
            encoded.extend_from_slice(id.as_bytes());
        }
        Ok(Self {
            segment_size,
            salt,
            nonce_prefix,
            key_id: key_id.to_owned(),
            context: context.clone(),
            encoded,
        })
    }

    /// Reads exactly the header bytes from `reader`, leaving it at the first segment.
    fn parse<R: Read>(reader: &mut R) -> Result<Self, StreamError> {
        // Offsets below are those of the layout table in docs/vault-format.md.
        let mut fixed = [0u8; FIXED_HEADER_LEN];
        // Magic and version are checked before reading further, so that a file of another kind or a
        // later version (whose header may be shorter) gets the precise error, not "truncated".
        read_header_bytes(reader, &mut fixed[..MAGIC.len()])?;
        if fixed[..MAGIC.len()] != MAGIC {
            return Err(StreamError::BadMagic);
        }
        read_header_bytes(reader, &mut fixed[8..9])?;
        if fixed[8] != VERSION {
            return Err(StreamError::UnsupportedVersion(fixed[8]));
        }
        read_header_bytes(reader, &mut fixed[9..])?;
        if fixed[9] != ALGORITHM_AES_256_GCM_HKDF_SHA256 {
            return Err(StreamError::UnsupportedAlgorithm(fixed[9]));
        }
        if fixed[10] != COMPRESSION_ZSTD {
            return Err(StreamError::UnsupportedCompression(fixed[10]));
        }
        let segment_size = u32::from_be_bytes(fixed[11..15].try_into().expect("4-byte slice"));
        check_segment_size(segment_size).map_err(StreamError::BadHeader)?;
        let salt: [u8; SALT_LEN] = fixed[15..31].try_into().expect("16-byte slice");
        let nonce_prefix: [u8; NONCE_PREFIX_LEN] = fixed[31..38].try_into().expect("7-byte slice");

        let mut encoded = fixed.to_vec();
        let key_id = read_header_id(reader, "key id", &mut encoded)?;
        let corpus_id = read_header_id(reader, "corpus id", &mut encoded)?;
        let role = read_header_id(reader, "role", &mut encoded)?;
        Ok(Self {
            segment_size,
            salt,
            nonce_prefix,
            key_id,
            context: StreamContext { corpus_id, role },
            encoded,
        })
    }

    /// Id of the data key that sealed the stream; look the wrapped key up by it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The corpus id and role the file claims. Authenticated only once a segment opens.
    pub fn context(&self) -> &StreamContext {
        &self.context
    }

    /// Payload bytes per full segment.
    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// The random 7 bytes that start every segment's nonce.
    pub fn nonce_prefix(&self) -> [u8; NONCE_PREFIX_LEN] {
        self.nonce_prefix
    }

    /// Bytes the header occupies at the start of the file; segment 0 starts here.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    fn check_context(&self, expected: &StreamContext) -> Result<(), StreamError> {
        if self.context == *expected {
            return Ok(());
        }
        Err(StreamError::WrongContext {
            found_corpus: self.context.corpus_id.clone(),
            found_role: self.context.role.clone(),
            expected_corpus: expected.corpus_id.clone(),
            expected_role: expected.role.clone(),
        })
    }
}

/// Reads the header of a sealed stream without a key, to learn which data key and context it names.
///
/// Reads exactly the header's bytes, so `reader` is left at segment 0; pass the header and the
/// reader to [`OpenReader::with_header`] to go on. Nothing returned is authenticated yet.
pub fn read_header<R: Read>(mut reader: R) -> Result<StreamHeader, StreamError> {
    StreamHeader::parse(&mut reader)
}

fn check_segment_size(size: u32) -> Result<(), String> {
    if (MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(format!(
            "segment size {size} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}"
        ))
    }
}

/// Why an id cannot go into a header, if it cannot.
fn check_id(id: &[u8]) -> Result<(), &'static str> {
    if id.is_empty() {
        Err("is empty")
    } else if id.len() > MAX_ID_LEN {
        Err("is longer than 255 bytes")
    } else if !id.iter().all(|b| (0x21..=0x7e).contains(b)) {
        // Visible ASCII only: ids are quoted in error messages and terminals, and one spelling per
        // id keeps the header encoding unique.
        Err("contains a character outside printable ASCII (spaces and control characters included)")
    } else {
        Ok(())
    }
}

fn read_header_bytes<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<(), StreamError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => StreamError::HeaderTruncated,
        _ => StreamError::Io(e),
    })
}

fn read_header_id<R: Read>(reader: &mut R, what: &str, encoded: &mut Vec<u8>) -> Result<String, StreamError> {
    let mut len = [0u8; 1];
    read_header_bytes(reader, &mut len)?;
    let mut id = vec![0u8; usize::from(len[0])];
    read_header_bytes(reader, &mut id)?;
    check_id(&id).map_err(|why| StreamError::BadHeader(format!("{what} {why}")))?;
    encoded.push(len[0]);
    encoded.extend_from_slice(&id);
    // check_id admits only ASCII, so this conversion cannot fail; map rather than panic regardless.
    String::from_utf8(id).map_err(|_| StreamError::BadHeader(format!("{what} is not ASCII")))
}

/// The per-stream AES-256-GCM key and nonce prefix.
///
/// ring's key types do not zeroize their schedules on drop; the data key they come from does.
struct SegmentKey {
    key: LessSafeKey,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl SegmentKey {
    fn derive(data_key: &DataKey, header: &StreamHeader) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &header.salt).extract(data_key.as_bytes());
        let okm = prk
            .expand(&[HKDF_INFO], &aead::AES_256_GCM)
            .expect("32 bytes is far below HKDF-SHA256's output limit of 8160");
        Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            nonce_prefix: header.nonce_prefix,
        }
    }

    fn nonce(&self, counter: u32, last: bool) -> Nonce {
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&counter.to_be_bytes());
        nonce[aead::NONCE_LEN - 1] = if last { LAST_SEGMENT } else { NOT_LAST_SEGMENT };
        Nonce::assume_unique_for_key(nonce)
    }
}

// ------------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------------

/// Cuts a byte stream (the compressed payload) into segments and seals them. The segment layer of
/// the format, without compression.
pub(crate) struct SegmentSealer<W: Write> {
    inner: W,
    key: SegmentKey,
    header: StreamHeader,
    segment_size: usize,
    /// Payload of the segment being filled; sealed in place, so it has room for the tag.
    buf: Zeroizing<Vec<u8>>,
    counter: u32,
    failed: bool,
}

impl<W: Write> SegmentSealer<W> {
    /// Writes the header and prepares to seal segments.
    pub(crate) fn new(mut inner: W, data_key: &DataKey, header: StreamHeader) -> Result<Self, StreamError> {
        inner.write_all(&header.encoded).map_err(StreamError::Io)?;
        let segment_size = header.segment_size as usize;
        Ok(Self {
            inner,
            key: SegmentKey::derive(data_key, &header),
            header,
            segment_size,
            buf: Zeroizing::new(Vec::with_capacity(segment_size + TAG_LEN)),
            counter: 0,
            failed: false,
        })
    }

    #[cfg(test)]
    fn start_at_counter(&mut self, counter: u32) {
        self.counter = counter;
    }

    /// Seals the buffered payload as segment `counter` and writes it out.
    fn seal_buffered(&mut self, last: bool) -> Result<(), StreamError> {
        if self.failed {
            return Err(StreamError::WriterFailed);
        }
        // A non-final segment at the highest counter would leave no number for the next one.
        if !last && self.counter == u32::MAX {
            self.failed = true;
            return Err(StreamError::TooLong);
        }
        let nonce = self.key.nonce(self.counter, last);
        self.key
            .key
            .seal_in_place_append_tag(nonce, Aad::from(&self.header.encoded[..]), &mut *self.buf)
            .expect("a segment of at most 16 MiB is far below AES-GCM's 64 GiB message limit");
        let written = self.inner.write_all(&self.buf);
        self.buf.clear();
        if let Err(e) = written {
            // Part of a segment may be on disk and the buffer is spent: there is no way to resume.
            self.failed = true;
            return Err(StreamError::Io(e));
        }
        if !last {
            self.counter += 1;
        }
        Ok(())
    }

    /// Seals what is buffered as the final segment (even if empty or full) and returns the inner
    /// writer.
    pub(crate) fn finish(mut self) -> Result<W, StreamError> {
        self.seal_buffered(true)?;
        // Nothing may be written after the final segment, even by accident.
        self.failed = true;
        self.inner.flush().map_err(StreamError::Io)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SegmentSealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(StreamError::WriterFailed.into());
        }
        if data.is_empty() {
            return Ok(0);
        }
        if self.buf.len() == self.segment_size {
            // A full buffer is sealed only now that more data proves it is not the final segment.
            // This is how a payload that fills its last segment exactly gets the last flag on that
            // segment instead of on an empty one after it.
            self.seal_buffered(false)?;
        }
        // At most one segment per call, so an error above leaves `data` untouched, as `write`
        // promises.
        let take = data.len().min(self.segment_size - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        Ok(take)
    }

    /// Flushes the inner writer. Never seals a partial segment: all segments but the last are full.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Compresses and seals a payload into a sealed stream, streaming: memory use is one segment plus
/// the zstd encoder's state, whatever the payload's size.
///
/// The segment buffer is zeroized on drop; zstd's internal state and ring's key schedule are not,
/// as neither library offers it.
///
/// [`finish`](Self::finish) must be called. Dropping the writer without it leaves a file with no
/// final segment, which every reader rejects as truncated or corrupt: that is deliberate, so a
/// crash mid-write can never pass for a complete file.
pub struct SealWriter<W: Write> {
    encoder: zstd::stream::write::Encoder<'static, SegmentSealer<W>>,
}

impl<W: Write> SealWriter<W> {
    /// Starts a stream with default options, writing the header to `inner` at once. `key_id` names
    /// `data_key` for readers; `context` says what the file is. `rng` draws the salt and nonce
    /// prefix.
    pub fn new(
        inner: W,
        data_key: &DataKey,
        key_id: &str,
        context: &StreamContext,
        rng: &dyn SecureRandom,
    ) -> Result<Self, StreamError> {
        Self::with_options(inner, data_key, key_id, context, SealOptions::default(), rng)
    }

    /// Like [`new`](Self::new), with a chosen segment size and zstd level.
    pub fn with_options(
        inner: W,
        data_key: &DataKey,
        key_id: &str,
        context: &StreamContext,
        options: SealOptions,
        rng: &dyn SecureRandom,
    ) -> Result<Self, StreamError> {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        rng.fill(&mut salt).map_err(|_| StreamError::Rng)?;
        rng.fill(&mut nonce_prefix).map_err(|_| StreamError::Rng)?;
        Self::with_randomness(inner, data_key, key_id, context, options, salt, nonce_prefix)
    }

    /// Fixed salt and nonce prefix, for reproducible test vectors only. Reusing them with one key
    /// in real files would reuse GCM nonces.
    #[cfg(test)]
    pub(crate) fn with_fixed_nonce(
        inner: W,
        data_key: &DataKey,
        key_id: &str,
        context: &StreamContext,
        options: SealOptions,
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
    ) -> Result<Self, StreamError> {
        Self::with_randomness(inner, data_key, key_id, context, options, salt, nonce_prefix)
    }

    fn with_randomness(
        inner: W,
        data_key: &DataKey,
        key_id: &str,
        context: &StreamContext,
        options: SealOptions,
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
    ) -> Result<Self, StreamError> {
        options.validate()?;
        let header = StreamHeader::new(options.segment_size, salt, nonce_prefix, key_id, context)?;
        let sealer = SegmentSealer::new(inner, data_key, header)?;
        let mut encoder = zstd::stream::write::Encoder::new(sealer, options.zstd_level)?;
        // GCM already authenticates every byte; a zstd checksum would only cost time.
        encoder.include_checksum(false)?;
        Ok(Self { encoder })
    }

    /// The header this stream was started with.
    pub fn header(&self) -> &StreamHeader {
        &self.encoder.get_ref().header
    }

    /// Ends the zstd frame, seals the final segment and returns the inner writer, flushed.
    pub fn finish(self) -> Result<W, StreamError> {
        let sealer = self.encoder.finish()?;
        sealer.finish()
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.encoder.write(data)
    }

    /// Pushes buffered data through zstd and out as full segments, then flushes the inner writer. A
    /// partial segment stays buffered until more data or `finish`: the file is not readable before
    /// then.
    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// Seals `plaintext` into a new `Vec` with default options.
pub fn seal_to_vec(
    plaintext: &[u8],
    data_key: &DataKey,
    key_id: &str,
    context: &StreamContext,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, StreamError> {
    let mut writer = SealWriter::new(Vec::new(), data_key, key_id, context, rng)?;
    writer.write_all(plaintext)?;
    writer.finish()
}

// ------------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------------

enum OpenState {
    /// More segments to open.
    Reading,
    /// The final segment has been opened; the stream is complete.
    Done,
    /// Opening failed. Kept so that every later read fails the same way instead of carrying on past
    /// the damaged segment.
    Failed(StreamError),
}

/// Opens segments one at a time and hands out their verified payload. The segment layer of the
/// format, without decompression.
pub(crate) struct SegmentOpener<R: Read> {
    inner: R,
    key: SegmentKey,
    header: StreamHeader,
    segment_size: usize,
    /// One sealed segment plus one byte of lookahead, which tells a final full segment from a
    /// non-final one. Kept intact while opening, because a failed GCM open wipes its buffer and the
    /// second attempt that names the error needs the ciphertext.
    sealed: Zeroizing<Vec<u8>>,
    sealed_len: usize,
    /// Verified payload of the current segment, and how much of it has been consumed.
    open: Zeroizing<Vec<u8>>,
    pos: usize,
    /// Index of the next segment to open. u64 so that "one past the last counter" is representable.
    next: u64,
    state: OpenState,
}

impl<R: Read> SegmentOpener<R> {
    /// `inner` must be positioned just after `header`.
    pub(crate) fn new(inner: R, data_key: &DataKey, header: StreamHeader) -> Self {
        let segment_size = header.segment_size as usize;
        Self {
            inner,
            key: SegmentKey::derive(data_key, &header),
            header,
            segment_size,
            sealed: Zeroizing::new(vec![0u8; segment_size + TAG_LEN + 1]),
            sealed_len: 0,
            open: Zeroizing::new(Vec::with_capacity(segment_size + TAG_LEN)),
            pos: 0,
            next: 0,
            state: OpenState::Reading,
        }
    }

    #[cfg(test)]
    fn start_at_counter(&mut self, counter: u32) {
        self.next = u64::from(counter);
    }

    /// Reads until the buffer holds a full segment plus lookahead, or the input ends.
    fn fill_sealed(&mut self) -> Result<(), StreamError> {
        while self.sealed_len < self.sealed.len() {
            match self.inner.read(&mut self.sealed[self.sealed_len..]) {
                Ok(0) => break,
                Ok(n) => self.sealed_len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StreamError::Io(e)),
            }
        }
        Ok(())
    }

    /// Tries to open the first `len` buffered bytes as segment `counter`; on success the payload is
    /// in `self.open`.
    fn try_open(&mut self, len: usize, counter: u32, last: bool) -> bool {
        self.open.clear();
        self.open.extend_from_slice(&self.sealed[..len]);
        self.pos = 0;
        let nonce = self.key.nonce(counter, last);
        let aad = Aad::from(&self.header.encoded[..]);
        match self.key.key.open_in_place(nonce, aad, &mut self.open) {
            Ok(payload) => {
                let payload_len = payload.len();
                self.open.truncate(payload_len);
                true
            }
            Err(_) => {
                self.open.clear();
                false
            }
        }
    }

    /// Opens the next segment, following step 4 of the spec's reading rules.
    fn open_next(&mut self) -> Result<(), StreamError> {
        let index = self.next;
        let counter = u32::try_from(index).map_err(|_| StreamError::TooLong)?;
        self.fill_sealed()?;
        let full = self.segment_size + TAG_LEN;
        if self.sealed_len == 0 {
            // Only reachable at segment 0: after a full segment the lookahead byte is already
            // buffered.
            return Err(StreamError::Truncated {
                after_segments: index,
            });
        }
        if self.sealed_len > full {
            if self.try_open(full, counter, false) {
                self.sealed[0] = self.sealed[full];
                self.sealed_len = 1;
                self.next += 1;
                return Ok(());
            }
            // Opening with the other flag only names the error; its payload is never handed out.
            if self.try_open(full, counter, true) {
                self.open.clear();
                return Err(StreamError::TrailingData {
                    after_segments: index + 1,
                });
            }
            return Err(StreamError::SegmentAuth { segment: index });
        }
        let len = self.sealed_len;
        if self.try_open(len, counter, true) {
            self.sealed_len = 0;
            self.state = OpenState::Done;
            return Ok(());
        }
        if len == full && self.try_open(full, counter, false) {
            // A genuine non-final segment with nothing after it: the file was cut at a segment
            // boundary.
            self.open.clear();
            return Err(StreamError::Truncated {
                after_segments: index + 1,
            });
        }
        Err(StreamError::SegmentAuth { segment: index })
    }
}

impl<R: Read> BufRead for SegmentOpener<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.open.len() {
            match &self.state {
                OpenState::Done => return Ok(&[]),
                OpenState::Failed(err) => return Err(err.duplicate().into()),
                OpenState::Reading => {
                    if let Err(err) = self.open_next() {
                        let returned = err.duplicate();
                        self.state = OpenState::Failed(err);
                        return Err(returned.into());
                    }
                }
            }
        }
        Ok(&self.open[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.open.len());
    }
}

impl<R: Read> Read for SegmentOpener<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Opens and decompresses a sealed stream, streaming: memory use is two segments plus the zstd
/// window, whatever the file's size. The segment buffers are zeroized on drop; zstd's window and
/// ring's key schedule are not, as neither library offers it.
///
/// Errors come out of `read` as `io::Error`s carrying a [`StreamError`]; use
/// [`StreamError::from_io`]. Every byte returned has been authenticated, but only a `read` that
/// returns `Ok(0)` proves the stream complete: until then the data is a verified prefix of a file
/// that may yet turn out truncated, so do not act on it (commit it, train on it, export it) before
/// the end.
pub struct OpenReader<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, SegmentOpener<R>>,
    end_verified: bool,
}

impl<R: Read> OpenReader<R> {
    /// Reads the header from `inner` and checks that the file is the `expected` corpus id and role.
    pub fn new(mut inner: R, data_key: &DataKey, expected: &StreamContext) -> Result<Self, StreamError> {
        let header = read_header(&mut inner)?;
        Self::with_header(inner, header, data_key, expected)
    }

    /// Goes on from [`read_header`]: `inner` must be the reader the header was just read from.
    pub fn with_header(
        inner: R,
        header: StreamHeader,
        data_key: &DataKey,
        expected: &StreamContext,
    ) -> Result<Self, StreamError> {
        // Refuse a file of another corpus or role before any decryption, with an error that names
        // both. The header is also every segment's associated data, so this check cannot be
        // bypassed by rewriting the header: segment 0 would then fail authentication.
        header.check_context(expected)?;
        let opener = SegmentOpener::new(inner, data_key, header);
        // One frame exactly: anything after it is reported by `verify_end`, not decoded as more
        // output.
        let mut decoder = zstd::stream::read::Decoder::with_buffer(opener)?.single_frame();
        decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
        Ok(Self {
            decoder,
            end_verified: false,
        })
    }

    /// The stream's header.
    pub fn header(&self) -> &StreamHeader {
        &self.decoder.get_ref().header
    }

    /// The zstd frame has ended; checks that the segment stream ended with it, at a verified final
    /// segment. zstd stops at the end of its frame without asking for more input, so without this
    /// nothing would notice authenticated bytes after the frame, or a frame that ends on a
    /// non-final segment. Only a non-conforming writer can produce either, but accepting them would
    /// make "read to the end" mean less than "verified to the end".
    fn verify_end(&mut self) -> io::Result<()> {
        if self.end_verified {
            return Ok(());
        }
        if !self.decoder.get_mut().fill_buf()?.is_empty() {
            return Err(StreamError::Decompress(
                "authenticated data continues after the end of the compressed frame".to_owned(),
            )
            .into());
        }
        self.end_verified = true;
        Ok(())
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.decoder.read(buf) {
            Ok(0) => {
                self.verify_end()?;
                Ok(0)
            }
            Ok(n) => Ok(n),
            // Errors from the segment layer already carry a StreamError. Anything else was raised
            // by zstd about authenticated bytes, so the data is not a valid frame.
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<StreamError>()) => Err(e),
            Err(e) => Err(StreamError::Decompress(e.to_string()).into()),
        }
    }
}

/// Opens a sealed stream held in memory, checking that it is the `expected` corpus id and role.
pub fn open_from_slice(
    sealed: &[u8],
    data_key: &DataKey,
    expected: &StreamContext,
) -> Result<Vec<u8>, StreamError> {
    let mut reader = OpenReader::new(sealed, data_key, expected)?;
    let mut plaintext = Vec::new();
    reader.read_to_end(&mut plaintext)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    const SMALL: u32 = MIN_SEGMENT_SIZE;
    const KEY_ID: &str = "dk-test-0001";
    const VECTOR_SALT: [u8; SALT_LEN] = *b"lethe-test-salt!";
    const VECTOR_PREFIX: [u8; NONCE_PREFIX_LEN] = *b"vectors";

    fn key_bytes() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| i as u8)
    }

    fn key() -> DataKey {
        DataKey::from_bytes(key_bytes())
    }

    fn ctx() -> StreamContext {
        StreamContext::new("corpus-a", "shard-000001")
    }

    fn options(segment_size: u32) -> SealOptions {
        SealOptions {
            segment_size,
            ..SealOptions::default()
        }
    }

    /// Deterministic incompressible bytes (xorshift64*), so failures reproduce.
    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    fn repetitive_bytes(len: usize) -> Vec<u8> {
        b"fn main() { println!(\"the same line of code, again and again\"); }\n"
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    fn seal_with(plaintext: &[u8], opts: SealOptions, context: &StreamContext) -> Vec<u8> {
        let rng = SystemRandom::new();
        let mut writer = SealWriter::with_options(Vec::new(), &key(), KEY_ID, context, opts, &rng)
            .expect("valid parameters");
        writer.write_all(plaintext).expect("writing to a Vec");
        writer.finish().expect("finishing into a Vec")
    }

    fn seal_small(plaintext: &[u8]) -> Vec<u8> {
        seal_with(plaintext, options(SMALL), &ctx())
    }

    fn open(sealed: &[u8]) -> Result<Vec<u8>, StreamError> {
        open_from_slice(sealed, &key(), &ctx())
    }

    /// Seals `payload` with the segment layer alone (no zstd), as a non-Lethe writer might.
    fn seal_raw(payload: &[u8], segment_size: u32) -> Vec<u8> {
        let header = StreamHeader::new(segment_size, [7; SALT_LEN], [9; NONCE_PREFIX_LEN], KEY_ID, &ctx())
            .expect("valid header");
        let mut sealer = SegmentSealer::new(Vec::new(), &key(), header).expect("writing to a Vec");
        sealer.write_all(payload).expect("writing to a Vec");
        sealer.finish().expect("finishing into a Vec")
    }

    fn open_raw(sealed: &[u8]) -> Result<Vec<u8>, StreamError> {
        let mut input = sealed;
        let header = read_header(&mut input)?;
        let mut opener = SegmentOpener::new(input, &key(), header);
        let mut payload = Vec::new();
        opener.read_to_end(&mut payload)?;
        Ok(payload)
    }

    /// Splits a sealed file into its header and its on-disk segments.
    fn split(sealed: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let header = read_header(sealed).expect("valid header");
        let (head, body) = sealed.split_at(header.encoded_len());
        let full = header.segment_size() as usize + TAG_LEN;
        (head.to_vec(), body.chunks(full).map(<[u8]>::to_vec).collect())
    }

    fn join(head: &[u8], segments: &[Vec<u8>]) -> Vec<u8> {
        let mut out = head.to_vec();
        segments.iter().for_each(|s| out.extend_from_slice(s));
        out
    }

    /// A small stream of four 64-byte segments, the last one short.
    fn four_segment_file() -> Vec<u8> {
        let sealed = seal_small(&random_bytes(200, 1));
        assert_eq!(split(&sealed).1.len(), 4, "fixture should have four segments");
        assert!(
            split(&sealed).1[3].len() < SMALL as usize + TAG_LEN,
            "last segment should be short"
        );
        sealed
    }

    /// A Read that hands out at most a few bytes per call, to exercise partial reads.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = self.1 % 5 + 1;
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// A Write that accepts at most a few bytes per call.
    struct Stingy(Vec<u8>);

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(5);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    // --- segment layer
    // -----------------------------------------------------------------------------

    #[test]
    fn segment_layer_round_trips_edge_sizes_with_exact_segment_counts() {
        for seg in [SMALL, 100] {
            let s = seg as usize;
            for len in [0, 1, s - 1, s, s + 1, 2 * s - 1, 2 * s, 2 * s + 1, 5 * s + 7] {
                let payload = random_bytes(len, len as u64);
                let sealed = seal_raw(&payload, seg);
                // A final full segment carries the last flag itself: no empty segment follows it.
                let segments = len.div_ceil(s).max(1);
                let header_len = read_header(&sealed[..]).expect("header").encoded_len();
                assert_eq!(
                    sealed.len(),
                    header_len + len + segments * TAG_LEN,
                    "seg {seg} len {len}"
                );
                assert_eq!(open_raw(&sealed).expect("opens"), payload, "seg {seg} len {len}");
            }
        }
    }

    #[test]
    fn final_full_segment_is_sealed_with_the_last_flag() {
        let sealed = seal_raw(&random_bytes(2 * SMALL as usize, 2), SMALL);
        let header = read_header(&sealed[..]).expect("header");
        let (_, segments) = split(&sealed);
        assert_eq!(segments.len(), 2);
        let key = SegmentKey::derive(&key(), &header);
        let open_as = |segment: &[u8], counter, last| {
            let mut buf = segment.to_vec();
            key.key
                .open_in_place(key.nonce(counter, last), Aad::from(&header.encoded[..]), &mut buf)
                .is_ok()
        };
        assert!(open_as(&segments[0], 0, false) && !open_as(&segments[0], 0, true));
        assert!(open_as(&segments[1], 1, true) && !open_as(&segments[1], 1, false));
    }

    #[test]
    fn empty_payload_is_one_empty_final_segment() {
        let sealed = seal_raw(b"", SMALL);
        let (head, segments) = split(&sealed);
        assert_eq!(sealed.len(), head.len() + TAG_LEN);
        assert_eq!(segments, vec![sealed[head.len()..].to_vec()]);
        assert_eq!(open_raw(&sealed).expect("opens"), b"");
    }

    #[test]
    fn writer_refuses_to_wrap_the_segment_counter() {
        let header = StreamHeader::new(SMALL, [1; SALT_LEN], [2; NONCE_PREFIX_LEN], KEY_ID, &ctx())
            .expect("valid header");
        let mut sealer = SegmentSealer::new(Vec::new(), &key(), header).expect("Vec");
        sealer.start_at_counter(u32::MAX);
        let err = sealer
            .write_all(&[0; 2 * SMALL as usize])
            .expect_err("no counter after u32::MAX");
        assert!(matches!(StreamError::from_io(err), StreamError::TooLong));
        assert!(matches!(sealer.finish(), Err(StreamError::WriterFailed)));
    }

    #[test]
    fn the_highest_counter_can_hold_the_final_segment() {
        let header = StreamHeader::new(SMALL, [1; SALT_LEN], [2; NONCE_PREFIX_LEN], KEY_ID, &ctx())
            .expect("valid header");
        let payload = random_bytes(SMALL as usize + 1, 3);
        let mut sealer = SegmentSealer::new(Vec::new(), &key(), header.clone()).expect("Vec");
        sealer.start_at_counter(u32::MAX - 1);
        sealer.write_all(&payload).expect("two segments fit");
        let sealed = sealer.finish().expect("final segment at u32::MAX");

        let mut opener = SegmentOpener::new(&sealed[header.encoded_len()..], &key(), header.clone());
        opener.start_at_counter(u32::MAX - 1);
        let mut out = Vec::new();
        opener.read_to_end(&mut out).expect("opens");
        assert_eq!(out, payload);

        // Counters restart at 0 for a real reader, so the same bytes are not a valid stream.
        assert!(matches!(
            open_raw(&sealed),
            Err(StreamError::SegmentAuth { segment: 0 })
        ));
    }

    // --- round trips through zstd
    // ------------------------------------------------------------------

    #[test]
    fn round_trips_at_edge_sizes() {
        let d = DEFAULT_SEGMENT_SIZE as usize;
        let s = SMALL as usize;
        for (seg, len) in [
            (SMALL, 0),
            (SMALL, 1),
            (SMALL, s - 1),
            (SMALL, s),
            (SMALL, s + 1),
            (SMALL, 10 * s + 3),
            (DEFAULT_SEGMENT_SIZE, 0),
            (DEFAULT_SEGMENT_SIZE, 1),
            (DEFAULT_SEGMENT_SIZE, d - 1),
            (DEFAULT_SEGMENT_SIZE, d),
            (DEFAULT_SEGMENT_SIZE, d + 1),
            (DEFAULT_SEGMENT_SIZE, 3 * d + 5),
        ] {
            let plaintext = random_bytes(len, len as u64 + 7);
            let sealed = seal_with(&plaintext, options(seg), &ctx());
            assert_eq!(open(&sealed).expect("opens"), plaintext, "seg {seg} len {len}");
        }
    }

    #[test]
    fn empty_plaintext_still_produces_one_final_segment() {
        let sealed = seal_small(b"");
        let (_, segments) = split(&sealed);
        assert_eq!(segments.len(), 1);
        // The segment holds zstd's frame for empty input, not nothing.
        assert!(segments[0].len() > TAG_LEN);
        assert_eq!(open(&sealed).expect("opens"), b"");
    }

    #[test]
    fn compressed_streams_ending_around_segment_boundaries_round_trip() {
        // Segment boundaries fall in the compressed stream, so hunt for plaintexts whose compressed
        // size is just under, exactly at, and just over a multiple of the segment size.
        let s = SMALL as usize;
        let full = s + TAG_LEN;
        let mut seen = [false; 3];
        for len in 40..400 {
            let plaintext = random_bytes(len, 11);
            let sealed = seal_small(&plaintext);
            let body = sealed.len() - read_header(&sealed[..]).expect("header").encoded_len();
            let compressed = body - body.div_ceil(full) * TAG_LEN;
            if compressed > s {
                match compressed % s {
                    0 => seen[1] = true,
                    1 => seen[2] = true,
                    r if r == s - 1 => seen[0] = true,
                    _ => {}
                }
            }
            assert_eq!(open(&sealed).expect("opens"), plaintext, "len {len}");
        }
        assert_eq!(seen, [true; 3], "boundary cases (-1, exact, +1) all exercised");
    }

    #[test]
    fn large_incompressible_data_streams_through_partial_reads_and_writes() {
        let plaintext = random_bytes(3 << 20, 42);
        let rng = SystemRandom::new();
        let mut writer = SealWriter::new(Stingy(Vec::new()), &key(), KEY_ID, &ctx(), &rng).expect("writer");
        for chunk in plaintext.chunks(7777) {
            writer.write_all(chunk).expect("write");
        }
        let sealed = writer.finish().expect("finish").0;
        assert!(sealed.len() > plaintext.len(), "random data does not compress");

        let mut reader = OpenReader::new(Trickle(&sealed, 0), &key(), &ctx()).expect("reader");
        let mut out = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            match reader.read(&mut buf).expect("read") {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        assert!(out == plaintext, "round trip differs");
        // Memory does not grow with the file: the segment buffers keep their initial size.
        let opener = reader.decoder.get_ref();
        assert_eq!(opener.sealed.len(), DEFAULT_SEGMENT_SIZE as usize + TAG_LEN + 1);
        assert!(opener.open.capacity() <= DEFAULT_SEGMENT_SIZE as usize + TAG_LEN);
    }

    #[test]
    fn large_repetitive_data_compresses_and_round_trips() {
        let plaintext = repetitive_bytes(16 << 20);
        let sealed = seal_with(&plaintext, SealOptions::default(), &ctx());
        assert!(
            sealed.len() < plaintext.len() / 100,
            "sealed {} bytes",
            sealed.len()
        );
        assert!(open(&sealed).expect("opens") == plaintext, "round trip differs");
    }

    #[test]
    fn flush_never_emits_a_partial_segment() {
        let rng = SystemRandom::new();
        let mut writer =
            SealWriter::with_options(Vec::new(), &key(), KEY_ID, &ctx(), options(SMALL), &rng).expect("w");
        writer.write_all(&random_bytes(1000, 5)).expect("write");
        writer.flush().expect("flush");
        let written = writer.encoder.get_ref().inner.len() - writer.header().encoded_len();
        assert_eq!(
            written % (SMALL as usize + TAG_LEN),
            0,
            "only full segments are out"
        );
        let sealed = writer.finish().expect("finish");
        assert_eq!(open(&sealed).expect("opens"), random_bytes(1000, 5));
    }

    #[test]
    fn other_zstd_levels_round_trip() {
        let plaintext = repetitive_bytes(100_000);
        for level in [1, 9, MAX_ZSTD_LEVEL] {
            let opts = SealOptions {
                zstd_level: level,
                ..SealOptions::default()
            };
            assert_eq!(
                open(&seal_with(&plaintext, opts, &ctx())).expect("opens"),
                plaintext
            );
        }
    }

    // --- tampering
    // -----------------------------------------------------------------------------------

    #[test]
    fn every_single_bit_flip_is_detected() {
        let sealed = four_segment_file();
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut damaged = sealed.clone();
                damaged[byte] ^= 1 << bit;
                let err = open(&damaged).expect_err("a flipped bit must be detected");
                assert!(!matches!(err, StreamError::Io(_)), "byte {byte} bit {bit}: {err}");
            }
        }
    }

    #[test]
    fn truncation_at_every_byte_is_detected() {
        let sealed = four_segment_file();
        let (head, segments) = split(&sealed);
        let full = SMALL as usize + TAG_LEN;
        for len in 0..sealed.len() {
            let err = open(&sealed[..len]).expect_err("a truncated file must be detected");
            if len < head.len() {
                assert!(matches!(err, StreamError::HeaderTruncated), "len {len}: {err}");
            } else if (len - head.len()) % full == 0 {
                let after = ((len - head.len()) / full) as u64;
                assert!(
                    matches!(err, StreamError::Truncated { after_segments: a } if a == after),
                    "len {len}: {err}"
                );
            } else {
                let segment = ((len - head.len()) / full) as u64;
                assert!(
                    matches!(err, StreamError::SegmentAuth { segment: s } if s == segment),
                    "len {len}: {err}"
                );
            }
        }
        assert_eq!(segments.len(), 4);
    }

    #[test]
    fn swapped_segments_are_detected() {
        let (head, segments) = split(&four_segment_file());
        for (a, b) in [(0, 1), (1, 2)] {
            let mut swapped = segments.clone();
            swapped.swap(a, b);
            let err = open(&join(&head, &swapped)).expect_err("swap must be detected");
            assert!(
                matches!(err, StreamError::SegmentAuth { segment } if segment == a as u64),
                "{err}"
            );
        }
    }

    #[test]
    fn dropped_segments_are_detected() {
        let (head, segments) = split(&four_segment_file());
        let mut dropped = segments.clone();
        dropped.remove(1);
        let err = open(&join(&head, &dropped)).expect_err("drop must be detected");
        assert!(matches!(err, StreamError::SegmentAuth { segment: 1 }), "{err}");

        // Dropping the final segment leaves a file that ends cleanly after a non-final segment.
        let err = open(&join(&head, &segments[..3])).expect_err("drop must be detected");
        assert!(
            matches!(err, StreamError::Truncated { after_segments: 3 }),
            "{err}"
        );
    }

    #[test]
    fn duplicated_segment_is_detected() {
        let (head, segments) = split(&four_segment_file());
        let mut duplicated = segments.clone();
        duplicated.insert(1, segments[0].clone());
        let err = open(&join(&head, &duplicated)).expect_err("duplicate must be detected");
        assert!(matches!(err, StreamError::SegmentAuth { segment: 1 }), "{err}");
    }

    #[test]
    fn segment_spliced_from_another_stream_under_the_same_key_is_detected() {
        let (head, mut segments) = split(&four_segment_file());
        let (_, other) = split(&four_segment_file());
        segments[2] = other[2].clone();
        let err = open(&join(&head, &segments)).expect_err("splice must be detected");
        assert!(matches!(err, StreamError::SegmentAuth { segment: 2 }), "{err}");
    }

    #[test]
    fn wrong_key_fails_authentication_of_segment_0() {
        let sealed = four_segment_file();
        let err =
            open_from_slice(&sealed, &DataKey::from_bytes([0xff; KEY_LEN]), &ctx()).expect_err("wrong key");
        assert!(matches!(err, StreamError::SegmentAuth { segment: 0 }), "{err}");
    }

    #[test]
    fn rejects_shard_copied_from_another_corpus() {
        let sealed = seal_small(b"tokens of corpus a");
        let err = open_from_slice(&sealed, &key(), &StreamContext::new("corpus-b", "shard-000001"))
            .expect_err("other corpus");
        match err {
            StreamError::WrongContext {
                found_corpus,
                found_role,
                expected_corpus,
                expected_role,
            } => {
                assert_eq!(
                    (found_corpus.as_str(), found_role.as_str()),
                    ("corpus-a", "shard-000001")
                );
                assert_eq!(
                    (expected_corpus.as_str(), expected_role.as_str()),
                    ("corpus-b", "shard-000001")
                );
            }
            other => panic!("expected WrongContext, got {other}"),
        }
    }

    #[test]
    fn rejects_file_swapped_for_another_role() {
        let sealed = seal_small(b"a tokenizer");
        let err = open_from_slice(&sealed, &key(), &StreamContext::new("corpus-a", "tokenizer"))
            .expect_err("other role");
        assert_eq!(
            err.to_string(),
            "this file belongs to corpus corpus-a role shard-000001, \
             expected corpus corpus-a role tokenizer"
        );
    }

    #[test]
    fn header_rewritten_to_claim_the_expected_context_fails_authentication() {
        let sealed = seal_with(
            b"tokens of corpus b",
            options(SMALL),
            &StreamContext::new("corpus-b", "shard-000002"),
        );
        let mut forged = sealed.clone();
        let header_len = read_header(&sealed[..]).expect("header").encoded_len();
        let head = &mut forged[..header_len];
        let at = head
            .windows(8)
            .position(|w| w == b"corpus-b")
            .expect("corpus id in header");
        head[at..at + 8].copy_from_slice(b"corpus-a");
        let at = head
            .windows(12)
            .position(|w| w == b"shard-000002")
            .expect("role in header");
        head[at..at + 12].copy_from_slice(b"shard-000001");
        let err = open(&forged).expect_err("forged header");
        assert!(matches!(err, StreamError::SegmentAuth { segment: 0 }), "{err}");
    }

    #[test]
    fn key_id_rewritten_in_header_fails_authentication() {
        let mut sealed = seal_small(b"payload");
        let at = sealed
            .windows(KEY_ID.len())
            .position(|w| w == KEY_ID.as_bytes())
            .expect("key id");
        sealed[at + KEY_ID.len() - 1] = b'2';
        assert!(matches!(
            open(&sealed),
            Err(StreamError::SegmentAuth { segment: 0 })
        ));
    }

    #[test]
    fn appended_data_is_detected() {
        // After a short final segment the junk joins that segment, which then fails authentication.
        let sealed = four_segment_file();
        for junk in [&b"x"[..], &[0u8; 100][..]] {
            let mut appended = sealed.clone();
            appended.extend_from_slice(junk);
            let err = open(&appended).expect_err("appended data");
            assert!(matches!(err, StreamError::SegmentAuth { segment: 3 }), "{err}");
        }
        // After a full final segment the reader can name the problem exactly.
        let full_final = seal_raw(&random_bytes(2 * SMALL as usize, 8), SMALL);
        let (_, segments) = split(&full_final);
        for junk in [b"x".to_vec(), segments[1].clone()] {
            let mut appended = full_final.clone();
            appended.extend_from_slice(&junk);
            let err = open_raw(&appended).expect_err("appended data");
            assert!(
                matches!(err, StreamError::TrailingData { after_segments: 2 }),
                "{err}"
            );
        }
    }

    // --- headers
    // -------------------------------------------------------------------------------------

    #[test]
    fn read_header_reveals_key_id_and_context_without_the_key() {
        let sealed = seal_small(b"hello");
        let mut input = &sealed[..];
        let header = read_header(&mut input).expect("header");
        assert_eq!(header.key_id(), KEY_ID);
        assert_eq!(header.context(), &ctx());
        assert_eq!(header.segment_size(), SMALL);
        assert_eq!(
            input.len(),
            sealed.len() - header.encoded_len(),
            "reads exactly the header"
        );
        let mut reader = OpenReader::with_header(input, header, &key(), &ctx()).expect("reader");
        let mut out = Vec::new();
        reader.read_to_end(&mut out).expect("opens");
        assert_eq!(out, b"hello");
    }

    #[test]
    fn header_layout_matches_the_spec() {
        let header = StreamHeader::new(
            0x0001_0000,
            [0xaa; SALT_LEN],
            *b"prefix!",
            "k",
            &StreamContext::new("c", "r"),
        )
        .expect("valid header");
        let mut expected = b"LETHEVLT\x01\x01\x01\x00\x01\x00\x00".to_vec();
        expected.extend_from_slice(&[0xaa; SALT_LEN]);
        expected.extend_from_slice(b"prefix!\x01k\x01c\x01r");
        assert_eq!(header.encoded, expected);
        assert_eq!(header.encoded_len(), 41 + 3);
    }

    #[test]
    fn malformed_headers_are_rejected_before_decryption() {
        let sealed = seal_small(b"payload");
        let edit = |at: usize, bytes: &[u8]| {
            let mut v = sealed.clone();
            v[at..at + bytes.len()].copy_from_slice(bytes);
            open(&v).expect_err("malformed header")
        };
        assert!(matches!(edit(0, b"X"), StreamError::BadMagic));
        assert!(matches!(edit(8, &[2]), StreamError::UnsupportedVersion(2)));
        assert!(matches!(edit(9, &[7]), StreamError::UnsupportedAlgorithm(7)));
        assert!(matches!(edit(10, &[0]), StreamError::UnsupportedCompression(0)));
        assert!(matches!(
            edit(11, &63u32.to_be_bytes()),
            StreamError::BadHeader(_)
        ));
        assert!(matches!(
            edit(11, &(MAX_SEGMENT_SIZE + 1).to_be_bytes()),
            StreamError::BadHeader(_)
        ));
        assert!(matches!(edit(38, &[0]), StreamError::BadHeader(_)));
        assert!(matches!(edit(39, b" "), StreamError::BadHeader(_)));
        assert!(matches!(open(b""), Err(StreamError::HeaderTruncated)));
        assert!(matches!(open(&sealed[..20]), Err(StreamError::HeaderTruncated)));
        // A short file of another kind is reported as such, not as truncated.
        assert!(matches!(
            open(b"PK\x03\x04 a zip file, not a vault"),
            Err(StreamError::BadMagic)
        ));
    }

    #[test]
    fn writer_rejects_parameters_the_format_cannot_carry() {
        let rng = SystemRandom::new();
        let try_seal = |key_id: &str, context: &StreamContext, opts: SealOptions| {
            SealWriter::with_options(Vec::new(), &key(), key_id, context, opts, &rng).err()
        };
        let ok = SealOptions::default();
        for opts in [
            options(MIN_SEGMENT_SIZE - 1),
            options(MAX_SEGMENT_SIZE + 1),
            SealOptions { zstd_level: 0, ..ok },
            SealOptions {
                zstd_level: MAX_ZSTD_LEVEL + 1,
                ..ok
            },
        ] {
            assert!(
                matches!(
                    try_seal(KEY_ID, &ctx(), opts),
                    Some(StreamError::InvalidParameter(_))
                ),
                "{opts:?}"
            );
        }
        let long = "k".repeat(MAX_ID_LEN + 1);
        for key_id in ["", "dk 1", "dk-\u{e9}", "dk\n", long.as_str()] {
            assert!(
                matches!(
                    try_seal(key_id, &ctx(), ok),
                    Some(StreamError::InvalidParameter(_))
                ),
                "{key_id:?}"
            );
        }
        for context in [
            StreamContext::new("", "tokenizer"),
            StreamContext::new("corpus-a", "my role"),
        ] {
            assert!(matches!(
                try_seal(KEY_ID, &context, ok),
                Some(StreamError::InvalidParameter(_))
            ));
        }
        assert!(try_seal(&"k".repeat(MAX_ID_LEN), &ctx(), options(MAX_SEGMENT_SIZE)).is_none());
    }

    // --- errors and misuse
    // ---------------------------------------------------------------------------

    #[test]
    fn dropping_the_writer_without_finish_leaves_a_detectably_truncated_file() {
        let rng = SystemRandom::new();
        let mut file = Vec::new();
        {
            let mut writer =
                SealWriter::with_options(&mut file, &key(), KEY_ID, &ctx(), options(SMALL), &rng).expect("w");
            writer.write_all(&random_bytes(1000, 9)).expect("write");
            writer.flush().expect("flush");
        }
        assert!(
            matches!(open(&file), Err(StreamError::Truncated { .. })),
            "{:?}",
            open(&file)
        );
    }

    #[test]
    fn a_failed_reader_keeps_failing_instead_of_skipping_the_bad_segment() {
        let plaintext = random_bytes(1000, 10);
        let mut sealed = seal_small(&plaintext);
        let header_len = read_header(&sealed[..]).expect("header").encoded_len();
        sealed[header_len + 5 * (SMALL as usize + TAG_LEN) + 3] ^= 1;
        let mut reader = OpenReader::new(&sealed[..], &key(), &ctx()).expect("reader");
        let mut buf = [0u8; 16];
        let mut delivered = 0;
        let first = loop {
            match reader.read(&mut buf) {
                Ok(n) => {
                    assert!(n > 0, "must not reach the end");
                    delivered += n;
                }
                Err(e) => break StreamError::from_io(e),
            }
        };
        assert!(
            matches!(first, StreamError::SegmentAuth { segment: 5 }),
            "{first}"
        );
        assert!(
            delivered <= 5 * SMALL as usize * 2,
            "only verified data before segment 5"
        );
        for _ in 0..3 {
            let again = StreamError::from_io(reader.read(&mut buf).expect_err("still failed"));
            assert!(
                matches!(again, StreamError::SegmentAuth { segment: 5 }),
                "{again}"
            );
        }
    }

    #[test]
    fn authenticated_bytes_that_are_not_zstd_are_a_decompress_error() {
        let sealed = seal_raw(b"this is not a zstd frame, but it is properly sealed", SMALL);
        assert!(matches!(open(&sealed), Err(StreamError::Decompress(_))));
        // An empty compressed stream is not a frame either.
        assert!(matches!(
            open(&seal_raw(b"", SMALL)),
            Err(StreamError::Decompress(_))
        ));
    }

    #[test]
    fn authenticated_bytes_after_the_zstd_frame_are_rejected() {
        let mut payload = zstd::encode_all(&b"one frame"[..], 3).expect("zstd");
        let frame_len = payload.len();
        payload.extend_from_slice(b"and then more");
        assert!(matches!(
            open(&seal_raw(&payload, SMALL)),
            Err(StreamError::Decompress(_))
        ));
        // A second frame is refused too: a Lethe writer makes exactly one.
        payload.truncate(frame_len);
        payload.extend_from_slice(&zstd::encode_all(&b"two frames"[..], 3).expect("zstd"));
        assert!(matches!(
            open(&seal_raw(&payload, SMALL)),
            Err(StreamError::Decompress(_))
        ));
    }

    #[test]
    fn stream_errors_survive_the_trip_through_io_error() {
        let err: io::Error = StreamError::SegmentAuth { segment: 12 }.into();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            err.to_string(),
            "segment 12 failed authentication (corrupt, truncated, reordered or wrong key)"
        );
        assert!(matches!(
            StreamError::from_io(err),
            StreamError::SegmentAuth { segment: 12 }
        ));

        let denied = io::ErrorKind::PermissionDenied;
        let err: io::Error = StreamError::Io(io::Error::from(denied)).into();
        assert_eq!(err.kind(), denied);
        assert!(matches!(StreamError::from_io(err), StreamError::Io(e) if e.kind() == denied));

        let plain = io::Error::from_raw_os_error(2);
        assert!(matches!(StreamError::from_io(plain), StreamError::Io(e) if e.raw_os_error() == Some(2)));
    }

    #[test]
    fn data_key_debug_does_not_show_the_key() {
        let key = DataKey::from_bytes([0x5a; KEY_LEN]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "DataKey(<redacted>)");
        let generated = DataKey::generate(&SystemRandom::new()).expect("rng");
        assert_ne!(generated.as_bytes(), key.as_bytes());
    }

    #[test]
    fn seal_to_vec_uses_fresh_randomness_per_stream() {
        let rng = SystemRandom::new();
        let a = seal_to_vec(b"same", &key(), KEY_ID, &ctx(), &rng).expect("seal");
        let b = seal_to_vec(b"same", &key(), KEY_ID, &ctx(), &rng).expect("seal");
        assert_ne!(a, b);
        let (ha, hb) = (read_header(&a[..]).expect("a"), read_header(&b[..]).expect("b"));
        assert_ne!((ha.salt, ha.nonce_prefix), (hb.salt, hb.nonce_prefix));
        assert_eq!(ha.segment_size(), DEFAULT_SEGMENT_SIZE);
        assert_eq!(open(&a).expect("a"), b"same");
    }

    // --- test vectors
    // --------------------------------------------------------------------------------

    fn vectors_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("vault-vectors")
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits in vector"))
            .collect()
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
    }

    /// One vector: the sealed bytes and its `.expect` sidecar as ordered fields.
    struct Vector {
        name: &'static str,
        comment: &'static str,
        sealed: Vec<u8>,
        fields: Vec<(&'static str, String)>,
    }

    fn vector_seal(plaintext: &[u8], segment_size: u32, context: &StreamContext) -> Vec<u8> {
        let mut writer = SealWriter::with_fixed_nonce(
            Vec::new(),
            &key(),
            KEY_ID,
            context,
            options(segment_size),
            VECTOR_SALT,
            VECTOR_PREFIX,
        )
        .expect("valid parameters");
        writer.write_all(plaintext).expect("Vec");
        writer.finish().expect("Vec")
    }

    fn vector_seal_raw(payload: &[u8]) -> Vec<u8> {
        let header = StreamHeader::new(SMALL, VECTOR_SALT, VECTOR_PREFIX, KEY_ID, &ctx()).expect("header");
        let mut sealer = SegmentSealer::new(Vec::new(), &key(), header).expect("Vec");
        sealer.write_all(payload).expect("Vec");
        sealer.finish().expect("Vec")
    }

    fn all_vectors() -> Vec<Vector> {
        let base = |expect: &str| -> Vec<(&'static str, String)> {
            vec![
                ("expect", expect.to_owned()),
                ("key", hex(&key_bytes())),
                ("corpus", "corpus-a".to_owned()),
                ("role", "shard-000001".to_owned()),
            ]
        };
        let success = |plaintext: &[u8]| {
            let mut f = base("success");
            f.push(("payload-len", plaintext.len().to_string()));
            f.push(("payload-sha256", sha256_hex(plaintext)));
            f
        };
        let with = |mut f: Vec<(&'static str, String)>, field: &'static str, value: &str| {
            f.push((field, value.to_owned()));
            f
        };
        let header_failure = |kind: &str| with(base("header failure"), "header-error", kind);
        let auth = |segment: u64| with(base("segment auth failure"), "segment", &segment.to_string());
        let truncated = |after: u64| with(base("truncated"), "after-segments", &after.to_string());
        let v = |name, comment, sealed, fields| Vector {
            name,
            comment,
            sealed,
            fields,
        };

        let multi_plain = random_bytes(200, 1);
        let multi = vector_seal(&multi_plain, SMALL, &ctx());
        let (head, segs) = split(&multi);
        assert_eq!(segs.len(), 4, "multi-segment vector has four segments");
        let full = SMALL as usize + TAG_LEN;

        // Find a plaintext whose compressed stream fills exactly two segments.
        let (full_final_plain, full_final) = (100..160)
            .map(|n| random_bytes(n, 2))
            .map(|p| {
                let s = vector_seal(&p, SMALL, &ctx());
                (p, s)
            })
            .find(|(_, s)| {
                let body = s.len() - read_header(&s[..]).expect("header").encoded_len();
                body == 2 * full
            })
            .expect("some length compresses to exactly two segments");
        let (ff_head, ff_segs) = split(&full_final);

        let text = b"Lethe keeps the corpus sealed at rest. ".repeat(20);
        let edit = |sealed: &[u8], at: usize, bytes: &[u8]| {
            let mut out = sealed.to_vec();
            out[at..at + bytes.len()].copy_from_slice(bytes);
            out
        };
        let replace = |sealed: &[u8], from: &[u8], to: &[u8]| {
            let at = sealed
                .windows(from.len())
                .position(|w| w == from)
                .expect("field in header");
            edit(sealed, at, to)
        };
        let flip = |sealed: &[u8], at: usize| {
            let mut out = sealed.to_vec();
            out[at] ^= 0x01;
            out
        };
        let appended = |sealed: &[u8], junk: &[u8]| {
            let mut out = sealed.to_vec();
            out.extend_from_slice(junk);
            out
        };
        let other_corpus = StreamContext::new("corpus-b", "shard-000001");
        let other_role = StreamContext::new("corpus-a", "shard-000002");
        let mut other_key = base("segment auth failure");
        other_key[1].1 = hex(&[0xff; KEY_LEN]);
        other_key.push(("segment", "0".to_owned()));
        let mut swapped = segs.clone();
        swapped.swap(0, 1);
        let mut dropped = segs.clone();
        dropped.remove(1);
        let mut duplicated = segs.clone();
        duplicated.insert(1, segs[0].clone());
        let other_stream = split(&vector_seal(
            &multi_plain,
            SMALL,
            &StreamContext::new("corpus-a", "shard-000009"),
        ))
        .1;
        let mut spliced = segs.clone();
        spliced[2] = other_stream[2].clone();
        let mut frame_then_more = zstd::encode_all(&b"one frame"[..], 3).expect("zstd");
        frame_then_more.extend_from_slice(b"and then more");

        vec![
            v(
                "empty",
                "empty plaintext: one short final segment (zstd's empty frame)",
                vector_seal(b"", SMALL, &ctx()),
                success(b""),
            ),
            v(
                "one-byte",
                "one byte of plaintext",
                vector_seal(b"x", SMALL, &ctx()),
                success(b"x"),
            ),
            v(
                "multi-segment",
                "200 random bytes: four 64-byte segments, the last short",
                multi.clone(),
                success(&multi_plain),
            ),
            v(
                "final-full-segment",
                "exactly two full segments; the second carries the last flag",
                full_final.clone(),
                success(&full_final_plain),
            ),
            v(
                "compressible-text",
                "repetitive text, compressed into few segments",
                vector_seal(&text, SMALL, &ctx()),
                success(&text),
            ),
            v(
                "default-segment-size",
                "default 64 KiB segment size",
                vector_seal(&multi_plain, DEFAULT_SEGMENT_SIZE, &ctx()),
                success(&multi_plain),
            ),
            v(
                "empty-file",
                "zero bytes",
                Vec::new(),
                header_failure("truncated"),
            ),
            v(
                "header-truncated",
                "file cut inside the header",
                multi[..30].to_vec(),
                header_failure("truncated"),
            ),
            v(
                "bad-magic",
                "first magic byte changed",
                edit(&multi, 0, b"X"),
                header_failure("bad magic"),
            ),
            v(
                "unsupported-version",
                "version byte 2",
                edit(&multi, 8, &[2]),
                header_failure("unsupported version"),
            ),
            v(
                "unsupported-algorithm",
                "algorithm byte 2",
                edit(&multi, 9, &[2]),
                header_failure("unsupported algorithm"),
            ),
            v(
                "unsupported-compression",
                "compression byte 2",
                edit(&multi, 10, &[2]),
                header_failure("unsupported compression"),
            ),
            v(
                "segment-size-too-small",
                "segment size 63",
                edit(&multi, 11, &63u32.to_be_bytes()),
                header_failure("invalid"),
            ),
            v(
                "segment-size-too-large",
                "segment size 16 MiB + 1",
                edit(&multi, 11, &(MAX_SEGMENT_SIZE + 1).to_be_bytes()),
                header_failure("invalid"),
            ),
            v(
                "empty-key-id",
                "key id length 0",
                edit(&multi, 38, &[0]),
                header_failure("invalid"),
            ),
            v(
                "key-id-with-space",
                "a space in the key id",
                edit(&multi, 41, b" "),
                header_failure("invalid"),
            ),
            v(
                "wrong-corpus",
                "sealed for corpus-a, opened expecting corpus-b",
                multi.clone(),
                {
                    let mut f = base("wrong context");
                    f[2].1 = "corpus-b".to_owned();
                    f.push(("found-corpus", "corpus-a".to_owned()));
                    f.push(("found-role", "shard-000001".to_owned()));
                    f
                },
            ),
            v(
                "wrong-role",
                "sealed as shard-000001, opened expecting tokenizer",
                multi.clone(),
                {
                    let mut f = base("wrong context");
                    f[3].1 = "tokenizer".to_owned();
                    f.push(("found-corpus", "corpus-a".to_owned()));
                    f.push(("found-role", "shard-000001".to_owned()));
                    f
                },
            ),
            v(
                "corpus-rewritten",
                "sealed for corpus-b, header edited to corpus-a",
                replace(
                    &vector_seal(&multi_plain, SMALL, &other_corpus),
                    b"corpus-b",
                    b"corpus-a",
                ),
                auth(0),
            ),
            v(
                "role-rewritten",
                "sealed as shard-000002, header edited to shard-000001",
                replace(
                    &vector_seal(&multi_plain, SMALL, &other_role),
                    b"shard-000002",
                    b"shard-000001",
                ),
                auth(0),
            ),
            v(
                "key-id-rewritten",
                "key id edited in the header",
                replace(&multi, b"dk-test-0001", b"dk-test-0002"),
                auth(0),
            ),
            v(
                "wrong-key",
                "opened with another data key",
                multi.clone(),
                other_key,
            ),
            v(
                "bit-flip-in-salt",
                "one bit of the stream salt flipped",
                flip(&multi, 20),
                auth(0),
            ),
            v(
                "bit-flip-in-segment",
                "one bit of segment 2's ciphertext flipped",
                flip(&multi, head.len() + 2 * full + 10),
                auth(2),
            ),
            v(
                "bit-flip-in-tag",
                "one bit of segment 0's tag flipped",
                flip(&multi, head.len() + full - 1),
                auth(0),
            ),
            v("no-segments", "header only", head.clone(), truncated(0)),
            v(
                "truncated-at-segment-boundary",
                "cut after segment 1",
                join(&head, &segs[..2]),
                truncated(2),
            ),
            v(
                "truncated-inside-segment",
                "cut in the middle of segment 1",
                multi[..head.len() + full + 40].to_vec(),
                auth(1),
            ),
            v(
                "truncated-inside-final-segment",
                "last byte cut",
                multi[..multi.len() - 1].to_vec(),
                auth(3),
            ),
            v(
                "final-segment-dropped",
                "segment 3 (final) removed",
                join(&head, &segs[..3]),
                truncated(3),
            ),
            v(
                "full-final-segment-dropped",
                "final full segment removed",
                join(&ff_head, &ff_segs[..1]),
                truncated(1),
            ),
            v(
                "segments-swapped",
                "segments 0 and 1 swapped",
                join(&head, &swapped),
                auth(0),
            ),
            v(
                "segment-dropped",
                "segment 1 removed",
                join(&head, &dropped),
                auth(1),
            ),
            v(
                "segment-duplicated",
                "segment 0 repeated as segment 1",
                join(&head, &duplicated),
                auth(1),
            ),
            v(
                "segment-from-other-stream",
                "segment 2 taken from another stream under the same key",
                join(&head, &spliced),
                auth(2),
            ),
            v(
                "trailing-byte-after-short-final",
                "one byte after a short final segment",
                appended(&multi, b"!"),
                auth(3),
            ),
            v(
                "trailing-byte-after-full-final",
                "one byte after a full final segment",
                appended(&full_final, b"!"),
                with(base("trailing data"), "after-segments", "2"),
            ),
            v(
                "trailing-segment-copy",
                "the full final segment appended again",
                appended(&full_final, &ff_segs[1]),
                with(base("trailing data"), "after-segments", "2"),
            ),
            v(
                "not-zstd",
                "sealed bytes that are not a zstd frame",
                vector_seal_raw(b"this is not a zstd frame, but it is properly sealed"),
                base("decompress failure"),
            ),
            v(
                "empty-compressed-stream",
                "one empty final segment: no zstd frame at all",
                vector_seal_raw(b""),
                base("decompress failure"),
            ),
            v(
                "data-after-frame",
                "a zstd frame followed by more sealed bytes",
                vector_seal_raw(&frame_then_more),
                base("decompress failure"),
            ),
        ]
    }

    fn render_expect(vector: &Vector) -> String {
        let mut out = format!("# {}\n", vector.comment);
        for (field, value) in &vector.fields {
            out.push_str(&format!("{field}: {value}\n"));
        }
        out
    }

    fn parse_expect(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (field, value) = line.split_once(": ").expect("`field: value` line");
                (field.to_owned(), value.to_owned())
            })
            .collect()
    }

    /// Opens `sealed` as the sidecar says, by every path a caller has (slice, streaming reader with
    /// partial reads, header first), and checks each gives the expected outcome.
    fn check_vector(name: &str, sealed: &[u8], expect: &BTreeMap<String, String>) {
        let field = |f: &str| {
            expect
                .get(f)
                .unwrap_or_else(|| panic!("{name}: missing `{f}`"))
                .clone()
        };
        let key_bytes: [u8; KEY_LEN] = unhex(&field("key")).try_into().expect("32-byte key");
        let key = DataKey::from_bytes(key_bytes);
        let context = StreamContext::new(field("corpus"), field("role"));

        let via_slice = open_from_slice(sealed, &key, &context);
        let via_stream = (|| {
            let mut reader = OpenReader::new(Trickle(sealed, 0), &key, &context)?;
            let mut out = Vec::new();
            reader.read_to_end(&mut out)?;
            Ok::<_, StreamError>(out)
        })();
        let via_header = (|| {
            let mut input = sealed;
            let header = read_header(&mut input)?;
            let mut out = Vec::new();
            OpenReader::with_header(input, header, &key, &context)?.read_to_end(&mut out)?;
            Ok::<_, StreamError>(out)
        })();

        for (how, result) in [
            ("slice", via_slice),
            ("stream", via_stream),
            ("header", via_header),
        ] {
            let at = format!("{name} ({how})");
            match (field("expect").as_str(), result) {
                ("success", Ok(plain)) => {
                    assert_eq!(plain.len().to_string(), field("payload-len"), "{at}");
                    assert_eq!(sha256_hex(&plain), field("payload-sha256"), "{at}");
                }
                ("header failure", Err(err)) => {
                    let kind = match err {
                        StreamError::BadMagic => "bad magic",
                        StreamError::UnsupportedVersion(_) => "unsupported version",
                        StreamError::UnsupportedAlgorithm(_) => "unsupported algorithm",
                        StreamError::UnsupportedCompression(_) => "unsupported compression",
                        StreamError::BadHeader(_) => "invalid",
                        StreamError::HeaderTruncated => "truncated",
                        other => panic!("{at}: expected a header failure, got {other}"),
                    };
                    assert_eq!(kind, field("header-error"), "{at}");
                }
                (
                    "wrong context",
                    Err(StreamError::WrongContext {
                        found_corpus,
                        found_role,
                        ..
                    }),
                ) => {
                    assert_eq!(
                        (found_corpus, found_role),
                        (field("found-corpus"), field("found-role")),
                        "{at}"
                    );
                }
                ("segment auth failure", Err(StreamError::SegmentAuth { segment })) => {
                    assert_eq!(segment.to_string(), field("segment"), "{at}");
                }
                ("truncated", Err(StreamError::Truncated { after_segments })) => {
                    assert_eq!(after_segments.to_string(), field("after-segments"), "{at}");
                }
                ("trailing data", Err(StreamError::TrailingData { after_segments })) => {
                    assert_eq!(after_segments.to_string(), field("after-segments"), "{at}");
                }
                ("decompress failure", Err(StreamError::Decompress(_))) => {}
                (expected, Ok(_)) => panic!("{at}: expected {expected}, but it opened"),
                (expected, Err(err)) => panic!("{at}: expected {expected}, got {err:?}"),
            }
        }
    }

    #[test]
    fn generated_vectors_meet_their_own_expectations() {
        // Guards the generator: a vector is only worth writing if it tests what its sidecar says.
        for vector in all_vectors() {
            check_vector(
                vector.name,
                &vector.sealed,
                &parse_expect(&render_expect(&vector)),
            );
        }
    }

    /// Rewrites `tests/vault-vectors/`. Ignored because a test run must not edit the source tree;
    /// run `cargo test regenerate_vault_vectors -- --ignored` after a deliberate format change and
    /// review the diff. zstd upgrades may change the bytes of success vectors; old vectors must
    /// still open.
    #[test]
    #[ignore]
    fn regenerate_vault_vectors() {
        let dir = vectors_dir();
        std::fs::create_dir_all(&dir).expect("create vectors dir");
        for entry in std::fs::read_dir(&dir).expect("read vectors dir") {
            let path = entry.expect("dir entry").path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("sealed" | "expect")
            ) {
                std::fs::remove_file(&path).expect("remove old vector");
            }
        }
        for vector in all_vectors() {
            std::fs::write(dir.join(format!("{}.sealed", vector.name)), &vector.sealed)
                .expect("write vector");
            std::fs::write(
                dir.join(format!("{}.expect", vector.name)),
                render_expect(&vector),
            )
            .expect("write sidecar");
        }
    }

    #[test]
    fn vault_vectors_meet_their_expectations() {
        let dir = vectors_dir();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("dir entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "sealed"))
            .map(|path| {
                path.file_stem()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        // An empty or half-copied directory must fail, not pass vacuously.
        assert!(
            names.len() >= 40,
            "only {} vectors in {}",
            names.len(),
            dir.display()
        );
        for name in &names {
            let sealed = std::fs::read(dir.join(format!("{name}.sealed"))).expect("read vector");
            let expect = std::fs::read_to_string(dir.join(format!("{name}.expect")))
                .unwrap_or_else(|e| panic!("{name}.expect: {e}"));
            check_vector(name, &sealed, &parse_expect(&expect));
        }
    }
}
