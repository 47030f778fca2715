//! Training from the command line: a run killed with SIGKILL and resumed ends with exactly the weights
//! of a run that never stopped; bad arguments are refused before a run is recorded; a full disk while
//! checkpointing is a clear error that keeps the last good checkpoint.

mod common;

use common::{fails_last_line_with as fails_with, lethe, ok};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A data directory with a small ingested corpus named `kb`.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = common::ingested(tmp.path(), 60, 5, &["--vocab", "512", "--holdout", "0.1"]);
    (tmp, data)
}

use common::MICRO;

fn train_json(data: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "train", "--corpus", "kb"];
    args.extend_from_slice(MICRO);
    args.extend_from_slice(extra);
    let o = ok(lethe(data, &args));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_killed_and_resumed_run_ends_with_the_same_weights() {
    let (_tmp, data) = fixture();
    let straight = train_json(&data, &["--checkpoint-every", "10"]);
    assert_eq!(straight["finished"], true);
    let total = straight["total_steps"].as_u64().unwrap();
    assert!(total >= 30, "enough steps to kill mid-run: {total}");

    // The same run again, killed with SIGKILL once it has written its second checkpoint.
    let runs = data.join("runs");
    let before: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let mut args = vec!["train", "--corpus", "kb"];
    args.extend_from_slice(MICRO);
    args.extend_from_slice(&["--checkpoint-every", "10"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--data-dir")
        .arg(&data)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let run_dir = loop {
        assert!(Instant::now() < deadline, "no second checkpoint appeared");
        let new: Vec<PathBuf> = std::fs::read_dir(&runs)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !before.contains(p))
            .collect();
        if let Some(dir) = new.first() {
            let sealed = std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".sealed"))
                        .count()
                })
                .unwrap_or(0);
            if sealed >= 2 {
                break dir.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "runs", "show", &run_id])).stdout).unwrap();
    assert_ne!(shown["run"]["state"], "succeeded", "it was killed before the end");

    let resumed = ok(lethe(&data, &["--json", "train", "--resume", &run_id]));
    let resumed: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(resumed["finished"], true);
    assert_eq!(resumed["step"], straight["step"]);
    assert_eq!(
        resumed["weights_sha256"], straight["weights_sha256"],
        "resumed run must end with the uninterrupted run's weights"
    );
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "runs", "show", &run_id])).stdout).unwrap();
    assert_eq!(shown["run"]["state"], "succeeded");
    assert_eq!(
        shown["checkpoints"].as_array().unwrap().last().unwrap()["weights_sha256"],
        straight["weights_sha256"]
    );
    fails_with(&lethe(&data, &["train", "--resume", &run_id]), "already finished");
}

#[test]
fn loss_falls_validation_is_recorded_and_the_model_samples() {
    let (_tmp, data) = fixture();
    let r = train_json(&data, &["--epochs", "3", "--lr", "0.003"]);
    let run = r["run_id"].as_str().unwrap();
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "runs", "show", run])).stdout).unwrap();
    let epochs = shown["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 3);
    let first = epochs[0]["train_loss"].as_f64().unwrap();
    let last = epochs[2]["train_loss"].as_f64().unwrap();
    assert!(last < first, "training loss should fall: {first} -> {last}");
    assert!(
        epochs.iter().all(|e| e["val_loss"].as_f64().is_some()),
        "validation each epoch"
    );
    assert!(shown["steps_logged"].as_u64().unwrap() > 10);

    let o = ok(lethe(
        &data,
        &[
            "--json", "sample", "--run", run, "--prompt", "Ticket", "--length", "16", "--num", "2",
        ],
    ));
    let texts: Vec<String> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(texts.len(), 2);
    assert!(
        texts
            .iter()
            .all(|t| t.starts_with("Ticket") && t.len() > "Ticket".len()),
        "{texts:?}"
    );
    let o = ok(lethe(
        &data,
        &[
            "--json",
            "sample",
            "--run",
            run,
            "--infill",
            "Subject: [MASK] request",
            "--span",
            "4",
        ],
    ));
    let filled: Vec<String> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        filled[0].starts_with("Subject: ") && filled[0].ends_with(" request"),
        "{filled:?}"
    );
    fails_with(
        &lethe(&data, &["sample", "--run", run, "--infill", "no marker here"]),
        "[MASK]",
    );

    // The AR baseline on the same backbone trains too, and refuses infilling.
    let ar = train_json(&data, &["--objective", "ar"]);
    let ar_run = ar["run_id"].as_str().unwrap();
    fails_with(
        &lethe(&data, &["sample", "--run", ar_run, "--infill", "a [MASK] b"]),
        "diffusion",
    );
    ok(lethe(
        &data,
        &["sample", "--run", ar_run, "--prompt", "Ticket", "--length", "8"],
    ));
}

