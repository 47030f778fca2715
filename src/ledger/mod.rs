//! The tamper-evident ledger: the pure chain and its verification ([`chain`], re-exported here), and the
//! append that puts an event into the database and signs a checkpoint of the head when one is due.

pub mod anchor;
pub mod chain;
pub mod merkle;

pub use anchor::{check_extends, read_anchor_file, AnchorError, AnchorLog, AnchorReport};
pub use chain::*;

use serde::{Deserialize, Serialize};

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
    /// The chain (or its agreement with the anchored head) is broken: the appliance signs nothing more
    /// until an operator has looked (`lethe ledger verify`).
    #[error("refusing to sign a checkpoint over a broken ledger ({0}); run `lethe ledger verify`")]
    Broken(LedgerBreak),
    #[error(transparent)]
    Anchor(#[from] AnchorError),
}

/// Appends one event and, when a checkpoint is due (every [`DEFAULT_CHECKPOINT_EVERY`] entries) or the
/// action is security-critical, signs the new head, in one transaction (see [`append_anchored`]).
pub async fn append(
    store: &Store,
    signer: &Signer,
    actor: &str,
    action_name: &str,
    subject: &str,
    details: serde_json::Value,
) -> Result<Entry, LedgerError> {
    append_anchored(store, signer, None, actor, action_name, subject, details).await
}

/// Appends one event. When a checkpoint is due or the action is security-critical, the chain is first
/// verified (entries, checkpoints, cadence, and agreement with the newest head in `anchors`); a broken
/// chain is refused ([`LedgerError::Broken`]) and nothing is appended. Otherwise the entry and a
/// checkpoint signing its seq, hash and Merkle tree root are committed together, and the checkpoint is
/// then written to `anchors`.
pub async fn append_anchored(
    store: &Store,
    signer: &Signer,
    anchors: Option<&AnchorLog>,
    actor: &str,
    action_name: &str,
    subject: &str,
    details: serde_json::Value,
) -> Result<Entry, LedgerError> {
    for _ in 0..APPEND_TRIES {
        let mut tx = store.ledger().begin().await?;
        let head = tx.head().await?;
        let now = crate::store::now_ms();
        let e = Entry::new(head.as_ref(), now, actor, action_name, subject, details.clone());
        if !tx.insert(&e).await? {
            continue;
        }
        let last = tx.last_checkpoint_seq().await?;
        let mut signed = None;
        if due(last, e.seq, DEFAULT_CHECKPOINT_EVERY) || is_security_critical(action_name) {
            let entries = tx.entries().await?;
            let checkpoints = tx.checkpoints().await?;
            let c = seal(&entries, &checkpoints, signer, anchors, now)?;
            tx.insert_checkpoint(&c).await?;
            signed = Some(c);
        }
        tx.commit().await?;
        if let (Some(c), Some(a)) = (signed, anchors) {
            a.append(&c)?;
        }
        return Ok(e);
    }
    Err(LedgerError::Contended(APPEND_TRIES))
}

/// Verifies the ledger up to its newest entry (which is the one being sealed and has no checkpoint
/// yet), then signs that entry with the tree root of all of them.
fn seal(
    entries: &[Entry],
    checkpoints: &[Checkpoint],
    signer: &Signer,
    anchors: Option<&AnchorLog>,
    now: i64,
) -> Result<Checkpoint, LedgerError> {
    let public = signer.public_key_hex();
    let Some((newest, before)) = entries.split_last() else {
        return Err(LedgerError::Broken(LedgerBreak {
            seq: 1,
            through_seq: 1,
            kind: BreakKind::Deleted,
            detail: "the entry being appended is not in the ledger".into(),
        }));
    };
    verify_chain_and_anchor(entries, before, checkpoints, &public, anchors)?;
    let root = merkle_root_of(entries)?;
    let sign = |m: &[u8]| signer.sign(m);
    Ok(Checkpoint::sign_tree(newest, &root, now, &sign, &public))
}

