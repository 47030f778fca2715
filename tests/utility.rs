//! What a model learned beside what it memorized, from the command line: a capped run trains on whole
//! documents from every folder of the corpus; kept checkpoints each carry held-out bits per byte and
//! continuation choice; audits of any kept checkpoint carry a `utility` object; `gate --select` picks a
//! passing step that goes through request, two approvals and export with that checkpoint's weights;
//! bad `--eval` files and steps are one clear error each.

mod common;

use common::release::{as_user, with_users, write_policy, LAX};
use common::{fails_last_line_with as fails_with, lethe, ok, MICRO};

fn json(out: std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&ok(out).stdout).unwrap()
}

#[test]
fn a_capped_run_trains_on_every_folder_and_keeps_evaluated_checkpoints_that_can_be_selected_and_released() {
    let (tmp, data, pw) = with_users(&[("olga", "operator"), ("remy", "reviewer"), ("rose", "reviewer")]);
    common::synth_and_ingest(
        &data,
        &tmp.path().join("in"),
        160,
        3,
        &[
            "--vocab",
            "512",
            "--holdout",
            "0.15",
            "--canaries",
            "2",
            "--canary-repeats",
            "1,8",
        ],
    );

    // The subset a capped run trains on: whole documents from every top-level folder in about the
    // corpus's proportions (a run of one step is enough to record it; the selection is the manifest's).
    let stats = &json(lethe(&data, &["--json", "corpus", "show", "kb"]))["stats"];
    let train_tokens = stats["train_tokens"].as_u64().unwrap();
    let half = (train_tokens / 2).to_string();
    let mut args = vec![
        "--json",
        "train",
        "--corpus",
        "kb",
        "--epochs",
        "1",
        "--max-steps",
        "1",
        "--unique-tokens",
        &half,
    ];
    args.extend_from_slice(MICRO);
    let probe = json(lethe(&data, &args))["run_id"].as_str().unwrap().to_string();
    let shown = json(lethe(&data, &["--json", "runs", "show", &probe]));
    let mix = shown["subset_folders"].as_array().expect("subset_folders");
    assert!(mix.len() >= 3, "{mix:?}");
    let (chosen, all): (u64, u64) = mix.iter().fold((0, 0), |(c, a), f| {
        (
            c + f["chosen"].as_u64().unwrap(),
            a + f["documents"].as_u64().unwrap(),
        )
    });
    assert!(
        chosen > all / 4 && chosen < all * 3 / 4,
        "about half: {chosen} of {all}"
    );
    // Folders of at least a tenth of the corpus: each sampled, in about its share.
    for f in mix
        .iter()
        .filter(|f| f["documents"].as_u64().unwrap() * 10 >= all)
    {
        let share_chosen = f["chosen"].as_f64().unwrap() / chosen as f64;
        let share_all = f["documents"].as_f64().unwrap() / all as f64;
        assert!(f["chosen"].as_u64().unwrap() > 0, "every folder is sampled: {f}");
        assert!(
            (share_chosen - share_all).abs() < 0.12,
            "folder {} is {share_chosen:.2} of the subset, {share_all:.2} of the corpus",
            f["folder"]
        );
    }

    // 16 epochs on a few thousand tokens: log-spaced checkpoints 1, 2, 4, 8, 16.
    let mut args = vec![
        "--json",
        "train",
        "--user",
        "olga",
        "--corpus",
        "kb",
        "--epochs",
        "16",
        "--unique-tokens",
        "4000",
        "--val-mask-draws",
        "2",
    ];
    args.extend_from_slice(MICRO);
    let run = json(as_user(&data, &pw["olga"], &args))["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = json(lethe(&data, &["--json", "runs", "show", &run]));

    // Five kept checkpoints, each with its utility.
    let history = shown["history"].as_array().unwrap();
    let kept: Vec<&serde_json::Value> = history.iter().filter(|c| c["kept"] == true).collect();
    let epochs: Vec<f64> = kept.iter().map(|c| c["epochs"].as_f64().unwrap()).collect();
    assert_eq!(epochs, [1.0, 2.0, 4.0, 8.0, 16.0]);
    for c in &kept {
        let u = &c["utility"];
        assert!(u["bits_per_byte"].as_f64().unwrap() > 0.0, "{c}");
        assert_eq!(u["estimator"], "elbo_upper_bound");
        assert_eq!(u["windows"], 32);
        let a = &u["choice_accuracy"];
        assert!(a["n"].as_u64().unwrap() > 0, "{c}");
        assert!(a["low"].as_f64().unwrap() <= a["value"].as_f64().unwrap());
    }
    let steps: Vec<i64> = kept.iter().map(|c| c["step"].as_i64().unwrap()).collect();

    // Audit a chosen kept checkpoint: the report names it and carries the utility object.
    let policy = write_policy(
        tmp.path(),
        "lax.toml",
        &LAX.replace("[approvals]", "[select]\nmax_audits = 2\n[approvals]"),
    );
    let p = policy.to_str().unwrap();
    let s2 = steps[1].to_string();
    let a = json(lethe(
        &data,
        &["--json", "audit", "--run", &run, "--step", &s2, "--policy", p],
    ));
    assert_eq!(a["checkpoint_step"], steps[1]);
    let u = &a["report"]["utility"];
    assert!(u["bits_per_byte"].as_f64().is_some(), "{u}");
    assert!(u["choice_accuracy"]["value"].as_f64().is_some(), "{u}");
    // The buckets count copies x epochs: at epoch 2 nothing was seen only once.
    assert_eq!(a["report"]["extraction"]["epochs"], 2.0);

    // Bad steps: one clear error each, nothing recorded.
    fails_with(
        &lethe(
            &data,
            &["audit", "--run", &run, "--step", "100000", "--policy", p],
        ),
        "has no checkpoint at step 100000: the run has",
    );
    let not_kept = (steps[2] - 1).to_string();
    fails_with(
        &lethe(
            &data,
            &["audit", "--run", &run, "--step", &not_kept, "--policy", p],
        ),
        "that step was not kept",
    );

    // A customer's own items, and malformed files naming the line.
    let items = tmp.path().join("items.jsonl");
    std::fs::write(
        &items,
        "{\"context\": \"Ticket: the printer\", \"choices\": [\" is jammed\", \" sings\"], \"answer\": 0}\n\
         {\"context\": \"Subject: password\", \"choices\": [\" reset\", \" banana\"], \"answer\": 0}\n",
    )
    .unwrap();
    let e = json(lethe(
        &data,
        &[
            "--json",
            "eval",
            "--run",
            &run,
            "--quick",
            "--eval",
            items.to_str().unwrap(),
        ],
    ));
    assert_eq!(e["utility"]["custom"]["n"], 2);
    assert_eq!(e["utility"]["custom"]["file"], "items.jsonl");
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0}\n{\"context\": \"a\", \"choices\": [\"b\"], \"answer\": 3}\n",
    )
    .unwrap();
    fails_with(
        &lethe(&data, &["eval", "--run", &run, "--eval", bad.to_str().unwrap()]),
        "bad.jsonl:2: needs at least two choices",
    );
    fails_with(
        &lethe(
            &data,
            &[
                "audit",
                "--run",
                &run,
                "--eval",
                "/nonexistent.jsonl",
                "--policy",
                p,
            ],
        ),
        "cannot read evaluation file /nonexistent.jsonl",
    );

    // Select: the newest kept checkpoints are audited (at most two, as the policy says) and the most
    // useful passing one is chosen; the rest say why they were passed over.
    let sel = json(lethe(
        &data,
        &["--json", "gate", "--run", &run, "--policy", p, "--select"],
    ));
    let step = sel["step"].as_i64().expect("a step is selected");
    let cands = sel["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 5);
    assert_eq!(
        cands.iter().filter(|c| c["verdict"] == "selected").count(),
        1,
        "{cands:?}"
    );
    assert!(cands
        .iter()
        .any(|c| c["verdict"].as_str().unwrap().starts_with("not audited")));
    assert_eq!(sel["audited"].as_array().unwrap().len(), 2);

    // Request (naming the selected step by default), two approvals, export, verify.
    let act = |user: &str, extra: &[&str]| {
        let mut a = extra.to_vec();
        a.extend_from_slice(&["--run", &run, "--user", user, "--policy", p]);
        as_user(&data, &pw[user], &a)
    };
    ok(act("olga", &["release", "request"]));
    ok(act(
        "remy",
        &["release", "approve", "--comment", "utility and audit reviewed"],
    ));
    ok(act("rose", &["release", "approve", "--comment", "agreed"]));
    let bundle = tmp.path().join("bundle");
    ok(act(
        "rose",
        &["release", "export", "--out", bundle.to_str().unwrap()],
    ));
    let pk = String::from_utf8(ok(lethe(&data, &["keys", "public"])).stdout).unwrap();
    ok(lethe(
        &tmp.path().join("nowhere"),
        &[
            "release",
            "verify",
            bundle.to_str().unwrap(),
            "--public-key",
            pk.trim(),
        ],
    ));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let recorded =
        history.iter().find(|c| c["step"].as_i64() == Some(step)).unwrap()["weights_sha256"].clone();
    let text = manifest.to_string();
    assert!(text.contains(&format!("\"checkpoint_step\":{step}")), "{text}");
    assert!(
        text.contains(recorded.as_str().unwrap()),
        "the bundle names the selected weights"
    );
    let card = std::fs::read_to_string(bundle.join("MODEL_CARD.md")).unwrap();
    assert!(card.contains(&format!("step {step}")), "{card}");
    assert!(card.contains("continuation choice"), "{card}");
    // The ledger records the selection.
    let ledger = String::from_utf8(ok(lethe(&data, &["ledger", "show"])).stdout).unwrap();
    assert!(ledger.contains("gate.select"), "{ledger}");
}
