//! The corpus vault as users drive it: ingest from the CLI, read back through the library, and every
//! fault the issue lists, each detected with a clear error.

mod common;

use common::{fails_with, lethe, ok};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lethe::app::{App, Globals};
use lethe::corpus::Split;

struct Fixture {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    input: PathBuf,
}

/// An initialised data directory and a small synthetic corpus to ingest.
fn fixture(docs: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let input = tmp.path().join("kb");
    ok(lethe(&data, &["init"]));
    ok(lethe(
        &data,
        &[
            "corpus",
            "synth",
            "--out",
            input.to_str().unwrap(),
            "--docs",
            &docs.to_string(),
            "--seed",
            "3",
        ],
    ));
    Fixture {
        _tmp: tmp,
        data,
        input,
    }
}

fn ingest(f: &Fixture, name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--json",
        "corpus",
        "ingest",
        "--name",
        name,
        "--vocab",
        "600",
        "--shard-tokens",
        "4096",
    ];
    args.extend_from_slice(extra);
    args.push(f.input.to_str().unwrap());
    let o = ok(lethe(&f.data, &args));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn corpus_dir(f: &Fixture, report: &serde_json::Value) -> PathBuf {
    f.data.join("corpora").join(report["corpus_id"].as_str().unwrap())
}

/// Every file under `dir`, read as bytes.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

/// Distinctive lines of the input (long ones, which would not occur by chance in a binary file).
fn distinctive_lines(input: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, bytes) in all_bytes(input) {
        if path.components().any(|c| c.as_os_str() == ".synth") {
            continue;
        }
        let text = String::from_utf8(bytes).unwrap();
        lines.extend(text.lines().filter(|l| l.len() >= 24).take(2).map(str::to_string));
    }
    lines.sort();
    lines.dedup();
    lines
}

fn assert_no_plaintext(data: &Path, input: &Path) {
    let lines = distinctive_lines(input);
    assert!(lines.len() > 50);
    let finder = aho_corasick::AhoCorasick::new(&lines).unwrap();
    for (path, bytes) in all_bytes(data) {
        if let Some(m) = finder.find(&bytes) {
            panic!(
                "{} contains input text {:?}",
                path.display(),
                lines[m.pattern().as_usize()]
            );
        }
    }
}

#[test]
fn ingest_seals_everything_and_reads_back_exactly() {
    let f = fixture(150);
    let r = ingest(&f, "kb", &[]);
    let stats = &r["stats"];
    assert_eq!(stats["documents"], 150);
    assert!(
        stats["shards"].as_u64().unwrap() > 1,
        "small shards give several: {stats}"
    );
    assert!(
        stats["duplicates"].as_u64().unwrap() > 0,
        "the synthetic corpus has copies"
    );
    assert_no_plaintext(&f.data, &f.input);
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&f.data, &["corpus", "show", "kb", "--json"])).stdout).unwrap();
    assert_eq!(shown["stats"], r["stats"]);
    assert!(shown["master_key"].as_str().unwrap().starts_with("mk-"));
    ok(lethe(&f.data, &["corpus", "verify", "kb"]));

    // Through the library: every document decodes back to its source file, in order, split as recorded.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = App::open(&Globals {
            data_dir: f.data.clone(),
            database_url: None,
        })
        .await
        .unwrap();
        let (_, sealed) = app.open_corpus("kb").await.unwrap();
        let tok = sealed.tokenizer().unwrap();
        let mut n = 0;
        let mut holdout = 0;
        for doc in sealed.documents(Split::All, 3) {
            let doc = doc.unwrap();
            let meta = &sealed.manifest.documents[doc.index as usize];
            assert_eq!(doc.index as usize, n, "corpus order");
            let original = std::fs::read_to_string(&meta.source).unwrap();
            assert_eq!(tok.decode(&doc.tokens).unwrap(), original, "{}", meta.source);
            holdout += usize::from(doc.holdout);
            n += 1;
        }
        assert_eq!(n, 150);
        let train = sealed.documents(Split::Train, 2).count();
        assert_eq!(train + holdout, 150);
        assert_eq!(sealed.documents(Split::Holdout, 2).count(), holdout);
        // A range reads exactly its documents, whichever shards they span.
        let all: Vec<_> = sealed.documents(Split::Train, 2).map(Result::unwrap).collect();
        for range in [0..1, 37..90, 149..400, 60..60, 0..u32::MAX] {
            let got: Vec<_> = sealed
                .documents_in(Split::Train, range.clone(), 2)
                .map(Result::unwrap)
                .collect();
            let want: Vec<_> = all.iter().filter(|d| range.contains(&d.index)).cloned().collect();
            assert_eq!(got, want, "documents {range:?}");
        }
    });
}

