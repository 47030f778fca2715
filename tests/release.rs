//! Policy and gate from the command line: a policy file is validated with errors naming the line; a run's
//! latest audit is evaluated against a policy, the decision stored, and a failed gate exits with code 3.

mod common;

use common::release::{as_user, gated_run, with_users, write_policy, LAX};
use common::{fails_last_line_with as fails_with, lethe, ok};

use std::path::{Path, PathBuf};

/// An audited micro run: (tmp dir, data dir, run id).
fn audited() -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = common::ingested(tmp.path(), 60, 5, common::AUDITABLE);
    let run = common::micro_run(&data, &[]);
    let policy = write_policy(tmp.path(), "lax.toml", LAX);
    fails_with(
        &lethe(
            &data,
            &["gate", "--run", &run, "--policy", policy.to_str().unwrap()],
        ),
        "has no finished audit",
    );
    ok(lethe(
        &data,
        &["audit", "--run", &run, "--policy", policy.to_str().unwrap()],
    ));
    (tmp, data, run)
}

#[test]
fn policies_are_checked_with_errors_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let good = write_policy(tmp.path(), "good.toml", LAX);
    let out = ok(lethe(&data, &["policy", "check", good.to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("policy \"lax\" is valid"));
    let bad = write_policy(
        tmp.path(),
        "bad.toml",
        &LAX.replace("max_covered_share = 1.0", "max_covered_share = 7"),
    );
    fails_with(
        &lethe(&data, &["policy", "check", bad.to_str().unwrap()]),
        "bad.toml:11:21: max_covered_share = 7 must be a share between 0 and 1",
    );
    let typo = write_policy(
        tmp.path(),
        "typo.toml",
        &LAX.replace("[approvals]", "[approvals]\nrequird = 2"),
    );
    fails_with(
        &lethe(&data, &["policy", "check", typo.to_str().unwrap()]),
        "typo.toml:29:1: unknown field `requird`",
    );
    fails_with(
        &lethe(&data, &["policy", "check", "/nonexistent.toml"]),
        "cannot read policy /nonexistent.toml",
    );
    // The built-in policy is printable and valid.
    let default = ok(lethe(&data, &["policy", "default"]));
    let builtin = write_policy(
        tmp.path(),
        "builtin.toml",
        &String::from_utf8(default.stdout).unwrap(),
    );
    ok(lethe(&data, &["policy", "check", builtin.to_str().unwrap()]));
}

#[test]
fn the_gate_records_a_decision_and_a_failed_gate_exits_with_3() {
    let (tmp, data, run) = audited();
    let lax = write_policy(tmp.path(), "lax.toml", LAX);
    let passed: serde_json::Value = serde_json::from_slice(
        &ok(lethe(
            &data,
            &["--json", "gate", "--run", &run, "--policy", lax.to_str().unwrap()],
        ))
        .stdout,
    )
    .unwrap();
    assert_eq!(passed["passed"], true, "{passed}");
    assert_eq!(passed["policy"], "lax");
    // Nine rules: the policy sets no max_novel_secrets.
    assert_eq!(passed["rows"].as_array().unwrap().len(), 9);
    assert!(passed["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["passed"] == true));

    // The built-in policy asks for a far larger audit and tighter thresholds: it fails, says why, and the
    // process exits 3 (a decision, not a broken command).
    let strict = lethe(&data, &["gate", "--run", &run]);
    assert_eq!(
        strict.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );
    let text = String::from_utf8_lossy(&strict.stdout);
    assert!(text.contains("decision: FAILED"), "{text}");
    assert!(
        text.contains("the audit differs from the policy's: extraction_samples 6 < 1000"),
        "{text}"
    );
    assert!(strict.stderr.is_empty(), "no error line for a decision");

    fails_with(
        &lethe(&data, &["gate", "--run", "run-nope"]),
        "no training run \"run-nope\"",
    );
    let bad = write_policy(tmp.path(), "bad.toml", "version = 1\n");
    fails_with(
        &lethe(&data, &["gate", "--run", &run, "--policy", bad.to_str().unwrap()]),
        "bad.toml:",
    );
}

#[test]
fn two_distinct_reviewers_release_a_run_and_its_bundle_verifies_with_only_the_public_key() {
    let (tmp, data, pw) = with_users(&[
        ("olga", "operator"),
        ("rita", "reviewer"),
        ("remy", "reviewer"),
        ("rose", "reviewer"),
    ]);
    let policy = write_policy(tmp.path(), "lax.toml", LAX);
    let p = policy.to_str().unwrap();
    // Rita trains the model (training needs no particular role), so she may never approve its release.
    let run = gated_run(tmp.path(), &data, ("rita", &pw["rita"]), &policy);
    let act = |user: &str, args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(&["--run", &run, "--user", user, "--policy", p]);
        as_user(&data, &pw[user], &a)
    };
    fails_with(
        &as_user(
            &data,
            "wrong",
            &[
                "release", "request", "--run", &run, "--user", "olga", "--policy", p,
            ],
        ),
        "sign-in failed for user \"olga\"",
    );
    fails_with(
        &act("remy", &["release", "request"]),
        "needs the operator or admin role; remy is reviewer",
    );
    ok(act("olga", &["release", "request"]));
    fails_with(
        &act("olga", &["release", "request"]),
        "already has a release request open or released",
    );
    fails_with(
        &act(
            "olga",
            &[
                "release",
                "export",
                "--out",
                tmp.path().join("early").to_str().unwrap(),
            ],
        ),
        "only an approved release can be exported",
    );

    fails_with(
        &act("olga", &["release", "approve", "--comment", "mine"]),
        "needs the reviewer role; olga is operator",
    );
    fails_with(
        &act("admin", &["release", "approve", "--comment", "boss"]),
        "needs the reviewer role; admin is admin",
    );
    fails_with(
        &act("rita", &["release", "approve", "--comment", "mine"]),
        "rita started the training",
    );
    ok(act(
        "remy",
        &["release", "approve", "--comment", "audit is clean"],
    ));
    fails_with(
        &act("remy", &["release", "approve", "--comment", "twice"]),
        "remy has already reviewed",
    );
    let status: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "release", "status", "--run", &run])).stdout)
            .unwrap();
    assert_eq!(status["stage"], "requested");
    assert_eq!(status["approvals_missing"], 1);
    ok(act("rose", &["release", "approve", "--comment", "agreed"]));
    let status: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "release", "status", "--run", &run])).stdout)
            .unwrap();
    assert_eq!(status["stage"], "approved");

    let bundle = tmp.path().join("bundle");
    let b = bundle.to_str().unwrap();
    ok(act("rose", &["release", "export", "--out", b]));
    let pk = String::from_utf8(ok(lethe(&data, &["keys", "public"])).stdout).unwrap();
    let pk = pk.trim();
    // Verification needs no data directory: only the public key.
    let nowhere = tmp.path().join("nowhere");
    ok(lethe(&nowhere, &["release", "verify", b, "--public-key", pk]));
    let status: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "release", "status", "--run", &run])).stdout)
            .unwrap();
    assert_eq!(status["stage"], "released");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let approvers: Vec<&str> = manifest["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["remy", "rose"]);
    let card = std::fs::read_to_string(bundle.join("MODEL_CARD.md")).unwrap();
    assert!(
        card.contains("remy (reviewer)") && card.contains("max_exact_extraction"),
        "{card}"
    );

    // Any changed byte in any file, a removed file, or another key fails, naming what is wrong.
    for name in [
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "MODEL_CARD.md",
        "audit.json",
        "manifest.json",
        "manifest.sig",
    ] {
        let copy = tmp.path().join(format!("copy-{name}"));
        copy_dir(&bundle, &copy);
        let f = copy.join(name);
        let mut bytes = std::fs::read(&f).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&f, &bytes).unwrap();
        let o = lethe(
            &nowhere,
            &["release", "verify", copy.to_str().unwrap(), "--public-key", pk],
        );
        let named = if name == "manifest.json" {
            "manifest.sig"
        } else {
            name
        };
        fails_with(&o, named);
    }
    let copy = tmp.path().join("copy-removed");
    copy_dir(&bundle, &copy);
    std::fs::remove_file(copy.join("tokenizer.json")).unwrap();
    fails_with(
        &lethe(
            &nowhere,
            &["release", "verify", copy.to_str().unwrap(), "--public-key", pk],
        ),
        "tokenizer.json: missing",
    );
    let other = tmp.path().join("other");
    let init: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&other, &["--json", "init"])).stdout).unwrap();
    let other_pk = init["signing_public_key"].as_str().unwrap();
    fails_with(
        &lethe(&nowhere, &["release", "verify", b, "--public-key", other_pk]),
        "fingerprint",
    );

    // Unmasking evidence: admins only, and recorded.
    let audit = status["audit"].as_str().unwrap().to_string();
    fails_with(
        &as_user(
            &data,
            &pw["rita"],
            &["audit", "show", &audit, "--evidence", "--unmask-as", "rita"],
        ),
        "unmasking evidence needs the admin role; rita is reviewer",
    );
    ok(as_user(
        &data,
        &pw["admin"],
        &["audit", "show", &audit, "--evidence", "--unmask-as", "admin"],
    ));

    // Every step is in the ledger, and the ledger is intact.
    let entries: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "ledger", "show"])).stdout).unwrap();
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "user.create",
        "corpus.ingest",
        "train.start",
        "train.end",
        "audit.run",
        "gate.evaluate",
        "release.request",
        "release.approve",
        "release.export",
        "auth.sign_in_failed",
        "evidence.unmask",
    ] {
        assert!(actions.contains(&a), "no {a} in {actions:?}");
    }
    ok(lethe(&data, &["ledger", "verify"]));
    the_bundle_anchors_the_ledger(tmp.path(), &data, &bundle, pk);
}

