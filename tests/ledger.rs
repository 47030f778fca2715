//! The ledger on both engines: concurrent appends form one chain, checkpoints are signed, and `verify`
//! names the first entry after each kind of direct edit of the database: an edited, deleted, inserted or
//! reordered entry, a forged checkpoint, a truncated tail.

mod common;

use common::{fails_with, lethe, ok, TestDb};
use lethe::ledger::{self, BreakKind};
use lethe::store::Store;
use lethe::vault::signing::Signer;
use lethe::vault::MasterKeyRing;

fn signer(dir: &std::path::Path) -> Signer {
    let ring = MasterKeyRing::generate(0).unwrap();
    let path = dir.join("signing.key");
    Signer::create(&path, &ring).unwrap();
    Signer::load(&path, &ring).unwrap()
}

async fn append_n(store: &Store, s: &Signer, n: usize) {
    for i in 0..n {
        ledger::append(
            store,
            s,
            "alice",
            "audit.run",
            &format!("run-{i}"),
            serde_json::json!({ "i": i, "nested": { "b": 1, "a": [1, 2] } }),
        )
        .await
        .unwrap();
    }
}

async fn sql(store: &Store, q: &str) {
    sqlx::query(q).execute(store.pool()).await.unwrap();
}

async fn broken(store: &Store, s: &Signer) -> (i64, BreakKind) {
    let b = ledger::verify_store(store, &s.public_key_hex())
        .await
        .unwrap()
        .expect_err("the tampering is detected");
    (b.seq, b.kind)
}

