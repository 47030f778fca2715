//! Entry points for the coverage-guided fuzz targets in `fuzz/` that the public API does not offer.
//! Not part of the appliance: nothing in Lethe calls these.
//!
//! The fuzz targets reach every parser and verifier through the public API, except one layer: the
//! zstd payload *inside* a sealed stream. Through [`SealWriter`](crate::vault::stream::SealWriter) the
//! payload is always a valid zstd frame, so a fuzzer could never hand the reader's decompression step
//! authenticated bytes of its own choosing. [`seal_compressed`] seals arbitrary bytes as the compressed
//! stream with the real segment sealer, so that it can.
#![doc(hidden)]

use std::io::Write as _;

use crate::vault::stream::{DataKey, SegmentSealer, StreamError, StreamHeader};

/// Seals `compressed` segment by segment under `key` exactly as a sealed stream's payload is sealed,
/// *without* compressing it first: the result opens only if `compressed` is a valid zstd frame.
/// `header` (salt, nonce prefix, ids, segment size) is typically read back with
/// [`read_header`](crate::vault::stream::read_header) from a stream sealed the ordinary way. Reusing a
/// header reuses its nonces: for tests only.
pub fn seal_compressed(
    compressed: &[u8],
    key: &DataKey,
    header: StreamHeader,
) -> Result<Vec<u8>, StreamError> {
    let mut sealer = SegmentSealer::new(Vec::new(), key, header)?;
    sealer.write_all(compressed)?;
    sealer.finish()
}