/// The bundle carries a signed ledger head and the approvals' inclusion proofs: the ledger verifies
/// against it and a witness checks a later head from it; a copy of the data directory whose ledger was
/// cut short or rewritten (with the database's password, not the signing key) fails, whether the
/// anchor file is still there or was removed too.
fn the_bundle_anchors_the_ledger(tmp: &Path, data: &Path, bundle: &Path, pk: &str) {
    let b = bundle.to_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let head = manifest["extra"]["ledger"]["checkpoint"]["seq"].as_i64().unwrap();
    assert_eq!(
        manifest["extra"]["ledger"]["approvals"].as_array().unwrap().len(),
        2
    );
    let out = ok(lethe(data, &["ledger", "verify", "--against", b]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("extends 1 signed heads"),
        "{out:?}"
    );
    // A witness that kept the bundle checks the head now against it, offline.
    let st = ok(lethe(data, &["ledger", "prove", "--from", b]));
    let st_file = tmp.join("statement.json");
    std::fs::write(&st_file, &st.stdout).unwrap();
    let nowhere = tmp.join("nowhere");
    ok(lethe(
        &nowhere,
        &["ledger", "witness", st_file.to_str().unwrap(), "--public-key", pk],
    ));
    let mut forged: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    forged["new"]["root"] = serde_json::json!("00".repeat(32));
    std::fs::write(&st_file, serde_json::to_vec(&forged).unwrap()).unwrap();
    fails_with(
        &lethe(
            &nowhere,
            &["ledger", "witness", st_file.to_str().unwrap(), "--public-key", pk],
        ),
        "witness check failed",
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let tamper = |name: &str, statements: Vec<String>| -> PathBuf {
        let copy = tmp.join(name);
        copy_tree(data, &copy);
        rt.block_on(async {
            let url = lethe::store::sqlite_url(&copy.join("lethe.db"));
            let store = lethe::store::Store::open(&url).await.unwrap();
            for q in statements {
                sqlx::query(&q).execute(store.pool()).await.unwrap();
            }
            store.close().await;
        });
        copy
    };
    // Cut short: the entries from a little before the bundle's head on, and the checkpoints over them.
    let cut = tamper(
        "cut",
        vec![
            format!("DELETE FROM ledger_entries WHERE seq >= {}", head - 2),
            format!("DELETE FROM ledger_checkpoints WHERE seq >= {}", head - 2),
        ],
    );
    fails_with(&lethe(&cut, &["ledger", "verify"]), "(truncated)");
    std::fs::remove_file(cut.join("ledger/anchors.jsonl")).unwrap();
    fails_with(&lethe(&cut, &["ledger", "verify", "--against", b]), "(truncated)");

    // Rewritten: an approval's actor changed, every hash after it recomputed, every checkpoint deleted.
    let rewritten = tmp.join("rewritten");
    copy_tree(data, &rewritten);
    rt.block_on(async {
        let url = lethe::store::sqlite_url(&rewritten.join("lethe.db"));
        let store = lethe::store::Store::open(&url).await.unwrap();
        let entries = store.ledger().entries(None).await.unwrap();
        sqlx::query("DELETE FROM ledger_checkpoints")
            .execute(store.pool())
            .await
            .unwrap();
        common::rewrite_ledger(&store, entries, |e| {
            if e.action == "release.approve" {
                e.actor = "mallory".into();
            }
        })
        .await;
        store.close().await;
    });
    fails_with(
        &lethe(&rewritten, &["ledger", "verify"]),
        "ledger verification failed",
    );
    std::fs::remove_file(rewritten.join("ledger/anchors.jsonl")).unwrap();
    fails_with(
        &lethe(&rewritten, &["ledger", "verify", "--against", b]),
        "ledger verification failed",
    );
    // The appliance signs nothing more over the rewritten history: a security-critical event fails.
    fails_with(&lethe(&rewritten, &["keys", "rotate"]), "refusing to sign");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else if t.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn failed_gates_need_a_waiver_and_new_audits_or_policies_void_requests() {
    let (tmp, data, pw) = with_users(&[
        ("olga", "operator"),
        ("remy", "reviewer"),
        ("rose", "reviewer"),
        ("rick", "reviewer"),
    ]);
    let strict_text = LAX
        .replace("max_exact_extraction = 1.0", "max_exact_extraction = 0.0")
        .replace("max_membership_auc = 1.0", "max_membership_auc = 0.5")
        .replace("max_canary_exposure = 64.0", "max_canary_exposure = 0.0");
    let strict = write_policy(tmp.path(), "strict.toml", &strict_text);
    let run = gated_run(tmp.path(), &data, ("olga", &pw["olga"]), &strict);
    let s = strict.to_str().unwrap();
    let req = |policy: &str, extra: &[&str]| {
        let mut a = vec![
            "release", "request", "--run", &run, "--user", "olga", "--policy", policy,
        ];
        a.extend_from_slice(extra);
        as_user(&data, &pw["olga"], &a)
    };
    fails_with(&req(s, &[]), "a failed gate cannot be released");
    fails_with(
        &req(s, &["--waiver", "synthetic test data, accepted risk"]),
        "allows no waiver",
    );
    let waivable = write_policy(
        tmp.path(),
        "waivable.toml",
        &format!("{strict_text}allow_waiver = true\n"),
    );
    let w = waivable.to_str().unwrap();
    fails_with(&req(w, &[]), "has not been gated under policy");
    let _ = lethe(&data, &["gate", "--run", &run, "--policy", w]);
    fails_with(&req(w, &["--waiver", "too short"]), "at least 20 characters");
    let r: serde_json::Value = serde_json::from_slice(
        &ok(req(
            w,
            &["--json", "--waiver", "synthetic test data, accepted risk"],
        ))
        .stdout,
    )
    .unwrap();
    assert_eq!(r["required_approvals"], 3, "a waiver needs one approval more");

    let approve = |user: &str, policy: &str| {
        as_user(
            &data,
            &pw[user],
            &[
                "release",
                "approve",
                "--run",
                &run,
                "--user",
                user,
                "--policy",
                policy,
                "--comment",
                "ok",
            ],
        )
    };
    ok(approve("remy", w));
    // Another policy than the one the request was gated under voids it.
    let edited = write_policy(
        tmp.path(),
        "edited.toml",
        &format!("{strict_text}allow_waiver = true\n# edited\n"),
    );
    fails_with(
        &approve("rose", edited.to_str().unwrap()),
        "is void, and its approvals with it",
    );
    let status: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "release", "status", "--run", &run])).stdout)
            .unwrap();
    assert_eq!(status["stage"], "void");
    fails_with(&approve("rose", w), "not open for review");

    // A new request, then a new audit: void again.
    ok(req(w, &["--waiver", "synthetic test data, accepted risk"]));
    ok(approve("remy", w));
    ok(lethe(&data, &["audit", "--run", &run, "--policy", w]));
    fails_with(&approve("rose", w), "was audited again");
}

