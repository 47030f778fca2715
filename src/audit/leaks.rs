//! Secrets and PII in what the model wrote: every generation of the audit is run through the secret rule
//! packs and the customer's deny-list ([`super::secrets`]), and each finding is looked up verbatim in the
//! training corpus. A finding the corpus holds is a *regurgitated* secret, the worst outcome an audit can
//! report; one it does not hold may be invented (or a public value the model learned elsewhere).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::report::{Evidence, Generated, SecretExample};
use super::secrets::{self, Finding, Scanner};
use super::{AuditCorpus, AuditError, Progress, Stage};

/// Characters of generation shown on each side of a finding.
const CONTEXT_CHARS: usize = 48;

/// Findings of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleCount {
    pub rule: String,
    pub category: String,
    pub severity: String,
    pub findings: usize,
    pub regurgitated: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretsReport {
    /// Generations scanned.
    pub texts: usize,
    /// Rules applied (deny-list entries count as one rule).
    pub rules: usize,
    pub findings: usize,
    /// Findings whose value occurs verbatim in the training corpus.
    pub regurgitated: usize,
    pub novel: usize,
    pub by_rule: Vec<RuleCount>,
}

fn char_floor(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn char_ceil(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

pub fn run(
    corpus: &AuditCorpus<'_>,
    scanner: &Scanner,
    evidence: &mut Evidence,
    progress: Progress<'_>,
) -> Result<SecretsReport, AuditError> {
    let texts = std::mem::take(&mut evidence.generated);
    let (report, examples) = scan(corpus, scanner, &texts, progress)?;
    evidence.secrets = examples;
    evidence.generated = texts;
    Ok(report)
}

/// Scans `texts` and looks every finding up in the corpus; every finding becomes evidence.
pub fn scan(
    corpus: &AuditCorpus<'_>,
    scanner: &Scanner,
    texts: &[Generated],
    progress: Progress<'_>,
) -> Result<(SecretsReport, Vec<SecretExample>), AuditError> {
    let mut hits: Vec<(usize, Finding)> = Vec::new();
    for (i, g) in texts.iter().enumerate() {
        if i % 64 == 0 {
            progress(Stage::Secrets, i, texts.len());
        }
        hits.extend(scanner.scan(&g.text).into_iter().map(|f| (i, f)));
    }
    progress(Stage::Secrets, texts.len(), texts.len());
    // The same value at the same place found by several rules (a specific rule and the generic
    // assignment rule) is one finding: the most severe rule's.
    hits.sort_by(|(i, a), (j, b)| {
        (i, a.start, a.end)
            .cmp(&(j, b.start, b.end))
            .then(b.severity.cmp(&a.severity))
    });
    hits.dedup_by(|later, kept| {
        later.0 == kept.0 && later.1.start == kept.1.start && later.1.end == kept.1.end
    });
    let findings: Vec<Finding> = hits.iter().map(|(_, f)| f.clone()).collect();
    let mut located: HashMap<String, (u32, usize)> = HashMap::new();
    if !findings.is_empty() {
        let docs: Vec<String> = corpus
            .train
            .iter()
            .map(|(_, t)| corpus.tokenizer.decode(t))
            .collect::<Result<_, _>>()?;
        let found = secrets::occurrences_in(&docs, &findings).map_err(|e| AuditError::Param {
            name: "secrets",
            why: format!("cannot search the corpus for the findings: {e}"),
        })?;
        for o in found {
            if let Some(hit) = o.first {
                located.insert(o.secret, (corpus.train[hit.doc].0, hit.offset));
            }
        }
    }
    let mut by_rule: BTreeMap<String, RuleCount> = BTreeMap::new();
    let mut examples = Vec::with_capacity(hits.len());
    for (i, f) in &hits {
        let at = located.get(&f.secret).copied();
        let text = &texts[*i].text;
        let from = char_floor(text, f.start.saturating_sub(CONTEXT_CHARS));
        let to = char_ceil(text, (f.end + CONTEXT_CHARS).min(text.len()));
        let entry = by_rule.entry(f.rule.clone()).or_insert_with(|| RuleCount {
            rule: f.rule.clone(),
            category: f.category.as_str().to_string(),
            severity: f.severity.as_str().to_string(),
            findings: 0,
            regurgitated: 0,
        });
        entry.findings += 1;
        entry.regurgitated += usize::from(at.is_some());
        examples.push(SecretExample {
            rule: f.rule.clone(),
            category: f.category.as_str().to_string(),
            severity: f.severity.as_str().to_string(),
            source: texts[*i].source.clone(),
            secret: f.secret.clone(),
            before: text[from..f.start].to_string(),
            after: text[f.end..to].to_string(),
            corpus_doc: at.map(|(d, _)| d),
            corpus_offset: at.map(|(_, o)| o),
        });
    }
    // Regurgitated findings first, then by severity.
    examples.sort_by(|a, b| {
        b.corpus_doc
            .is_some()
            .cmp(&a.corpus_doc.is_some())
            .then(severity_rank(&b.severity).cmp(&severity_rank(&a.severity)))
    });
    let regurgitated = examples.iter().filter(|e| e.corpus_doc.is_some()).count();
    Ok((
        SecretsReport {
            texts: texts.len(),
            rules: scanner.rule_ids().len(),
            findings: hits.len(),
            regurgitated,
            novel: hits.len() - regurgitated,
            by_rule: by_rule.into_values().collect(),
        },
        examples,
    ))
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 3,
        "high" => 2,
        "medium" => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_bounds_respect_characters() {
        let t = "ééé";
        assert_eq!(char_floor(t, 3), 2);
        assert_eq!(char_ceil(t, 3), 4);
    }
}
