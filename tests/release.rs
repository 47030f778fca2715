//! Policy and gate from the command line: a policy file is validated with errors naming the line; a run's
//! latest audit is evaluated against a policy, the decision stored, and a failed gate exits with code 3.

mod common;

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

/// A policy whose audit is small enough for a test and whose thresholds a micro model passes.
const LAX: &str = r#"
version = 1
name = "lax"
[gate]
statistic = "estimate"
[thresholds]
max_exact_extraction = 1.0
max_approximate_extraction = 1.0
max_infill_extraction = 1.0
max_regurgitated_span_tokens = 100000
max_covered_share = 1.0
max_canary_exposure = 64.0
max_membership_auc = 1.0
max_regurgitated_secrets = 1000
[audit]
extraction_samples = 6
prefix_tokens = 16
suffix_tokens = 16
regurgitation_samples = 4
regurgitation_length = 24
min_tokens = 8
canary_candidates = 20
canary_mc_samples = 2
membership_docs = 6
membership_window = 32
membership_mc_samples = 2
bootstrap = 20
[approvals]
required = 2
role = "reviewer"
"#;

fn write_policy(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
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