/// The security review's medium finding 4: after one reviewer rejected, the operator requested again
/// on the same audit and two others approved; the rejection vanished from the release page. A
/// rejection now stands until a new audit, and stays in the run's release history.
#[test]
fn a_rejection_stands_until_a_new_audit_and_stays_in_the_history() {
    let (tmp, data, pw) = with_users(&[
        ("olga", "operator"),
        ("remy", "reviewer"),
        ("rose", "reviewer"),
        ("rita", "reviewer"),
    ]);
    let policy = write_policy(tmp.path(), "lax.toml", LAX);
    let p = policy.to_str().unwrap();
    let run = gated_run(tmp.path(), &data, ("olga", &pw["olga"]), &policy);
    let act = |user: &str, args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(&["--run", &run, "--user", user, "--policy", p]);
        as_user(&data, &pw[user], &a)
    };
    ok(act("olga", &["release", "request"]));
    ok(act(
        "remy",
        &[
            "release",
            "reject",
            "--comment",
            "canary exposure too close to the limit",
        ],
    ));
    fails_with(&act("olga", &["release", "request"]), "was rejected by remy");
    let status = |data: &Path| -> serde_json::Value {
        serde_json::from_slice(&ok(lethe(data, &["--json", "release", "status", "--run", &run])).stdout)
            .unwrap()
    };
    assert_eq!(status(&data)["stage"], "rejected");
    // A new audit of the checkpoint and a new gate: a new request may go ahead, and the rejection is
    // still shown beside it.
    ok(lethe(&data, &["audit", "--run", &run, "--policy", p]));
    ok(lethe(&data, &["gate", "--run", &run, "--policy", p]));
    ok(act("olga", &["release", "request"]));
    ok(act(
        "rose",
        &["release", "approve", "--comment", "re-audited, fine"],
    ));
    let s = status(&data);
    assert_eq!(s["release"]["state"], "requested");
    let history = s["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{s}");
    assert_eq!(history[0]["release"]["state"], "rejected");
    assert_eq!(history[0]["reviews"][0]["username"], "remy");
    let text = String::from_utf8(ok(lethe(&data, &["release", "status", "--run", &run])).stdout).unwrap();
    assert!(
        text.contains("earlier") && text.contains("reject remy") && text.contains("canary exposure"),
        "{text}"
    );
}

