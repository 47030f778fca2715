//! Ledgers built with the real append code, for the ledger targets: from fuzz-chosen events, and one
//! fixed sample that the anchor target checks anchors against and that the seeds are made from.

use std::path::Path;
use std::sync::OnceLock;

use lethe::app::ledger::BundleLedger;
use lethe::ledger::{
    action, due, is_security_critical, leaves, merkle, Checkpoint, Consistency, Entry, EntryProof,
    DEFAULT_CHECKPOINT_EVERY,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{sign, SIGNING_PUBLIC_HEX};

/// A ledger as the database hands it over: the ledger targets' JSON form.
#[derive(Serialize, Deserialize)]
pub struct Export {
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub checkpoints: Vec<Checkpoint>,
}

pub const ACTORS: [&str; 4] = ["admin", "olga", "job:7f3a", "système"];
pub const ACTIONS: [&str; 8] = [
    action::SIGN_IN,
    action::CORPUS_INGEST,
    action::TRAIN_START,
    action::AUDIT_RUN,
    action::RELEASE_REQUEST,
    action::RELEASE_APPROVE,
    action::USER_ROLE,
    action::KEYS_ROTATE,
];

/// One appended event.
#[derive(Debug, Arbitrary)]
pub struct Event {
    pub at_ms: i64,
    pub actor: u8,
    pub action: u8,
    pub details: u8,
    /// A checkpoint besides the ones the appliance signs: `Some(true)` with a tree root.
    pub extra_checkpoint: Option<bool>,
}

/// Event details of a few shapes, canonical JSON's corner cases among them.
pub fn details(n: u8) -> Value {
    match n % 6 {
        0 => Value::Null,
        1 => json!({ "docs": n, "name": "kb" }),
        2 => json!([f64::from(n) / 3.0, 1.0, -0.0, u64::MAX, i64::MIN]),
        3 => json!({ "z": { "y": [true, false] }, "a": "\u{0}\"\\\u{7f}\u{2028}é" }),
        4 => json!(format!("{n}")),
        _ => json!({ "reason": "x".repeat(usize::from(n)) }),
    }
}

/// Appends `events` as the appliance does: a checkpoint with the tree root when one is due or the action
/// is security-critical, plus the extra ones the events ask for.
pub fn build(events: &[Event]) -> (Vec<Entry>, Vec<Checkpoint>) {
    let (mut entries, mut checkpoints) = (Vec::<Entry>::new(), Vec::<Checkpoint>::new());
    let mut last = 0;
    for ev in events {
        let action = ACTIONS[usize::from(ev.action) % ACTIONS.len()];
        let actor = ACTORS[usize::from(ev.actor) % ACTORS.len()];
        let e = Entry::new(
            entries.last(),
            ev.at_ms,
            actor,
            action,
            "subject",
            details(ev.details),
        );
        entries.push(e.clone());
        let rooted = match ev.extra_checkpoint {
            _ if due(last, e.seq, DEFAULT_CHECKPOINT_EVERY) || is_security_critical(action) => true,
            Some(rooted) => rooted,
            None => continue,
        };
        checkpoints.push(if rooted {
            let root = merkle::root(&leaves(&entries).expect("hex hashes"));
            Checkpoint::sign_tree(&e, &root, ev.at_ms, &sign, SIGNING_PUBLIC_HEX)
        } else {
            Checkpoint::sign(&e, ev.at_ms, &sign, SIGNING_PUBLIC_HEX)
        });
        last = e.seq;
    }
    (entries, checkpoints)
}

/// A fixed ledger of 40 entries (a version 1 checkpoint at seq 3, then the appliance's cadence).
pub fn sample() -> &'static Export {
    static SAMPLE: OnceLock<Export> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let events: Vec<Event> = (0..40u8)
            .map(|i| Event {
                at_ms: 1_796_300_000_000 + i64::from(i) * 61_000,
                actor: i,
                action: i * 5 % 7,
                details: i,
                extra_checkpoint: (i == 2).then_some(false),
            })
            .collect();
        let (entries, checkpoints) = build(&events);
        Export { entries, checkpoints }
    })
}

/// Writes the sample ledger's artifacts into `dir`: an export, its checkpoints as an anchor file, a
/// consistency statement between its first and last rooted heads, and the ledger section of a bundle
/// (the head with the inclusion proofs of the approvals). `make-seeds.sh` turns them into seeds.
pub fn write_sample(dir: &Path) {
    let Export { entries, checkpoints } = sample();
    let save =
        |name: &str, text: String| std::fs::write(dir.join(name), text).expect("the directory is writable");
    save(
        "export.json",
        serde_json::to_string_pretty(sample()).expect("serializes"),
    );
    let lines: Vec<String> = checkpoints
        .iter()
        .map(|c| serde_json::to_string(c).expect("serializes"))
        .collect();
    save("anchors.jsonl", lines.join("\n") + "\n");
    let rooted: Vec<&Checkpoint> = checkpoints.iter().filter(|c| c.root.is_some()).collect();
    let (old, new) = (rooted[0], rooted[rooted.len() - 1]);
    let statement = Consistency::prove(entries, old, new).expect("a proof between two heads");
    save(
        "consistency.json",
        serde_json::to_string_pretty(&statement).expect("serializes"),
    );
    let approvals = entries
        .iter()
        .filter(|e| e.action == action::RELEASE_APPROVE && e.seq <= new.seq)
        .filter_map(|e| EntryProof::of(&entries[..new.seq as usize], e.seq))
        .collect();
    let section = BundleLedger {
        checkpoint: new.clone(),
        approvals,
    };
    save(
        "bundle-ledger.json",
        serde_json::to_string_pretty(&section).expect("serializes"),
    );
}