async fn concurrent_appends_form_one_verified_chain(db: &TestDb) {
    let tmp = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(signer(tmp.path()));
    let store = db.open().await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (store, s) = (db.open().await, s.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                ledger::append(
                    &store,
                    &s,
                    &format!("w{w}"),
                    "train.start",
                    &format!("{w}-{i}"),
                    serde_json::json!({}),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = ledger::verify_store(&store, &s.public_key_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.entries, 40);
    assert_eq!(r.head_seq, 40);
    // A checkpoint at least every 16 entries (concurrent appenders may each sign one a little later).
    assert!(r.last_checkpoint_seq.is_some_and(|s| s >= 32), "{r:?}");
    assert!(r.checkpoints_verified >= 2, "{r:?}");
    // Security-critical actions are checkpointed at once.
    ledger::append(
        &store,
        &s,
        "bob",
        "release.approve",
        "run-x",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    let r = ledger::verify_store(&store, &s.public_key_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.last_checkpoint_seq, r.unprotected_tail), (Some(41), 0));
    // Another key's view of the same ledger: every checkpoint is refused.
    let other = signer(&tmp.path().join("other").tap_mkdir());
    let b = ledger::verify_store(&store, &other.public_key_hex())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(b.kind, BreakKind::BadCheckpoint);
    store.close().await;
}
on_both_engines!(
    concurrent_appends,
    super::concurrent_appends_form_one_verified_chain
);

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

async fn each_direct_edit_is_named(db: &TestDb) {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer(tmp.path());
    // Fresh ledgers for each tampering, in tables of their own database each time.
    async fn fresh(db: &TestDb, s: &Signer) -> Store {
        let store = db.open().await;
        sql(&store, "DELETE FROM ledger_checkpoints").await;
        sql(&store, "DELETE FROM ledger_entries").await;
        append_n(&store, s, 20).await;
        store
    }

    // Edited: a field changed without fixing the hash.
    let store = fresh(db, &s).await;
    sql(
        &store,
        "UPDATE ledger_entries SET actor = 'mallory' WHERE seq = 7",
    )
    .await;
    assert_eq!(broken(&store, &s).await, (7, BreakKind::Edited));

    // Edited and every later hash recomputed: the signed checkpoint at 16 no longer matches.
    let store = fresh(db, &s).await;
    let entries = store.ledger().entries(None).await.unwrap();
    sql(&store, "DELETE FROM ledger_entries").await;
    let mut prev: Option<ledger::Entry> = None;
    for e in entries {
        let actor = if e.seq == 5 {
            "mallory".to_string()
        } else {
            e.actor.clone()
        };
        let n = ledger::Entry::new(prev.as_ref(), e.at_ms, actor, e.action, e.subject, e.details);
        common::insert_ledger_entry(&store, &n).await;
        prev = Some(n);
    }
    let b = ledger::verify_store(&store, &s.public_key_hex())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(b.kind, BreakKind::Edited);
    assert!(b.seq <= 5 && b.through_seq >= 5, "{b}");

    // Deleted: a middle entry removed.
    let store = fresh(db, &s).await;
    sql(&store, "DELETE FROM ledger_entries WHERE seq = 9").await;
    assert_eq!(broken(&store, &s).await, (9, BreakKind::Deleted));

    // Inserted: a forged entry given an unused seq between two real ones is not possible (seqs are
    // dense), so it takes a real entry's place and pushes the rest up by one.
    let store = fresh(db, &s).await;
    for seq in (12..=20).rev() {
        sql(
            &store,
            &format!("UPDATE ledger_entries SET seq = {} WHERE seq = {seq}", seq + 1),
        )
        .await;
    }
    sql(
        &store,
        "INSERT INTO ledger_entries (seq, at_ms, actor, action, subject, details, prev_hash, hash) \
         SELECT 12, at_ms, 'mallory', 'release.approve', 'run-9', '{}', hash, hash FROM ledger_entries WHERE seq = 11",
    )
    .await;
    assert_eq!(broken(&store, &s).await.1, BreakKind::Inserted);
    assert_eq!(broken(&store, &s).await.0, 12);

    // Reordered: two entries' seqs swapped.
    let store = fresh(db, &s).await;
    sql(&store, "UPDATE ledger_entries SET seq = -3 WHERE seq = 3").await;
    sql(&store, "UPDATE ledger_entries SET seq = 3 WHERE seq = 4").await;
    sql(&store, "UPDATE ledger_entries SET seq = 4 WHERE seq = -3").await;
    assert_eq!(broken(&store, &s).await, (3, BreakKind::Reordered));

    // Truncated: the newest entries deleted below a signed checkpoint.
    let store = fresh(db, &s).await;
    sql(&store, "DELETE FROM ledger_entries WHERE seq >= 15").await;
    assert_eq!(broken(&store, &s).await.1, BreakKind::Truncated);

    // A forged checkpoint (signature of another message).
    let store = fresh(db, &s).await;
    sql(
        &store,
        "UPDATE ledger_checkpoints SET at_ms = at_ms + 1 WHERE seq = 16",
    )
    .await;
    assert_eq!(broken(&store, &s).await, (16, BreakKind::BadCheckpoint));
    store.close().await;
}
on_both_engines!(direct_edits, super::each_direct_edit_is_named);

#[test]
fn the_cli_records_events_and_verifies_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(lethe(&data, &["init"]));
    for _ in 0..3 {
        ok(lethe(&data, &["keys", "rotate"]));
    }
    let out = ok(lethe(&data, &["ledger", "verify"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ledger intact: 3 entries"));
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "ledger", "show", "--since", "1h"])).stdout)
            .unwrap();
    let actions: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["keys.rotate"; 3]);
    let none: serde_json::Value = serde_json::from_slice(
        &ok(lethe(
            &data,
            &["--json", "ledger", "show", "--since", "2999-01-01T00:00:00Z"],
        ))
        .stdout,
    )
    .unwrap();
    assert_eq!(none.as_array().unwrap().len(), 0);
    fails_with(
        &lethe(&data, &["ledger", "show", "--since", "yesterday"]),
        "yesterday",
    );
    let pk = ok(lethe(&data, &["keys", "public"]));
    assert_eq!(String::from_utf8_lossy(&pk.stdout).trim().len(), 64);

    // The security review's low finding 11: concurrent `lethe keys rotate` raced on shared temporary
    // names (2 of 8 failed partway). Eight at once now all succeed, one after another.
    let rotations: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
                .arg("--data-dir")
                .arg(&data)
                .args(["--json", "keys", "rotate"])
                .env_remove("LETHE_DATABASE_URL")
                .env_remove("LETHE_MASTER_KEY")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut versions: Vec<i64> = rotations
        .into_iter()
        .map(|c| {
            let o = ok(c.wait_with_output().unwrap());
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            v["new_version"].as_i64().unwrap()
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (5..=12).collect::<Vec<i64>>());
    ok(lethe(&data, &["ledger", "verify"]));
    let leftovers: Vec<_> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".new"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The security review's low finding 10: a sign-in attempt with a crafted user name put a fake
    // approval line and terminal escapes into `lethe ledger show`. They are shown escaped now.
    let crafted = "x\n    99  2026-01-01T00:00:00Z  rose  release.approve  run-1\u{1b}[2J";
    let o = common::release::as_user(
        &data,
        "wrong",
        &["users", "add", "eve", "--role", "reviewer", "--user", crafted],
    );
    assert!(!o.status.success());
    let shown = String::from_utf8(ok(lethe(&data, &["ledger", "show"])).stdout).unwrap();
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    for line in shown.lines() {
        assert!(
            line.trim_start()
                .split(' ')
                .next()
                .is_some_and(|seq| seq.parse::<i64>().is_ok()),
            "a line that is not an entry: {line:?}"
        );
    }
    assert!(
        shown.contains("auth.sign_in_failed") && shown.contains("\\u{a}"),
        "{shown}"
    );
}