#[test]
fn two_reviewers_approving_at_the_same_moment_make_one_approval_each_and_one_release() {
    let (tmp, data, pw) = with_users(&[("olga", "operator"), ("remy", "reviewer"), ("rose", "reviewer")]);
    let policy = write_policy(tmp.path(), "lax.toml", LAX);
    let p = policy.to_str().unwrap();
    let run = gated_run(tmp.path(), &data, ("olga", &pw["olga"]), &policy);
    ok(as_user(
        &data,
        &pw["olga"],
        &[
            "release", "request", "--run", &run, "--user", "olga", "--policy", p,
        ],
    ));
    let spawn = |user: &str, args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
            .arg("--data-dir")
            .arg(&data)
            .args(&args)
            .env_remove("LETHE_DATABASE_URL")
            .env("LETHE_PASSWORD", &pw[user])
            .env("LETHE_APPROVER_KEY", common::release::approver_key(&data, user))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let approve = |user: &str| {
        spawn(
            user,
            [
                "release",
                "approve",
                "--run",
                &run,
                "--user",
                user,
                "--policy",
                p,
                "--comment",
                "ok",
            ]
            .map(String::from)
            .to_vec(),
        )
    };
    let (a, b) = (approve("remy"), approve("rose"));
    for c in [a, b] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let status: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "release", "status", "--run", &run])).stdout)
            .unwrap();
    assert_eq!(status["stage"], "approved");
    assert_eq!(status["reviews"].as_array().unwrap().len(), 2);
    // Two exports at once: one release, two bundles that both verify.
    let export = |user: &str, dir: &str| {
        spawn(
            user,
            [
                "release", "export", "--run", &run, "--user", user, "--policy", p, "--out", dir,
            ]
            .map(String::from)
            .to_vec(),
        )
    };
    let d1 = tmp.path().join("b1");
    let d2 = tmp.path().join("b2");
    let (x, y) = (
        export("remy", d1.to_str().unwrap()),
        export("rose", d2.to_str().unwrap()),
    );
    for c in [x, y] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    ok(lethe(&data, &["release", "verify", d1.to_str().unwrap()]));
    ok(lethe(&data, &["release", "verify", d2.to_str().unwrap()]));
    let entries: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "ledger", "show"])).stdout).unwrap();
    let requests = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "release.request")
        .count();
    assert_eq!(requests, 1);
    let status: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "release", "status", "--run", &run])).stdout)
            .unwrap();
    assert_eq!(status["stage"], "released");
}

