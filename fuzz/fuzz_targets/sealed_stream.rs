//! The sealed-stream reader (`vault::stream`): the format of every encrypted file in the vault.
//!
//! The first byte picks what the rest is:
//! - 0: a sealed file as found on disk, opened under the vault test-vector key and context (the vectors
//!   in `tests/vault-vectors/` are the seeds). Header parsing, segment framing and authentication
//!   failures; nothing may panic.
//! - 1: a plaintext sealed with the real writer (fuzz-chosen segment size and zstd level), then tampered
//!   with (bit flips, truncation, dropped, duplicated or swapped segments, appended bytes). Untouched, it
//!   must open to the same plaintext; changed in any byte, it must not open at all.
//! - 2: arbitrary bytes sealed as the *compressed* payload (`lethe::fuzzing::seal_compressed`), so the
//!   reader's zstd step sees authenticated bytes of the fuzzer's choosing: no panic, and the reader's
//!   memory stays bounded (the decompressed output is drained, never held).
#![no_main]

use std::io::Write as _;
use std::sync::OnceLock;

use lethe::vault::stream::{
    open_from_slice, read_header, OpenReader, SealOptions, SealWriter, StreamHeader, MAX_ZSTD_LEVEL,
    MIN_SEGMENT_SIZE, TAG_LEN,
};
use lethe_fuzz::{context, data_key, drain, first_byte, KEY_ID};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;

/// Decompressed bytes read per input at most: a zstd frame of a few KiB can expand to gigabytes.
const OUTPUT_CAP: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let (mode, body) = first_byte(data);
    match mode % 3 {
        0 => open_raw(body),
        1 => {
            let _ = round_trip(&mut Unstructured::new(body));
        }
        _ => open_compressed(body),
    }
});

fn open_raw(sealed: &[u8]) {
    let _ = read_header(sealed);
    if let Ok(r) = OpenReader::new(sealed, &data_key(), &context()) {
        let _ = drain(r, OUTPUT_CAP);
    }
}

/// One change to a sealed file; segment numbers wrap around the segments present.
#[derive(Debug, Arbitrary)]
enum Tamper {
    Flip { at: u16, xor: u8 },
    Truncate { to: u16 },
    Append { bytes: Vec<u8> },
    DropSegment { i: u8 },
    DuplicateSegment { i: u8 },
    SwapSegments { i: u8, j: u8 },
}

fn round_trip(u: &mut Unstructured) -> Result<()> {
    let options = SealOptions {
        segment_size: MIN_SEGMENT_SIZE * u.int_in_range(1..=16)?,
        // Mostly the fast levels; now and then the highest, whose 8 MiB window is the most a reader
        // accepts (the level changes nothing else in the file, and the high ones cost milliseconds).
        zstd_level: if u.ratio(1, 16)? {
            MAX_ZSTD_LEVEL
        } else {
            u.int_in_range(1..=3)?
        },
    };
    let tampers: Vec<Tamper> = (0..u.int_in_range(0..=3)?)
        .map(|_| Tamper::arbitrary(u))
        .collect::<Result<_>>()?;
    let plaintext = u.bytes(u.len())?;

    let key = data_key();
    let mut w = SealWriter::with_options(
        Vec::new(),
        &key,
        KEY_ID,
        &context(),
        options,
        &SystemRandom::new(),
    )
    .expect("valid options");
    w.write_all(plaintext).expect("writing to memory");
    let sealed = w.finish().expect("finishing in memory");

    let header_len = read_header(&sealed[..]).expect("own header").encoded_len();
    let mut changed = sealed.clone();
    for t in &tampers {
        apply(
            &mut changed,
            t,
            header_len,
            options.segment_size as usize + TAG_LEN,
        );
    }
    let opened = open_from_slice(&changed, &key, &context());
    if changed == sealed {
        assert_eq!(opened.expect("an untouched stream opens"), plaintext);
    } else {
        assert!(
            opened.is_err(),
            "a sealed stream changed by {tampers:?} still opened"
        );
    }
    Ok(())
}

fn apply(file: &mut Vec<u8>, t: &Tamper, header_len: usize, segment_len: usize) {
    let len = file.len();
    let segments = len.saturating_sub(header_len).div_ceil(segment_len);
    let span = |i: u8| {
        let start = header_len + usize::from(i) % segments.max(1) * segment_len;
        start..(start + segment_len).min(len)
    };
    match *t {
        Tamper::Flip { at, xor } => {
            if len > 0 {
                file[usize::from(at) % len] ^= xor;
            }
        }
        Tamper::Truncate { to } => file.truncate(usize::from(to)),
        Tamper::Append { ref bytes } => file.extend_from_slice(bytes),
        Tamper::DropSegment { i } if segments > 0 => {
            let s = span(i);
            file.copy_within(s.end.., s.start);
            file.truncate(len - s.len());
        }
        Tamper::DuplicateSegment { i } if segments > 0 => {
            let s = span(i);
            let tail = file.split_off(s.start);
            file.extend_from_slice(&tail[..s.len()]);
            file.extend_from_slice(&tail);
        }
        Tamper::SwapSegments { i, j } if segments > 0 => {
            let (a, b) = (span(i), span(j));
            if a.len() == b.len() && a != b {
                let copy = file[a.clone()].to_vec();
                file.copy_within(b.clone(), a.start);
                file[b].copy_from_slice(&copy);
            }
        }
        _ => {}
    }
}

fn open_compressed(compressed: &[u8]) {
    // A real header (64-byte segments: many segments from a short input), read back from a stream sealed
    // the ordinary way.
    static HEADER: OnceLock<StreamHeader> = OnceLock::new();
    let header = HEADER.get_or_init(|| {
        let options = SealOptions {
            segment_size: MIN_SEGMENT_SIZE,
            ..SealOptions::default()
        };
        let mut w = SealWriter::with_options(
            Vec::new(),
            &data_key(),
            KEY_ID,
            &context(),
            options,
            &SystemRandom::new(),
        )
        .expect("valid options");
        w.flush().expect("in memory");
        read_header(&w.finish().expect("in memory")[..]).expect("own header")
    });
    let key = data_key();
    let sealed =
        lethe::fuzzing::seal_compressed(compressed, &key, header.clone()).expect("sealing in memory");
    let r = OpenReader::new(&sealed[..], &key, &context()).expect("own header and context");
    let _ = drain(r, OUTPUT_CAP);
}