async fn anchored_appends(store: &Store, s: &Signer, anchors: &ledger::AnchorLog, from: usize, n: usize) {
    for i in from..from + n {
        ledger::append_anchored(
            store,
            s,
            Some(anchors),
            "alice",
            if i % 10 == 9 {
                "release.approve"
            } else {
                "audit.run"
            },
            &format!("run-{i}"),
            serde_json::json!({ "i": i }),
        )
        .await
        .unwrap();
    }
}

/// A security-critical event (one the appliance checkpoints at once) appended by mallory.
async fn critical_append(
    store: &Store,
    s: &Signer,
    anchors: &ledger::AnchorLog,
) -> Result<ledger::Entry, ledger::LedgerError> {
    ledger::append_anchored(
        store,
        s,
        Some(anchors),
        "mallory",
        "release.approve",
        "run-x",
        serde_json::json!({}),
    )
    .await
}

/// The security review's finding: deleting the last 70 entries and the checkpoints above them still
/// gave "ledger intact", and the appliance then signed on. Now the head is anchored outside the
/// database: the anchor file proves the truncation, and the appliance refuses to sign over it.
async fn a_truncated_tail_is_caught_by_the_anchor_and_never_signed_over(db: &TestDb) {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer(tmp.path());
    let anchors = ledger::AnchorLog::in_data_dir(tmp.path(), false);
    let store = db.open().await;
    anchored_appends(&store, &s, &anchors, 0, 100).await;
    let pk = s.public_key_hex();
    let heads = ledger::read_anchor_file(anchors.path()).unwrap();
    assert!(
        heads.iter().any(|c| c.seq == 100 && c.root.is_some()),
        "{heads:?}"
    );
    let entries = store.ledger().entries(None).await.unwrap();
    ledger::check_extends(&entries, &heads, &pk).unwrap();

    // The attack: the newest 70 entries and every checkpoint above the 30 left are deleted.
    sql(&store, "DELETE FROM ledger_entries WHERE seq > 30").await;
    sql(&store, "DELETE FROM ledger_checkpoints WHERE seq > 30").await;
    // The database alone cannot tell (the 30 left are a well-formed, checkpointed ledger)...
    let alone = ledger::verify_store(&store, &pk).await.unwrap();
    assert!(alone.is_ok(), "{alone:?}");
    // ...but the anchored heads can.
    let entries = store.ledger().entries(None).await.unwrap();
    let b = ledger::check_extends(&entries, &heads, &pk).unwrap_err();
    assert_eq!((b.kind, b.seq), (BreakKind::Truncated, 31), "{b}");
    // The appliance appends nothing it would have to sign over the cut: the next checkpoint (at the
    // next security-critical event) is refused, and that event with it.
    let r = critical_append(&store, &s, &anchors).await;
    match r {
        Err(ledger::LedgerError::Broken(b)) => assert_eq!(b.kind, BreakKind::Truncated),
        other => panic!("signed over a truncated ledger: {other:?}"),
    }
    assert_eq!(store.ledger().entries(None).await.unwrap().len(), 30);
    store.close().await;
}
on_both_engines!(
    truncation_against_anchor,
    super::a_truncated_tail_is_caught_by_the_anchor_and_never_signed_over
);

