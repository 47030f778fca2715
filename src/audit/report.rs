//! What an audit produces: the [`AuditReport`] (figures only, safe to store in the database and show to
//! anyone with access to the run: no corpus text, no secret) and the [`Evidence`] (the texts a reviewer
//! needs to judge the figures: generations beside their corpus source, findings with their values),
//! which the caller seals with the run's data key and shows with secrets masked.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::exposure::CanaryReport;
use super::extraction::ExtractionReport;
use super::leaks::SecretsReport;
use super::membership::MembershipReport;
use super::regurgitation::RegurgitationReport;
use super::secrets::mask;
use super::{AuditParams, ModelKind};

/// Version tag of the report's JSON form.
pub const REPORT_FORMAT: &str = "lethe-audit-report-v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub format: String,
    pub model: ModelKind,
    pub params: AuditParams,
    pub extraction: ExtractionReport,
    /// Diffusion models only.
    pub infilling: Option<ExtractionReport>,
    pub regurgitation: RegurgitationReport,
    pub canaries: CanaryReport,
    pub secrets: SecretsReport,
    pub membership: MembershipReport,
    /// What the audited checkpoint learned (held-out bits per byte, continuation choice), so every
    /// memorization figure stands beside it. `None` in reports made before it was measured.
    #[serde(default)]
    pub utility: Option<crate::eval::Utility>,
    /// Wall-clock seconds of each stage.
    #[serde(default)]
    pub seconds: std::collections::BTreeMap<String, f64>,
}

/// A probed training sequence and what the model made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractionExample {
    pub doc: u32,
    /// Token offset of the sequence in its document.
    pub offset: usize,
    pub duplicates: usize,
    /// Text given to the model before the target (the prefix, or the text before the hole).
    pub context_before: String,
    /// Infilling: the text given after the hole.
    pub context_after: Option<String>,
    pub truth: String,
    pub generated: String,
    /// Normalized token edit distance.
    pub edit: f64,
    pub exact: bool,
}

/// One span of a generation found in the corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvidence {
    /// Token offset in the generation.
    pub gen_start: usize,
    pub len: usize,
    pub doc: u32,
    /// Token offset in the document.
    pub doc_offset: usize,
    pub text: String,
    /// Corpus text just before and after the span in its document.
    pub source_before: String,
    pub source_after: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegurgitationExample {
    /// Policy prompt the generation started from; empty when unprompted.
    pub prompt: String,
    pub text: String,
    pub tokens: usize,
    pub longest: usize,
    pub covered_share: f64,
    pub spans: Vec<SpanEvidence>,
}

/// A secret or PII finding in a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretExample {
    pub rule: String,
    pub category: String,
    pub severity: String,
    /// Which generation (`regurgitation sample 3`, `extraction 17`, …).
    pub source: String,
    /// The value found. Shown masked unless an admin unmasks it.
    pub secret: String,
    /// Generation text around the finding.
    pub before: String,
    pub after: String,
    /// Where the corpus holds the same value, when it does (document, byte offset in its text).
    pub corpus_doc: Option<u32>,
    pub corpus_offset: Option<usize>,
}

/// A text the model wrote during the audit (scanned for secrets; not kept in the sealed evidence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    pub source: String,
    pub text: String,
}

/// The reviewer's evidence. Holds corpus text and secret values: sealed at rest, masked when shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub extraction: Vec<ExtractionExample>,
    pub infilling: Vec<ExtractionExample>,
    pub regurgitation: Vec<RegurgitationExample>,
    pub secrets: Vec<SecretExample>,
    #[serde(skip)]
    pub generated: Vec<Generated>,
}