#[test]
fn canaries_are_planted_in_training_documents_and_recorded() {
    let f = fixture(120);
    let r = ingest(&f, "kb", &["--canaries", "3", "--canary-repeats", "2,5"]);
    assert_eq!(r["stats"]["canary_repeats"], serde_json::json!([2, 5, 2]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = App::open(&Globals {
            data_dir: f.data.clone(),
            database_url: None,
        })
        .await
        .unwrap();
        let (_, sealed) = app.open_corpus("kb").await.unwrap();
        let canaries = sealed.canaries().unwrap();
        assert_eq!(canaries.len(), 3);
        let tok = sealed.tokenizer().unwrap();
        let docs: Vec<_> = sealed.documents(Split::All, 2).map(Result::unwrap).collect();
        for c in &canaries {
            let mut found = 0;
            for d in &docs {
                found += tok.decode(&d.tokens).unwrap().matches(&c.text()).count();
            }
            assert_eq!(
                found, c.repeats as usize,
                "canary {} planted {} times",
                c.id, c.repeats
            );
            assert!(c
                .docs
                .iter()
                .all(|&d| !sealed.manifest.documents[d as usize].holdout));
        }
    });
    // The canary values never reach the disk in the clear.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let secrets = rt.block_on(async {
        let app = App::open(&Globals {
            data_dir: f.data.clone(),
            database_url: None,
        })
        .await
        .unwrap();
        app.open_corpus("kb").await.unwrap().1.canaries().unwrap()
    });
    for (path, bytes) in all_bytes(&f.data) {
        for c in &secrets {
            assert!(
                !bytes.windows(c.secret.len()).any(|w| w == c.secret.as_bytes()),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn verify_names_the_damaged_file_and_segment() {
    let f = fixture(150);
    let r = ingest(&f, "kb", &[]);
    let dir = corpus_dir(&f, &r);
    let shard0 = dir.join("shard-000000.sealed");
    let shard1 = dir.join("shard-000001.sealed");
    let original0 = std::fs::read(&shard0).unwrap();
    let original1 = std::fs::read(&shard1).unwrap();

    // One flipped byte in the body.
    let mut bad = original0.clone();
    let at = bad.len() - 40;
    bad[at] ^= 0x01;
    std::fs::write(&shard0, &bad).unwrap();
    let o = lethe(&f.data, &["corpus", "verify", "kb"]);
    fails_with(&o, "shard-000000.sealed");
    fails_with(&o, "segment");

    // Truncated.
    std::fs::write(&shard0, &original0[..original0.len() / 2]).unwrap();
    fails_with(
        &lethe(&f.data, &["corpus", "verify", "kb"]),
        "shard-000000.sealed",
    );

    // Two shards swapped: each is authentic, but bound to another role.
    std::fs::write(&shard0, &original1).unwrap();
    std::fs::write(&shard1, &original0).unwrap();
    let o = lethe(&f.data, &["corpus", "verify", "kb"]);
    fails_with(&o, "shard-000001");
    std::fs::write(&shard0, &original0).unwrap();
    std::fs::write(&shard1, &original1).unwrap();
    ok(lethe(&f.data, &["corpus", "verify", "kb"]));

    // A shard copied in from another corpus.
    let other = ingest(&f, "other", &[]);
    let foreign = corpus_dir(&f, &other).join("shard-000000.sealed");
    std::fs::copy(&foreign, &shard0).unwrap();
    let o = lethe(&f.data, &["corpus", "verify", "kb"]);
    fails_with(&o, "belongs to corpus");
    std::fs::write(&shard0, &original0).unwrap();

    // The manifest itself damaged.
    let manifest = dir.join("manifest.sealed");
    let mut m = std::fs::read(&manifest).unwrap();
    let at = m.len() - 20;
    m[at] ^= 0x80;
    std::fs::write(&manifest, &m).unwrap();
    fails_with(&lethe(&f.data, &["corpus", "verify", "kb"]), "manifest.sealed");
    fails_with(
        &lethe(&f.data, &["corpus", "verify", "missing"]),
        "no corpus named \"missing\"",
    );
}

#[test]
fn wrong_master_key_is_a_clear_error() {
    let f = fixture(40);
    ingest(&f, "kb", &[]);
    // Another installation's key ring in place of ours.
    let other = f.data.parent().unwrap().join("other");
    ok(lethe(&other, &["init"]));
    let key = f.data.join("keys/master.key");
    std::fs::remove_file(&key).unwrap();
    std::fs::copy(other.join("keys/master.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = lethe(&f.data, &["corpus", "verify", "kb"]);
    fails_with(&o, "wrapped by master key mk-");
}

#[test]
fn rotation_rewraps_keys_and_a_retired_wrapping_names_both_versions() {
    let f = fixture(40);
    ingest(&f, "kb", &[]);
    let before: Vec<(PathBuf, Vec<u8>)> = all_bytes(&f.data.join("corpora"));
    let r: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&f.data, &["keys", "rotate", "--json"])).stdout).unwrap();
    assert_eq!(r["new_version"], 2);
    assert_eq!(r["data_keys_rewrapped"], 1);
    assert_eq!(
        all_bytes(&f.data.join("corpora")),
        before,
        "rotation rewrites no sealed file"
    );
    ok(lethe(&f.data, &["corpus", "verify", "kb"]));
    ok(lethe(&f.data, &["doctor"]));
    fails_with(&lethe(&f.data, &["keys", "retire", "--version", "2"]), "current");
    ok(lethe(&f.data, &["keys", "retire", "--version", "1"]));
    ok(lethe(&f.data, &["corpus", "verify", "kb"]));

    // A database restored from before the rotation: its data key is wrapped only by retired v1.
    let tmp = tempfile::tempdir().unwrap();
    let f2 = fixture(40);
    ingest(&f2, "kb", &[]);
    let db = f2.data.join("lethe.db");
    let saved = tmp.path().join("backup.db");
    // Checkpoint the WAL into the main file so the copy is the whole database.
    rusqlite_checkpoint(&db);
    std::fs::copy(&db, &saved).unwrap();
    ok(lethe(&f2.data, &["keys", "rotate"]));
    ok(lethe(&f2.data, &["keys", "retire", "--version", "1"]));
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(f2.data.join(format!("lethe.db{suffix}")));
    }
    std::fs::copy(&saved, &db).unwrap();
    let o = lethe(&f2.data, &["corpus", "verify", "kb"]);
    fails_with(&o, "version 1, which is retired; current is");
    fails_with(&o, "version 2");
    fails_with(&o, "data key dk-");
}

/// Flushes SQLite's WAL into the database file through the library's own store.
fn rusqlite_checkpoint(db: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = lethe::store::Store::connect(&lethe::store::sqlite_url(db))
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(store.pool())
            .await
            .unwrap();
        store.close().await;
    });
}

