//! Fault campaigns (#15): the process is killed as `kill -9` would kill it at the worst moments of an
//! ingest, an approval, an export and a key rotation (`LETHE_FAULT_POINT` names the moment; the process
//! sends itself SIGKILL there, see `app::fault_point`). After each, nothing is left half done that a
//! reader would trust, the ledger still verifies, and a plain retry works.

mod common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;

use common::release::{approver_key, gated_run, with_users, write_policy, LAX};
use common::{lethe, ok};

/// Runs lethe with `LETHE_FAULT_POINT=point` (and `env`) and checks that it died of SIGKILL there.
fn killed_at(data: &Path, point: &str, env: &[(&str, &str)], args: &[&str]) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"));
    cmd.arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("LETHE_DATABASE_URL")
        .env_remove("LETHE_MASTER_KEY")
        .env("LETHE_FAULT_POINT", point);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{args:?} should have been killed at {point}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(out: std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&ok(out).stdout).unwrap()
}

fn ledger_verifies(data: &Path) {
    ok(lethe(data, &["ledger", "verify"]));
}

#[test]
fn an_ingest_killed_at_any_point_leaves_no_corpus_and_a_retry_works() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(lethe(&data, &["init"]));
    let input = tmp.path().join("in");
    let i = input.to_str().unwrap();
    ok(lethe(
        &data,
        &["corpus", "synth", "--out", i, "--docs", "40", "--seed", "3"],
    ));
    for (n, point) in ["ingest.built", "ingest.moved"].into_iter().enumerate() {
        let name = format!("kb{n}");
        let args = ["corpus", "ingest", "--name", &name, "--vocab", "512", i];
        killed_at(&data, point, &[], &args);
        let list = json(lethe(&data, &["--json", "corpus", "list"]));
        assert!(
            !list.to_string().contains(&format!("\"{name}\"")),
            "a killed ingest registered nothing: {list}"
        );
        ok(lethe(&data, &args));
        ok(lethe(&data, &["corpus", "verify", &name]));
    }
    // What the killed ingests left behind was swept by the retries: one directory per corpus.
    let dirs = std::fs::read_dir(data.join("corpora")).unwrap().count();
    assert_eq!(dirs, 2, "one directory per registered corpus");
    ledger_verifies(&data);
}

