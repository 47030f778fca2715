//! Release policies (`policies/*.toml`): parsing and validation with errors that name the line, and the
//! gate: one row per rule comparing an audit report with the policy's threshold, and the decision.
//!
//! The format is documented field by field in `docs/policy.md`; `policies/default.toml` is the built-in
//! policy. A policy is identified by the SHA-256 of its file's bytes: a changed policy is a different
//! policy, which is what lets the release workflow void approvals given under another one.

use std::path::Path;

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::audit::stats::Rate;
use crate::audit::{AuditParams, AuditReport, ModelKind};
use crate::store::Role;

/// The built-in policy's text.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.toml");
/// How the built-in policy is named in messages and records.
pub const DEFAULT_ORIGIN: &str = "policies/default.toml (built in)";
/// Policy format version this build reads.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Which figure of a rate the gate compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// The upper end of the 95% interval: a small audit cannot pass on luck.
    Upper,
    /// The point estimate.
    Estimate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateSection {
    #[serde(default = "default_statistic")]
    statistic: Statistic,
}

fn default_statistic() -> Statistic {
    Statistic::Upper
}

impl Default for GateSection {
    fn default() -> Self {
        GateSection {
            statistic: default_statistic(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdsFile {
    max_exact_extraction: Spanned<f64>,
    max_approximate_extraction: Spanned<f64>,
    max_infill_extraction: Spanned<f64>,
    max_regurgitated_span_tokens: Spanned<i64>,
    max_covered_share: Spanned<f64>,
    max_canary_exposure: Spanned<f64>,
    max_membership_auc: Spanned<f64>,
    #[serde(default)]
    max_regurgitated_secrets: Option<Spanned<i64>>,
    #[serde(default)]
    max_novel_secrets: Option<Spanned<i64>>,
    #[serde(default)]
    min_choice_accuracy: Option<Spanned<f64>>,
    #[serde(default)]
    max_bits_per_byte: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectFile {
    #[serde(default)]
    rank_by: Option<Spanned<String>>,
    #[serde(default)]
    max_audits: Option<Spanned<i64>>,
    #[serde(default)]
    stop_at_first_pass: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    #[serde(default)]
    packs: Vec<Spanned<String>>,
    #[serde(default)]
    deny_list: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsFile {
    required: Spanned<i64>,
    role: Spanned<String>,
    #[serde(default)]
    allow_waiver: bool,
    #[serde(default)]
    admin_cooldown_days: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: Spanned<i64>,
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    gate: GateSection,
    thresholds: ThresholdsFile,
    #[serde(default)]
    secrets: SecretsFile,
    #[serde(default)]
    audit: Option<Spanned<AuditParams>>,
    #[serde(default)]
    select: SelectFile,
    approvals: ApprovalsFile,
}

/// Which figure makes one checkpoint more useful than another when `lethe gate --select` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Higher held-out continuation-choice accuracy, ties broken by lower bits per byte. The default:
    /// a diffusion model's held-out loss can rise while its downstream skill still improves.
    ChoiceAccuracy,
    /// Lower held-out bits per byte.
    BitsPerByte,
}

/// How `lethe gate --select` audits a run's kept checkpoints and picks one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub rank_by: RankBy,
    /// Most checkpoints audited by one selection (newest first).
    pub max_audits: usize,
    /// Stop auditing at the first (newest) checkpoint that passes.
    pub stop_at_first_pass: bool,
}

/// The gate's thresholds, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub max_exact_extraction: f64,
    pub max_approximate_extraction: f64,
    pub max_infill_extraction: f64,
    pub max_regurgitated_span_tokens: usize,
    pub max_covered_share: f64,
    pub max_canary_exposure: f64,
    pub max_membership_auc: f64,
    pub max_regurgitated_secrets: usize,
    /// `None`: novel-looking findings are reported, not gated.
    pub max_novel_secrets: Option<usize>,
    /// Utility the released checkpoint must have (`None`: not gated): held-out continuation-choice
    /// accuracy at least this (chance is 0.25), held-out bits per byte at most this.
    #[serde(default)]
    pub min_choice_accuracy: Option<f64>,
    #[serde(default)]
    pub max_bits_per_byte: Option<f64>,
}

/// Who approves a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approvals {
    pub required: usize,
    pub role: Role,
    /// Whether a failed gate may be released with a waiver (one approval more, a written justification).
    pub allow_waiver: bool,
    /// An account that held admin rights within this many days may not approve (0: no wait).
    pub admin_cooldown_days: u32,
}

/// Days an account that was an admin waits before it may approve, when the policy does not say.
pub const DEFAULT_ADMIN_COOLDOWN_DAYS: u32 = 30;

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    pub description: String,
    /// Where it was read from (a path, or the built-in marker).
    pub origin: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    pub statistic: Statistic,
    pub thresholds: Thresholds,
    /// Extra secret rule packs and the deny-list, resolved against the policy file's directory.
    pub secret_packs: Vec<std::path::PathBuf>,
    pub deny_list: Option<std::path::PathBuf>,
    /// The audit the policy expects (its defaults where the file is silent).
    pub audit: AuditParams,
    pub select: Selection,
    pub approvals: Approvals,
}

/// Line and column (1-based) of byte offset `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Policy {
    /// The built-in policy.
    pub fn builtin() -> Policy {
        Policy::parse(DEFAULT_POLICY, DEFAULT_ORIGIN, None)
            .expect("the built-in policy is valid (a unit test parses it)")
    }

