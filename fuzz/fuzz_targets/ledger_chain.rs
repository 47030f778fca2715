//! The ledger verifier (`ledger::verify_with`, `check_extends`, `EntryProof`, `Consistency`): the walk
//! that must report the first edited, deleted, inserted or reordered entry of a hash chain with signed
//! checkpoints, whatever the database holds.
//!
//! The first byte picks what the rest is:
//! - 0: an export, `{"entries": [...], "checkpoints": [...]}`, as the database would hand it over.
//! - 1: events that the real code appends into an intact ledger (`Entry::new`, checkpoints signed with
//!   their Merkle root where the appliance signs one), then tamperings of rows and checkpoints. An
//!   untouched ledger must verify; one whose rows were only edited without re-hashing must not.
//!
//! Either way: a reported break names a range `seq ..= through_seq`, and an intact ledger's inclusion
//! and consistency proofs verify, and `check_extends` accepts its checkpoints as anchors.
#![no_main]

use lethe::ledger::{
    check_extends, verify_with, Checkpoint, Consistency, Entry, EntryProof, LedgerBreak, VerifyReport,
    DEFAULT_CHECKPOINT_EVERY, GENESIS_PREV_HASH,
};
use lethe_fuzz::ledger::{build, details, Event, Export, ACTIONS};
use lethe_fuzz::{first_byte, SIGNING_PUBLIC_HEX};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, body) = first_byte(data);
    if mode % 2 == 0 {
        if let Ok(x) = serde_json::from_slice::<Export>(body) {
            let _ = check(&x.entries, &x.checkpoints);
        }
    } else if let Ok(story) = Story::arbitrary_take_rest(Unstructured::new(body)) {
        built(story);
    }
});

/// Verifies with the appliance's cadence and checks what a result promises.
fn check(entries: &[Entry], checkpoints: &[Checkpoint]) -> Result<VerifyReport, LedgerBreak> {
    let anchored = check_extends(entries, checkpoints, SIGNING_PUBLIC_HEX);
    if let Err(b) = &anchored {
        well_formed(b);
    }
    let result = verify_with(
        entries,
        checkpoints,
        SIGNING_PUBLIC_HEX,
        Some(DEFAULT_CHECKPOINT_EVERY),
    );
    match &result {
        Err(b) => well_formed(b),
        Ok(report) => {
            anchored.expect("a ledger that verifies extends its own checkpoints");
            proofs_verify(entries, checkpoints, report);
        }
    }
    result
}

fn well_formed(b: &LedgerBreak) {
    assert!(
        b.seq <= b.through_seq,
        "a break reported as the range {}..={}",
        b.seq,
        b.through_seq
    );
}

/// On a ledger that verified: entries (a sample of them: each proof costs a pass over the ledger) are
/// in the tree its head checkpoint signs, and each signed tree extends the one before it.
fn proofs_verify(entries: &[Entry], checkpoints: &[Checkpoint], report: &VerifyReport) {
    assert_eq!(report.entries, entries.len());
    let mut rooted: Vec<&Checkpoint> = checkpoints.iter().filter(|c| c.root.is_some()).collect();
    rooted.sort_by_key(|c| c.seq);
    if let Some(head) = rooted.iter().find(|c| c.seq == report.head_seq) {
        for e in entries
            .iter()
            .step_by(entries.len() / 8 + 1)
            .chain(entries.last())
        {
            let proof = EntryProof::of(entries, e.seq).expect("an intact entry has a proof");
            proof.verify(head).expect("an intact entry is in the head's tree");
        }
    }
    for pair in rooted.windows(2) {
        let statement = Consistency::prove(entries, pair[0], pair[1]).expect("a proof between two heads");
        statement
            .verify(SIGNING_PUBLIC_HEX)
            .expect("an intact ledger's heads are consistent");
    }
}

// ------------------------------------------------------------------------------ an intact ledger, then

#[derive(Debug, Arbitrary)]
enum Field {
    Seq(i64),
    AtMs(i64),
    Actor(String),
    Action(u8),
    Details(u8),
    PrevHash(u8),
    Hash(u8),
}

