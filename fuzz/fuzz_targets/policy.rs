//! The release-policy parser (`policy::Policy::parse`): TOML with spans, range checks that name the
//! line and column, and paths resolved against the policy's directory.
//!
//! The input is the policy text. A policy that parses must hold the invariants the gate relies on.
#![no_main]

use std::path::Path;

use lethe::policy::Policy;
use libfuzzer_sys::fuzz_target;
use ring::digest::{digest, SHA256};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text, "fuzz.toml", None) else {
        return;
    };
    let t = &policy.thresholds;
    assert!((0.0..=1.0).contains(&t.max_exact_extraction));
    assert!(t.max_exact_extraction <= t.max_approximate_extraction);
    assert!((0.5..=1.0).contains(&t.max_membership_auc));
    assert!((0.0..=64.0).contains(&t.max_canary_exposure));
    assert!((1..=20).contains(&policy.approvals.required));
    assert!((1..=64).contains(&policy.select.max_audits));
    assert_eq!(policy.sha256, hex::encode(digest(&SHA256, data)));
    serde_json::to_string(&policy).expect("a parsed policy serializes");

    // The same text read from a directory differs only in where its secret files resolve.
    let dir = Path::new("/etc/lethe");
    let placed = Policy::parse(text, "fuzz.toml", Some(dir)).expect("the same text parses again");
    assert_eq!(placed.secret_packs.len(), policy.secret_packs.len());
    assert!(placed
        .secret_packs
        .iter()
        .zip(&policy.secret_packs)
        .all(|(p, q)| *p == dir.join(q)));
});
