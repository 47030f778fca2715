//! The tamper-evident ledger: the pure chain and its verification ([`chain`], re-exported here), and the
//! append that puts an event into the database and signs a checkpoint of the head when one is due.

pub mod chain;

pub use chain::*;

use crate::store::{Store, StoreError};
use crate::vault::signing::Signer;

/// Appends tried before giving up when other processes keep appending first.
const APPEND_TRIES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not append to the ledger: {0} concurrent appends won every try")]
    Contended(usize),
}

/// Appends one event and, when a checkpoint is due (every [`DEFAULT_CHECKPOINT_EVERY`] entries) or the
/// action is security-critical, signs the new head with `signer`.
pub async fn append(
    store: &Store,
    signer: &Signer,
    actor: &str,
    action_name: &str,
    subject: &str,
    details: serde_json::Value,
) -> Result<Entry, LedgerError> {
    for _ in 0..APPEND_TRIES {
        let head = store.ledger().head().await?;
        let now = crate::store::now_ms();
        let e = Entry::new(head.as_ref(), now, actor, action_name, subject, details.clone());
        if !store.ledger().insert(&e).await? {
            continue;
        }
        let last = store.ledger().last_checkpoint_seq().await?;
        if due(last, e.seq, DEFAULT_CHECKPOINT_EVERY) || is_security_critical(action_name) {
            let sign = |m: &[u8]| signer.sign(m);
            let c = Checkpoint::sign(&e, now, &sign, &signer.public_key_hex());
            store.ledger().insert_checkpoint(&c).await?;
        }
        return Ok(e);
    }
    Err(LedgerError::Contended(APPEND_TRIES))
}

/// Reads the whole ledger (checkpoints first, so one signed in between reads is covered by the
/// entries) and verifies it against `public_key_hex`.
pub async fn verify_store(
    store: &Store,
    public_key_hex: &str,
) -> Result<Result<VerifyReport, LedgerBreak>, StoreError> {
    let checkpoints = store.ledger().checkpoints().await?;
    let entries = store.ledger().entries(None).await?;
    Ok(verify(&entries, &checkpoints, public_key_hex))
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time with seconds (`2026-11-28T10:00:00Z`).
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn formats_times_and_round_trips_through_parse_since() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_795_862_096_789), "2026-11-28T10:34:56Z");
        for ms in [0, 951_782_400_000, 1_795_862_096_000, 4_102_444_800_000] {
            assert_eq!(parse_since(&format_time(ms), 0).unwrap(), ms);
        }
    }
}
