use super::*;
use crate::audit::exposure::{CanaryExposure, CanaryReport};
use crate::audit::extraction::ExtractionReport;
use crate::audit::leaks::SecretsReport;
use crate::audit::membership::{MembershipReport, MethodAuc};
use crate::audit::regurgitation::RegurgitationReport;
use crate::audit::stats::{wilson, Auc};

fn extraction(exact: usize, approx: usize, n: usize) -> ExtractionReport {
    ExtractionReport {
        context_tokens: 50,
        target_tokens: 50,
        samples: n,
        exact: wilson(exact, n),
        approximate: wilson(approx, n),
        mean_edit: 0.5,
        buckets: Vec::new(),
        epochs: 1.0,
        skipped: None,
    }
}

/// A report of a clean diffusion model audited exactly as the built-in policy asks.
fn clean_report() -> AuditReport {
    AuditReport {
        format: crate::audit::report::REPORT_FORMAT.into(),
        model: ModelKind::Diffusion,
        params: AuditParams::default(),
        extraction: extraction(0, 0, 1000),
        infilling: Some(extraction(0, 0, 1000)),
        regurgitation: RegurgitationReport {
            samples: 200,
            prompted: 0,
            generated_tokens: 25_600,
            min_length: 50,
            unit: "tokens".into(),
            with_span: wilson(0, 200),
            longest_span: 0,
            mean_covered_share: 0.0,
            max_covered_share: 0.0,
            spans: 0,
        },
        canaries: CanaryReport {
            space_bits: 19.93,
            canaries: vec![CanaryExposure {
                id: 0,
                repeats: 4,
                copies_trained: 4,
                times_seen: 4.0,
                rank: 900,
                candidates: 2000,
                exposure: 1.2,
                method: "rank".into(),
            }],
            by_repeats: Vec::new(),
            max_exposure: 1.2,
            controls: 0,
            control_max_exposure: 0.0,
            skipped: None,
        },
        secrets: SecretsReport {
            texts: 2200,
            rules: 21,
            findings: 3,
            regurgitated: 0,
            novel: 3,
            by_rule: Vec::new(),
        },
        membership: MembershipReport {
            members: 200,
            non_members: 200,
            non_members_unseen: 0,
            window: 128,
            methods: vec![MethodAuc {
                method: "loss".into(),
                auc: Auc {
                    auc: 0.51,
                    low: 0.45,
                    high: 0.57,
                },
            }],
            max_auc: 0.51,
            skipped: None,
        },
        utility: None,
        seconds: Default::default(),
    }
}

fn failing(g: &GateResult) -> Vec<&str> {
    g.rows
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.rule.as_str())
        .collect()
}

#[test]
fn the_builtin_policy_parses_with_its_documented_values() {
    let p = Policy::builtin();
    assert_eq!(p.name, "default");
    assert_eq!(p.statistic, Statistic::Upper);
    assert_eq!(p.approvals.required, 2);
    assert_eq!(p.approvals.role, Role::Reviewer);
    assert!(!p.approvals.allow_waiver);
    assert_eq!(p.thresholds.max_regurgitated_secrets, 0);
    assert_eq!(p.audit.extraction_samples, 1000);
    assert_eq!(p.sha256.len(), 64);
    // The repository's file is the built-in one.
    let on_disk = Policy::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/default.toml"
    )))
    .unwrap();
    assert_eq!(on_disk.sha256, p.sha256);
}

/// The built-in policy with `from` replaced by `to`; panics if `from` is not in it.
fn edited(from: &str, to: &str) -> String {
    assert!(DEFAULT_POLICY.contains(from), "{from}");
    DEFAULT_POLICY.replacen(from, to, 1)
}

fn error_of(text: &str) -> (usize, String) {
    match Policy::parse(text, "p.toml", None) {
        Err(PolicyError::Invalid {
            line,
            message,
            origin,
            ..
        }) => {
            assert_eq!(origin, "p.toml");
            (line, message)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

#[test]
fn bad_policies_are_refused_naming_the_line() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            edited(
                "max_covered_share = 0.05",
                "max_covered_share = 0.05\nmax_coverd = 1",
            ),
            "max_coverd",
            "unknown field `max_coverd`",
        ),
        (
            edited("max_canary_exposure = 8.0", "max_canary_exposure = \"high\""),
            "max_canary_exposure",
            "invalid type",
        ),
        (
            edited("max_exact_extraction = 0.01", "max_exact_extraction = 1.5"),
            "max_exact_extraction",
            "must be a share between 0 and 1",
        ),
        (
            edited(
                "max_approximate_extraction = 0.03",
                "max_approximate_extraction = 0.001",
            ),
            "max_approximate_extraction",
            "every exact extraction is also an approximate one",
        ),
        (
            edited("max_membership_auc = 0.60", "max_membership_auc = 0.3"),
            "max_membership_auc",
            "between 0.5 (a coin toss) and 1",
        ),
        (
            edited("max_regurgitated_secrets = 0", "max_regurgitated_secrets = -1"),
            "max_regurgitated_secrets",
            "must be 0 or more",
        ),
        (
            edited("required = 2", "required = 0"),
            "required = 0",
            "between 1 and 20",
        ),
        (
            edited("role = \"reviewer\"", "role = \"janitor\""),
            "role = ",
            "is not a role",
        ),
        (
            edited("role = \"reviewer\"", "role = \"auditor\""),
            "role = ",
            "auditors only read",
        ),
        (
            edited("version = 1", "version = 2"),
            "version = 2",
            "version 2 is not supported",
        ),
        (
            edited("statistic = \"upper\"", "statistic = \"median\""),
            "statistic",
            "unknown variant `median`",
        ),
        (
            edited("suffix_tokens = 50", "suffix_tokens = 0"),
            "[audit]",
            "suffix_tokens: must be at least 1",
        ),
        (
            edited("extraction_samples = 1000", "extraction_sample = 1000"),
            "extraction_sample =",
            "unknown field `extraction_sample`",
        ),
        (
            edited("allow_waiver = false", "allow_waiver = \"no\""),
            "allow_waiver",
            "invalid type",
        ),
    ];
    for (text, needle, message) in cases {
        let (line, got) = error_of(&text);
        assert!(got.contains(message), "{got:?} should say {message:?}");
        assert_eq!(line, line_of(&text, needle), "{got}");
    }
    // A missing section is named too.
    let (_, got) = error_of(&DEFAULT_POLICY.replace("[approvals]", "[approvalz]"));
    assert!(
        got.contains("approvalz") || got.contains("missing field `approvals`"),
        "{got}"
    );
    assert!(matches!(
        Policy::load(Path::new("/nonexistent/p.toml")),
        Err(PolicyError::Io { .. })
    ));
}