#[test]
fn bad_inputs_are_clear_errors_and_register_nothing() {
    let f = fixture(10);
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(
        &lethe(
            &f.data,
            &["corpus", "ingest", "--name", "e", empty.to_str().unwrap()],
        ),
        "no documents found",
    );

    let bin = tmp.path().join("blob.txt");
    std::fs::write(&bin, b"\x7fELF\x02\x01\x01\x00\x00").unwrap();
    fails_with(
        &lethe(
            &f.data,
            &["corpus", "ingest", "--name", "b", bin.to_str().unwrap()],
        ),
        "binary",
    );

    let bad_utf8 = tmp.path().join("latin1.txt");
    std::fs::write(&bad_utf8, b"caf\xe9 au lait").unwrap();
    fails_with(
        &lethe(
            &f.data,
            &["corpus", "ingest", "--name", "u", bad_utf8.to_str().unwrap()],
        ),
        "byte offset 3",
    );

    let jsonl = tmp.path().join("t.jsonl");
    std::fs::write(&jsonl, "{\"text\":\"fine\"}\n{\"body\":\"no text\"}\n").unwrap();
    fails_with(
        &lethe(
            &f.data,
            &["corpus", "ingest", "--name", "j", jsonl.to_str().unwrap()],
        ),
        "line 2",
    );

    let huge = tmp.path().join("huge.jsonl");
    let h = std::fs::File::create(&huge).unwrap();
    h.set_len(2 << 30).unwrap();
    fails_with(
        &lethe(
            &f.data,
            &["corpus", "ingest", "--name", "h", huge.to_str().unwrap()],
        ),
        "larger than the 67108864-byte limit",
    );

    fails_with(
        &lethe(
            &f.data,
            &[
                "corpus",
                "ingest",
                "--name",
                "bad name",
                f.input.to_str().unwrap(),
            ],
        ),
        "corpus name",
    );
    fails_with(
        &lethe(&f.data, &["corpus", "ingest", "--name", "x", "/nonexistent/in"]),
        "/nonexistent/in",
    );
    fails_with(
        &lethe(
            &f.data,
            &[
                "corpus",
                "ingest",
                "--name",
                "x",
                "--canary-repeats",
                "0",
                f.input.to_str().unwrap(),
            ],
        ),
        "canary-repeats",
    );

    let list: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&f.data, &["corpus", "list", "--json"])).stdout).unwrap();
    assert_eq!(list, serde_json::json!([]), "nothing registered");
    let left: Vec<_> = std::fs::read_dir(f.data.join("corpora"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no staging left behind: {left:?}");

    ingest(&f, "kb", &[]);
    fails_with(
        &lethe(
            &f.data,
            &["corpus", "ingest", "--name", "kb", f.input.to_str().unwrap()],
        ),
        "already exists",
    );
}

#[test]
fn jsonl_stdin_and_dedup() {
    let f = fixture(10);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args([
            "--data-dir",
            f.data.to_str().unwrap(),
            "--json",
            "corpus",
            "ingest",
            "--name",
            "s",
            "--format",
            "jsonl",
            "--field",
            "body",
            "--dedup",
            "--vocab",
            "512",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..30 {
            writeln!(stdin, "{{\"body\": \"note {} about the VPN gateway\"}}", i % 10).unwrap();
        }
    }
    let o = ok(child.wait_with_output().unwrap());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        r["stats"]["documents"].as_u64().unwrap() + r["stats"]["dedup_removed"].as_u64().unwrap(),
        30
    );
    assert!(r["stats"]["dedup_removed"].as_u64().unwrap() > 0);
}

#[test]
fn a_killed_ingest_leaves_no_plaintext_and_the_next_one_works() {
    let f = fixture(3000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args([
            "--data-dir",
            f.data.to_str().unwrap(),
            "corpus",
            "ingest",
            "--name",
            "kb",
            "--vocab",
            "2048",
            f.input.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while it works: at the first sign of its staging directory, plus a moment.
    let corpora = f.data.join("corpora");
    for _ in 0..400 {
        if std::fs::read_dir(&corpora)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    assert_no_plaintext(&f.data, &f.input);
    let list: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&f.data, &["corpus", "list", "--json"])).stdout).unwrap();
    assert!(list.as_array().unwrap().len() <= 1, "at most a complete corpus");
    if list.as_array().unwrap().is_empty() {
        let r = ingest(&f, "kb", &[]);
        assert_eq!(r["stats"]["documents"], 3000);
        let entries: Vec<String> = std::fs::read_dir(&corpora)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            entries,
            [r["corpus_id"].as_str().unwrap()],
            "the killed ingest's staging was swept"
        );
    }
    assert_no_plaintext(&f.data, &f.input);
}

#[test]
fn rm_destroys_the_key_and_the_files() {
    let f = fixture(20);
    let r = ingest(&f, "kb", &[]);
    let dir = corpus_dir(&f, &r);
    assert!(dir.exists());
    let o = ok(lethe(&f.data, &["--json", "corpus", "rm", "kb"]));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["data_key_destroyed"], r["data_key_id"]);
    assert!(!dir.exists());
    fails_with(
        &lethe(&f.data, &["corpus", "show", "kb"]),
        "no corpus named \"kb\"",
    );
    fails_with(&lethe(&f.data, &["corpus", "rm", "kb"]), "no corpus named \"kb\"");
    // The name is free again.
    ingest(&f, "kb", &[]);

    // The security review's medium finding 5: a database edit made `corpus rm` delete any directory.
    // A row that names a directory outside the data directory is refused and nothing is lost.
    let victim = f.data.parent().unwrap().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep.txt"), "precious").unwrap();
    for edited in [
        victim.to_str().unwrap().to_string(),
        "corpora/../../victim".to_string(),
    ] {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let url = lethe::store::sqlite_url(&f.data.join("lethe.db"));
            let store = lethe::store::Store::open(&url).await.unwrap();
            sqlx::query("UPDATE corpora SET directory = $1 WHERE name = 'kb'")
                .bind(&edited)
                .execute(store.pool())
                .await
                .unwrap();
            store.close().await;
        });
        fails_with(
            &lethe(&f.data, &["corpus", "rm", "kb"]),
            "not inside the data directory",
        );
        assert!(victim.join("keep.txt").exists(), "{edited} was deleted");
        ok(lethe(&f.data, &["corpus", "list"]));
        assert!(String::from_utf8_lossy(&ok(lethe(&f.data, &["corpus", "list"])).stdout).contains("kb"));
    }
}
