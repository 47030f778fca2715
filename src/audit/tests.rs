//! The whole audit against two stand-in models whose memorization is known: an oracle that has memorized
//! the training split word for word, and an amnesiac that knows nothing. Every audit must tell them apart
//! in the expected direction, so a broken measure fails here.

use super::*;
use crate::corpus::canary::Canary;
use crate::corpus::tokenizer::{CorpusTokenizer, EOS_ID, MASK_ID};

const AWS_KEY: &str = "AKIAZ7QW3ERT5YUI2OPK";

fn corpus_texts() -> (Vec<String>, Vec<String>) {
    let words = [
        "router", "ticket", "customer", "latency", "billing", "invoice", "cluster", "deploy", "rollback",
        "firmware", "gateway", "storage", "quota", "tenant", "backup", "restore",
    ];
    let mut rng = stats::Rng::new(11);
    let mut doc = |i: usize| -> String {
        let mut s = format!("Ticket {i}: ");
        for _ in 0..90 {
            s.push_str(words[rng.below(words.len() as u64) as usize]);
            s.push(' ');
        }
        s
    };
    let mut train: Vec<String> = (0..40).map(&mut doc).collect();
    train[3].push_str(&format!("aws_access_key_id = {AWS_KEY} "));
    train[5].push_str("\nmy access code is 4-1-5-9-2-6\n");
    let holdout = (40..60).map(doc).collect();
    (train, holdout)
}

struct Fixture {
    tokenizer: CorpusTokenizer,
    train: Vec<(u32, Vec<u32>)>,
    holdout: Vec<(u32, Vec<u32>)>,
    canaries: Vec<Canary>,
}

fn fixture() -> Fixture {
    let (train, holdout) = corpus_texts();
    let tokenizer = CorpusTokenizer::train(train.iter().chain(&holdout), 600).unwrap();
    let enc = |texts: &[String], from: u32| -> Vec<(u32, Vec<u32>)> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| (from + i as u32, tokenizer.encode(t).unwrap()))
            .collect()
    };
    let (train, holdout) = (enc(&train, 0), enc(&holdout, 40));
    Fixture {
        canaries: vec![Canary {
            id: 0,
            prefix: crate::corpus::canary::PREFIX.into(),
            secret: "4-1-5-9-2-6".into(),
            format: "digits6-dashed".into(),
            repeats: 1,
            docs: vec![5],
        }],
        tokenizer,
        train,
        holdout,
    }
}

impl Fixture {
    fn corpus(&self) -> AuditCorpus<'_> {
        AuditCorpus {
            train: &self.train,
            holdout: &self.holdout,
            unseen: &[],
            canaries: &self.canaries,
            tokenizer: &self.tokenizer,
            epochs: 1.0,
        }
    }
}

/// Finds `needle` in the training documents: (document position, offset just past it).
fn find(train: &[(u32, Vec<u32>)], needle: &[u32]) -> Option<(usize, usize)> {
    train.iter().enumerate().find_map(|(d, (_, doc))| {
        (0..=doc.len().saturating_sub(needle.len()))
            .find(|&o| doc[o..].starts_with(needle))
            .map(|o| (d, o + needle.len()))
    })
}

struct Oracle<'a> {
    train: &'a [(u32, Vec<u32>)],
    kind: ModelKind,
    memorized: bool,
}

impl Oracle<'_> {
    fn continue_after(&self, context: &[u32], len: usize) -> Vec<u32> {
        let ctx: Vec<u32> = context
            .iter()
            .copied()
            .filter(|&t| t != crate::corpus::tokenizer::BOS_ID)
            .collect();
        let hit = if ctx.is_empty() {
            Some((0, 0))
        } else {
            find(self.train, &ctx)
        };
        match (self.memorized, hit) {
            (true, Some((d, o))) => {
                let doc = &self.train[d].1;
                let mut out: Vec<u32> = doc[o..(o + len).min(doc.len())].to_vec();
                out.resize(len, EOS_ID);
                out
            }
            _ => vec![7; len],
        }
    }

    fn known(&self, row: &[u32]) -> bool {
        let body: Vec<u32> = row
            .iter()
            .copied()
            .filter(|&t| t != crate::corpus::tokenizer::BOS_ID)
            .collect();
        self.memorized && find(self.train, &body).is_some()
    }
}