#[test]
fn an_approval_and_an_export_killed_midway_complete_on_retry_and_the_bundle_verifies() {
    let (tmp, data, pw) = with_users(&[("olga", "operator"), ("remy", "reviewer"), ("rose", "reviewer")]);
    let policy = write_policy(tmp.path(), "lax.toml", LAX);
    let p = policy.to_str().unwrap();
    let run = gated_run(tmp.path(), &data, ("olga", &pw["olga"]), &policy);
    let as_ = |user: &str| {
        let key = approver_key(&data, user);
        (
            pw[user].clone(),
            key.exists().then(|| key.to_str().unwrap().to_string()),
        )
    };
    let env = |user: &str| {
        let (password, key) = as_(user);
        let mut e = vec![("LETHE_PASSWORD".to_string(), password)];
        if let Some(k) = key {
            e.push(("LETHE_APPROVER_KEY".to_string(), k));
        }
        e
    };
    let act = |user: &str, point: Option<&str>, args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(&["--run", &run, "--user", user, "--policy", p]);
        let e = env(user);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        match point {
            Some(point) => {
                killed_at(&data, point, &e, &a);
                None
            }
            None => Some(common::release::as_user(&data, &pw[user], &a)),
        }
    };
    ok(act("olga", None, &["release", "request"]).unwrap());

    // Killed after the approval committed and before its ledger entry: the review stands, the ledger
    // does not have it yet; the retry records it (marked recovered) instead of refusing it.
    act(
        "remy",
        Some("review.committed"),
        &["release", "approve", "--comment", "ok"],
    );
    let st = json(lethe(&data, &["--json", "release", "status", "--run", &run]));
    assert_eq!(st["reviews"].as_array().unwrap().len(), 1, "{st}");
    let approvals_in_ledger = |data: &Path| -> Vec<serde_json::Value> {
        json(lethe(data, &["--json", "ledger", "show"]))
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "release.approve")
            .cloned()
            .collect()
    };
    assert!(approvals_in_ledger(&data).is_empty());
    ledger_verifies(&data);
    ok(act("remy", None, &["release", "approve", "--comment", "ok"]).unwrap());
    let logged = approvals_in_ledger(&data);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["details"]["recovered"], true);
    assert!(logged[0]["details"]["proof"]["signature"].is_string());
    // A second retry is refused as before: one review per reviewer.
    common::fails_last_line_with(
        &act("remy", None, &["release", "approve", "--comment", "ok"]).unwrap(),
        "already reviewed",
    );
    ok(act("rose", None, &["release", "approve", "--comment", "agreed"]).unwrap());

    // Killed after the release was marked released and before any bundle: the retry writes it.
    let first = tmp.path().join("bundle-1");
    let f = first.to_str().unwrap();
    act(
        "olga",
        Some("export.released"),
        &["release", "export", "--out", f],
    );
    let st = json(lethe(&data, &["--json", "release", "status", "--run", &run]));
    assert_eq!(st["stage"], "released", "{st}");
    assert!(!first.exists(), "no bundle was written before the kill");
    // A full disk under the export: a clear error, nothing half written in the target.
    let full = tmp.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    let (password, _) = as_("olga");
    let script = format!(
        "mount -t tmpfs -o size=192k tmpfs {full} && \
         {bin} --data-dir {data} release export --run {run} --user olga --policy {p} --out {full}/bundle; \
         echo \"exit=$?\"; ls -A {full}",
        full = full.display(),
        bin = env!("CARGO_BIN_EXE_lethe"),
        data = data.display(),
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("LETHE_PASSWORD", &password)
        .env_remove("LETHE_DATABASE_URL")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(stdout.contains("exit=1"), "{stdout} {stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("exit=1"),
        "nothing left in the full target: {stdout}"
    );
    // Killed after the bundle was written and before the export's ledger entry: the bundle is whole.
    act("olga", Some("export.written"), &["release", "export", "--out", f]);
    let pk = String::from_utf8(ok(lethe(&data, &["keys", "public"])).stdout).unwrap();
    ok(lethe(&data, &["release", "verify", f, "--public-key", pk.trim()]));
    let second = tmp.path().join("bundle-2");
    let s = second.to_str().unwrap();
    ok(act("olga", None, &["release", "export", "--out", s]).unwrap());
    ok(lethe(&data, &["release", "verify", s, "--public-key", pk.trim()]));
    ok(lethe(&data, &["ledger", "verify", "--against", s]));
}

#[test]
fn a_key_rotation_killed_midway_leaves_every_key_readable_and_a_retry_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, input) = common::ingested(tmp.path(), 30, 4, &["--vocab", "512"]);
    // A second corpus, so the rotation is killed with one data key rewrapped and one not.
    let i = input.to_str().unwrap();
    ok(lethe(
        &data,
        &["corpus", "ingest", "--name", "kb2", "--vocab", "512", i],
    ));
    for point in ["rotate.rewrapping", "rotate.before_signing_key"] {
        killed_at(&data, point, &[], &["keys", "rotate"]);
        for c in ["kb", "kb2"] {
            ok(lethe(&data, &["corpus", "verify", c]));
        }
        ledger_verifies(&data);
    }
    ok(lethe(&data, &["keys", "rotate"]));
    for c in ["kb", "kb2"] {
        ok(lethe(&data, &["corpus", "verify", c]));
    }
    ledger_verifies(&data);
    // The versions the killed rotations added are kept, and the retry's is current: every data key is
    // wrapped by it, none by an older one.
    let keys = json(lethe(&data, &["--json", "keys", "list"]));
    let versions = keys["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 4, "{keys}");
    let current = versions.iter().find(|v| v["current"] == true).unwrap();
    assert_eq!(current["version"], 4, "{keys}");
    assert_eq!(
        current["wraps"], 3,
        "the two data keys and the signing key: {keys}"
    );
    for v in versions.iter().filter(|v| v["current"] != true) {
        assert_eq!(v["wraps"], 0, "{keys}");
    }
}

