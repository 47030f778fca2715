//! The `lethe` binary as a user runs it: exit codes, one-line errors, files left behind.

mod common;

use common::{fails_with, lethe};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` with its length and modification time, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, u64, i64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path().display().to_string(), m.len(), m.mtime(), m.mtime_nsec()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_twice_refuses_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = lethe(&dir, &["init", "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(report["admin_username"], "admin");
    assert_eq!(report["one_time_password"].as_str().unwrap().len(), 23);
    assert!(report["master_key_id"].as_str().unwrap().starts_with("mk-"));
    let key = dir.join("keys/master.key");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(dir.join("keys/signing.key")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);

    let before = snapshot(&dir);
    let second = lethe(&dir, &["init"]);
    fails_with(&second, "already initialised");
    assert_eq!(snapshot(&dir), before, "second init must not touch any file");
}

#[test]
fn doctor_reports_libtorch_database_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    assert!(lethe(&dir, &["init"]).status.success());
    let o = lethe(&dir, &["doctor", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        r["torch"]["libtorch_version"]
            .as_str()
            .unwrap()
            .starts_with("2.11.0"),
        "{r}"
    );
    assert_eq!(r["torch"]["cuda_linked"], true, "libtorch_cuda must be linked");
    assert!(r["torch"]["cpu_threads"].as_i64().unwrap() >= 1);
    assert_eq!(r["database"]["engine"], "sqlite");
    assert_eq!(r["database"]["answers"], true);
    assert_eq!(r["master_key"]["owner_only"], true);
    assert_eq!(r["master_key"]["mode"], "0600");
    assert_eq!(r["signing_key"]["usable"], true);
    assert_eq!(r["problems"], serde_json::json!([]));
    let text = lethe(&dir, &["doctor"]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(
        out.contains("libtorch") && out.contains("2.11.0") && out.contains("answers"),
        "{out}"
    );
}

#[test]
fn doctor_on_missing_data_dir_is_one_clear_line() {
    let o = lethe(Path::new("/nonexistent/x"), &["doctor"]);
    fails_with(&o, "/nonexistent/x");
    assert!(o.stdout.is_empty());
}

#[test]
fn bad_database_urls_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    assert!(lethe(&dir, &["init"]).status.success());
    let o = lethe(&dir, &["--database-url", "mysql://x@y/z", "doctor"]);
    fails_with(&o, "unsupported database URL");
    let o = lethe(
        &dir,
        &["doctor", "--database-url", "postgres://nobody@127.0.0.1:1/x"],
    );
    fails_with(&o, "127.0.0.1:1");
    // Init with an unusable database leaves nothing behind.
    let fresh = tmp.path().join("fresh");
    let o = lethe(
        &fresh,
        &["init", "--database-url", "postgres://nobody@127.0.0.1:1/x"],
    );
    fails_with(&o, "cannot prepare the database");
    assert!(!fresh.exists(), "failed init must remove what it created");
}

#[test]
fn unreadable_or_exposed_key_file_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    assert!(lethe(&dir, &["init"]).status.success());
    let key = dir.join("keys/master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = lethe(&dir, &["doctor"]);
    fails_with(&o, "chmod 600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key, b"not a key ring").unwrap();
    let o = lethe(&dir, &["doctor"]);
    fails_with(&o, "malformed");
    std::fs::remove_file(&key).unwrap();
    let o = lethe(&dir, &["doctor"]);
    fails_with(&o, "missing");
}

#[test]
fn init_refuses_a_non_empty_foreign_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), b"mine").unwrap();
    let o = lethe(tmp.path(), &["init"]);
    fails_with(&o, "not empty");
    assert_eq!(std::fs::read(tmp.path().join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn init_on_postgres_then_doctor_uses_it() {
    let admin = std::env::var("LETHE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("lethe_cli_{}", lethe::vault::random_hex(5).unwrap());
    let psql = |sql: String| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let s = lethe::store::Store::connect(&admin).await.unwrap();
            sqlx::query(&sql).execute(s.pool()).await.unwrap();
            s.close().await;
        });
    };
    psql(format!("CREATE DATABASE {name}"));
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let o = lethe(&dir, &["init", "--database-url", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The URL is remembered in the config: doctor needs no flag.
    let o = lethe(&dir, &["doctor", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["database"]["engine"], "postgres");
    // A second installation pointed at the same database is refused.
    let other = tmp.path().join("other");
    let o = lethe(&other, &["init", "--database-url", &url]);
    fails_with(&o, "another Lethe installation");
    assert!(!other.exists());
    psql(format!("DROP DATABASE {name} WITH (FORCE)"));
}

#[test]
fn help_lists_only_commands_that_exist() {
    let o = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--help")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("init") && out.contains("doctor"), "{out}");
    let o = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(!stderr(&o).contains("panicked"));
}

/// The security review's low finding 8: with no enabled admin left, only SQL could bring one back. The
/// host's operator has `lethe users recover NAME`, which refuses while an enabled admin exists.
#[test]
fn the_host_operator_recovers_an_admin_only_when_none_is_left() {
    let (_tmp, data, _pw) = common::release::with_users(&[("rita", "reviewer")]);
    fails_with(
        &lethe(&data, &["users", "recover", "rita"]),
        "enabled admin(s) remain (admin)",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = lethe::store::sqlite_url(&data.join("lethe.db"));
        let store = lethe::store::Store::open(&url).await.unwrap();
        sqlx::query("UPDATE users SET disabled = 1 WHERE role = 'admin'")
            .execute(store.pool())
            .await
            .unwrap();
        store.close().await;
    });
    fails_with(
        &lethe(&data, &["users", "recover", "bad name"]),
        "must be 1 to 64",
    );
    let out = common::ok(lethe(&data, &["--json", "users", "recover", "admin"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let otp = v["one_time_password"].as_str().unwrap();
    assert!(otp.len() >= 20, "{otp}");
    let list: serde_json::Value =
        serde_json::from_slice(&common::ok(lethe(&data, &["--json", "users", "list"])).stdout).unwrap();
    let admin = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "admin")
        .unwrap();
    assert_eq!(
        (
            admin["disabled"].as_bool(),
            admin["must_change_password"].as_bool()
        ),
        (Some(false), Some(true))
    );
    let shown = String::from_utf8(common::ok(lethe(&data, &["ledger", "show"])).stdout).unwrap();
    assert!(shown.contains("user.recover"), "{shown}");
    fails_with(
        &lethe(&data, &["users", "recover", "rita"]),
        "enabled admin(s) remain",
    );
}