/// The checks made before the appliance signs anything: the ledger up to `verified` (all of it but a
/// new, not yet sealed head) passes [`verify_with`] under the cadence, and `all` extends the newest
/// anchored head.
fn verify_chain_and_anchor(
    all: &[Entry],
    verified: &[Entry],
    checkpoints: &[Checkpoint],
    public: &str,
    anchors: Option<&AnchorLog>,
) -> Result<(), LedgerError> {
    // Checkpoints above the verified part (a concurrent one at the head) are not the chain's business.
    let top = verified.last().map_or(0, |e| e.seq);
    let below: Vec<Checkpoint> = checkpoints.iter().filter(|c| c.seq <= top).cloned().collect();
    verify_with(verified, &below, public, Some(DEFAULT_CHECKPOINT_EVERY)).map_err(LedgerError::Broken)?;
    if all.len() > verified.len() {
        // The new head links to the verified chain.
        let (newest, prev) = (&all[verified.len()], verified.last());
        let want_prev = prev.map_or(GENESIS_PREV_HASH, |p| p.hash.as_str());
        if newest.prev_hash != want_prev || newest.hash != newest.compute_hash() {
            return Err(LedgerError::Broken(LedgerBreak {
                seq: newest.seq,
                through_seq: newest.seq,
                kind: BreakKind::Edited,
                detail: "the entry being appended does not link to the head it was built on".into(),
            }));
        }
    }
    if let Some(a) = anchors {
        if let Some(latest) = a.latest()? {
            check_extends(all, std::slice::from_ref(&latest), public).map_err(LedgerError::Broken)?;
        }
    }
    Ok(())
}

fn merkle_root_of(entries: &[Entry]) -> Result<merkle::Hash, LedgerError> {
    let leaves = chain::leaves(entries).ok_or_else(|| {
        LedgerError::Broken(LedgerBreak {
            seq: 1,
            through_seq: entries.last().map_or(1, |e| e.seq),
            kind: BreakKind::Edited,
            detail: "an entry's hash is not 64 hex digits".into(),
        })
    })?;
    Ok(merkle::root(&leaves))
}

/// A signed head at the ledger's newest entry, for a release bundle or a witness: the checkpoint
/// already there when the head has one, else a new one (after the same checks as [`append_anchored`]).
/// Written to `anchors` either way. Returns it with the entries it covers.
pub async fn anchor_head(
    store: &Store,
    signer: &Signer,
    anchors: Option<&AnchorLog>,
) -> Result<(Checkpoint, Vec<Entry>), LedgerError> {
    for _ in 0..APPEND_TRIES {
        let mut tx = store.ledger().begin().await?;
        let entries = tx.entries().await?;
        let checkpoints = tx.checkpoints().await?;
        let public = signer.public_key_hex();
        verify_chain_and_anchor(&entries, &entries, &checkpoints, &public, anchors)?;
        let Some(head) = entries.last() else {
            return Err(LedgerError::Broken(LedgerBreak {
                seq: 1,
                through_seq: 1,
                kind: BreakKind::Deleted,
                detail: "the ledger is empty: there is no head to sign".into(),
            }));
        };
        let at_head = checkpoints.iter().find(|c| c.seq == head.seq).cloned();
        let c = match at_head {
            Some(c) if c.root.is_some() => c,
            Some(_) => {
                // The head has a checkpoint from before the tree, which has no root to hand out: record
                // an entry (security-critical, so it is signed with its root) and take that head.
                drop(tx);
                append_anchored(
                    store,
                    signer,
                    anchors,
                    SYSTEM_ACTOR,
                    action::LEDGER_ANCHOR,
                    "ledger",
                    serde_json::json!({ "reason": "a head with a Merkle tree root was asked for" }),
                )
                .await?;
                continue;
            }
            None => {
                let root = merkle_root_of(&entries)?;
                let sign = |m: &[u8]| signer.sign(m);
                let c = Checkpoint::sign_tree(head, &root, crate::store::now_ms(), &sign, &public);
                if !tx.insert_checkpoint(&c).await? {
                    continue; // a version 1 checkpoint at the head, or a concurrent signer: look again
                }
                tx.commit().await?;
                c
            }
        };
        if let Some(a) = anchors {
            a.append(&c)?;
        }
        return Ok((c, entries));
    }
    Err(LedgerError::Contended(APPEND_TRIES))
}

/// An entry of the ledger with the proof that it is in the tree a checkpoint signs: what a release
/// bundle carries for each approval, checkable offline ([`EntryProof::verify`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryProof {
    pub entry: Entry,
    /// The RFC 9162 inclusion path of leaf `entry.seq - 1` in the tree of `checkpoint.seq` leaves.
    pub inclusion: Vec<String>,
}

impl EntryProof {
    /// The proof for the entry at `seq` among `entries` (the tree of all of them).
    pub fn of(entries: &[Entry], seq: i64) -> Option<EntryProof> {
        let leaves = chain::leaves(entries)?;
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        let path = merkle::inclusion_proof(&leaves, index).ok()?;
        Some(EntryProof {
            entry: entries.get(index)?.clone(),
            inclusion: path.iter().map(merkle::to_hex).collect(),
        })
    }

