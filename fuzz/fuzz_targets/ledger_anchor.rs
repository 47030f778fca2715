//! The ledger's heads kept outside the database and what a witness checks offline
//! (`ledger::anchor`, `ledger::Consistency`, `app::ledger::BundleLedger`), and `--since` parsing.
//!
//! The first byte picks what the rest is:
//! - 0: an anchor file (`ledger/anchors.jsonl`, or any file of JSON checkpoints), read as
//!   `lethe ledger verify --against` and the appliance's own append read it; the checkpoints are then
//!   checked against a fixed intact ledger (`lethe_fuzz::ledger::sample`).
//! - 1: a consistency statement from `lethe ledger prove`, checked as `lethe ledger witness` does.
//! - 2: a bundle's ledger section (`extra.ledger`), checked as `lethe release verify` does.
//! - 3: a `lethe ledger show --since` argument.
//!
//! With `LETHE_FUZZ_DUMP=DIR` the target first writes the sample ledger's artifacts to DIR, which
//! `make-seeds.sh` turns into seeds.
#![no_main]

use lethe::app::ledger::{heads_in, BundleLedger};
use lethe::ledger::anchor::ANCHOR_FILE;
use lethe::ledger::{
    check_extends, filter_since, format_time, parse_since, read_anchor_file, AnchorLog, Consistency,
};
use lethe_fuzz::ledger::{sample, write_sample};
use lethe_fuzz::{first_byte, fresh_dir, write, SIGNING_PUBLIC_HEX};
use libfuzzer_sys::fuzz_target;

/// "Now" for `--since`: 2026-12-03T12:00:00Z.
const NOW_MS: i64 = 1_796_385_600_000;
/// 9999-12-31T23:59:59.999Z: the last instant `format_time` writes with a four-digit year.
const YEAR_9999_END_MS: i64 = 253_402_300_799_999;

fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("LETHE_FUZZ_DUMP") {
            write_sample(std::path::Path::new(&dir));
        }
    },
    |data: &[u8]| {
        let (mode, body) = first_byte(data);
        match mode % 4 {
            0 => anchors(body),
            1 => {
                if let Ok(statement) = serde_json::from_slice::<Consistency>(body) {
                    let _ = statement.verify(SIGNING_PUBLIC_HEX);
                }
            }
            2 => {
                if let Ok(section) = serde_json::from_slice::<BundleLedger>(body) {
                    let _ = section.verify(SIGNING_PUBLIC_HEX);
                }
            }
            _ => since(body),
        }
    }
);

fn anchors(file: &[u8]) {
    let data_dir = fresh_dir("data");
    std::fs::create_dir_all(data_dir.join("ledger")).expect("the scratch directory is writable");
    let path = write(&data_dir, ANCHOR_FILE, file);
    let _ = AnchorLog::in_data_dir(&data_dir, false).latest();
    let _ = heads_in(&path);
    let Ok(heads) = read_anchor_file(&path) else {
        return;
    };
    assert!(!heads.is_empty(), "an anchor file was read as holding no head");
    if let Err(b) = check_extends(&sample().entries, &heads, SIGNING_PUBLIC_HEX) {
        assert!(
            b.seq <= b.through_seq,
            "a break reported as the range {}..={}",
            b.seq,
            b.through_seq
        );
        let _ = b.to_string();
    }
}

fn since(arg: &[u8]) {
    let Ok(arg) = std::str::from_utf8(arg) else {
        return;
    };
    if let Ok(ms) = parse_since(arg, NOW_MS) {
        let kept = filter_since(&sample().entries, ms);
        assert!(kept.iter().all(|e| e.at_ms >= ms), "--since kept an older entry");
        // The times the ledger prints read back, to the second.
        let printed = format_time(ms);
        if (0..=YEAR_9999_END_MS).contains(&ms) {
            assert_eq!(
                parse_since(&printed, NOW_MS),
                Ok(ms - ms % 1000),
                "{printed} does not read back"
            );
        }
    }
}
