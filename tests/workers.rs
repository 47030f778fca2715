//! Growth past one machine, against the real PostgreSQL: several `lethe worker` processes share one
//! queue and one storage root; a worker killed with SIGKILL mid-job has its job finished by another; a
//! sharded audit spread over the workers merges into the report one process produces.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lethe, ok, TestDb, AUDITABLE, MICRO};

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn worker(data: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--data-dir")
        .arg(data)
        .args(["--json", "worker", "--lease-s", "10", "--poll-s", "1"])
        .env_remove("LETHE_DATABASE_URL")
        .env_remove("LETHE_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a worker")
}

/// Kills `workers` and returns what each wrote on stderr, for a failing test to show.
fn killed_workers_stderr(workers: &mut [&mut Child]) -> String {
    let mut out = String::new();
    for (i, w) in workers.iter_mut().enumerate() {
        let _ = w.kill();
        let _ = w.wait();
        let mut err = String::new();
        if let Some(e) = w.stderr.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut err);
        }
        out.push_str(&format!("worker {i} stderr:\n{err}\n"));
    }
    out
}

/// Waits (up to a minute) until a worker has registered.
fn wait_for_a_live_worker(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while json(&ok(lethe(data, &["--json", "workers"])))
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the worker never registered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn jobs(data: &Path) -> Vec<serde_json::Value> {
    json(&ok(lethe(data, &["--json", "jobs", "list", "--limit", "500"])))
        .as_array()
        .expect("a list")
        .clone()
}

/// The report without wall-clock seconds, which add up the pieces' time when sharded.
fn figures(mut report: serde_json::Value) -> serde_json::Value {
    report.as_object_mut().expect("an object").remove("seconds");
    report
}

fn audit_params(dir: &Path) -> String {
    let p = dir.join("params.json");
    std::fs::write(
        &p,
        r#"{"extraction_samples": 12, "prefix_tokens": 16, "suffix_tokens": 16, "regurgitation_samples": 6,
            "regurgitation_length": 24, "min_tokens": 8, "canary_candidates": 20, "canary_mc_samples": 2,
            "membership_docs": 6, "membership_window": 32, "membership_mc_samples": 2, "bootstrap": 20,
            "evidence_examples": 3, "seed": 5, "shards": 3}"#,
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

/// A training run long enough to interrupt: `epochs` epochs of the micro model (208 steps each), a
/// checkpoint every 5 steps.
fn long_training(front: &[&'static str], epochs: &'static str, back: &[&'static str]) -> Vec<&'static str> {
    let mut args = front.to_vec();
    args.extend_from_slice(&[
        "train",
        "--corpus",
        "kb",
        "--epochs",
        epochs,
        "--checkpoint-every",
        "5",
    ]);
    args.extend_from_slice(MICRO);
    args.extend_from_slice(back);
    args
}

/// Waits for the (only) run to record a checkpoint at step `step` or later; its id and step.
fn wait_for_checkpoint(data: &Path, step: i64) -> (String, i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no checkpoint at step {step} appeared");
        let runs = json(&ok(lethe(data, &["--json", "runs", "list"])));
        if let Some(r) = runs.as_array().unwrap().first() {
            let s = r["step"].as_i64().unwrap_or(0);
            if s >= step {
                return (r["id"].as_str().unwrap().to_string(), s);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn three_workers_forty_jobs_one_killed_every_job_ends_once_and_the_sharded_audit_matches() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::postgres());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(lethe(&data, &["init", "--database-url", &db.url]));
    // Small sealed shards, so the corpus spans many files like a large one does.
    let mut ingest = vec!["--shard-tokens", "2048"];
    ingest.extend_from_slice(AUDITABLE);
    common::synth_and_ingest(&data, &tmp.path().join("in"), 60, 5, &ingest);
    let run = common::micro_run(&data, &[]);
    let params = audit_params(tmp.path());

    // What one process produces: the same audit in the foreground.
    let single = json(&ok(lethe(
        &data,
        &["--json", "audit", "--run", &run, "--params", &params],
    )));

    // Forty jobs: a long training run first (the one whose worker is killed), a sharded audit, and
    // thirty-eight short training runs.
    let queue_train = |extra: &[&str]| -> String {
        let mut args = vec!["--json", "train", "--queue", "--corpus", "kb"];
        args.extend_from_slice(MICRO);
        args.extend_from_slice(extra);
        json(&ok(lethe(&data, &args)))["job_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let long = queue_train(&["--epochs", "4", "--checkpoint-every", "25"]);
    let audit_job = json(&ok(lethe(
        &data,
        &["--json", "audit", "--run", &run, "--params", &params, "--queue"],
    )))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut queued = vec![long.clone(), audit_job.clone()];
    for _ in 0..38 {
        queued.push(queue_train(&["--epochs", "1", "--max-steps", "3"]));
    }

    let mut workers: Vec<Option<Child>> = (0..3).map(|_| Some(worker(&data))).collect();

    // Once the long run has written a checkpoint, its worker is killed without warning.
    let deadline = Instant::now() + Duration::from_secs(300);
    let killed_pid = loop {
        assert!(Instant::now() < deadline, "the long run never wrote a checkpoint");
        let runs = json(&ok(lethe(&data, &["--json", "runs", "list"])));
        let started = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["job_id"] == long.as_str() && r["step"].as_i64().unwrap_or(0) >= 25);
        if started.is_some() {
            let job = json(&ok(lethe(&data, &["--json", "jobs", "show", &long])));
            assert_eq!(job["state"], "running");
            let owner = job["owner"].as_str().unwrap().to_string();
            // Worker names are host-pid-suffix.
            let pid: u32 = owner.rsplit('-').nth(1).unwrap().parse().unwrap();
            break pid;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let slot = workers
        .iter()
        .position(|w| w.as_ref().is_some_and(|c| c.id() == killed_pid))
        .expect("the long job's owner is one of our workers");
    let mut victim = workers[slot].take().unwrap();
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();

    // Every job, the sharded audit's pieces included, ends.
    let deadline = Instant::now() + Duration::from_secs(600);
    let all = loop {
        let all = jobs(&data);
        let open = all
            .iter()
            .filter(|j| j["state"] == "queued" || j["state"] == "running")
            .count();
        if open == 0 && all.len() >= 40 {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "{open} job(s) never finished: {:#?}",
            all.iter()
                .filter(|j| j["state"] == "queued" || j["state"] == "running")
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut reports = Vec::new();
    for w in workers.into_iter().flatten() {
        let pid = w.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        reports.push(json(&out));
    }

    // Every job succeeded, exactly once: no job is in two workers' lists, and a job in none was
    // finished by the killed worker before it died, on its first attempt.
    let by_id: BTreeMap<String, &serde_json::Value> = all
        .iter()
        .map(|j| (j["id"].as_str().unwrap().to_string(), j))
        .collect();
    for q in &queued {
        assert!(by_id.contains_key(q), "job {q} is listed");
    }
    assert_eq!(
        all.len(),
        40 + 3 + 2,
        "40 queued, and the audit's 3 shards, scores and merge"
    );
    let mut finished_by: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r["failed"], serde_json::json!([]), "worker {i} failed nothing");
        for id in r["succeeded"].as_array().unwrap() {
            let id = id.as_str().unwrap().to_string();
            assert!(
                finished_by.insert(id.clone(), i).is_none(),
                "job {id} finished twice"
            );
        }
    }
    let survivors: BTreeSet<String> = reports
        .iter()
        .map(|r| r["worker"].as_str().unwrap().to_string())
        .collect();
    for j in &all {
        let id = j["id"].as_str().unwrap();
        assert_eq!(j["state"], "succeeded", "job {id}: {j:#}");
        let owner = j["owner"].as_str().unwrap();
        if finished_by.contains_key(id) {
            assert!(survivors.contains(owner));
        } else {
            assert!(
                !survivors.contains(owner),
                "job {id} finished by the killed worker"
            );
            assert_eq!(j["attempts"], 1);
        }
    }
    // The killed worker's job went to another worker and continued the same run.
    let long_job = by_id[&long];
    assert_eq!(long_job["attempts"], 2);
    assert!(survivors.contains(long_job["owner"].as_str().unwrap()));
    let runs = json(&ok(lethe(&data, &["--json", "runs", "list"])));
    let long_runs: Vec<_> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["job_id"] == long.as_str())
        .collect();
    assert_eq!(long_runs.len(), 1, "one run for the job, resumed, not restarted");
    assert_eq!(long_runs[0]["state"], "succeeded");
    // Every training job made exactly one run.
    for q in &queued[2..] {
        let n = runs
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["job_id"] == q.as_str())
            .count();
        assert_eq!(n, 1, "job {q} made {n} runs");
    }

    // The sharded audit: pieces under the planning job, merged into the single-process report.
    let pieces: Vec<_> = all
        .iter()
        .filter(|j| j["parent_id"] == audit_job.as_str())
        .collect();
    assert_eq!(pieces.len(), 5);
    let audit_id = by_id[&audit_job]["result"]["audit"].as_str().unwrap().to_string();
    let shown = json(&ok(lethe(&data, &["--json", "audit", "show", &audit_id])));
    assert_eq!(shown["state"], "succeeded");
    assert_eq!(
        figures(shown["report"].clone()),
        figures(single["report"].clone()),
        "the merged audit equals the single-process audit"
    );
    let owners: BTreeSet<&str> = pieces.iter().map(|j| j["owner"].as_str().unwrap()).collect();
    eprintln!("the audit's pieces ran on {} worker(s)", owners.len());

    // The workers registered what they offer.
    let registered = json(&ok(lethe(&data, &["--json", "workers", "--all"])));
    assert_eq!(registered.as_array().unwrap().len(), 3);
    for w in registered.as_array().unwrap() {
        assert_eq!(w["gpus"], 0);
        assert!(w["memory_bytes"].as_i64().unwrap() > 0);
    }
    rt.block_on(db.cleanup());
}

/// One writer per run: while a process trains a run, another process (here or on another host sharing
/// the storage) cannot resume it; once that process is gone, it can, at once.
#[test]
fn a_run_being_trained_cannot_be_resumed_elsewhere_until_its_trainer_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = common::ingested(tmp.path(), 60, 5, &["--vocab", "512", "--holdout", "0.1"]);
    let mut trainer = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--data-dir")
        .arg(&data)
        .args(long_training(&[], "6", &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (run, _) = wait_for_checkpoint(&data, 5);
    let o = lethe(&data, &["train", "--resume", &run]);
    common::fails_last_line_with(&o, "is being trained by");
    trainer.kill().unwrap();
    trainer.wait().unwrap();
    let resumed = json(&ok(lethe(
        &data,
        &["--json", "train", "--resume", &run, "--max-steps", "5"],
    )));
    assert_eq!(resumed["run_id"], run.as_str());
}

/// A worker takes only what it can run, and `lethe jobs show` says why a job waits.
#[test]
fn jobs_wait_for_a_worker_that_has_what_they_need_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = common::ingested(tmp.path(), 30, 5, &["--vocab", "512", "--holdout", "0.1"]);
    let mut args = vec![
        "--json",
        "train",
        "--queue",
        "--gpu",
        "--corpus",
        "kb",
        "--max-steps",
        "2",
    ];
    args.extend_from_slice(MICRO);
    let gpu_job = json(&ok(lethe(&data, &args)))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = String::from_utf8(ok(lethe(&data, &["jobs", "show", &gpu_job])).stdout).unwrap();
    assert!(shown.contains("waiting: no worker is running"), "{shown}");
    let cpu_job = {
        let mut args = vec!["--json", "train", "--queue", "--corpus", "kb", "--max-steps", "2"];
        args.extend_from_slice(MICRO);
        json(&ok(lethe(&data, &args)))["job_id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // A CPU worker offering 0.1 GiB: too little for either job.
    let mut small = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--json", "worker", "--memory-gb", "0.1", "--poll-s", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_a_live_worker(&data);
    std::thread::sleep(Duration::from_secs(2));
    let shown = String::from_utf8(ok(lethe(&data, &["jobs", "show", &gpu_job])).stdout).unwrap();
    assert!(
        shown.contains("none of the 1 live worker(s) can run it (it needs a GPU and"),
        "{shown}"
    );
    let shown = String::from_utf8(ok(lethe(&data, &["jobs", "show", &cpu_job])).stdout).unwrap();
    assert!(
        shown.contains("GiB of memory): 0 with a GPU, the largest offers 0.1 GiB"),
        "{shown}"
    );
    Command::new("kill")
        .args(["-TERM", &small.id().to_string()])
        .status()
        .unwrap();
    assert!(small.wait().unwrap().success());
    let mut out = String::new();
    std::io::Read::read_to_string(small.stdout.as_mut().unwrap(), &mut out).unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["succeeded"], serde_json::json!([]), "it took nothing");
    assert_eq!(report["capacity"]["gpus"], 0);

    // A CPU worker with the host's memory takes the CPU job and leaves the GPU job queued.
    let r = json(&ok(lethe(&data, &["--json", "worker", "--once"])));
    assert_eq!(r["succeeded"], serde_json::json!([cpu_job]));
    let gpu = json(&ok(lethe(&data, &["--json", "jobs", "show", &gpu_job])));
    assert_eq!(gpu["state"], "queued");
    assert_eq!(gpu["needs_gpu"], true);
    assert!(gpu["needs_memory_bytes"].as_i64().unwrap() > 512 << 20);
    // A worker that stopped is no longer listed as live; `--all` keeps the record.
    assert!(json(&ok(lethe(&data, &["--json", "workers"])))
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        json(&ok(lethe(&data, &["--json", "workers", "--all"])))
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// A worker that stalls (SIGSTOP) past its lease loses its training job to another worker, which
/// continues the run; when the stalled worker wakes up it finds itself fenced out, stops, records
/// nothing, and goes on with the queue. The run ends once, trained by the second worker.
#[test]
fn a_stalled_worker_that_wakes_up_is_fenced_out_of_the_run_it_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = common::ingested(tmp.path(), 60, 5, &["--vocab", "512", "--holdout", "0.1"]);
    // Two epochs (416 steps, a checkpoint every 5): enough for the takeover, and short enough for a
    // loaded two-core CI machine, where six epochs of sealed checkpoints once ran past the wait below.
    let job = json(&ok(lethe(&data, &long_training(&["--json"], "2", &["--queue"]))))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run_step = |data: &Path| -> Option<(String, i64)> {
        let runs = json(&ok(lethe(data, &["--json", "runs", "list"])));
        runs.as_array().unwrap().first().map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["step"].as_i64().unwrap_or(0),
            )
        })
    };
    let mut first = worker(&data);
    let (run, stalled_at) = wait_for_checkpoint(&data, 5);
    let pid = first.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();

    // After the lease (10 s) a second worker takes the job over and trains on.
    let mut second = worker(&data);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = json(&ok(lethe(&data, &["--json", "jobs", "show", &job])));
        if Instant::now() > deadline {
            let stderr = killed_workers_stderr(&mut [&mut first, &mut second]);
            panic!("the second worker never continued the run: {j:#}\n{stderr}");
        }
        if j["attempts"] == 2 && run_step(&data).is_some_and(|(_, s)| s > stalled_at) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let j = json(&ok(lethe(&data, &["--json", "jobs", "show", &job])));
        if Instant::now() > deadline {
            let runs = json(&ok(lethe(&data, &["--json", "runs", "list"])));
            let stderr = killed_workers_stderr(&mut [&mut first, &mut second]);
            panic!("the job never finished: {j:#}\nruns: {runs:#}\n{stderr}");
        }
        if j["state"] != "running" && j["state"] != "queued" {
            assert_eq!(j["state"], "succeeded", "{j:#}");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the woken worker reach its next checkpoint and notice.
    std::thread::sleep(Duration::from_secs(3));
    let mut reports = Vec::new();
    for w in [&mut first, &mut second] {
        Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status()
            .unwrap();
        assert!(w.wait().unwrap().success());
        let mut out = String::new();
        std::io::Read::read_to_string(w.stdout.as_mut().unwrap(), &mut out).unwrap();
        reports.push(serde_json::from_str::<serde_json::Value>(&out).unwrap());
    }
    assert_eq!(
        reports[0]["succeeded"],
        serde_json::json!([]),
        "the stalled worker finished nothing"
    );
    assert_eq!(
        reports[0]["failed"],
        serde_json::json!([]),
        "nor failed the job it lost"
    );
    assert_eq!(reports[1]["succeeded"], serde_json::json!([job]));
    let shown = json(&ok(lethe(&data, &["--json", "runs", "show", &run])));
    assert_eq!(shown["run"]["state"], "succeeded");
    assert_eq!(
        json(&ok(lethe(&data, &["--json", "runs", "list"])))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Every recorded checkpoint is a file that is there, and the final one loads.
    let recorded: Vec<&str> = shown["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["file"].as_str().unwrap())
        .collect();
    let run_dir = data.join("runs").join(&run);
    for file in &recorded {
        assert!(run_dir.join(file).exists(), "{file}");
    }
    // And every checkpoint file there is recorded: the stalled worker took back what it wrote after it
    // lost the run, and the holder removed anything else no record names.
    let on_disk: Vec<String> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("checkpoint-"))
        .collect();
    for name in &on_disk {
        assert!(
            recorded.contains(&name.as_str()),
            "{name} is no recorded checkpoint ({recorded:?})"
        );
    }
    ok(lethe(&data, &["sample", "--run", &run, "--length", "8"]));
}

/// A worker started before `lethe keys rotate` runs jobs after it: it reads the rotated key ring
/// instead of failing on keys re-wrapped under a version it never loaded, and wraps new keys under the
/// new version.
#[test]
fn a_worker_started_before_a_key_rotation_works_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = common::ingested(tmp.path(), 30, 5, &["--vocab", "512", "--holdout", "0.1"]);
    let mut w = worker(&data);
    wait_for_a_live_worker(&data);
    let rotated = json(&ok(lethe(&data, &["keys", "rotate", "--json"])));
    assert_eq!(rotated["new_version"], 2, "{rotated:#}");

    let mut args = vec!["--json", "train", "--queue", "--corpus", "kb", "--max-steps", "2"];
    args.extend_from_slice(MICRO);
    let job = json(&ok(lethe(&data, &args)))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let j = loop {
        let j = json(&ok(lethe(&data, &["--json", "jobs", "show", &job])));
        if j["state"] != "running" && j["state"] != "queued" {
            break j;
        }
        if Instant::now() > deadline {
            let stderr = killed_workers_stderr(&mut [&mut w]);
            panic!("the job never finished: {j:#}\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if j["state"] != "succeeded" {
        let stderr = killed_workers_stderr(&mut [&mut w]);
        panic!("the job did not succeed: {j:#}\n{stderr}");
    }
    // The run's new data key is wrapped by version 2 like every other key: version 1 wraps nothing.
    let keys = json(&ok(lethe(&data, &["keys", "list", "--json"])));
    let v1 = keys["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 1)
        .unwrap();
    assert_eq!(v1["wraps"], 0, "{keys:#}");
    Command::new("kill")
        .args(["-TERM", &w.id().to_string()])
        .status()
        .unwrap();
    assert!(w.wait().unwrap().success());
}
