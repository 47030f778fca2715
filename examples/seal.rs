//! Seals standard input to standard output with a fresh random data key, exactly as ingest seals a
//! shard (zstd level 3, 64 KiB segments, AES-256-GCM). Used by `bench/ingest.sh` to time sealing
//! alone against `zstd -3` and `zstd -3 | age` on the same bytes.
//!
//! It prints its own time on stderr as JSON (`{"bytes":…,"seconds":…}`), measured from the first read
//! to the last write: the process's start-up, which loads libtorch with the rest of the `lethe` library
//! (about 0.4 s), is not sealing and is left out.
//!
//! Standard output is opened as a plain file (`/dev/stdout`): Rust's `Stdout` is line-buffered, and
//! pushing binary data through it costs a write per newline byte, which would time the terminal
//! plumbing rather than the sealing.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};

use lethe::vault::stream::{DataKey, SealWriter, StreamContext};
use ring::rand::SystemRandom;

fn main() -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    let key = DataKey::generate(&rng)?;
    let out = BufWriter::with_capacity(1 << 20, OpenOptions::new().write(true).open("/dev/stdout")?);
    let mut writer = SealWriter::new(
        out,
        &key,
        "dk-bench",
        &StreamContext::new("c-bench", "shard-000000"),
        &rng,
    )?;
    let mut input = File::open("/dev/stdin")?;
    let started = std::time::Instant::now();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
    // Flushed but not fsynced: the peers (`zstd`, `age`) do not fsync either.
    writer.finish()?.flush()?;
    eprintln!(
        "{{\"bytes\":{total},\"seconds\":{}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