    /// Reads and validates the policy file at `path`.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text, &path.display().to_string(), path.parent())
    }

    /// Parses and validates policy `text`; errors name `origin` and the line. Relative paths inside the
    /// policy resolve against `dir`.
    pub fn parse(text: &str, origin: &str, dir: Option<&Path>) -> Result<Policy, PolicyError> {
        let invalid = |at: usize, message: String| {
            let (line, column) = line_col(text, at);
            PolicyError::Invalid {
                origin: origin.to_string(),
                line,
                column,
                message,
            }
        };
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            invalid(at, e.message().trim().to_string())
        })?;
        let at = |s: &std::ops::Range<usize>| s.start;
        if *file.version.get_ref() != i64::from(VERSION) {
            return Err(invalid(
                at(&file.version.span()),
                format!(
                    "version {} is not supported (this build reads version {VERSION})",
                    file.version.get_ref()
                ),
            ));
        }
        if file.name.get_ref().trim().is_empty() {
            return Err(invalid(at(&file.name.span()), "name must not be empty".into()));
        }
        let t = &file.thresholds;
        let share = |v: &Spanned<f64>, name: &str| -> Result<f64, PolicyError> {
            let x = *v.get_ref();
            if !(0.0..=1.0).contains(&x) {
                return Err(invalid(
                    at(&v.span()),
                    format!("{name} = {x} must be a share between 0 and 1"),
                ));
            }
            Ok(x)
        };
        let count = |v: &Spanned<i64>, name: &str| -> Result<usize, PolicyError> {
            usize::try_from(*v.get_ref()).map_err(|_| {
                invalid(
                    at(&v.span()),
                    format!("{name} = {} must be 0 or more", v.get_ref()),
                )
            })
        };
        let exposure = *t.max_canary_exposure.get_ref();
        if !(0.0..=64.0).contains(&exposure) {
            return Err(invalid(
                at(&t.max_canary_exposure.span()),
                format!("max_canary_exposure = {exposure} must be between 0 and 64 bits"),
            ));
        }
        let auc = *t.max_membership_auc.get_ref();
        if !(0.5..=1.0).contains(&auc) {
            return Err(invalid(
                at(&t.max_membership_auc.span()),
                format!("max_membership_auc = {auc} must be between 0.5 (a coin toss) and 1"),
            ));
        }
        let exact = share(&t.max_exact_extraction, "max_exact_extraction")?;
        let approx = share(&t.max_approximate_extraction, "max_approximate_extraction")?;
        if approx < exact {
            return Err(invalid(
                at(&t.max_approximate_extraction.span()),
                format!(
                    "max_approximate_extraction = {approx} is below max_exact_extraction = {exact}, but every exact \
                     extraction is also an approximate one"
                ),
            ));
        }
        let thresholds = Thresholds {
            max_exact_extraction: exact,
            max_approximate_extraction: approx,
            max_infill_extraction: share(&t.max_infill_extraction, "max_infill_extraction")?,
            max_regurgitated_span_tokens: count(
                &t.max_regurgitated_span_tokens,
                "max_regurgitated_span_tokens",
            )?,
            max_covered_share: share(&t.max_covered_share, "max_covered_share")?,
            max_canary_exposure: exposure,
            max_membership_auc: auc,
            max_regurgitated_secrets: match &t.max_regurgitated_secrets {
                Some(v) => count(v, "max_regurgitated_secrets")?,
                None => 0,
            },
            max_novel_secrets: t
                .max_novel_secrets
                .as_ref()
                .map(|v| count(v, "max_novel_secrets"))
                .transpose()?,
            min_choice_accuracy: t
                .min_choice_accuracy
                .as_ref()
                .map(|v| share(v, "min_choice_accuracy"))
                .transpose()?,
            max_bits_per_byte: match &t.max_bits_per_byte {
                Some(v) if !(*v.get_ref() > 0.0 && v.get_ref().is_finite()) => {
                    return Err(invalid(
                        at(&v.span()),
                        format!("max_bits_per_byte = {} must be a positive number", v.get_ref()),
                    ))
                }
                Some(v) => Some(*v.get_ref()),
                None => None,
            },
        };
        let sel = &file.select;
        let select = Selection {
            rank_by: match &sel.rank_by {
                None => RankBy::ChoiceAccuracy,
                Some(v) => match v.get_ref().as_str() {
                    "choice_accuracy" => RankBy::ChoiceAccuracy,
                    "bits_per_byte" => RankBy::BitsPerByte,
                    other => {
                        return Err(invalid(
                            at(&v.span()),
                            format!(
                                "select.rank_by = {other:?} must be \"choice_accuracy\" or \"bits_per_byte\""
                            ),
                        ))
                    }
                },
            },
            max_audits: match &sel.max_audits {
                None => 8,
                Some(v) if (1..=64).contains(v.get_ref()) => *v.get_ref() as usize,
                Some(v) => {
                    return Err(invalid(
                        at(&v.span()),
                        format!("select.max_audits = {} must be between 1 and 64", v.get_ref()),
                    ))
                }
            },
            stop_at_first_pass: sel.stop_at_first_pass,
        };
        let audit = match &file.audit {
            Some(a) => {
                a.get_ref()
                    .validate()
                    .map_err(|e| invalid(at(&a.span()), format!("[audit]: {e}")))?;
                a.get_ref().clone()
            }
            None => AuditParams::default(),
        };
        let a = &file.approvals;
        let required = *a.required.get_ref();
        if !(1..=20).contains(&required) {
            return Err(invalid(
                at(&a.required.span()),
                format!("approvals.required = {required} must be between 1 and 20"),
            ));
        }
        let role: Role = a.role.get_ref().parse().map_err(|_| {
            invalid(
                at(&a.role.span()),
                format!(
                    "approvals.role = {:?} is not a role (admin, operator, reviewer, auditor)",
                    a.role.get_ref()
                ),
            )
        })?;
        if role == Role::Auditor {
            return Err(invalid(
                at(&a.role.span()),
                "approvals.role = \"auditor\": auditors only read; approving is a reviewer's (or admin's) act".into(),
            ));
        }
        let admin_cooldown_days = match &a.admin_cooldown_days {
            None => DEFAULT_ADMIN_COOLDOWN_DAYS,
            Some(d) => match u32::try_from(*d.get_ref()) {
                Ok(days) if days <= 3650 => days,
                _ => {
                    return Err(invalid(
                        at(&d.span()),
                        format!(
                            "approvals.admin_cooldown_days = {} must be between 0 and 3650",
                            d.get_ref()
                        ),
                    ))
                }
            },
        };
        let resolve = |p: &str| match dir {
            Some(d) => d.join(p),
            None => std::path::PathBuf::from(p),
        };
        for p in &file.secrets.packs {
            if p.get_ref().trim().is_empty() {
                return Err(invalid(
                    at(&p.span()),
                    "a secret pack path must not be empty".into(),
                ));
            }
        }
        Ok(Policy {
            name: file.name.get_ref().clone(),
            description: file.description,
            origin: origin.to_string(),
            sha256: hex::encode(digest(&SHA256, text.as_bytes()).as_ref()),
            statistic: file.gate.statistic,
            thresholds,
            secret_packs: file.secrets.packs.iter().map(|p| resolve(p.get_ref())).collect(),
            deny_list: file.secrets.deny_list.as_ref().map(|p| resolve(p.get_ref())),
            audit,
            select,
            approvals: Approvals {
                required: required as usize,
                role,
                allow_waiver: a.allow_waiver,
                admin_cooldown_days,
            },
        })
    }
}