/// The PostgreSQL server restarts while two workers hold jobs: the workers ride it out, and every job
/// ends once, succeeded, with one run each (none lost, none run twice).
#[test]
fn workers_ride_out_a_postgres_restart_and_every_job_ends_once() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(common::TestDb::postgres());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(lethe(&data, &["init", "--database-url", &db.url]));
    common::synth_and_ingest(&data, &tmp.path().join("in"), 30, 5, &["--vocab", "512"]);
    let mut queued = Vec::new();
    for _ in 0..6 {
        let mut args = vec!["--json", "train", "--queue", "--corpus", "kb"];
        args.extend_from_slice(common::MICRO);
        args.extend_from_slice(&["--epochs", "1", "--max-steps", "40"]);
        queued.push(json(lethe(&data, &args))["job_id"].as_str().unwrap().to_string());
    }
    let worker = || {
        Command::new(env!("CARGO_BIN_EXE_lethe"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--json", "worker", "--lease-s", "10", "--poll-s", "1"])
            .env_remove("LETHE_DATABASE_URL")
            .env_remove("LETHE_MASTER_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let workers = [worker(), worker()];
    let states = || -> Vec<String> {
        json(lethe(&data, &["--json", "jobs", "list", "--limit", "100"]))
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["state"].as_str().unwrap().to_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !states().iter().any(|s| s == "running") {
        assert!(Instant::now() < deadline, "no job started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The restart: every connection the workers hold is cut, and the server is away for a moment.
    let cluster = std::fs::read_dir("/etc/postgresql")
        .expect("PostgreSQL's configuration in /etc/postgresql (the tests run against the local server)")
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let restarted = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect"])
        .arg(&cluster)
        .args(["main", "restart"])
        .status()
        .unwrap();
    assert!(restarted.success(), "pg_ctlcluster restart");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = states();
        if s.iter().all(|s| s != "queued" && s != "running") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs never ended after the restart: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut finished: Vec<String> = Vec::new();
    for w in workers {
        Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status()
            .unwrap();
        let out = w.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a worker survived the restart and stopped cleanly: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["failed"], serde_json::json!([]), "{report}");
        for id in report["succeeded"].as_array().unwrap() {
            finished.push(id.as_str().unwrap().to_string());
        }
    }
    finished.sort();
    let mut want = queued.clone();
    want.sort();
    assert_eq!(finished, want, "every job succeeded once, in one worker");
    let runs = json(lethe(&data, &["--json", "runs", "list"]));
    for q in &queued {
        let n = runs
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["job_id"] == q.as_str())
            .count();
        assert_eq!(n, 1, "job {q} made one run: {runs}");
    }
    rt.block_on(db.cleanup());
}

/// The disk fills up under the ledger (the data directory on a small tmpfs, in a mount namespace of
/// its own): the event that needed an entry fails with a clear error and leaves the ledger intact; once
/// there is room, the same command works and the ledger verifies.
#[test]
fn a_full_disk_under_the_ledger_fails_the_append_and_leaves_the_chain_intact() {
    let (tmp, data, pw) = with_users(&[("olga", "operator")]);
    let disk = tmp.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let bin = env!("CARGO_BIN_EXE_lethe");
    let script = format!(
        "set -u; mount -t tmpfs -o size=16m tmpfs {disk} && cp -a {data} {disk}/data && \
         dd if=/dev/zero of={disk}/filler bs=64k 2>/dev/null; \
         {bin} --data-dir {disk}/data users add amy --role auditor --user admin; echo \"full=$?\"; \
         {bin} --data-dir {disk}/data ledger verify; echo \"verify=$?\"; \
         rm {disk}/filler; \
         {bin} --data-dir {disk}/data users add amy --role auditor --user admin; echo \"retry=$?\"; \
         {bin} --data-dir {disk}/data ledger verify; echo \"verified=$?\"",
        disk = disk.display(),
        data = data.display(),
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("LETHE_PASSWORD", &pw["admin"])
        .env_remove("LETHE_DATABASE_URL")
        .env_remove("LETHE_MASTER_KEY")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    // On the full disk the command fails, saying so (SQLite cannot even open its write-ahead log, so a
    // verification cannot run there either); nothing was half written: with room again, the same
    // command works once and the ledger verifies.
    for want in ["full=1", "verify=1", "retry=0", "verified=0"] {
        assert!(stdout.contains(want), "{want} missing: {stdout}\n{stderr}");
    }
    assert!(
        stderr.contains("has no space left"),
        "the failure says the disk is full: {stderr}"
    );
}