    /// Checks that the entry hashes to its recorded hash and is leaf `seq - 1` of the tree `c` signs
    /// (whose signature the caller has checked).
    pub fn verify(&self, c: &Checkpoint) -> Result<(), String> {
        if self.entry.compute_hash() != self.entry.hash {
            return Err(format!(
                "ledger entry {} does not hash to its recorded hash",
                self.entry.seq
            ));
        }
        let root = c
            .root_hash()
            .ok_or_else(|| format!("the checkpoint at seq {} signs no tree root", c.seq))?;
        let leaf = merkle::entry_leaf(&self.entry.hash)
            .ok_or_else(|| format!("ledger entry {} has a malformed hash", self.entry.seq))?;
        let path: Vec<merkle::Hash> = self
            .inclusion
            .iter()
            .map(|h| merkle::from_hex(h))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("the inclusion proof of entry {} is not hex", self.entry.seq))?;
        let index = u64::try_from(self.entry.seq - 1)
            .map_err(|_| format!("ledger entry seq {} is not positive", self.entry.seq))?;
        let size = u64::try_from(c.seq).map_err(|_| "the checkpoint's seq is not positive".to_string())?;
        merkle::verify_inclusion(&leaf, index, size, &path, &root)
            .map_err(|e| format!("ledger entry {} is not in the signed tree: {e}", self.entry.seq))
    }
}

/// What a witness needs to check that a newer signed head extends an older one without the log: both
/// checkpoints and the RFC 9162 consistency proof between their trees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consistency {
    pub old: Checkpoint,
    pub new: Checkpoint,
    pub proof: Vec<String>,
}

impl Consistency {
    /// The statement from `old` to `new` over `entries` (the tree of at least `new.seq` of them).
    pub fn prove(entries: &[Entry], old: &Checkpoint, new: &Checkpoint) -> Result<Consistency, String> {
        let n = usize::try_from(new.seq).map_err(|_| "bad seq".to_string())?;
        let m = usize::try_from(old.seq).map_err(|_| "bad seq".to_string())?;
        let leaves = entries
            .get(..n)
            .and_then(chain::leaves)
            .ok_or_else(|| format!("the ledger does not hold {n} entries"))?;
        let proof = merkle::consistency_proof(&leaves, m).map_err(|e| e.to_string())?;
        Ok(Consistency {
            old: old.clone(),
            new: new.clone(),
            proof: proof.iter().map(merkle::to_hex).collect(),
        })
    }

    /// Checks both signatures under the trusted key and that the new tree extends the old one.
    pub fn verify(&self, trusted_public_key_hex: &str) -> Result<(), String> {
        for (what, c) in [("old", &self.old), ("new", &self.new)] {
            c.verify_signature(trusted_public_key_hex)
                .map_err(|e| format!("the {what} head (seq {}) is not valid: {e}", c.seq))?;
        }
        let old_root = self
            .old
            .root_hash()
            .ok_or("the old head signs no tree root (a checkpoint from before the Merkle tree)")?;
        let new_root = self.new.root_hash().ok_or("the new head signs no tree root")?;
        let proof: Vec<merkle::Hash> = self
            .proof
            .iter()
            .map(|h| merkle::from_hex(h))
            .collect::<Option<_>>()
            .ok_or("the consistency proof is not hex")?;
        let (m, n) = (
            u64::try_from(self.old.seq).map_err(|_| "bad seq")?,
            u64::try_from(self.new.seq).map_err(|_| "bad seq")?,
        );
        merkle::verify_consistency(m, n, &old_root, &new_root, &proof).map_err(|e| {
            format!(
                "the head at seq {n} does not extend the head at seq {m}: {e}; the ledger's history was rewritten"
            )
        })
    }
}

/// Reads the whole ledger in one snapshot and verifies it against `public_key_hex`, with the
/// appliance's checkpoint cadence.
pub async fn verify_store(
    store: &Store,
    public_key_hex: &str,
) -> Result<Result<VerifyReport, LedgerBreak>, StoreError> {
    let (entries, checkpoints) = store.ledger().snapshot().await?;
    Ok(verify_with(
        &entries,
        &checkpoints,
        public_key_hex,
        Some(DEFAULT_CHECKPOINT_EVERY),
    ))
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