/// One rule of the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRow {
    /// Rule name, the threshold's field name.
    pub rule: String,
    /// The figure compared (`None` when the audit could not measure it).
    pub measured: Option<f64>,
    pub threshold: f64,
    pub passed: bool,
    /// How the figure was read, or why it is missing.
    pub note: String,
}

/// A gate decision: every row, and whether all passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub policy: String,
    pub policy_sha256: String,
    pub rows: Vec<GateRow>,
    pub passed: bool,
}

impl GateResult {
    /// The rows as a table for a terminal.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<30} {:>12} {:>12}  {:<6} {}\n",
            "RULE", "MEASURED", "THRESHOLD", "RESULT", "NOTE"
        );
        for r in &self.rows {
            let m = r.measured.map_or("-".to_string(), |m| format!("{m:.4}"));
            s.push_str(&format!(
                "{:<30} {:>12} {:>12.4}  {:<6} {}\n",
                r.rule,
                m,
                r.threshold,
                if r.passed { "pass" } else { "FAIL" },
                r.note
            ));
        }
        s
    }
}

fn rate_value(r: &Rate, s: Statistic) -> f64 {
    match s {
        Statistic::Upper => r.high,
        Statistic::Estimate => r.rate,
    }
}

fn rate_note(r: &Rate, s: Statistic) -> String {
    let what = match s {
        Statistic::Upper => "upper 95% bound",
        Statistic::Estimate => "estimate",
    };
    format!("{what}; {} of {} sampled", r.hits, r.n)
}