/// The security review's high finding 1, dual control and approvers' own keys, from the command line:
/// a single admin cannot make an approver, promote one or take one over by a reset; an approval is
/// signed by a confirmed key its approver holds; the bundle carries the signatures and `release verify`
/// checks them, also against a verifier's own list of approvers' keys.
#[test]
fn one_admin_alone_makes_no_approver_and_approvals_are_signed_by_the_approvers_keys() {
    let (tmp, data, pw) = with_users(&[("olga", "operator"), ("remy", "reviewer"), ("rose", "reviewer")]);
    let admin = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--user", "admin"]);
        as_user(&data, &pw["admin"], &a)
    };
    let pending = |out: std::process::Output| -> String {
        let v: serde_json::Value = serde_json::from_slice(&ok(out).stdout).unwrap();
        assert_eq!(v["status"], "pending", "{v}");
        assert!(v["one_time_password"].is_null(), "{v}");
        v["grant"]["id"].as_str().unwrap().to_string()
    };
    // Creating a reviewer, promoting an operator and resetting a reviewer each wait; the admin who
    // asked may not confirm.
    let ghost = pending(admin(&["--json", "users", "add", "ghost", "--role", "reviewer"]));
    fails_with(&admin(&["users", "confirm", &ghost]), "admin asked for grant");
    pending(admin(&["--json", "users", "set", "olga", "--role", "reviewer"]));
    pending(admin(&["--json", "users", "reset", "remy"]));
    let users: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "users", "list"])).stdout).unwrap();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"ghost"), "{names:?}");
    assert_eq!(users[1]["role"], "operator", "olga is not promoted yet: {users}");

    let policy = write_policy(tmp.path(), "lax.toml", LAX);
    let p = policy.to_str().unwrap();
    let run = gated_run(tmp.path(), &data, ("olga", &pw["olga"]), &policy);
    let act = |user: &str, args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(&["--run", &run, "--user", user, "--policy", p]);
        as_user(&data, &pw[user], &a)
    };
    ok(act("olga", &["release", "request"]));
    // A key remy made but never enrolled, and one enrolled but not confirmed, sign nothing.
    let stray = tmp.path().join("stray.key");
    let s = stray.to_str().unwrap();
    ok(lethe(&data, &["approver", "keygen", "--out", s]));
    fails_with(
        &act("remy", &["release", "approve", "--comment", "ok", "--key", s]),
        "has no active approver key",
    );
    ok(as_user(
        &data,
        &pw["remy"],
        &["approver", "enrol", "--key", s, "--user", "remy"],
    ));
    fails_with(
        &act("remy", &["release", "approve", "--comment", "ok", "--key", s]),
        "waits for an admin's confirmation",
    );
    ok(act("remy", &["release", "approve", "--comment", "evidence read"]));
    ok(act("rose", &["release", "approve", "--comment", "agreed"]));

    let bundle = tmp.path().join("bundle");
    let b = bundle.to_str().unwrap();
    ok(act("olga", &["release", "export", "--out", b]));
    let pk = String::from_utf8(ok(lethe(&data, &["keys", "public"])).stdout).unwrap();
    let nowhere = tmp.path().join("nowhere");
    ok(lethe(
        &nowhere,
        &["release", "verify", b, "--public-key", pk.trim()],
    ));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let key_of = |i: usize| {
        manifest["approvals"][i]["key"]["public_key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(manifest["approvals"][0]["user"], "remy");
    assert!(manifest["approvals"][0]["statement"]
        .as_str()
        .unwrap()
        .contains(&format!("\"run\":\"{run}\"")));
    // A verifier's own list of approvers' keys: both keys pass, one alone does not.
    let trusted = tmp.path().join("trusted.txt");
    std::fs::write(&trusted, format!("# remy\n{}\n", key_of(0))).unwrap();
    let t = trusted.to_str().unwrap();
    fails_with(
        &lethe(
            &nowhere,
            &[
                "release",
                "verify",
                b,
                "--public-key",
                pk.trim(),
                "--approver-keys",
                t,
            ],
        ),
        "not in the trusted approver keys",
    );
    std::fs::write(&trusted, format!("{}\n{}\n", key_of(0), key_of(1))).unwrap();
    ok(lethe(
        &nowhere,
        &[
            "release",
            "verify",
            b,
            "--public-key",
            pk.trim(),
            "--approver-keys",
            t,
        ],
    ));
    // The ledger holds the grants and the signed approvals.
    let entries: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "ledger", "show"])).stdout).unwrap();
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["grant.request", "grant.confirm", "release.approve"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let approval = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "release.approve")
        .unwrap();
    assert!(
        approval["details"]["proof"]["signature"].is_string(),
        "{approval}"
    );
}