impl Evidence {
    /// The evidence with every secret value masked (first and last two characters kept), in the
    /// findings and wherever the value appears in the texts shown beside them.
    pub fn masked(&self) -> Evidence {
        let mut values: Vec<&str> = self.secrets.iter().map(|s| s.secret.as_str()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        let hide = |text: &str| -> String {
            let mut out = text.to_string();
            for v in &values {
                if !v.is_empty() && out.contains(v) {
                    out = out.replace(v, &mask(v));
                }
            }
            out
        };
        let ex = |e: &ExtractionExample| ExtractionExample {
            context_before: hide(&e.context_before),
            context_after: e.context_after.as_deref().map(hide),
            truth: hide(&e.truth),
            generated: hide(&e.generated),
            ..e.clone()
        };
        Evidence {
            extraction: self.extraction.iter().map(ex).collect(),
            infilling: self.infilling.iter().map(ex).collect(),
            regurgitation: self
                .regurgitation
                .iter()
                .map(|r| RegurgitationExample {
                    text: hide(&r.text),
                    spans: r
                        .spans
                        .iter()
                        .map(|s| SpanEvidence {
                            text: hide(&s.text),
                            source_before: hide(&s.source_before),
                            source_after: hide(&s.source_after),
                            ..s.clone()
                        })
                        .collect(),
                    ..r.clone()
                })
                .collect(),
            secrets: self
                .secrets
                .iter()
                .map(|s| SecretExample {
                    secret: mask(&s.secret),
                    before: hide(&s.before),
                    after: hide(&s.after),
                    ..s.clone()
                })
                .collect(),
            generated: Vec::new(),
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

impl AuditReport {
    /// A few lines for a terminal: the headline figure of each audit.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        match &self.utility {
            Some(u) => {
                let _ = writeln!(
                    s,
                    "{:<14} held-out bits per byte {} ({}), continuation choice {}",
                    "utility",
                    u.bits_per_byte.map_or("n/a".into(), |b| format!("{b:.4}")),
                    if u.mask_draws > 0 {
                        "ELBO upper bound"
                    } else {
                        "exact"
                    },
                    u.choice_accuracy.map_or("n/a".into(), |a| format!(
                        "{} [{}, {}] of {} items (chance 25%)",
                        pct(a.value),
                        pct(a.low),
                        pct(a.high),
                        a.n
                    ))
                );
            }
            None => {
                let _ = writeln!(s, "{:<14} not measured", "utility");
            }
        }
        let rate = |r: &super::stats::Rate| format!("{} [{}, {}]", pct(r.rate), pct(r.low), pct(r.high));
        let ext = |name: &str, e: &ExtractionReport, s: &mut String| {
            if let Some(why) = &e.skipped {
                let _ = writeln!(s, "{name:<14} skipped: {why}");
                return;
            }
            let _ = writeln!(
                s,
                "{name:<14} exact {}  approximate {}  ({} sequences, {}+{} tokens, mean edit {:.2})",
                rate(&e.exact),
                rate(&e.approximate),
                e.samples,
                e.context_tokens,
                e.target_tokens,
                e.mean_edit
            );
        };
        ext("extraction", &self.extraction, &mut s);
        if let Some(i) = &self.infilling {
            ext("infilling", i, &mut s);
        }
        let r = &self.regurgitation;
        let _ = writeln!(
            s,
            "regurgitation  {} of {} samples hold a corpus span of ≥{} {}; longest {}, mean covered {}",
            r.with_span.hits,
            r.samples,
            r.min_length,
            r.unit,
            r.longest_span,
            pct(r.mean_covered_share)
        );
        let c = &self.canaries;
        match &c.skipped {
            Some(why) => {
                let _ = writeln!(s, "canaries       skipped: {why}");
            }
            None => {
                let by: Vec<String> = c
                    .by_repeats
                    .iter()
                    .map(|b| format!("×{}: {:.1}", b.repeats, b.mean_exposure))
                    .collect();
                let _ = writeln!(
                    s,
                    "canaries       max exposure {:.1} of {:.1} bits; mean by repeats {}",
                    c.max_exposure,
                    c.space_bits,
                    by.join(", ")
                );
            }
        }
        let k = &self.secrets;
        let _ = writeln!(
            s,
            "secrets        {} findings in {} generations ({} regurgitated from the corpus, {} novel)",
            k.findings, k.texts, k.regurgitated, k.novel
        );
        let m = &self.membership;
        match &m.skipped {
            Some(why) => {
                let _ = writeln!(s, "membership     skipped: {why}");
            }
            None => {
                let by: Vec<String> = m
                    .methods
                    .iter()
                    .map(|x| {
                        format!(
                            "{} {:.3} [{:.3}, {:.3}]",
                            x.method, x.auc.auc, x.auc.low, x.auc.high
                        )
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "membership     AUC {} ({} members, {} non-members)",
                    by.join("; "),
                    m.members,
                    m.non_members
                );
            }
        }
        s
    }
}