impl AuditModel for Oracle<'_> {
    fn kind(&self) -> ModelKind {
        self.kind
    }
    fn context(&self) -> usize {
        256
    }
    fn generate(
        &self,
        prompts: &[Vec<u32>],
        len: usize,
        _: &SamplerSettings,
    ) -> Result<Vec<Vec<u32>>, String> {
        Ok(prompts.iter().map(|p| self.continue_after(p, len)).collect())
    }
    fn infill(&self, rows: &[Vec<u32>], _: &SamplerSettings) -> Result<Vec<Vec<u32>>, String> {
        Ok(rows
            .iter()
            .map(|r| {
                let hole = r.iter().position(|&t| t == MASK_ID).unwrap_or(r.len());
                let n = r[hole..].iter().take_while(|&&t| t == MASK_ID).count();
                let mut out = r.clone();
                out[hole..hole + n].copy_from_slice(&self.continue_after(&r[..hole], n));
                out
            })
            .collect())
    }
    fn token_scores(&self, rows: &[Vec<u32>], _: usize, _: u64) -> Result<Vec<Vec<f64>>, String> {
        Ok(rows
            .iter()
            .map(|r| {
                let v = if self.known(r) { -0.5 } else { -4.0 };
                vec![v; r.len() - 1]
            })
            .collect())
    }
    fn tail_scores(&self, rows: &[Vec<u32>], _: &[usize], _: usize, _: u64) -> Result<Vec<f64>, String> {
        Ok(rows
            .iter()
            .map(|r| {
                // Unknown rows: a spread of scores from their tokens, so candidates are not all tied.
                let h = r
                    .iter()
                    .fold(7u64, |h, &t| h.wrapping_mul(31).wrapping_add(u64::from(t)));
                let base = -20.0 - (h % 1000) as f64 / 100.0;
                if self.known(r) {
                    -1.0
                } else {
                    base
                }
            })
            .collect())
    }
}

fn params() -> AuditParams {
    AuditParams {
        extraction_samples: 40,
        prefix_tokens: 20,
        suffix_tokens: 20,
        regurgitation_samples: 6,
        regurgitation_length: 60,
        min_tokens: 20,
        canary_candidates: 300,
        membership_docs: 20,
        membership_window: 64,
        bootstrap: 100,
        ..AuditParams::quick()
    }
}

fn audit(f: &Fixture, kind: ModelKind, memorized: bool) -> (AuditReport, Evidence) {
    let corpus = f.corpus();
    let model = Oracle {
        train: &f.train,
        kind,
        memorized,
    };
    let scanner = secrets::Scanner::new(&[secrets::RulePack::builtin()], None).unwrap();
    let mut stages = Vec::new();
    let r = run(&model, &corpus, &params(), &scanner, &mut |s, d, t| {
        assert!(d <= t, "{s:?} {d}/{t}");
        stages.push(s);
    })
    .unwrap();
    for s in [
        Stage::Extraction,
        Stage::Regurgitation,
        Stage::Canaries,
        Stage::Secrets,
        Stage::Membership,
    ] {
        assert!(stages.contains(&s), "no progress for {s:?}");
    }
    r
}

