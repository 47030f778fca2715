//! Shared test harness: a fresh database on each engine for every test.
#![allow(dead_code)]

pub mod release;

use lethe::store::Store;

/// Where the PostgreSQL server for tests lives; `.ci/run` starts it when it is down.
pub fn postgres_admin_url() -> String {
    std::env::var("LETHE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = lethe::store::sqlite_url(&dir.path().join("test.db"));
        TestDb {
            url,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    /// A new, empty PostgreSQL database on the test server. Fails the test (never skips it) when the
    /// server does not answer: store tests must run on both engines.
    pub async fn postgres() -> TestDb {
        let admin = postgres_admin_url();
        let name = format!("lethe_test_{}", lethe::vault::random_hex(6).expect("random"));
        let store = Store::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL for tests is not reachable at {admin}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(store.pool())
            .await
            .expect("create test database");
        store.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        TestDb {
            url: format!("{base}/{name}"),
            pg_name: Some(name),
            _dir: None,
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url).await.expect("open and migrate")
    }

    /// Drops the PostgreSQL database (SQLite files go with the temp dir).
    pub async fn cleanup(self) {
        if let Some(name) = &self.pg_name {
            if let Ok(store) = Store::connect(&postgres_admin_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(store.pool())
                    .await;
                store.close().await;
            }
        }
    }
}

/// Defines `sqlite` and `postgres` test functions in a module named `$name`, each running
/// `$body(db: &TestDb)` against a fresh database of that engine.
#[macro_export]
macro_rules! on_both_engines {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::common::TestDb::sqlite().await;
                $body(&db).await;
                db.cleanup().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = $crate::common::TestDb::postgres().await;
                $body(&db).await;
                db.cleanup().await;
            }
        }
    };
}

/// Runs the `lethe` binary on `data_dir` with no database or key override from the environment.
pub fn lethe(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("LETHE_DATABASE_URL")
        .env_remove("LETHE_MASTER_KEY")
        .output()
        .expect("run lethe")
}

/// The output of a command that must succeed.
pub fn ok(o: std::process::Output) -> std::process::Output {
    assert!(
        o.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A failure reported as exactly one `error: …` line on stderr that mentions `needle`.
pub fn fails_with(o: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "expected failure; stdout {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "stderr {err:?} should mention {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A failure whose last stderr line is `error: …` (progress lines may come before it) mentioning `needle`.
pub fn fails_last_line_with(o: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "expected failure; stdout {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(last.starts_with("error: "), "{err}");
    assert!(
        last.contains(needle),
        "last stderr line {last:?} should mention {needle:?}"
    );
}

/// An initialised data directory (`<tmp>/data`) holding corpus `kb` ingested from `docs` synthetic
/// documents (written to `<tmp>/in`, seed `seed`) with the extra `ingest` arguments. Returns both paths.
pub fn ingested(
    tmp: &std::path::Path,
    docs: usize,
    seed: u64,
    ingest: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = tmp.join("data");
    let input = tmp.join("in");
    ok(lethe(&data, &["init"]));
    synth_and_ingest(&data, &input, docs, seed, ingest);
    (data, input)
}

/// Writes `docs` synthetic documents (seed `seed`) to `input` and ingests them into `data` (an
/// initialised data directory) as corpus `kb`, with the extra `ingest` arguments.
pub fn synth_and_ingest(
    data: &std::path::Path,
    input: &std::path::Path,
    docs: usize,
    seed: u64,
    ingest: &[&str],
) {
    let (docs, seed) = (docs.to_string(), seed.to_string());
    let out = input.to_str().expect("temporary paths are UTF-8");
    ok(lethe(
        data,
        &["corpus", "synth", "--out", out, "--docs", &docs, "--seed", &seed],
    ));
    let mut args = vec!["corpus", "ingest", "--name", "kb"];
    args.extend_from_slice(ingest);
    args.push(out);
    ok(lethe(data, &args));
}

/// A model small enough to train in seconds on a CPU.
pub const MICRO: &[&str] = &[
    "--preset",
    "tiny",
    "--layers",
    "2",
    "--width",
    "64",
    "--heads",
    "2",
    "--mlp",
    "128",
    "--context",
    "64",
    "--batch-size",
    "4",
    "--seed",
    "11",
    // Held-out scoring at each kept checkpoint, small enough not to dominate a micro run.
    "--val-windows",
    "32",
    "--val-choice-items",
    "24",
];

/// Trains a `MICRO` model on corpus `kb` for at most six steps (plus `extra` arguments) and returns the
/// run id.
pub fn micro_run(data: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec![
        "--json",
        "train",
        "--corpus",
        "kb",
        "--epochs",
        "1",
        "--max-steps",
        "6",
    ];
    args.extend_from_slice(MICRO);
    args.extend_from_slice(extra);
    let v: serde_json::Value =
        serde_json::from_slice(&ok(lethe(data, &args)).stdout).expect("train --json prints JSON");
    v["run_id"].as_str().expect("a run id").to_string()
}

/// The corpus options the audit and release tests ingest with: a holdout and two canaries.
pub const AUDITABLE: &[&str] = &[
    "--vocab",
    "512",
    "--holdout",
    "0.2",
    "--canaries",
    "2",
    "--canary-repeats",
    "1,8",
];

/// An entry written straight into the table, as someone with the database's password would.
pub async fn insert_ledger_entry(store: &Store, e: &lethe::ledger::Entry) {
    sqlx::query(
        "INSERT INTO ledger_entries (seq, at_ms, actor, action, subject, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.seq)
    .bind(e.at_ms)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.subject)
    .bind(e.details_json())
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(store.pool())
    .await
    .unwrap();
}

/// Rewrites the whole ledger from the entries given, each re-hashed and re-linked (`edit` changes one).
pub async fn rewrite_ledger(
    store: &Store,
    entries: Vec<lethe::ledger::Entry>,
    edit: impl Fn(&mut lethe::ledger::Entry),
) {
    sqlx::query("DELETE FROM ledger_entries")
        .execute(store.pool())
        .await
        .unwrap();
    let mut prev: Option<lethe::ledger::Entry> = None;
    for mut e in entries {
        edit(&mut e);
        let n = lethe::ledger::Entry::new(prev.as_ref(), e.at_ms, e.actor, e.action, e.subject, e.details);
        insert_ledger_entry(store, &n).await;
        prev = Some(n);
    }
}