#[test]
fn bad_arguments_are_refused_before_a_run_is_recorded() {
    let (_tmp, data) = fixture();
    fails_with(
        &lethe(&data, &["train", "--corpus", "nope"]),
        "no corpus named \"nope\"",
    );
    fails_with(
        &lethe(
            &data,
            &["train", "--corpus", "kb", "--width", "64", "--heads", "3"],
        ),
        "heads",
    );
    fails_with(
        &lethe(&data, &["train", "--corpus", "kb", "--preset", "huge"]),
        "huge",
    );
    fails_with(
        &lethe(
            &data,
            &[
                "train",
                "--corpus",
                "kb",
                "--preset",
                "tiny",
                "--batch-size",
                "100000",
            ],
        ),
        "fewer than one step needs",
    );
    fails_with(
        &lethe(&data, &["train", "--corpus", "kb", "--epochs", "0"]),
        "epochs",
    );
    let list: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "runs", "list"])).stdout).unwrap();
    assert_eq!(list, serde_json::json!([]), "no run recorded");
    fails_with(
        &lethe(&data, &["train", "--resume", "run-missing"]),
        "no training run \"run-missing\"",
    );
    fails_with(&lethe(&data, &["runs", "show", "run-missing"]), "no training run");
    // A corpus with runs is kept: their checkpoints and audits refer to it.
    train_json(&data, &["--max-steps", "2"]);
    fails_with(&lethe(&data, &["corpus", "rm", "kb"]), "training run");
    fails_with(
        &lethe(&data, &["sample", "--run", "run-missing", "--prompt", "x"]),
        "no training run",
    );
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_while_checkpointing_is_a_clear_error_and_keeps_the_last_checkpoint() {
    let (_tmp, data) = fixture();
    let runs = data.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    // A 4 MiB file system for checkpoints of about 1.8 MB each: the first ones fit, a later one does not.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&runs)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("SKIPPED: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let _guard = Mount(runs.clone());
    let mut args = vec!["train", "--corpus", "kb"];
    args.extend_from_slice(MICRO);
    args.extend_from_slice(&["--checkpoint-every", "2", "--epochs", "2"]);
    let o = lethe(&data, &args);
    fails_with(&o, "cannot write checkpoint");
    fails_with(&o, "earlier checkpoints are intact");
    let list: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "runs", "list"])).stdout).unwrap();
    let run = &list[0];
    assert_eq!(run["state"], "failed");
    let run_id = run["id"].as_str().unwrap();
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "runs", "show", run_id])).stdout).unwrap();
    let checkpoints = shown["checkpoints"].as_array().unwrap();
    assert!(!checkpoints.is_empty(), "at least one checkpoint fitted");
    // No temporary file left behind, and the last recorded checkpoint still loads.
    let dir = runs.join(run_id);
    assert!(std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
    ok(lethe(
        &data,
        &["sample", "--run", run_id, "--prompt", "Hi", "--length", "4"],
    ));
}

#[test]
fn a_queued_run_is_trained_by_a_worker_and_a_dead_workers_job_is_resumed() {
    let (_tmp, data) = fixture();
    let straight = train_json(&data, &["--checkpoint-every", "10"]);

    let mut args = vec!["--json", "train", "--queue", "--corpus", "kb"];
    args.extend_from_slice(MICRO);
    args.extend_from_slice(&["--checkpoint-every", "10"]);
    let queued: serde_json::Value = serde_json::from_slice(&ok(lethe(&data, &args)).stdout).unwrap();
    let job = queued["job_id"].as_str().unwrap().to_string();
    fails_with(
        &lethe(&data, &["train", "--queue", "--corpus", "nope"]),
        "no corpus named",
    );

    // A worker takes the job and is killed once the run has two checkpoints.
    let runs = data.join("runs");
    let before: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--data-dir")
        .arg(&data)
        .args(["worker", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the worker wrote no checkpoints");
        let done = std::fs::read_dir(&runs)
            .unwrap()
            .flatten()
            .filter(|e| !before.contains(&e.path()))
            .any(|e| {
                std::fs::read_dir(e.path())
                    .map(|d| {
                        d.flatten()
                            .filter(|f| f.file_name().to_string_lossy().ends_with(".sealed"))
                            .count()
                            >= 2
                    })
                    .unwrap_or(false)
            });
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "jobs", "show", &job])).stdout).unwrap();
    assert_eq!(
        shown["state"], "running",
        "the dead worker still holds it until its lease lapses"
    );

    // Another worker, once the lease has lapsed, takes it over and finishes the same run.
    std::thread::sleep(Duration::from_secs(11));
    let r: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "worker", "--once", "--lease-s", "10"])).stdout)
            .unwrap();
    assert_eq!(r["succeeded"], serde_json::json!([job]));
    let shown: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "jobs", "show", &job])).stdout).unwrap();
    assert_eq!(shown["state"], "succeeded");
    assert_eq!(shown["attempts"], 2);
    assert_eq!(
        shown["result"]["weights_sha256"], straight["weights_sha256"],
        "resumed from the checkpoint, same weights"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "runs", "list"])).stdout).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "the second worker continued the first worker's run"
    );
}

#[test]
fn a_worker_stopped_by_sigterm_hands_its_job_back_at_once_and_another_finishes_it() {
    let (_tmp, data) = fixture();
    let mut args = vec!["--json", "train", "--queue", "--corpus", "kb", "--epochs", "8"];
    args.extend_from_slice(MICRO);
    args.extend_from_slice(&["--checkpoint-every", "10"]);
    let queued: serde_json::Value = serde_json::from_slice(&ok(lethe(&data, &args)).stdout).unwrap();
    let job = queued["job_id"].as_str().unwrap().to_string();
    let show = |job: &str| -> serde_json::Value {
        serde_json::from_slice(&ok(lethe(&data, &["--json", "jobs", "show", job])).stdout).unwrap()
    };

    let worker = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--json", "worker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while show(&job)["state"] != "running" {
        assert!(Instant::now() < deadline, "the worker never took the job");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = worker.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = worker.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the worker exits cleanly on SIGTERM ({:?}); it said: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["handed_back"], serde_json::json!([job]));

    // Queued again at once (no lease to wait out), and the stop did not count as a failed attempt.
    let shown = show(&job);
    assert_eq!(shown["state"], "queued", "{shown}");
    assert_eq!(shown["attempts"], 0);
    assert!(
        shown["message"].as_str().unwrap().contains("stopped on a signal"),
        "{shown}"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&ok(lethe(&data, &["--json", "worker", "--once"])).stdout).unwrap();
    assert_eq!(r["succeeded"], serde_json::json!([job]));
    assert_eq!(show(&job)["state"], "succeeded");
}