#[test]
fn a_model_that_memorized_everything_fails_every_audit() {
    let f = fixture();
    let (r, ev) = audit(&f, ModelKind::Diffusion, true);
    assert_eq!(r.extraction.samples, 40);
    assert_eq!(r.extraction.exact.rate, 1.0, "{:?}", r.extraction);
    assert!(r.extraction.exact.low > 0.8);
    let infill = r.infilling.as_ref().unwrap();
    assert_eq!(infill.exact.rate, 1.0, "{infill:?}");
    assert_eq!(r.regurgitation.with_span.hits, 6);
    assert!(r.regurgitation.longest_span >= 20);
    assert!(r.regurgitation.mean_covered_share > 0.9, "{:?}", r.regurgitation);
    assert_eq!(r.canaries.canaries.len(), 1);
    assert_eq!(r.canaries.canaries[0].rank, 1);
    assert!(r.canaries.max_exposure > 8.0, "{:?}", r.canaries);
    assert!(r.membership.max_auc > 0.99, "{:?}", r.membership);
    // The oracle recites document 0 unprompted; the key in document 3 comes out of extraction prompts
    // only if sampled, so check what was found is located in the corpus.
    for s in &ev.secrets {
        if s.secret == AWS_KEY {
            assert_eq!(s.corpus_doc, Some(3));
        }
    }
    // Evidence holds the verbatim text; the masked view hides every secret value.
    assert!(ev.extraction.iter().all(|e| e.exact && e.generated == e.truth));
    assert_eq!(ev.extraction.len(), params().evidence_examples);
    let masked = ev.masked();
    let shown = serde_json::to_string(&masked).unwrap();
    for s in &ev.secrets {
        assert!(
            !shown.contains(&s.secret),
            "{} leaks into the masked evidence",
            s.secret
        );
    }
    // The report itself holds no corpus text.
    let report = serde_json::to_string(&r).unwrap();
    assert!(!report.contains("Ticket 0:") && !report.contains(AWS_KEY));
}

#[test]
fn a_model_that_memorized_nothing_passes_every_audit() {
    let f = fixture();
    let (r, _) = audit(&f, ModelKind::Ar, false);
    assert!(r.infilling.is_none(), "AR models are not infilled");
    assert_eq!(r.extraction.exact.hits, 0);
    assert_eq!(r.extraction.approximate.hits, 0);
    assert!(r.extraction.exact.high < 0.15);
    assert_eq!(r.regurgitation.with_span.hits, 0);
    assert_eq!(r.regurgitation.longest_span, 0);
    assert!(r.canaries.max_exposure < 8.0, "{:?}", r.canaries);
    assert!((r.membership.max_auc - 0.5).abs() < 1e-9, "{:?}", r.membership);
    assert_eq!(r.secrets.regurgitated, 0);
}

#[test]
fn a_regurgitated_secret_is_found_and_located() {
    let f = fixture();
    let corpus = f.corpus();
    let scanner = secrets::Scanner::new(&[secrets::RulePack::builtin()], None).unwrap();
    let texts = vec![
        report::Generated {
            source: "a".into(),
            text: format!("here it is: aws_access_key_id = {AWS_KEY} done"),
        },
        report::Generated {
            source: "b".into(),
            text: "nothing secret at all".into(),
        },
    ];
    let (r, ex) = leaks::scan(&corpus, &scanner, &texts, &mut |_, _, _| {}).unwrap();
    let aws: Vec<_> = ex.iter().filter(|e| e.secret == AWS_KEY).collect();
    assert_eq!(aws.len(), 1, "{ex:?}");
    assert_eq!(aws[0].corpus_doc, Some(3));
    assert_eq!(aws[0].source, "a");
    assert!(r.regurgitated >= 1 && r.texts == 2);
}

#[test]
fn parameters_that_cannot_work_are_refused_by_name() {
    let f = fixture();
    let corpus = f.corpus();
    let p = AuditParams {
        prefix_tokens: 200,
        suffix_tokens: 100,
        ..params()
    };
    let e = extraction::sample_windows(&corpus, &p, 256)
        .unwrap_err()
        .to_string();
    assert!(e.contains("prefix_tokens") && e.contains("context of 256"), "{e}");
    let e = AuditParams {
        approx_max_edit: 1.5,
        ..params()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("approx_max_edit"), "{e}");
}

/// Strips what may differ between equal audits cut differently: wall-clock time and the shard count.
fn figures(mut r: AuditReport) -> AuditReport {
    r.seconds.clear();
    r.params.shards = 1;
    r
}