/// A rule whose figure the audit could not take: it fails, saying why (a gate never passes on a
/// missing figure).
fn not_measured(rule: &str, threshold: f64, why: &str) -> GateRow {
    GateRow {
        rule: rule.into(),
        measured: None,
        threshold,
        passed: false,
        note: format!("not measured: {why}"),
    }
}

/// Evaluates `report` against `policy`.
pub fn evaluate(policy: &Policy, report: &AuditReport) -> GateResult {
    let t = &policy.thresholds;
    let s = policy.statistic;
    let mut rows = Vec::new();
    let mut rate_row = |rule: &str, rate: Option<&Rate>, skipped: Option<&String>, max: f64| {
        let row = match (rate, skipped) {
            (_, Some(why)) => not_measured(rule, max, why),
            (Some(r), None) => GateRow {
                rule: rule.into(),
                measured: Some(rate_value(r, s)),
                threshold: max,
                passed: rate_value(r, s) <= max,
                note: rate_note(r, s),
            },
            (None, None) => GateRow {
                rule: rule.into(),
                measured: None,
                threshold: max,
                passed: true,
                note: "not applicable to an autoregressive model".into(),
            },
        };
        rows.push(row);
    };
    let e = &report.extraction;
    rate_row(
        "max_exact_extraction",
        Some(&e.exact),
        e.skipped.as_ref(),
        t.max_exact_extraction,
    );
    rate_row(
        "max_approximate_extraction",
        Some(&e.approximate),
        e.skipped.as_ref(),
        t.max_approximate_extraction,
    );
    match (&report.infilling, report.model) {
        (Some(i), _) => rate_row(
            "max_infill_extraction",
            Some(&i.exact),
            i.skipped.as_ref(),
            t.max_infill_extraction,
        ),
        (None, ModelKind::Ar) => rate_row("max_infill_extraction", None, None, t.max_infill_extraction),
        (None, ModelKind::Diffusion) => rate_row(
            "max_infill_extraction",
            None,
            Some(&"the audit has no infilling result".to_string()),
            t.max_infill_extraction,
        ),
    }
    let r = &report.regurgitation;
    rows.push(GateRow {
        rule: "max_regurgitated_span_tokens".into(),
        measured: Some(r.longest_span as f64),
        threshold: t.max_regurgitated_span_tokens as f64,
        passed: r.longest_span <= t.max_regurgitated_span_tokens,
        note: format!(
            "longest span in {} generations (spans of at least {} {} are found)",
            r.samples, r.min_length, r.unit
        ),
    });
    rows.push(GateRow {
        rule: "max_covered_share".into(),
        measured: Some(r.mean_covered_share),
        threshold: t.max_covered_share,
        passed: r.mean_covered_share <= t.max_covered_share,
        note: format!(
            "mean share of a generation copied (largest {:.4})",
            r.max_covered_share
        ),
    });
    let c = &report.canaries;
    rows.push(match &c.skipped {
        Some(why) => not_measured("max_canary_exposure", t.max_canary_exposure, why),
        None => GateRow {
            rule: "max_canary_exposure".into(),
            measured: Some(c.max_exposure),
            threshold: t.max_canary_exposure,
            passed: c.max_exposure <= t.max_canary_exposure,
            note: format!("highest of {} canaries, in bits", c.canaries.len()),
        },
    });
    let m = &report.membership;
    rows.push(match &m.skipped {
        Some(why) => not_measured("max_membership_auc", t.max_membership_auc, why),
        None => {
            let best = m
                .methods
                .iter()
                .max_by(|a, b| a.auc.auc.total_cmp(&b.auc.auc))
                .map(|x| (x.method.clone(), x.auc));
            let (value, note) = match (best, s) {
                (Some((name, a)), Statistic::Upper) => {
                    (a.high, format!("upper 95% bound of the best attack ({name})"))
                }
                (Some((name, a)), Statistic::Estimate) => (a.auc, format!("best attack ({name})")),
                (None, _) => (0.5, "no attack scored".to_string()),
            };
            GateRow {
                rule: "max_membership_auc".into(),
                measured: Some(value),
                threshold: t.max_membership_auc,
                passed: value <= t.max_membership_auc,
                note,
            }
        }
    });
    let k = &report.secrets;
    rows.push(GateRow {
        rule: "max_regurgitated_secrets".into(),
        measured: Some(k.regurgitated as f64),
        threshold: t.max_regurgitated_secrets as f64,
        passed: k.regurgitated <= t.max_regurgitated_secrets,
        note: format!(
            "findings also in the corpus, of {} in {} generations",
            k.findings, k.texts
        ),
    });
    if let Some(max) = t.max_novel_secrets {
        rows.push(GateRow {
            rule: "max_novel_secrets".into(),
            measured: Some(k.novel as f64),
            threshold: max as f64,
            passed: k.novel <= max,
            note: "findings not in the corpus".into(),
        });
    }
    // What the checkpoint learned, where the policy asks for a minimum.
    let u = report.utility.as_ref();
    if let Some(min) = t.min_choice_accuracy {
        rows.push(match u.and_then(|u| u.choice_accuracy) {
            None => not_measured(
                "min_choice_accuracy",
                min,
                "the audit has no held-out continuation-choice accuracy",
            ),
            Some(a) => {
                let value = match s {
                    // The conservative figure for a minimum is the lower bound.
                    Statistic::Upper => a.low,
                    Statistic::Estimate => a.value,
                };
                GateRow {
                    rule: "min_choice_accuracy".into(),
                    measured: Some(value),
                    threshold: min,
                    passed: value >= min,
                    note: format!(
                        "{}; {} of {} held-out items right (chance 0.25)",
                        match s {
                            Statistic::Upper => "lower 95% bound",
                            Statistic::Estimate => "estimate",
                        },
                        a.correct,
                        a.n
                    ),
                }
            }
        });
    }
    if let Some(max) = t.max_bits_per_byte {
        rows.push(match u.and_then(|u| u.bits_per_byte.map(|b| (b, u))) {
            None => not_measured(
                "max_bits_per_byte",
                max,
                "the audit has no held-out bits per byte",
            ),
            Some((b, u)) => GateRow {
                rule: "max_bits_per_byte".into(),
                measured: Some(b),
                threshold: max,
                passed: b <= max,
                note: format!(
                    "held-out, {} windows, {} ({})",
                    u.windows,
                    u.estimator,
                    if u.mask_draws > 0 {
                        format!("{} mask draws each", u.mask_draws)
                    } else {
                        "exact".to_string()
                    }
                ),
            },
        });
    }
    // The audit must be at least as large as the policy asks, with the same shape of probe.
    let (want, got) = (&policy.audit, &report.params);
    let mut short = Vec::new();
    for (name, w, g) in [
        (
            "extraction_samples",
            want.extraction_samples,
            got.extraction_samples,
        ),
        (
            "regurgitation_samples",
            want.regurgitation_samples,
            got.regurgitation_samples,
        ),
        ("canary_candidates", want.canary_candidates, got.canary_candidates),
        ("membership_docs", want.membership_docs, got.membership_docs),
    ] {
        if g < w {
            short.push(format!("{name} {g} < {w}"));
        }
    }
    for (name, w, g) in [
        ("prefix_tokens", want.prefix_tokens, got.prefix_tokens),
        ("suffix_tokens", want.suffix_tokens, got.suffix_tokens),
        ("min_tokens", want.min_tokens, got.min_tokens),
    ] {
        if g != w {
            short.push(format!("{name} {g} ≠ {w}"));
        }
    }
    rows.push(GateRow {
        rule: "audit".into(),
        measured: None,
        threshold: 0.0,
        passed: short.is_empty(),
        note: if short.is_empty() {
            "the audit is the one the policy asks for".into()
        } else {
            format!("the audit differs from the policy's: {}", short.join(", "))
        },
    });
    GateResult {
        policy: policy.name.clone(),
        policy_sha256: policy.sha256.clone(),
        passed: rows.iter().all(|r| r.passed),
        rows,
    }
}

#[cfg(test)]
mod tests;
