//! Audits from the command line: a trained run is audited, its report stored and shown, its evidence
//! sealed on disk and shown masked; generations from any model are scanned against a corpus; every bad
//! input (unknown run or corpus, tampered checkpoint, malformed or empty JSONL, impossible parameters) is
//! one clear error.

mod common;

use common::{fails_last_line_with as fails_with, lethe, ok};

use std::path::{Path, PathBuf};

/// A data directory with an ingested corpus `kb` (with canaries and a holdout) and the synthetic input.
fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, input) = common::ingested(tmp.path(), 60, 5, common::AUDITABLE);
    (tmp, data, input)
}

/// Trains a model small enough for seconds on a CPU and returns its run id.
fn train(data: &Path) -> String {
    common::micro_run(data, &[])
}

/// Audit parameters small enough for a test.
fn small_params(dir: &Path) -> PathBuf {
    let p = dir.join("params.json");
    std::fs::write(
        &p,
        r#"{"extraction_samples": 6, "prefix_tokens": 16, "suffix_tokens": 16, "regurgitation_samples": 4,
            "regurgitation_length": 24, "min_tokens": 8, "canary_candidates": 20, "canary_mc_samples": 2,
            "membership_docs": 6, "membership_window": 32, "membership_mc_samples": 2, "bootstrap": 20,
            "evidence_examples": 2, "seed": 9}"#,
    )
    .unwrap();
    p
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn a_run_is_audited_and_its_report_and_sealed_evidence_are_shown() {
    let (tmp, data, _) = fixture();
    let run = train(&data);
    let params = small_params(tmp.path());
    let out = json(&ok(lethe(
        &data,
        &[
            "--json",
            "audit",
            "--run",
            &run,
            "--params",
            params.to_str().unwrap(),
        ],
    )));
    let id = out["audit"].as_str().unwrap().to_string();
    let r = &out["report"];
    assert_eq!(r["format"], "lethe-audit-report-v1");
    assert_eq!(r["model"], "diffusion");
    assert_eq!(r["params"]["extraction_samples"], 6);
    assert_eq!(r["extraction"]["samples"], 6);
    assert_eq!(r["extraction"]["target_tokens"], 16);
    assert_eq!(r["infilling"]["samples"], 6);
    assert_eq!(r["regurgitation"]["samples"], 4);
    assert_eq!(r["canaries"]["canaries"].as_array().unwrap().len(), 2);
    assert_eq!(r["canaries"]["canaries"][0]["candidates"], 20);
    assert_eq!(r["membership"]["methods"].as_array().unwrap().len(), 3);
    let auc = r["membership"]["max_auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc));
    for stage in [
        "extraction",
        "infilling",
        "regurgitation",
        "canaries",
        "secrets",
        "membership",
    ] {
        assert!(r["seconds"][stage].as_f64().is_some(), "no timing for {stage}");
    }

    // Stored: shown by id and listed under the run.
    let shown = json(&ok(lethe(&data, &["--json", "audit", "show", &id])));
    assert_eq!(shown["state"], "succeeded");
    assert_eq!(shown["run_id"], run.as_str());
    assert_eq!(shown["report"], *r);
    assert!(shown.get("evidence").is_none());
    let listed = json(&ok(lethe(&data, &["--json", "audit", "list", "--run", &run])));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let text = ok(lethe(&data, &["audit", "show", &id]));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("extraction") && text.contains("membership"),
        "{text}"
    );

    // Evidence: shown on request, and sealed on disk (its corpus text is not in the file).
    let ev = json(&ok(lethe(&data, &["--json", "audit", "show", &id, "--evidence"])));
    let examples = ev["evidence"]["extraction"].as_array().unwrap();
    assert_eq!(examples.len(), 2);
    let truth = examples[0]["truth"].as_str().unwrap().to_string();
    assert!(truth.len() > 10, "{truth:?}");
    let file = data.join(shown["evidence_file"].as_str().unwrap());
    let sealed = std::fs::read(&file).unwrap();
    assert!(
        !sealed.windows(truth.len()).any(|w| w == truth.as_bytes()),
        "evidence on disk holds corpus text in the clear"
    );
    // A damaged evidence file is a clear error, not garbage.
    let mut bad = sealed.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&file, &bad).unwrap();
    fails_with(
        &lethe(&data, &["audit", "show", &id, "--evidence"]),
        "failed authentication",
    );
}