/// The review's second attack: delete every checkpoint, edit an entry and re-hash the chain. The
/// cadence now requires the checkpoints that were deleted, the anchored heads no longer match, and
/// the appliance refuses to sign the forged head.
async fn a_rehashed_ledger_without_checkpoints_is_refused(db: &TestDb) {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer(tmp.path());
    let anchors = ledger::AnchorLog::in_data_dir(tmp.path(), false);
    let store = db.open().await;
    anchored_appends(&store, &s, &anchors, 0, 40).await;
    let pk = s.public_key_hex();
    let entries = store.ledger().entries(None).await.unwrap();
    sql(&store, "DELETE FROM ledger_checkpoints").await;
    common::rewrite_ledger(&store, entries, |e| {
        if e.seq == 10 {
            e.actor = "mallory".into();
        }
    })
    .await;
    let b = ledger::verify_store(&store, &pk).await.unwrap().unwrap_err();
    assert_eq!((b.kind, b.seq), (BreakKind::MissingCheckpoint, 10), "{b}");
    let heads = ledger::read_anchor_file(anchors.path()).unwrap();
    let entries = store.ledger().entries(None).await.unwrap();
    let b = ledger::check_extends(&entries, &heads, &pk).unwrap_err();
    assert_eq!(b.kind, BreakKind::Edited, "{b}");
    assert!(b.seq <= 10 && b.through_seq >= 10, "{b}");
    let r = critical_append(&store, &s, &anchors).await;
    assert!(matches!(r, Err(ledger::LedgerError::Broken(_))), "{r:?}");

    // One checkpoint row deleted in the middle of an intact ledger: the cadence names it.
    sql(&store, "DELETE FROM ledger_checkpoints").await;
    sql(&store, "DELETE FROM ledger_entries").await;
    anchored_appends(
        &store,
        &s,
        &ledger::AnchorLog::in_data_dir(&tmp.path().join("b"), false),
        0,
        40,
    )
    .await;
    ledger::verify_store(&store, &pk).await.unwrap().unwrap();
    sql(&store, "DELETE FROM ledger_checkpoints WHERE seq = 20").await;
    let b = ledger::verify_store(&store, &pk).await.unwrap().unwrap_err();
    assert_eq!((b.kind, b.seq), (BreakKind::MissingCheckpoint, 20), "{b}");
    store.close().await;
}
on_both_engines!(
    rehash_without_checkpoints,
    super::a_rehashed_ledger_without_checkpoints_is_refused
);

/// A witness that kept an old signed head checks a later one with a consistency proof alone, and a
/// bundle-style inclusion proof shows an entry is in the signed tree.
async fn witnesses_check_consistency_and_inclusion_without_the_log(db: &TestDb) {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer(tmp.path());
    let store = db.open().await;
    let anchors = ledger::AnchorLog::in_data_dir(tmp.path(), false);
    anchored_appends(&store, &s, &anchors, 0, 23).await;
    let (old, _) = ledger::anchor_head(&store, &s, Some(&anchors)).await.unwrap();
    assert_eq!(old.seq, 23);
    anchored_appends(&store, &s, &anchors, 23, 50).await;
    let (new, entries) = ledger::anchor_head(&store, &s, Some(&anchors)).await.unwrap();
    assert_eq!(new.seq, 73);
    let pk = s.public_key_hex();
    let st = ledger::Consistency::prove(&entries, &old, &new).unwrap();
    st.verify(&pk).unwrap();
    // Another key, or a head of a rewritten history, fails.
    let other = signer(&tmp.path().join("o").tap_mkdir());
    assert!(st.verify(&other.public_key_hex()).is_err());
    let mut forged = st.clone();
    forged.proof[0] = "00".repeat(32);
    assert!(forged.verify(&pk).is_err());
    for seq in [1, 9, 23, 73] {
        let p = ledger::EntryProof::of(&entries, seq).unwrap();
        p.verify(&new).unwrap();
        let mut edited = p.clone();
        edited.entry.actor = "mallory".into();
        edited.entry.hash = edited.entry.compute_hash();
        assert!(edited.verify(&new).is_err());
    }
    store.close().await;
}
on_both_engines!(
    witness_proofs,
    super::witnesses_check_consistency_and_inclusion_without_the_log
);

/// A ledger upgraded from a version that signed checkpoints without a tree root: a head for a bundle
/// or a witness is a new, rooted one (after a `ledger.anchor` entry), and the ledger still verifies.
async fn a_head_signed_before_the_tree_gets_a_new_rooted_head(db: &TestDb) {
    let tmp = tempfile::tempdir().unwrap();
    let s = signer(tmp.path());
    let store = db.open().await;
    append_n(&store, &s, 3).await;
    let head = store.ledger().head().await.unwrap().unwrap();
    let old = ledger::Checkpoint::sign(&head, head.at_ms, &|m: &[u8]| s.sign(m), &s.public_key_hex());
    sqlx::query(
        "INSERT INTO ledger_checkpoints (seq, head_hash, at_ms, public_key, signature) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(old.seq)
    .bind(&old.head_hash)
    .bind(old.at_ms)
    .bind(&old.public_key)
    .bind(&old.signature)
    .execute(store.pool())
    .await
    .unwrap();
    let (c, entries) = ledger::anchor_head(&store, &s, None).await.unwrap();
    assert_eq!((c.seq, c.root.is_some()), (4, true), "{c:?}");
    assert_eq!(entries.last().unwrap().action, "ledger.anchor");
    let r = ledger::verify_store(&store, &s.public_key_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.checkpoints_verified, r.roots_verified), (2, 1));
    store.close().await;
}
on_both_engines!(
    legacy_head,
    super::a_head_signed_before_the_tree_gets_a_new_rooted_head
);