#[derive(Debug, Arbitrary)]
enum Tamper {
    Edit {
        i: u8,
        field: Field,
        rehash: bool,
    },
    Delete {
        i: u8,
    },
    Duplicate {
        i: u8,
    },
    Swap {
        i: u8,
        j: u8,
    },
    /// Re-hashes every entry from `i` on and re-links it to the one before: a consistent rewrite.
    RewriteFrom {
        i: u8,
    },
    DropCheckpoint {
        k: u8,
    },
    CheckpointSeq {
        k: u8,
        seq: i64,
    },
    CheckpointSignature {
        k: u8,
        at: u8,
    },
}

#[derive(Debug, Arbitrary)]
struct Story {
    events: Vec<Event>,
    tampers: Vec<Tamper>,
}

fn built(story: Story) {
    let (entries, checkpoints) = build(&story.events);
    let (mut rows, mut signed) = (entries.clone(), checkpoints.clone());
    for t in &story.tampers {
        tamper(&mut rows, &mut signed, t);
    }
    let result = check(&rows, &signed);
    let identical = rows.len() == entries.len()
        && rows
            .iter()
            .zip(&entries)
            .all(|(a, b)| a.canonical_bytes() == b.canonical_bytes() && a.hash == b.hash);
    if identical && signed == checkpoints {
        result.expect("an intact ledger verifies");
    } else if !identical
        && story
            .tampers
            .iter()
            .all(|t| matches!(t, Tamper::Edit { rehash: false, .. }))
    {
        assert!(
            result.is_err(),
            "rows edited without re-hashing went unnoticed: {story:?}"
        );
    }
}

fn tamper(rows: &mut Vec<Entry>, signed: &mut Vec<Checkpoint>, t: &Tamper) {
    let at = |i: u8, len: usize| (len > 0).then(|| usize::from(i) % len);
    match t {
        Tamper::Edit { i, field, rehash } => {
            let Some(i) = at(*i, rows.len()) else { return };
            let e = &mut rows[i];
            match field {
                Field::Seq(s) => e.seq = *s,
                Field::AtMs(t) => e.at_ms = *t,
                Field::Actor(a) => e.actor.clone_from(a),
                Field::Action(a) => e.action = ACTIONS[usize::from(*a) % ACTIONS.len()].into(),
                Field::Details(d) => e.details = details(*d),
                Field::PrevHash(b) => e.prev_hash = flip_hex(&e.prev_hash, *b),
                Field::Hash(b) => e.hash = flip_hex(&e.hash, *b),
            }
            if *rehash {
                e.hash = e.compute_hash();
            }
        }
        Tamper::Delete { i } => {
            if let Some(i) = at(*i, rows.len()) {
                rows.remove(i);
            }
        }
        Tamper::Duplicate { i } => {
            if let Some(i) = at(*i, rows.len()) {
                rows.insert(i, rows[i].clone());
            }
        }
        Tamper::Swap { i, j } => {
            if let (Some(i), Some(j)) = (at(*i, rows.len()), at(*j, rows.len())) {
                rows.swap(i, j);
            }
        }
        Tamper::RewriteFrom { i } => {
            let Some(i) = at(*i, rows.len()) else { return };
            for k in i..rows.len() {
                let prev = if k == 0 {
                    GENESIS_PREV_HASH.to_string()
                } else {
                    rows[k - 1].hash.clone()
                };
                rows[k].prev_hash = prev;
                rows[k].hash = rows[k].compute_hash();
            }
        }
        Tamper::DropCheckpoint { k } => {
            if let Some(k) = at(*k, signed.len()) {
                signed.remove(k);
            }
        }
        Tamper::CheckpointSeq { k, seq } => {
            if let Some(k) = at(*k, signed.len()) {
                signed[k].seq = *seq;
            }
        }
        Tamper::CheckpointSignature { k, at: b } => {
            if let Some(k) = at(*k, signed.len()) {
                signed[k].signature = flip_hex(&signed[k].signature, *b);
            }
        }
    }
}

/// `hex` with the digit at `at` (wrapped) replaced by another hex digit.
fn flip_hex(hex: &str, at: u8) -> String {
    let mut b = hex.as_bytes().to_vec();
    if let Some(i) = (!b.is_empty()).then(|| usize::from(at) % b.len()) {
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    }
    String::from_utf8_lossy(&b).into_owned()
}