#[test]
fn auditing_a_tampered_checkpoint_or_unknown_run_is_refused() {
    let (tmp, data, _) = fixture();
    fails_with(
        &lethe(&data, &["audit", "--run", "run-nope"]),
        "no training run \"run-nope\"",
    );
    fails_with(&lethe(&data, &["audit"]), "needs --run RUN");
    fails_with(
        &lethe(&data, &["audit", "show", "aud-nope"]),
        "no audit \"aud-nope\"",
    );
    let run = train(&data);

    let params = tmp.path().join("bad.json");
    std::fs::write(&params, r#"{"suffix_tokens": 0}"#).unwrap();
    fails_with(
        &lethe(
            &data,
            &["audit", "--run", &run, "--params", params.to_str().unwrap()],
        ),
        "suffix_tokens: must be at least 1",
    );
    std::fs::write(&params, r#"{"sufix_tokens": 5}"#).unwrap();
    fails_with(
        &lethe(
            &data,
            &["audit", "--run", &run, "--params", params.to_str().unwrap()],
        ),
        "unknown field `sufix_tokens`",
    );
    std::fs::write(&params, r#"{"prefix_tokens": 60, "suffix_tokens": 60}"#).unwrap();
    fails_with(
        &lethe(
            &data,
            &["audit", "--run", &run, "--params", params.to_str().unwrap()],
        ),
        "more than the model's context of 64",
    );
    for n in ["0", "257"] {
        fails_with(
            &lethe(&data, &["audit", "--run", &run, "--shards", n]),
            "shards: must be between 1 and 256",
        );
        fails_with(
            &lethe(&data, &["audit", "--run", &run, "--shards", n, "--queue"]),
            "shards: must be between 1 and 256",
        );
    }
    fails_with(&lethe(&data, &["audit", "--run", &run, "--gpu"]), "--queue");

    let dir = data.join("runs").join(&run);
    let mut ckpts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sealed"))
        .collect();
    ckpts.sort();
    let last = ckpts.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x55;
    std::fs::write(last, &bytes).unwrap();
    let params = small_params(tmp.path());
    fails_with(
        &lethe(
            &data,
            &["audit", "--run", &run, "--params", params.to_str().unwrap()],
        ),
        "failed authentication",
    );
    let listed = json(&ok(lethe(&data, &["--json", "audit", "list"])));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] != "succeeded"),
        "no audit of tampered weights may succeed: {listed}"
    );
}

/// The text of one synthetic input document long enough to quote.
fn a_long_document(input: &Path) -> String {
    let mut stack = vec![input.to_path_buf()];
    let mut best = String::new();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if let Ok(t) = std::fs::read_to_string(&p) {
            if t.len() > best.len() && !p.to_string_lossy().contains(".synth") {
                best = t;
            }
        }
    }
    assert!(best.len() > 600, "synthetic documents are long enough to quote");
    best
}

