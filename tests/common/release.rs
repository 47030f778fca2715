//! Fixtures for the release workflow: users with one-time passwords, a lax policy, a gated run.

use std::path::{Path, PathBuf};

use super::{lethe, ok};

/// A policy whose audit is small enough for a test and whose thresholds a micro model passes.
pub const LAX: &str = r#"
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

pub fn write_policy(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// An initialised appliance with users: returns (tmp, data, passwords by user name). An account that
/// needs dual control (an approver or an admin) is confirmed by the host while one admin exists, then by
/// the second admin; each reviewer gets an approver key ([`approver_key`]), confirmed by `admin`.
pub fn with_users(
    users: &[(&str, &str)],
) -> (
    tempfile::TempDir,
    PathBuf,
    std::collections::HashMap<String, String>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let init: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "init"])).stdout).unwrap();
    let mut pw = std::collections::HashMap::new();
    pw.insert(
        "admin".to_string(),
        init["one_time_password"].as_str().unwrap().to_string(),
    );
    let mut admins = vec!["admin".to_string()];
    for (name, role) in users {
        let out = ok(as_user(
            &data,
            &pw["admin"],
            &["--json", "users", "add", name, "--role", role, "--user", "admin"],
        ));
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["status"] == "pending" {
            v = confirm(&data, &pw, &admins, v["grant"]["id"].as_str().unwrap());
        }
        pw.insert(
            (*name).to_string(),
            v["one_time_password"].as_str().unwrap().to_string(),
        );
        if *role == "admin" {
            admins.push((*name).to_string());
        }
    }
    for (name, role) in users {
        if *role == "reviewer" {
            enrol_key(&data, &pw, name);
        }
    }
    (tmp, data, pw)
}

/// Confirms grant `id`: by the host while one admin exists, else by the second admin.
pub fn confirm(
    data: &Path,
    pw: &std::collections::HashMap<String, String>,
    admins: &[String],
    id: &str,
) -> serde_json::Value {
    let out = if admins.len() < 2 {
        ok(lethe(data, &["--json", "users", "confirm", id, "--host"]))
    } else {
        ok(as_user(
            data,
            &pw[&admins[1]],
            &["--json", "users", "confirm", id, "--user", &admins[1]],
        ))
    };
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Where the tests keep `name`'s approver key: beside the data directory.
pub fn approver_key(data: &Path, name: &str) -> PathBuf {
    data.parent()
        .unwrap()
        .join("approver-keys")
        .join(format!("{name}.key"))
}

/// Makes `name` an approver key, enrols it as `name`, and has `admin` confirm it.
pub fn enrol_key(data: &Path, pw: &std::collections::HashMap<String, String>, name: &str) {
    let key = approver_key(data, name);
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let k = key.to_str().unwrap();
    ok(lethe(data, &["approver", "keygen", "--out", k]));
    let out = ok(as_user(
        data,
        &pw[name],
        &["--json", "approver", "enrol", "--key", k, "--user", name],
    ));
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    ok(as_user(
        data,
        &pw["admin"],
        &["users", "confirm", g["id"].as_str().unwrap(), "--user", "admin"],
    ));
}

/// Runs lethe with `LETHE_PASSWORD` set, and `LETHE_APPROVER_KEY` when the `--user` named has a key
/// at [`approver_key`].
pub fn as_user(data: &Path, password: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"));
    cmd.arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("LETHE_DATABASE_URL")
        .env_remove("LETHE_MASTER_KEY")
        .env_remove("LETHE_APPROVER_KEY")
        .env("LETHE_PASSWORD", password);
    if let Some(i) = args.iter().position(|a| *a == "--user") {
        if let Some(name) = args.get(i + 1) {
            let key = approver_key(data, name);
            if key.exists() {
                cmd.env("LETHE_APPROVER_KEY", key);
            }
        }
    }
    cmd.output().unwrap()
}

/// Ingests, trains as `trainer`, audits and gates under `policy`; returns the run id.
pub fn gated_run(tmp: &Path, data: &Path, trainer: (&str, &str), policy: &Path) -> String {
    super::synth_and_ingest(data, &tmp.join("in"), 60, 5, super::AUDITABLE);
    let mut train = vec![
        "--json",
        "train",
        "--user",
        trainer.0,
        "--corpus",
        "kb",
        "--epochs",
        "1",
        "--max-steps",
        "6",
    ];
    train.extend_from_slice(super::MICRO);
    let v: serde_json::Value = serde_json::from_slice(&ok(as_user(data, trainer.1, &train)).stdout).unwrap();
    let run = v["run_id"].as_str().unwrap().to_string();
    let p = policy.to_str().unwrap();
    ok(lethe(data, &["audit", "--run", &run, "--policy", p]));
    let _ = lethe(data, &["gate", "--run", &run, "--policy", p]);
    run
}