#[test]
fn a_clean_audit_passes_every_rule() {
    let g = evaluate(&Policy::builtin(), &clean_report());
    assert!(g.passed, "{}", g.table());
    let rules: Vec<&str> = g.rows.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(
        rules,
        [
            "max_exact_extraction",
            "max_approximate_extraction",
            "max_infill_extraction",
            "max_regurgitated_span_tokens",
            "max_covered_share",
            "max_canary_exposure",
            "max_membership_auc",
            "max_regurgitated_secrets",
            "max_novel_secrets",
            "audit",
        ]
    );
    assert_eq!(g.policy_sha256, Policy::builtin().sha256);
}

#[test]
fn each_rule_fails_on_its_own_measure() {
    let p = Policy::builtin();
    let check = |edit: &dyn Fn(&mut AuditReport), rule: &str| {
        let mut r = clean_report();
        edit(&mut r);
        let g = evaluate(&p, &r);
        assert!(!g.passed);
        assert_eq!(failing(&g), [rule], "{}", g.table());
    };
    check(&|r| r.extraction = extraction(5, 5, 1000), "max_exact_extraction");
    check(
        &|r| r.extraction = extraction(0, 40, 1000),
        "max_approximate_extraction",
    );
    check(
        &|r| r.infilling = Some(extraction(30, 30, 1000)),
        "max_infill_extraction",
    );
    check(&|r| r.infilling = None, "max_infill_extraction");
    check(
        &|r| r.regurgitation.longest_span = 101,
        "max_regurgitated_span_tokens",
    );
    check(&|r| r.regurgitation.mean_covered_share = 0.2, "max_covered_share");
    check(&|r| r.canaries.max_exposure = 12.0, "max_canary_exposure");
    check(
        &|r| r.canaries.skipped = Some("no canaries".into()),
        "max_canary_exposure",
    );
    check(&|r| r.membership.methods[0].auc.high = 0.7, "max_membership_auc");
    check(
        &|r| r.membership.skipped = Some("no holdout".into()),
        "max_membership_auc",
    );
    check(&|r| r.secrets.regurgitated = 1, "max_regurgitated_secrets");
    check(&|r| r.secrets.novel = 21, "max_novel_secrets");
    check(&|r| r.params = AuditParams::quick(), "audit");
    check(&|r| r.params.min_tokens = 20, "audit");
}

#[test]
fn the_statistic_decides_between_estimate_and_upper_bound() {
    // 2 exact extractions in 1000: estimate 0.2%, upper bound about 0.72%; with 100 sampled, 0 hits still
    // has an upper bound of 3.7%, above the 1% threshold.
    let mut r = clean_report();
    r.extraction = extraction(0, 0, 100);
    let upper = Policy::builtin();
    assert!(failing(&evaluate(&upper, &r)).contains(&"max_exact_extraction"));
    let estimate = Policy::parse(
        &edited("statistic = \"upper\"", "statistic = \"estimate\""),
        "e.toml",
        None,
    )
    .unwrap();
    assert!(!failing(&evaluate(&estimate, &r)).contains(&"max_exact_extraction"));
}

#[test]
fn an_ar_model_has_no_infilling_rule_to_fail() {
    let mut r = clean_report();
    r.model = ModelKind::Ar;
    r.infilling = None;
    let g = evaluate(&Policy::builtin(), &r);
    assert!(g.passed, "{}", g.table());
    let row = g.rows.iter().find(|x| x.rule == "max_infill_extraction").unwrap();
    assert!(row.note.contains("not applicable"));
}

#[test]
fn any_change_to_the_policy_text_changes_its_hash() {
    let a = Policy::builtin();
    let b = Policy::parse(&format!("{DEFAULT_POLICY}\n# a comment\n"), "b.toml", None).unwrap();
    assert_ne!(a.sha256, b.sha256);
    assert_eq!(a.thresholds, b.thresholds);
}

#[test]
fn relative_paths_resolve_against_the_policy_directory() {
    let text = edited(
        "packs = []",
        "packs = [\"extra.toml\"]\ndeny_list = \"names.txt\"",
    );
    let p = Policy::parse(&text, "x", Some(Path::new("/etc/lethe"))).unwrap();
    assert_eq!(p.secret_packs, [Path::new("/etc/lethe/extra.toml")]);
    assert_eq!(p.deny_list.as_deref(), Some(Path::new("/etc/lethe/names.txt")));
}