#[test]
fn generations_from_any_model_are_scanned_for_corpus_spans() {
    // No canaries: one planted inside the quoted stretch would make the corpus text differ from the
    // input file there, and canaries land in random documents at random places.
    let tmp = tempfile::tempdir().unwrap();
    let (data, input) = common::ingested(tmp.path(), 60, 5, &["--vocab", "512", "--holdout", "0.2"]);
    let doc = a_long_document(&input);
    let quote: String = doc.chars().skip(40).take(500).collect();
    let file = tmp.path().join("gens.jsonl");
    let lines = [
        serde_json::json!({ "text": format!("The model said: {quote} and then stopped.") }),
        serde_json::json!({ "text": "Zebras juggle quantum marmalade beneath purple volcanoes at dawn, said nobody ever." }),
        serde_json::json!({ "id": 3, "completion": "other field", "text": "" }),
    ];
    let body: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&file, body.join("\n") + "\n\n").unwrap();
    let f = file.to_str().unwrap();

    let out = json(&ok(lethe(
        &data,
        &[
            "--json",
            "audit",
            "regurgitation",
            "--corpus",
            "kb",
            "--generations",
            f,
            "--min-tokens",
            "20",
        ],
    )));
    assert_eq!(out["summary"]["samples"], 3);
    assert_eq!(out["summary"]["unit"], "tokens");
    assert_eq!(out["summary"]["with_span"]["hits"], 1);
    let g = out["generations"].as_array().unwrap();
    assert_eq!(
        g.iter().map(|x| x["line"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(g[0]["longest"].as_u64().unwrap() >= 60, "{}", g[0]);
    assert!(g[0]["spans"][0]["doc"].as_u64().is_some());
    assert_eq!(g[1]["spans"].as_array().unwrap().len(), 0);
    assert_eq!(g[2]["length"], 0);

    // Characters: the quote is at least 450 characters of corpus text (the tokenizer may cut its ends).
    let out = json(&ok(lethe(
        &data,
        &[
            "--json",
            "audit",
            "regurgitation",
            "--corpus",
            "kb",
            "--generations",
            f,
            "--min-chars",
            "100",
        ],
    )));
    assert_eq!(out["summary"]["unit"], "chars");
    let longest = out["generations"][0]["longest"].as_u64().unwrap();
    assert!((450..=520).contains(&longest), "{longest}");
    assert_eq!(out["generations"][1]["longest"], 0);

    // Another field: lines without it are an error naming the first such line.
    fails_with(
        &lethe(
            &data,
            &[
                "audit",
                "regurgitation",
                "--corpus",
                "kb",
                "--generations",
                f,
                "--field",
                "completion",
            ],
        ),
        "gens.jsonl:1: has no field \"completion\"",
    );
}

#[test]
fn bad_generations_files_are_clear_errors() {
    let (tmp, data, _) = fixture();
    let w = |name: &str, body: &str| -> String {
        let p = tmp.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let scan = |file: &str, extra: &[&str]| {
        let mut args = vec!["audit", "regurgitation", "--corpus", "kb", "--generations", file];
        args.extend_from_slice(extra);
        lethe(&data, &args)
    };
    let good = w("good.jsonl", "{\"text\": \"hello\"}\n");
    fails_with(
        &scan(&w("broken.jsonl", "{\"text\": \"a\"}\n{\"text\": \n"), &[]),
        "broken.jsonl:2: not a JSON object",
    );
    fails_with(
        &scan(&w("array.jsonl", "[1, 2]\n"), &[]),
        "array.jsonl:1: not a JSON object",
    );
    fails_with(&scan(&w("empty.jsonl", ""), &[]), "holds no generations");
    fails_with(&scan(&w("blank.jsonl", "\n  \n"), &[]), "holds no generations");
    fails_with(
        &scan(&w("nofield.jsonl", "{\"body\": \"x\"}\n"), &[]),
        "nofield.jsonl:1: has no field \"text\"",
    );
    fails_with(
        &scan(&w("num.jsonl", "{\"text\": 5}\n"), &[]),
        "field \"text\" is not a string",
    );
    fails_with(
        &scan("/nonexistent/gens.jsonl", &[]),
        "cannot read generations file /nonexistent/gens.jsonl",
    );
    fails_with(&scan(&good, &["--min-tokens", "0"]), "at least 1");
    fails_with(
        &lethe(
            &data,
            &[
                "audit",
                "regurgitation",
                "--corpus",
                "nope",
                "--generations",
                &good,
            ],
        ),
        "no corpus named \"nope\"",
    );
    let both = lethe(
        &data,
        &[
            "audit",
            "regurgitation",
            "--corpus",
            "kb",
            "--generations",
            &good,
            "--min-tokens",
            "3",
            "--min-chars",
            "9",
        ],
    );
    assert!(!both.status.success());
}

#[test]
fn an_audit_queued_as_a_job_is_run_by_a_worker() {
    let (tmp, data, _) = fixture();
    let run = train(&data);
    let params = small_params(tmp.path());
    let p = params.to_str().unwrap();
    fails_with(
        &lethe(&data, &["audit", "--run", "run-nope", "--queue"]),
        "no training run",
    );
    let queued = json(&ok(lethe(
        &data,
        &["--json", "audit", "--run", &run, "--params", p, "--queue"],
    )));
    let job = queued["job_id"].as_str().unwrap().to_string();
    let worked = json(&ok(lethe(&data, &["--json", "worker", "--once"])));
    assert_eq!(worked["succeeded"], serde_json::json!([job]), "{worked}");
    let shown = json(&ok(lethe(&data, &["--json", "jobs", "show", &job])));
    assert_eq!(shown["state"], "succeeded");
    let audit = shown["result"]["audit"].as_str().unwrap().to_string();
    let listed = json(&ok(lethe(&data, &["--json", "audit", "list", "--run", &run])));
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], audit.as_str());
    assert_eq!(rows[0]["state"], "succeeded");
    assert_eq!(rows[0]["job_id"], job.as_str());
    assert!(
        rows[0]["created_by"].as_str().unwrap().starts_with("cli:"),
        "{}",
        rows[0]
    );
    assert_eq!(rows[0]["params"]["extraction_samples"], 6);
}

#[test]
fn an_autoregressive_run_is_audited_without_infilling() {
    let (tmp, data, _) = fixture();
    let run = common::micro_run(&data, &["--objective", "ar"]);
    let run = run.as_str();
    let params = small_params(tmp.path());
    let out = json(&ok(lethe(
        &data,
        &[
            "--json",
            "audit",
            "--run",
            run,
            "--params",
            params.to_str().unwrap(),
        ],
    )));
    let r = &out["report"];
    assert_eq!(r["model"], "ar");
    assert!(r["infilling"].is_null());
    assert_eq!(r["extraction"]["samples"], 6);
    assert_eq!(r["canaries"]["canaries"].as_array().unwrap().len(), 2);
    let ranks: Vec<u64> = r["canaries"]["canaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rank"].as_u64().unwrap())
        .collect();
    assert!(ranks.iter().all(|&k| (1..=21).contains(&k)), "{ranks:?}");
    assert_eq!(r["membership"]["methods"].as_array().unwrap().len(), 3);
}
