//! Seals standard input to standard output with a fresh random data key, exactly as ingest seals a
//! shard (zstd level 3, 64 KiB segments, AES-256-GCM). Used by `bench/ingest.sh` to time sealing
//! alone against `zstd -3` and `zstd -3 | age` on the same bytes.

use std::io::{BufReader, BufWriter};

use lethe::vault::stream::{DataKey, SealWriter, StreamContext};
use ring::rand::SystemRandom;

fn main() -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    let key = DataKey::generate(&rng)?;
    let out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut writer = SealWriter::new(
        out,
        &key,
        "dk-bench",
        &StreamContext::new("c-bench", "shard-000000"),
        &rng,
    )?;
    std::io::copy(
        &mut BufReader::with_capacity(1 << 20, std::io::stdin().lock()),
        &mut writer,
    )?;
    writer.finish()?;
    Ok(())
}