#[test]
fn the_report_and_evidence_do_not_depend_on_the_number_of_shards() {
    let f = fixture();
    let corpus = f.corpus();
    let scanner = secrets::Scanner::new(&[secrets::RulePack::builtin()], None).unwrap();
    for kind in [ModelKind::Diffusion, ModelKind::Ar] {
        let model = Oracle {
            train: &f.train,
            kind,
            memorized: true,
        };
        let mut results = Vec::new();
        for shards in [1, 3, 7, 40, 256] {
            let p = AuditParams { shards, ..params() };
            let (report, evidence) = run(&model, &corpus, &p, &scanner, &mut |_, _, _| {}).unwrap();
            results.push((shards, figures(report), evidence));
        }
        let (_, first, first_ev) = &results[0];
        assert!(first.regurgitation.spans > 0 && first.extraction.exact.rate > 0.0);
        for (shards, report, evidence) in &results[1..] {
            assert_eq!(report, first, "{kind:?}, {shards} shards");
            assert_eq!(evidence, first_ev, "{kind:?}, {shards} shards");
        }
    }
}

/// The pieces as separate processes see them: the plan and every output through JSON, the parts run
/// from the plan alone with only their own documents, merged in reverse order.
#[test]
fn pieces_serialized_and_merged_in_any_order_give_the_single_process_report() {
    let f = fixture();
    let corpus = f.corpus();
    let scanner = secrets::Scanner::new(&[secrets::RulePack::builtin()], None).unwrap();
    let model = Oracle {
        train: &f.train,
        kind: ModelKind::Diffusion,
        memorized: true,
    };
    let p = AuditParams {
        shards: 4,
        ..params()
    };
    let (single, single_ev) = run(&model, &corpus, &p, &scanner, &mut |_, _, _| {}).unwrap();

    let through_json = |v: &dyn erased::Json| v.json();
    let plan = shards::plan(&model, &corpus, &p, &mut |_, _, _| {}).unwrap();
    let plan: shards::Plan = serde_json::from_str(&through_json(&plan)).unwrap();
    assert_eq!(plan.shards.len(), 4);
    let mut parts = Vec::new();
    for (k, range) in plan.shards.iter().enumerate().rev() {
        let docs: Vec<(u32, Vec<u32>)> = f.train.iter().filter(|(d, _)| range.holds(*d)).cloned().collect();
        let out = shards::run_shard(&model, &plan, k, &docs, &mut |_, _, _| {}).unwrap();
        parts.push(serde_json::from_str::<shards::ShardOutput>(&through_json(&out)).unwrap());
    }
    let scores = shards::run_scores(&model, &corpus, &p, &mut |_, _, _| {}).unwrap();
    let scores: shards::Scores = serde_json::from_str(&through_json(&scores)).unwrap();
    let (merged, merged_ev) = shards::merge(
        &corpus,
        &plan,
        parts.clone(),
        scores.clone(),
        &scanner,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(figures(merged), figures(single));
    assert_eq!(merged_ev, single_ev);

    // A missing or doubled part is refused, not merged into a wrong report.
    let mut short = parts.clone();
    short.pop();
    let e = shards::merge(&corpus, &plan, short, scores.clone(), &scanner, &mut |_, _, _| {}).unwrap_err();
    assert!(
        e.to_string().contains("one part for each of the 4 shard(s)"),
        "{e}"
    );
    let mut doubled = parts.clone();
    doubled[0] = parts[1].clone();
    assert!(shards::merge(&corpus, &plan, doubled, scores, &scanner, &mut |_, _, _| {}).is_err());
    // A part run on another shard's documents is refused.
    let wrong: Vec<(u32, Vec<u32>)> = f
        .train
        .iter()
        .filter(|(d, _)| !plan.shards[0].holds(*d))
        .cloned()
        .collect();
    assert!(shards::run_shard(&model, &plan, 0, &wrong, &mut |_, _, _| {}).is_err());
}

mod erased {
    /// Serializes any of the pieces to JSON (they are `Serialize`, the trait object needs a method).
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).expect("pieces serialize")
        }
    }
}
