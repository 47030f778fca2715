//! Secrets and PII scanning of model generations.
//!
//! This module owns everything between "a model produced this text" and "these
//! exact byte spans look like a credential or personal data":
//!
//! * **Rule packs** ([`RulePack`]): gitleaks-like TOML files under
//!   `policies/secrets/*.toml`, parsed and validated with errors that name the
//!   file and line ([`RuleError`]). The default pack ships in the binary
//!   ([`RulePack::builtin`]).
//! * **The customer deny-list** ([`DenyList`]): literal strings (names, code
//!   names) matched case-insensitively as whole words.
//! * **Scanning** ([`Scanner::scan`]): keyword prefilter, regex, validator,
//!   entropy and allowlist checks, producing [`Finding`]s with the exact secret.
//! * **Corpus occurrences** ([`occurrences_in`]): whether each distinct secret
//!   also occurs, literally, in the training corpus. A finding that does is a
//!   regurgitated secret; scoring it (much worse than a novel-looking one) is
//!   the caller's job.
//! * **Reviewer evidence** ([`mask`]): secrets are never shown in clear.
//!   [`Finding`] and [`Occurrence`] also mask the secret in their `Debug`
//!   output so that logs do not leak it; their serialized form carries the
//!   clear value because the caller needs it for the corpus check.
//!
//! # Rule-pack format
//!
//! A pack is one TOML document (also documented in `docs/secret-rules.md`):
//!
//! ```toml
//! id = "lethe-default"              # required: pack id (non-empty)
//! description = "..."               # optional
//!
//! [[rules]]
//! id = "aws-access-key-id"          # required: [A-Za-z0-9][A-Za-z0-9._-]*,
//!                                   #   unique across all packs of a Scanner;
//!                                   #   "deny-list" is reserved
//! description = "AWS access key id" # optional
//! category = "secret"               # required: secret | pii
//! severity = "high"                 # required: low | medium | high | critical
//! regex = '''\bAKIA[A-Z2-7]{16}\b'''  # required: Rust `regex` syntax; must not
//!                                   #   match the empty string
//! secret_group = 1                  # optional: capture group index (0 = whole
//!                                   #   match, the default) or group name
//! keywords = ["akia"]               # optional: non-empty list of non-empty
//!                                   #   ASCII strings, matched ASCII
//!                                   #   case-insensitively anywhere in the text
//! entropy = 3.0                     # optional: minimum Shannon entropy of the
//!                                   #   secret in bits per character (>= 0)
//! validate = "luhn"                 # optional: luhn | iban
//! [rules.allowlist]                 # optional, this rule only
//! regexes = ['''^AKIAIOSFODNN7''']  # secret matching any of these is ignored
//! stopwords = ["example"]           # secret containing any of these
//!                                   #   (case-insensitive) is ignored
//!
//! [allowlist]                       # optional, applies to every rule of the pack
//! regexes = []
//! stopwords = []
//! ```
//!
//! Unknown keys, wrong types, duplicate rule ids, invalid regexes, a
//! `secret_group` the regex does not have, a negative or non-finite entropy, an
//! unknown category, severity or validator, empty keyword lists, non-ASCII or
//! empty keywords and empty stopwords are rejected with
//! `file:line:column: message`.
//!
//! # Scanning semantics
//!
//! For each rule whose keywords occur in the text (or that has none), the
//! regex is searched left to right; after a match the search resumes at the
//! end of the *secret* (not of the whole match), so boundary characters that a
//! regex consumes around the secret do not hide an adjacent finding. A
//! candidate secret becomes a finding when it is non-empty, passes the
//! validator, reaches the minimum entropy, and matches neither the rule's nor
//! the pack's allowlist. Findings are sorted by `(start, end, rule)`; the same
//! span reported by the same rule appears once, overlapping findings of
//! different rules are all kept.
//!
//! Keywords are a prefilter only: one Aho-Corasick automaton over all rules'
//! keywords decides which rules run. A rule author must make keywords
//! necessary (every match of the regex contains a keyword); the default pack
//! is checked for this by a test that compares against a scanner without the
//! prefilter. Because `(?i)` in a regex also folds U+212A KELVIN SIGN to `k`
//! and U+017F LATIN SMALL LETTER LONG S to `s`, a text containing either
//! character is scanned with every rule.
//!
//! # Deny-list format
//!
//! Plain UTF-8 text, one literal per line; surrounding whitespace is trimmed,
//! blank lines and lines starting with `#` are ignored (there are no inline
//! comments: `#` elsewhere is part of the literal). Control characters are
//! rejected. Literals match case-insensitively (Unicode simple lowercase per
//! character, final sigma folded to sigma) as whole words: the character
//! before and the character after a match must not be alphanumeric. Among
//! whole-word matches the leftmost-longest non-overlapping ones are reported,
//! with rule id `deny-list`, category `denylist`, severity `high`; the
//! finding's secret is the text as written in the generation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Rule id of findings produced by the customer deny-list.
pub const DENY_LIST_RULE_ID: &str = "deny-list";

/// Origin reported for the built-in pack.
pub const BUILTIN_ORIGIN: &str = "builtin:policies/secrets/default.toml";

const BUILTIN_PACK: &str = include_str!("../../policies/secrets/default.toml");

/// Maximum compiled size of one rule regex (bytes).
const REGEX_SIZE_LIMIT: usize = 16 * 1024 * 1024;

// ------------------------------------------------------------------ errors

/// Error loading or validating a rule pack or deny-list, or building a
/// [`Scanner`].
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{origin}: cannot read: {source}")]
    Io {
        /// Path of the file.
        origin: String,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The content is invalid; `line` and `column` are 1-based.
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        /// File path (or the origin given to `parse`).
        origin: String,
        /// 1-based line of the offending key, value or table.
        line: usize,
        /// 1-based column (in characters) on that line.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// An Aho-Corasick automaton could not be built (size limits).
    #[error("cannot build the {what} automaton: {source}")]
    Automaton {
        /// Which automaton ("keyword", "deny-list").
        what: &'static str,
        /// Underlying error.
        #[source]
        source: aho_corasick::BuildError,
    },
}

impl RuleError {
    /// The file (origin) the error is about, if any.
    pub fn origin(&self) -> Option<&str> {
        match self {
            RuleError::Io { origin, .. } | RuleError::Invalid { origin, .. } => Some(origin),
            RuleError::Automaton { .. } => None,
        }
    }

    /// The 1-based line the error points at, if it points into a file.
    pub fn line(&self) -> Option<usize> {
        match self {
            RuleError::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }

    fn at(origin: &str, text: &str, offset: usize, message: impl Into<String>) -> RuleError {
        let (line, column) = line_column(text, offset);
        RuleError::Invalid {
            origin: origin.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// 1-based line and character column of a byte offset (clamped to the text).
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

// ------------------------------------------------------------ enumerations

/// What kind of data a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Credential material: keys, tokens, passwords.
    Secret,
    /// Personal data: emails, phone numbers, card numbers, IBANs, SSNs.
    Pii,
    /// A literal from the customer's deny-list.
    Denylist,
}

impl Category {
    /// The lowercase name used in rule packs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Pii => "pii",
            Category::Denylist => "denylist",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a finding is for a reviewer, lowest first (ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; rarely harmful alone.
    Low,
    /// Personal data or a heuristic credential match.
    Medium,
    /// A specific credential format or a sensitive identifier.
    High,
    /// Direct access material (private keys, cloud secrets, payment data).
    Critical,
}

impl Severity {
    /// The lowercase name used in rule packs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Extra check a candidate secret must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validator {
    Luhn,
    Iban,
}

impl Validator {
    fn check(self, secret: &str) -> bool {
        match self {
            Validator::Luhn => luhn_valid(secret),
            Validator::Iban => iban_valid(secret),
        }
    }
}

// ---------------------------------------------------------------- raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    id: Spanned<String>,
    description: Option<String>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    allowlist: Option<RawAllowlist>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    description: Option<String>,
    category: Spanned<String>,
    severity: Spanned<String>,
    regex: Spanned<String>,
    secret_group: Option<Spanned<RawGroup>>,
    keywords: Option<Spanned<Vec<Spanned<String>>>>,
    entropy: Option<Spanned<f64>>,
    validate: Option<Spanned<String>>,
    allowlist: Option<RawAllowlist>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGroup {
    Index(i64),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllowlist {
    #[serde(default)]
    regexes: Vec<Spanned<String>>,
    #[serde(default)]
    stopwords: Vec<Spanned<String>>,
}

// ---------------------------------------------------------------- compiled

#[derive(Debug, Clone, Default)]
struct Allowlist {
    regexes: Vec<Regex>,
    /// Lowercased.
    stopwords: Vec<String>,
}

impl Allowlist {
    fn allows(&self, secret: &str) -> bool {
        if self.regexes.iter().any(|re| re.is_match(secret)) {
            return true;
        }
        if self.stopwords.is_empty() {
            return false;
        }
        let lower = secret.to_lowercase();
        self.stopwords.iter().any(|w| lower.contains(w.as_str()))
    }

    fn extend(&mut self, other: &Allowlist) {
        self.regexes.extend(other.regexes.iter().cloned());
        self.stopwords.extend(other.stopwords.iter().cloned());
    }
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    description: String,
    category: Category,
    severity: Severity,
    regex: Regex,
    group: usize,
    /// ASCII-lowercased, non-empty strings; empty: the rule always runs.
    keywords: Vec<String>,
    min_entropy: Option<f64>,
    validator: Option<Validator>,
    allowlist: Allowlist,
    /// 1-based line of the rule's `id` value in its pack.
    line: usize,
}

impl Rule {
    /// Appends this rule's findings in `text` to `out`.
    fn scan_into(&self, text: &str, out: &mut Vec<Finding>) {
        let mut locs = self.regex.capture_locations();
        let mut pos = 0;
        while pos <= text.len() {
            let Some(whole) = self.regex.captures_read_at(&mut locs, text, pos) else {
                break;
            };
            let secret = locs.get(self.group);
            // Resume at the end of the secret so consumed boundary characters
            // after it can start the next match; fall back to the match end,
            // and step one character on an empty match to make progress.
            let mut next = match secret {
                Some((_, end)) if end > pos => end,
                _ => whole.end(),
            };
            if next <= pos {
                next = pos + text[pos..].chars().next().map_or(1, char::len_utf8);
            }
            if let Some((start, end)) = secret {
                if start < end {
                    self.consider(text, start, end, out);
                }
            }
            pos = next;
        }
    }

    fn consider(&self, text: &str, start: usize, end: usize, out: &mut Vec<Finding>) {
        let secret = &text[start..end];
        if let Some(validator) = self.validator {
            if !validator.check(secret) {
                return;
            }
        }
        let entropy = shannon_entropy(secret);
        if self.min_entropy.is_some_and(|min| entropy < min) {
            return;
        }
        if self.allowlist.allows(secret) {
            return;
        }
        out.push(Finding {
            rule: self.id.clone(),
            category: self.category,
            severity: self.severity,
            start,
            end,
            secret: secret.to_string(),
            entropy,
        });
    }
}

// --------------------------------------------------------------- rule pack

/// A validated, compiled rule pack.
#[derive(Debug, Clone)]
pub struct RulePack {
    id: String,
    description: String,
    origin: String,
    rules: Vec<Rule>,
}

impl RulePack {
    /// Parses and validates a pack. `origin` (usually the file path) prefixes
    /// every error message.
    pub fn parse(text: &str, origin: &str) -> Result<RulePack, RuleError> {
        let raw: RawPack = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            RuleError::at(origin, text, offset, e.message().trim().to_string())
        })?;
        compile_pack(raw, text, origin)
    }

    /// Reads and parses the pack at `path`.
    pub fn load(path: &Path) -> Result<RulePack, RuleError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Io {
            origin: origin.clone(),
            source,
        })?;
        RulePack::parse(&text, &origin)
    }

    /// Loads every `*.toml` file directly in `dir`, in file-name order.
    pub fn load_dir(dir: &Path) -> Result<Vec<RulePack>, RuleError> {
        let io_err = |source| RuleError::Io {
            origin: dir.display().to_string(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err)? {
            let path = entry.map_err(io_err)?.path();
            if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        paths.iter().map(|p| RulePack::load(p)).collect()
    }

    /// The default pack shipped with Lethe (`policies/secrets/default.toml`).
    pub fn builtin() -> RulePack {
        RulePack::parse(BUILTIN_PACK, BUILTIN_ORIGIN)
            .expect("the bundled default pack is valid: checked by the builtin_pack_parses test")
    }

    /// Pack id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Pack description (empty when absent).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Where the pack came from (file path or the origin given to `parse`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Rule ids in file order.
    pub fn rule_ids(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.id.as_str()).collect()
    }

    /// Description of rule `id`, if the pack has it.
    pub fn rule_description(&self, id: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.description.as_str())
    }
}

fn valid_rule_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build()
}

fn compile_allowlist(
    raw: Option<RawAllowlist>,
    text: &str,
    origin: &str,
    owner: &str,
) -> Result<Allowlist, RuleError> {
    let mut out = Allowlist::default();
    let Some(raw) = raw else {
        return Ok(out);
    };
    for re in raw.regexes {
        let compiled = compile_regex(re.get_ref()).map_err(|e| {
            RuleError::at(
                origin,
                text,
                re.span().start,
                format!("invalid allowlist regex in {owner}: {e}"),
            )
        })?;
        out.regexes.push(compiled);
    }
    for word in raw.stopwords {
        if word.get_ref().is_empty() {
            return Err(RuleError::at(
                origin,
                text,
                word.span().start,
                format!("empty stopword in {owner} (it would ignore every secret)"),
            ));
        }
        out.stopwords.push(word.get_ref().to_lowercase());
    }
    Ok(out)
}

fn compile_pack(raw: RawPack, text: &str, origin: &str) -> Result<RulePack, RuleError> {
    let err = |span: Range<usize>, message: String| RuleError::at(origin, text, span.start, message);

    if raw.id.get_ref().trim().is_empty() {
        return Err(err(raw.id.span(), "pack id must not be empty".into()));
    }
    let pack_allow = compile_allowlist(raw.allowlist, text, origin, "the pack allowlist")?;

    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for spanned in raw.rules {
        let r = spanned.into_inner();
        let id_span = r.id.span();
        let id = r.id.into_inner();
        let line = line_column(text, id_span.start).0;
        if !valid_rule_id(&id) {
            return Err(err(
                id_span,
                format!(
                    "invalid rule id `{id}`: use letters, digits, '.', '_', '-', starting with a letter or digit"
                ),
            ));
        }
        if id == DENY_LIST_RULE_ID {
            return Err(err(
                id_span,
                format!("rule id `{DENY_LIST_RULE_ID}` is reserved for the customer deny-list"),
            ));
        }
        if let Some(first) = seen.get(&id) {
            return Err(err(
                id_span,
                format!("duplicate rule id `{id}` (first defined at line {first})"),
            ));
        }
        seen.insert(id.clone(), line);

        let category = match r.category.get_ref().as_str() {
            "secret" => Category::Secret,
            "pii" => Category::Pii,
            other => {
                return Err(err(
                    r.category.span(),
                    format!("unknown category `{other}` in rule `{id}`: expected `secret` or `pii`"),
                ))
            }
        };
        let severity = match r.severity.get_ref().as_str() {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            other => {
                return Err(err(
                    r.severity.span(),
                    format!(
                        "unknown severity `{other}` in rule `{id}`: expected `low`, `medium`, `high` or `critical`"
                    ),
                ))
            }
        };
        let regex = compile_regex(r.regex.get_ref())
            .map_err(|e| err(r.regex.span(), format!("invalid regex in rule `{id}`: {e}")))?;
        if regex.is_match("") {
            return Err(err(
                r.regex.span(),
                format!("regex of rule `{id}` matches the empty string"),
            ));
        }
        let group = match &r.secret_group {
            None => 0,
            Some(g) => match g.get_ref() {
                RawGroup::Index(i) => {
                    let groups = regex.captures_len() - 1;
                    match usize::try_from(*i) {
                        Ok(i) if i <= groups => i,
                        _ => {
                            return Err(err(
                                g.span(),
                                format!(
                                    "secret_group {i} of rule `{id}` does not exist: the regex has {groups} capture group(s)"
                                ),
                            ))
                        }
                    }
                }
                RawGroup::Name(name) => regex
                    .capture_names()
                    .position(|n| n == Some(name.as_str()))
                    .ok_or_else(|| {
                        err(
                            g.span(),
                            format!(
                                "secret_group `{name}` of rule `{id}` does not exist: the regex has no group of that name"
                            ),
                        )
                    })?,
            },
        };
        let mut keywords = Vec::new();
        if let Some(list) = r.keywords {
            if list.get_ref().is_empty() {
                return Err(err(
                    list.span(),
                    format!("empty keywords list in rule `{id}`: omit `keywords` to always run the rule"),
                ));
            }
            for kw in list.into_inner() {
                let word = kw.get_ref();
                if word.is_empty() || !word.is_ascii() {
                    return Err(err(
                        kw.span(),
                        format!(
                            "keyword {word:?} in rule `{id}` must be a non-empty ASCII string (use an ASCII part of the word)"
                        ),
                    ));
                }
                keywords.push(word.to_ascii_lowercase());
            }
        }
        let min_entropy = match r.entropy {
            None => None,
            Some(e) => {
                let v = *e.get_ref();
                if !v.is_finite() || v < 0.0 {
                    return Err(err(
                        e.span(),
                        format!(
                            "entropy {v} of rule `{id}` must be a finite number >= 0 (bits per character)"
                        ),
                    ));
                }
                Some(v)
            }
        };
        let validator = match &r.validate {
            None => None,
            Some(v) => match v.get_ref().as_str() {
                "luhn" => Some(Validator::Luhn),
                "iban" => Some(Validator::Iban),
                other => {
                    return Err(err(
                        v.span(),
                        format!("unknown validator `{other}` in rule `{id}`: expected `luhn` or `iban`"),
                    ))
                }
            },
        };
        let mut allowlist = compile_allowlist(r.allowlist, text, origin, &format!("rule `{id}`"))?;
        allowlist.extend(&pack_allow);

        rules.push(Rule {
            id,
            description: r.description.unwrap_or_default(),
            category,
            severity,
            regex,
            group,
            keywords,
            min_entropy,
            validator,
            allowlist,
            line,
        });
    }
    Ok(RulePack {
        id: raw.id.into_inner(),
        description: raw.description.unwrap_or_default(),
        origin: origin.to_string(),
        rules,
    })
}

// --------------------------------------------------------------- deny-list

/// The customer's deny-list: literal strings (names, code names) that must not
/// appear in generations.
#[derive(Debug, Clone)]
pub struct DenyList {
    origin: String,
    /// Folded (see [`fold_into`]), de-duplicated, in file order.
    entries: Vec<String>,
}

impl DenyList {
    /// Parses a deny-list: one literal per line, `#` comment lines and blank
    /// lines ignored, surrounding whitespace trimmed.
    pub fn parse(text: &str, origin: &str) -> Result<DenyList, RuleError> {
        let mut entries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut offset = 0;
        for raw_line in text.split_inclusive('\n') {
            let line_offset = offset;
            offset += raw_line.len();
            let line = raw_line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((i, c)) = raw_line
                .char_indices()
                .find(|&(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                return Err(RuleError::at(
                    origin,
                    text,
                    line_offset + i,
                    format!("control character {c:?} in deny-list entry"),
                ));
            }
            let mut folded = String::with_capacity(line.len());
            fold_into(line, &mut folded, None);
            if seen.insert(folded.clone()) {
                entries.push(folded);
            }
        }
        Ok(DenyList {
            origin: origin.to_string(),
            entries,
        })
    }

    /// Reads and parses the deny-list at `path`.
    pub fn load(path: &Path) -> Result<DenyList, RuleError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Io {
            origin: origin.clone(),
            source,
        })?;
        DenyList::parse(&text, &origin)
    }

    /// Where the list came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of distinct (case-folded) literals.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list has no literal.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Appends the case-folded form of `s` to `out`. With `map`, records for every
/// byte of `out` the byte offset in `s` of the character it came from when it
/// starts that character's expansion, `usize::MAX` otherwise; the caller
/// appends the final entry.
fn fold_into(s: &str, out: &mut String, mut map: Option<&mut Vec<usize>>) {
    for (i, c) in s.char_indices() {
        let before = out.len();
        if c == 'ς' {
            out.push('σ');
        } else {
            out.extend(c.to_lowercase());
        }
        if let Some(map) = map.as_deref_mut() {
            map.push(i);
            map.extend(std::iter::repeat_n(usize::MAX, out.len() - before - 1));
        }
    }
}

#[derive(Debug, Clone)]
struct DenyMatcher {
    ac: AhoCorasick,
}

impl DenyMatcher {
    fn new(list: &DenyList) -> Result<Option<DenyMatcher>, RuleError> {
        if list.entries.is_empty() {
            return Ok(None);
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&list.entries)
            .map_err(|source| RuleError::Automaton {
                what: "deny-list",
                source,
            })?;
        Ok(Some(DenyMatcher { ac }))
    }

    fn scan_into(&self, text: &str, out: &mut Vec<Finding>) {
        // Fold the text; `map` translates folded offsets back to the original.
        let (folded, map) = if text.is_ascii() {
            (text.to_ascii_lowercase(), None)
        } else {
            let mut folded = String::with_capacity(text.len());
            let mut map = Vec::with_capacity(text.len() + 1);
            fold_into(text, &mut folded, Some(&mut map));
            map.push(text.len());
            (folded, Some(map))
        };
        let to_original = |i: usize| match &map {
            None => Some(i),
            Some(m) => m.get(i).copied().filter(|&o| o != usize::MAX),
        };
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for m in self.ac.find_overlapping_iter(folded.as_str()) {
            let (Some(start), Some(end)) = (to_original(m.start()), to_original(m.end())) else {
                continue; // match starts or ends inside one character's expansion
            };
            if start < end && whole_word(text, start, end) {
                spans.push((start, end));
            }
        }
        // Leftmost-longest selection among whole-word matches.
        spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut last_end = 0;
        for (start, end) in spans {
            if start < last_end {
                continue;
            }
            last_end = end;
            let secret = &text[start..end];
            out.push(Finding {
                rule: DENY_LIST_RULE_ID.to_string(),
                category: Category::Denylist,
                severity: Severity::High,
                start,
                end,
                secret: secret.to_string(),
                entropy: shannon_entropy(secret),
            });
        }
    }
}

fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

// ----------------------------------------------------------------- scanner

/// One suspected secret or piece of personal data in a text.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule id (`deny-list` for deny-list literals).
    pub rule: String,
    /// Kind of data.
    pub category: Category,
    /// Rule severity, before any regurgitation escalation by the caller.
    pub severity: Severity,
    /// Byte offset of the secret in the scanned text.
    pub start: usize,
    /// Byte offset just past the secret.
    pub end: usize,
    /// The exact secret text (`text[start..end]`). Show it only via [`mask`].
    pub secret: String,
    /// Shannon entropy of the secret in bits per character.
    pub entropy: f64,
}

impl Finding {
    /// The secret as reviewers may see it (see [`mask`]).
    pub fn masked(&self) -> String {
        mask(&self.secret)
    }
}

impl fmt::Debug for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finding")
            .field("rule", &self.rule)
            .field("category", &self.category)
            .field("severity", &self.severity)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("secret", &mask(&self.secret))
            .field("entropy", &self.entropy)
            .finish()
    }
}

/// Scans texts with a set of rule packs and an optional deny-list.
#[derive(Debug, Clone)]
pub struct Scanner {
    rules: Vec<Rule>,
    /// Automaton over all distinct keywords; `None` when no rule has any.
    keywords: Option<AhoCorasick>,
    /// Keyword pattern index -> indices of the rules it enables.
    keyword_rules: Vec<Vec<usize>>,
    deny: Option<DenyMatcher>,
    prefilter: bool,
}

impl Scanner {
    /// Builds a scanner over all rules of `packs` (in order) and `deny`.
    /// Fails on a rule id defined in two packs.
    pub fn new(packs: &[RulePack], deny: Option<&DenyList>) -> Result<Scanner, RuleError> {
        Scanner::build(packs, deny, true)
    }

    /// `prefilter: false` runs every rule on every text (used by tests to show
    /// the prefilter never changes results).
    fn build(packs: &[RulePack], deny: Option<&DenyList>, prefilter: bool) -> Result<Scanner, RuleError> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut seen: HashMap<&str, (&str, usize)> = HashMap::new();
        for pack in packs {
            for rule in &pack.rules {
                if let Some((origin, line)) = seen.get(rule.id.as_str()) {
                    return Err(RuleError::Invalid {
                        origin: pack.origin.clone(),
                        line: rule.line,
                        column: 1,
                        message: format!(
                            "duplicate rule id `{}` (first defined at {origin}:{line})",
                            rule.id
                        ),
                    });
                }
                seen.insert(&rule.id, (&pack.origin, rule.line));
                rules.push(rule.clone());
            }
        }

        let mut patterns: Vec<&str> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            for kw in &rule.keywords {
                let p = *index.entry(kw.as_str()).or_insert_with(|| {
                    patterns.push(kw.as_str());
                    keyword_rules.push(Vec::new());
                    patterns.len() - 1
                });
                if !keyword_rules[p].contains(&r) {
                    keyword_rules[p].push(r);
                }
            }
        }
        let keywords = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|source| RuleError::Automaton {
                        what: "keyword",
                        source,
                    })?,
            )
        };
        let deny = match deny {
            Some(list) => DenyMatcher::new(list)?,
            None => None,
        };
        Ok(Scanner {
            rules,
            keywords,
            keyword_rules,
            deny,
            prefilter,
        })
    }

    /// Rule ids in evaluation order, followed by `deny-list` when a non-empty
    /// deny-list is configured.
    pub fn rule_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.rules.iter().map(|r| r.id.as_str()).collect();
        if self.deny.is_some() {
            ids.push(DENY_LIST_RULE_ID);
        }
        ids
    }

    /// All findings in `text`, sorted by `(start, end, rule)`, without
    /// duplicates of the same span and rule.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        let active = self.active_rules(text);
        for (rule, on) in self.rules.iter().zip(active) {
            if on {
                rule.scan_into(text, &mut out);
            }
        }
        if let Some(deny) = &self.deny {
            deny.scan_into(text, &mut out);
        }
        out.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(a.end.cmp(&b.end))
                .then_with(|| a.rule.cmp(&b.rule))
        });
        out.dedup_by(|a, b| a.start == b.start && a.end == b.end && a.rule == b.rule);
        out
    }

    /// Which rules run on `text`.
    fn active_rules(&self, text: &str) -> Vec<bool> {
        let all = || vec![true; self.rules.len()];
        // `(?i)` folds these two to ASCII `k` / `s`; the ASCII keyword
        // automaton cannot see them, so run everything.
        if !self.prefilter || text.contains(['\u{212A}', '\u{17F}']) {
            return all();
        }
        let mut active: Vec<bool> = self.rules.iter().map(|r| r.keywords.is_empty()).collect();
        let Some(ac) = &self.keywords else {
            return active;
        };
        let mut pending = active.iter().filter(|on| !**on).count();
        let mut pattern_seen = vec![false; self.keyword_rules.len()];
        for m in ac.find_overlapping_iter(text) {
            let p = m.pattern().as_usize();
            if std::mem::replace(&mut pattern_seen[p], true) {
                continue;
            }
            for &r in &self.keyword_rules[p] {
                if !std::mem::replace(&mut active[r], true) {
                    pending -= 1;
                }
            }
            if pending == 0 {
                break;
            }
        }
        active
    }
}

// ------------------------------------------------------- corpus occurrence

/// Where a secret first occurs in the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusHit {
    /// 0-based index of the document in the iteration order.
    pub doc: usize,
    /// Byte offset of the occurrence in that document.
    pub offset: usize,
}

/// Whether one distinct secret value occurs in the corpus.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    /// The secret value (exact bytes, case-sensitive).
    pub secret: String,
    /// First occurrence in (document, offset) order; `None`: not in the corpus.
    pub first: Option<CorpusHit>,
}

impl Occurrence {
    /// True when the secret was found in the corpus (a regurgitated secret).
    pub fn regurgitated(&self) -> bool {
        self.first.is_some()
    }
}

impl fmt::Debug for Occurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Occurrence")
            .field("secret", &mask(&self.secret))
            .field("first", &self.first)
            .finish()
    }
}

/// For each distinct secret among `findings` (in order of first appearance),
/// the first `(doc, offset)` where it occurs literally in `texts`.
///
/// One Aho-Corasick automaton over the secret values is run over each
/// document in turn (overlapping matches, so a secret contained in another
/// is still found); iteration stops early once every secret has been found.
/// An empty `findings` does not consume `texts`.
pub fn occurrences_in<I, T>(
    texts: I,
    findings: &[Finding],
) -> Result<Vec<Occurrence>, aho_corasick::BuildError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut secrets: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in findings {
        if !f.secret.is_empty() && seen.insert(f.secret.as_str()) {
            secrets.push(f.secret.as_str());
        }
    }
    let mut first: Vec<Option<CorpusHit>> = vec![None; secrets.len()];
    if !secrets.is_empty() {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&secrets)?;
        let mut remaining = secrets.len();
        'docs: for (doc, text) in texts.into_iter().enumerate() {
            // Matches come ordered by end; all matches of one pattern have the
            // same length, so the first one seen per pattern is its leftmost.
            for m in ac.find_overlapping_iter(text.as_ref()) {
                let slot = &mut first[m.pattern().as_usize()];
                if slot.is_none() {
                    *slot = Some(CorpusHit {
                        doc,
                        offset: m.start(),
                    });
                    remaining -= 1;
                    if remaining == 0 {
                        break 'docs;
                    }
                }
            }
        }
    }
    Ok(secrets
        .into_iter()
        .zip(first)
        .map(|(secret, first)| Occurrence {
            secret: secret.to_string(),
            first,
        })
        .collect())
}

// ------------------------------------------------------------------ helpers

/// Masks a secret for reviewers: the first and last two characters (Unicode
/// scalar values) are kept and every other character becomes one `*`; a
/// secret of 6 characters or fewer is entirely `*`, one per character.
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    if n <= 6 {
        return "*".repeat(n);
    }
    secret
        .chars()
        .enumerate()
        .map(|(i, c)| if i < 2 || i >= n - 2 { c } else { '*' })
        .collect()
}

/// Shannon entropy of `s` in bits per character (Unicode scalar values);
/// 0 for the empty string. Deterministic: summed in character order.
pub fn shannon_entropy(s: &str) -> f64 {
    let mut ascii = [0usize; 128];
    let mut other: BTreeMap<char, usize> = BTreeMap::new();
    let mut n = 0usize;
    for c in s.chars() {
        n += 1;
        if c.is_ascii() {
            ascii[c as usize] += 1;
        } else {
            *other.entry(c).or_default() += 1;
        }
    }
    if n == 0 {
        return 0.0;
    }
    let total = n as f64;
    ascii
        .iter()
        .copied()
        .chain(other.values().copied())
        .filter(|&c| c > 0)
        .map(|c| {
            let c = c as f64;
            (c / total) * (total / c).log2()
        })
        .sum()
}

/// Luhn (mod 10) check of a card-like number. ASCII spaces and dashes are
/// ignored; any other non-digit, or fewer than two digits, makes it invalid.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for c in digits.chars().rev() {
        let d = match c {
            ' ' | '-' => continue,
            '0'..='9' => c as u32 - '0' as u32,
            _ => return false,
        };
        let v = if count % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
        sum = (sum + v) % 10;
        count += 1;
    }
    count >= 2 && sum == 0
}

/// ISO 13616 IBAN check: spaces ignored, 15-34 characters, two letters, two
/// check digits, alphanumeric remainder, and mod-97 of the rearranged number
/// equal to 1. Letters may be of either case.
pub fn iban_valid(iban: &str) -> bool {
    let s: Vec<u8> = iban
        .bytes()
        .filter(|&b| b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&s.len())
        || !s[..2].iter().all(u8::is_ascii_uppercase)
        || !s[2..4].iter().all(u8::is_ascii_digit)
        || !s.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let mut rem = 0u32;
    for &b in s[4..].iter().chain(&s[..4]) {
        rem = if b.is_ascii_digit() {
            (rem * 10 + u32::from(b - b'0')) % 97
        } else {
            (rem * 100 + u32::from(b - b'A') + 10) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin_scanner() -> Scanner {
        Scanner::new(&[RulePack::builtin()], None).unwrap()
    }

    fn findings_of<'a>(findings: &'a [Finding], rule: &str) -> Vec<&'a Finding> {
        findings.iter().filter(|f| f.rule == rule).collect()
    }

    // ------------------------------------------------------ default pack

    const DEFAULT_RULE_IDS: &[&str] = &[
        "aws-access-key-id",
        "aws-secret-access-key",
        "github-token",
        "github-fine-grained-pat",
        "gitlab-pat",
        "slack-token",
        "slack-webhook-url",
        "stripe-secret-key",
        "google-api-key",
        "openai-api-key",
        "generic-api-key",
        "private-key",
        "jwt",
        "password-assignment",
        "connection-string-password",
        "email-address",
        "phone-number",
        "payment-card-number",
        "iban",
        "us-ssn",
    ];

    const RSA_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
        MIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HcTbS2\n\
        Xr0yV1b3CYdzBBqXpmLJsABqzBsCgYEA8Qk2XvVhhlmuaDz2YG5ZvpDAr6gJkEd1\n\
        HmIkXbT3s4nXa+7Y9sdyEr5yyO3OnDjuQ0a8RcbcJRAqNxmRvxGG9BUtQTUzKeQ0\n\
        -----END RSA PRIVATE KEY-----";

    const SSH_KEY_ESCAPED: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\\nQyNTUxOQAAACDqH0yX7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2\\n-----END OPENSSH PRIVATE KEY-----";

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    /// (rule, text, exact secret); the secret's first occurrence in the text
    /// is the expected span.
    fn true_positives() -> Vec<(&'static str, String, &'static str)> {
        let mut v: Vec<(&'static str, String, &'static str)> = vec![
            ("aws-access-key-id", "aws_access_key_id = AKIAZ3MQ7RXK2LPW4TNB".into(), "AKIAZ3MQ7RXK2LPW4TNB"),
            ("aws-access-key-id", "temporary creds ASIAQ7RXK2LPW4TNBZ3M expire".into(), "ASIAQ7RXK2LPW4TNBZ3M"),
            ("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY=Zq8v4Jr2mXkP9tLw0bNc5Hy7sDf3Ga6Ue1Rt/Vx+".into(), "Zq8v4Jr2mXkP9tLw0bNc5Hy7sDf3Ga6Ue1Rt/Vx+"),
            ("aws-secret-access-key", "{\"awsSecretAccessKey\": \"Zq8v4Jr2mXkP9tLw0bNc5Hy7sDf3Ga6Ue1Rt/Vx+\"}".into(), "Zq8v4Jr2mXkP9tLw0bNc5Hy7sDf3Ga6Ue1Rt/Vx+"),
            ("github-token", "export GH_TOKEN=ghp_4fK9zQ2mR7xL1pW8vN3bT6yH0cJ5sD2aE9uG".into(), "ghp_4fK9zQ2mR7xL1pW8vN3bT6yH0cJ5sD2aE9uG"),
            ("github-token", "ghs_Lm4Np7Rs1Tv3Wy5x9Kq2Zb8Hc6Jd0Fg3Qa7U".into(), "ghs_Lm4Np7Rs1Tv3Wy5x9Kq2Zb8Hc6Jd0Fg3Qa7U"),
            ("github-fine-grained-pat", "token: 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".into(), "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"),
            ("gitlab-pat", "git clone https://oauth2:glpat-x9Kq2Lm4Np7Rs1Tv3Wy5@gitlab.com/g/p".into(), "glpat-x9Kq2Lm4Np7Rs1Tv3Wy5"),
            ("slack-token", "SLACK_BOT_TOKEN=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx".into(), "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
            ("slack-token", "xapp-1-A0123BCDE45-1234567890123-0a1b2c3d4e5f60718293a4b5c6d7e8f9".into(), "xapp-1-A0123BCDE45-1234567890123-0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
            ("slack-webhook-url", "post to https://hooks.slack.com/services/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 now".into(), "https://hooks.slack.com/services/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"),
            ("stripe-secret-key", "stripe.api_key = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'".into(), "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
            ("stripe-secret-key", "rk_test_51H8xYzAbC3dEfGhIjKlMnOpQ".into(), "rk_test_51H8xYzAbC3dEfGhIjKlMnOpQ"),
            ("google-api-key", "?key=AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW&q=x".into(), "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"),
            ("openai-api-key", "client = OpenAI(api_key=\"sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7CDe0FGh3IJ\")".into(), "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7CDe0FGh3IJ"),
            ("openai-api-key", "sk-Q7wE9rT2yU4iO6pA8sD0fG1hJ3kL5zX7cV9bN2mQ4wE6rT8y".into(), "sk-Q7wE9rT2yU4iO6pA8sD0fG1hJ3kL5zX7cV9bN2mQ4wE6rT8y"),
            ("generic-api-key", "api_key = \"f3a9c2e18b7d4065a1c9e2f8b3d70a5c\"".into(), "f3a9c2e18b7d4065a1c9e2f8b3d70a5c"),
            ("generic-api-key", "DATADOG_CLIENT_SECRET: 9Xk2Lm7Qp4Rs8Tv1Wy3Z".into(), "9Xk2Lm7Qp4Rs8Tv1Wy3Z"),
            ("private-key", format!("here:\n{RSA_KEY}\nthanks"), RSA_KEY),
            ("private-key", format!("{{\"key\": \"{SSH_KEY_ESCAPED}\\n\"}}"), SSH_KEY_ESCAPED),
            ("jwt", format!("Authorization: Bearer {JWT}"), JWT),
            ("password-assignment", "Username: admin Password: Tr0ub4dor&3".into(), "Tr0ub4dor&3"),
            ("password-assignment", "db.connect(host, password=\"hunter22!\")".into(), "hunter22!"),
            ("password-assignment", "DB_PASSWD := 's3cr3t-P4ss'".into(), "s3cr3t-P4ss"),
            ("connection-string-password", "DATABASE_URL=postgres://admin:s3cr3tP4ss@db.internal:5432/app".into(), "s3cr3tP4ss"),
            ("connection-string-password", "mongodb+srv://svc:Kq9%40xZ2w@cluster0.mongodb.net".into(), "Kq9%40xZ2w"),
            ("email-address", "write to john.doe@acme-corp.com.".into(), "john.doe@acme-corp.com"),
            ("email-address", "<a href=\"mailto:Jane.Roe@acme.io\">".into(), "Jane.Roe@acme.io"),
            ("phone-number", "call +1 415 555 2671 today".into(), "+1 415 555 2671"),
            ("phone-number", "office: (415) 555-2671".into(), "(415) 555-2671"),
            ("phone-number", "tel 415.555.2671,".into(), "415.555.2671"),
            ("phone-number", "+44 (0)20 7946 0958".into(), "+44 (0)20 7946 0958"),
            ("phone-number", "Tel. 020 7946 0958".into(), "020 7946 0958"),
            ("phone-number", "appelez le 06 12 34 56 78.".into(), "06 12 34 56 78"),
            ("phone-number", "Ruf an: 030 1234567".into(), "030 1234567"),
            ("phone-number", "E.164 +14155552671".into(), "+14155552671"),
            ("payment-card-number", "card 4539 1488 0343 6467 exp 09/27".into(), "4539 1488 0343 6467"),
            ("payment-card-number", "pan=5425233430109903;".into(), "5425233430109903"),
            ("payment-card-number", "amex 3782-822463-10005".into(), "3782-822463-10005"),
            ("iban", "IBAN: DE89 3704 0044 0532 0130 00, BIC".into(), "DE89 3704 0044 0532 0130 00"),
            ("iban", "GB82WEST12345698765432".into(), "GB82WEST12345698765432"),
            ("us-ssn", "SSN 536-22-1234 on file".into(), "536-22-1234"),
        ];
        v.sort_by_key(|(r, _, _)| *r);
        v
    }

    /// (rule, text): the rule must not report anything in the text.
    fn near_misses() -> Vec<(&'static str, String)> {
        vec![
            ("aws-access-key-id", "AKIAZ3MQ7RXK2LPW4TN is 19 characters".into()),
            ("aws-access-key-id", "AKIAZ3MQ7RXK2LPW4TNB7 is 21 characters".into()),
            ("aws-access-key-id", "docs key AKIAIOSFODNN7EXAMPLE".into()),
            ("aws-access-key-id", "AKIAAAAAAAAAAAAAAAAA low entropy".into()),
            ("aws-access-key-id", "akiaz3mq7rxk2lpw4tnb lowercase".into()),
            ("aws-secret-access-key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            ("aws-secret-access-key", "aws_secret_access_key = Zq8v4Jr2mXkP9tLw0bNc5Hy7sDf3Ga6Ue1Rt/Vx".into()),
            ("aws-secret-access-key", "aws_secret_access_key = AAAAAAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBBBBB".into()),
            ("aws-secret-access-key", "secret_access_key = Zq8v4Jr2mXkP9tLw0bNc5Hy7sDf3Ga6Ue1Rt/Vx+".into()),
            ("github-token", "ghp_4fK9zQ2mR7xL1pW8vN3bT6yH0cJ5sD2aE9u is short".into()),
            ("github-token", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".into()),
            ("github-token", "ghx_4fK9zQ2mR7xL1pW8vN3bT6yH0cJ5sD2aE9uG".into()),
            ("github-fine-grained-pat", "github_pat_11AB3CDEF0gH1iJ2kL3mN4p5Q6r7S8t9U0v1W2x3Y4z5A6b7C8d9E0f1G2h3I4j5K6l7M8n9O0p1Q2r3S".into()),
            ("gitlab-pat", "glpat-short12345".into()),
            ("gitlab-pat", "glpat-aaaaaaaaaaaaaaaaaaaa".into()),
            ("slack-token", "xoxb-notatoken and xoxb-12345".into()),
            ("slack-webhook-url", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX".into()),
            ("slack-webhook-url", "https://hooks.slack.com/services/".into()),
            ("stripe-secret-key", "sk_live_abc123 is too short".into()),
            ("stripe-secret-key", "pk_live_4eC39HqLyjWDarjtT1zdp7dc is publishable".into()),
            ("google-api-key", "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv (34 after AIza)".into()),
            ("openai-api-key", "pip install sk-learn-compatible-estimators-and-transformers-v2".into()),
            ("openai-api-key", "sk-the-quick-brown-fox-jumps-over-lazy-dogs has no digit".into()),
            ("openai-api-key", "sk-short-key and task-Q7wE9rT2yU4iO6pA8sD0fG1hJ3kL5zX7cV9bN2mQ4".into()),
            ("generic-api-key", "token = \"aaaaaaaaaaaaaaaaaaaa\"".into()),
            ("generic-api-key", "secret: settings.SECRET_KEY_FALLBACK".into()),
            ("generic-api-key", "api_key = \"YOUR_API_KEY_HERE_1234567\"".into()),
            ("generic-api-key", "tokenizer = AutoTokenizer.from_pretrained(name)".into()),
            ("generic-api-key", "max_tokens: 4096".into()),
            ("private-key", "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----".into()),
            ("private-key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HcTbS2\n(truncated)".into()),
            ("private-key", format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----", "A".repeat(80))),
            ("private-key", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPm\n-----END PUBLIC KEY-----".into()),
            ("jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0".into()),
            ("password-assignment", "password = \nuser = bob".into()),
            ("password-assignment", "password = ''".into()),
            ("password-assignment", "Your password: must contain 8 characters".into()),
            ("password-assignment", "password = os.environ.get('DB_PASSWORD')".into()),
            ("password-assignment", "password: ********".into()),
            ("password-assignment", "password: ${DB_PASSWORD} or $DB_PASSWORD".into()),
            ("password-assignment", "password = aaaa".into()),
            ("connection-string-password", "postgres://user@host/db".into()),
            ("connection-string-password", "postgres://user:password@localhost/db".into()),
            ("connection-string-password", "redis://:${REDIS_PASSWORD}@cache:6379".into()),
            ("connection-string-password", "https://example.org:8443/path".into()),
            ("email-address", "ping john@acme (no domain dot)".into()),
            ("email-address", "user@localhost".into()),
            ("email-address", "see a.person@example.com or x@mail.example.org".into()),
            ("email-address", "git@github.com:org/repo.git and icon@2x.png".into()),
            ("email-address", "postgres://admin:s3cr3tP4ss@db.internal:5432/app".into()),
            ("phone-number", "dates 2023-10-12, 12.10.2023, 01-02-2023, 05/06/2023".into()),
            ("phone-number", "ids 4155552671 1700000000000 555-1234".into()),
            ("phone-number", "version 10.0.19045.2965 and ip 192.168.100.200".into()),
            ("phone-number", "ISBN 978-3-16-148410-0 and +1 2 34 56".into()),
            ("payment-card-number", "4539148803436468 fails Luhn".into()),
            ("payment-card-number", "4539 1488 0343 6468".into()),
            ("payment-card-number", "test card 4111 1111 1111 1111".into()),
            ("payment-card-number", "12345678901234567890 and 45391488034364670".into()),
            ("payment-card-number", "1700000000000 and 0.4539148803436467".into()),
            ("iban", "DE89 3704 0044 0532 0130 01".into()),
            ("iban", "de89370400440532013000 and DE8937040044".into()),
            ("us-ssn", "000-12-3456 666-12-3456 900-12-3456".into()),
            ("us-ssn", "536-00-1234 536-22-0000 536221234".into()),
            ("us-ssn", "specimen 078-05-1120".into()),
        ]
    }

    #[test]
    fn builtin_pack_parses() {
        let pack = RulePack::builtin();
        assert_eq!(pack.id(), "lethe-default");
        assert_eq!(pack.origin(), BUILTIN_ORIGIN);
        assert_eq!(pack.rule_ids(), DEFAULT_RULE_IDS);
        for id in DEFAULT_RULE_IDS {
            assert!(!pack.rule_description(id).unwrap().is_empty(), "{id}");
        }
    }

    #[test]
    fn policies_dir_loads_and_matches_builtin() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/secrets");
        let packs = RulePack::load_dir(&dir).unwrap();
        assert_eq!(packs.len(), 1);
        assert_eq!(packs[0].rule_ids(), DEFAULT_RULE_IDS);
        assert!(packs[0].origin().ends_with("default.toml"));
    }

    #[test]
    fn every_default_rule_has_a_positive_and_a_near_miss() {
        let mut pos: Vec<&str> = true_positives().iter().map(|t| t.0).collect();
        let mut neg: Vec<&str> = near_misses().iter().map(|t| t.0).collect();
        pos.dedup();
        neg.sort();
        neg.dedup();
        let mut all = DEFAULT_RULE_IDS.to_vec();
        all.sort();
        assert_eq!(pos, all);
        assert_eq!(neg, all);
    }

    #[test]
    fn default_rules_find_true_positives_at_exact_spans() {
        let scanner = builtin_scanner();
        for (rule, text, secret) in true_positives() {
            let start = text.find(secret).unwrap();
            let found = scanner.scan(&text);
            let hits = findings_of(&found, rule);
            assert_eq!(hits.len(), 1, "{rule} in {text:?}: {found:?}");
            let f = hits[0];
            assert_eq!((f.start, f.end), (start, start + secret.len()), "{rule}");
            assert_eq!(f.secret, secret, "{rule}");
            assert_eq!(f.entropy, shannon_entropy(secret));
        }
    }

    #[test]
    fn default_rules_ignore_near_misses() {
        let scanner = builtin_scanner();
        for (rule, text) in near_misses() {
            let found = scanner.scan(&text);
            assert!(
                findings_of(&found, rule).is_empty(),
                "{rule} matched near miss {text:?}: {found:?}"
            );
        }
    }

    #[test]
    fn categories_and_severities_of_default_rules() {
        let scanner = builtin_scanner();
        let text = format!(
            "{RSA_KEY}\nmail jane.roe@acme.io card 4539148803436467 aws_access_key_id=AKIAZ3MQ7RXK2LPW4TNB"
        );
        let found = scanner.scan(&text);
        let got: Vec<(&str, Category, Severity)> = found
            .iter()
            .map(|f| (f.rule.as_str(), f.category, f.severity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("private-key", Category::Secret, Severity::Critical),
                ("email-address", Category::Pii, Severity::Medium),
                ("payment-card-number", Category::Pii, Severity::Critical),
                ("aws-access-key-id", Category::Secret, Severity::High),
                ("generic-api-key", Category::Secret, Severity::Medium),
            ]
        );
    }

    #[test]
    fn findings_sorted_and_overlapping_rules_both_kept() {
        let scanner = builtin_scanner();
        let text = "x=1 AWS_SECRET_ACCESS_KEY=Zq8v4Jr2mXkP9tLw0bNc5Hy7sDf3Ga6Ue1Rt/Vx+ mail bob@acme.io";
        let found = scanner.scan(text);
        let summary: Vec<(&str, usize, usize)> =
            found.iter().map(|f| (f.rule.as_str(), f.start, f.end)).collect();
        assert_eq!(
            summary,
            vec![
                ("aws-secret-access-key", 26, 66),
                ("generic-api-key", 26, 66),
                ("email-address", 72, 83),
            ]
        );
    }

    #[test]
    fn adjacent_matches_sharing_a_boundary_character_are_all_found() {
        let scanner = builtin_scanner();
        let text = "4539148803436467 5425233430109903,4539148803436467";
        let spans: Vec<(usize, usize)> = findings_of(&scanner.scan(text), "payment-card-number")
            .iter()
            .map(|f| (f.start, f.end))
            .collect();
        assert_eq!(spans, vec![(0, 16), (17, 33), (34, 50)]);
    }

    #[test]
    fn finding_serializes_and_debug_masks_the_secret() {
        let scanner = builtin_scanner();
        let f = scanner.scan("ssn 536-22-1234").remove(0);
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "rule": "us-ssn", "category": "pii", "severity": "critical",
                "start": 4, "end": 15, "secret": "536-22-1234", "entropy": f.entropy,
            })
        );
        let back: Finding = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
        let dbg = format!("{f:?}");
        assert!(!dbg.contains("536-22-1234"), "{dbg}");
        assert!(dbg.contains("\"53*******34\""), "{dbg}");
        assert_eq!(f.masked(), "53*******34");
    }

    // -------------------------------------------------------- allowlists

    const ALLOW_PACK: &str = r#"
id = "allow-test"

[[rules]]
id = "tok"
category = "secret"
severity = "low"
regex = '''tok_[A-Za-z0-9]+'''
[rules.allowlist]
regexes = ['''^tok_0+$''']
stopwords = ["DEMO"]

[[rules]]
id = "key"
category = "pii"
severity = "medium"
regex = '''key_[A-Za-z0-9]+'''

[allowlist]
stopwords = ["sample"]
"#;

    #[test]
    fn rule_and_pack_allowlists_and_stopwords() {
        let pack = RulePack::parse(ALLOW_PACK, "allow.toml").unwrap();
        let other = RulePack::parse(
            "id = \"other\"\n[[rules]]\nid = \"oth\"\ncategory = \"secret\"\nseverity = \"low\"\nregex = '''oth_[A-Za-z0-9]+'''\n",
            "other.toml",
        )
        .unwrap();
        let scanner = Scanner::new(&[pack, other], None).unwrap();
        let text =
            "tok_abc1 tok_000 tok_demo1 tok_xDeMoy tok_SAMPLE2 key_sample key_real9 key_demo oth_sample";
        let found = scanner.scan(text);
        let got: Vec<&str> = found.iter().map(|f| f.secret.as_str()).collect();
        // tok_000: rule regex; tok_demo1/tok_xDeMoy: rule stopword, any case;
        // tok_SAMPLE2/key_sample: pack stopword; key_demo: the rule stopword
        // is not the pack's; oth_sample: other pack, not allowlisted.
        assert_eq!(got, vec!["tok_abc1", "key_real9", "key_demo", "oth_sample"]);
    }

    #[test]
    fn keywords_gate_rules_case_insensitively() {
        let pack = RulePack::parse(
            "id = \"kw\"\n[[rules]]\nid = \"gated\"\ncategory = \"secret\"\nseverity = \"low\"\nregex = '''val_[0-9]+'''\nkeywords = [\"Zorp\"]\n\
             [[rules]]\nid = \"always\"\ncategory = \"secret\"\nseverity = \"low\"\nregex = '''num_[0-9]+'''\n",
            "kw.toml",
        )
        .unwrap();
        let scanner = Scanner::new(&[pack], None).unwrap();
        let rules = |t: &str| -> Vec<String> { scanner.scan(t).into_iter().map(|f| f.rule).collect() };
        assert_eq!(rules("val_1 num_2"), vec!["always"]);
        assert_eq!(rules("ZORP val_1 num_2"), vec!["gated", "always"]);
        assert_eq!(rules("zorp: val_1"), vec!["gated"]);
    }

    #[test]
    fn secret_group_by_name() {
        let pack = RulePack::parse(
            "id = \"g\"\n[[rules]]\nid = \"named\"\ncategory = \"secret\"\nseverity = \"low\"\nregex = '''user=(?P<user>\\w+) pass=(?P<secret>\\S+)'''\nsecret_group = \"secret\"\n",
            "g.toml",
        )
        .unwrap();
        let scanner = Scanner::new(&[pack], None).unwrap();
        let f = scanner.scan("login user=bob pass=Xy7!q").remove(0);
        assert_eq!((f.start, f.end, f.secret.as_str()), (20, 25, "Xy7!q"));
    }

    // --------------------------------------------------------- deny-list

    const DENY: &str = "# customer deny-list\n\nProject Nightingale\nAcme\n  Zoë Ångström  \nAcme Corp\nC++\nACME\nΟδυσσεύς\n";

    fn deny_scan(text: &str) -> Vec<(usize, usize, String)> {
        let deny = DenyList::parse(DENY, "deny.txt").unwrap();
        let scanner = Scanner::new(&[], Some(&deny)).unwrap();
        scanner
            .scan(text)
            .into_iter()
            .map(|f| {
                assert_eq!(f.rule, DENY_LIST_RULE_ID);
                assert_eq!(f.category, Category::Denylist);
                assert_eq!(f.severity, Severity::High);
                (f.start, f.end, f.secret)
            })
            .collect()
    }

    #[test]
    fn deny_list_parsing() {
        let deny = DenyList::parse(DENY, "deny.txt").unwrap();
        // Comments and blank lines skipped, "ACME" duplicates "Acme".
        assert_eq!(deny.len(), 6);
        assert_eq!(deny.origin(), "deny.txt");
        assert!(DenyList::parse("# only\n\n", "e").unwrap().is_empty());
        let scanner = Scanner::new(&[], Some(&deny)).unwrap();
        assert_eq!(scanner.rule_ids(), vec![DENY_LIST_RULE_ID]);
    }

    #[test]
    fn deny_list_whole_word_case_insensitive() {
        assert_eq!(
            deny_scan("the PROJECT nightingale plan"),
            vec![(4, 23, "PROJECT nightingale".to_string())]
        );
        assert_eq!(deny_scan("Acmes xAcme Acme1 nightingale"), vec![]);
        assert_eq!(
            deny_scan("acme-based, (Acme)"),
            vec![(0, 4, "acme".to_string()), (13, 17, "Acme".to_string())]
        );
        // Leftmost-longest, falling back to a shorter whole word.
        assert_eq!(deny_scan("Acme Corp."), vec![(0, 9, "Acme Corp".to_string())]);
        assert_eq!(deny_scan("Acme Corporation"), vec![(0, 4, "Acme".to_string())]);
        // Non-alphanumeric literal edges.
        assert_eq!(
            deny_scan("I like C++ not C++11"),
            vec![(7, 10, "C++".to_string())]
        );
    }

    #[test]
    fn deny_list_unicode() {
        assert_eq!(
            deny_scan("by ZOË ÅNGSTRÖM."),
            vec![(3, 18, "ZOË ÅNGSTRÖM".to_string())]
        );
        // Alphanumeric non-ASCII neighbours break the word.
        assert_eq!(deny_scan("Zoë Ångströms éAcme"), vec![]);
        // Offsets map back through characters whose lowercase is longer (İ:
        // 2 bytes, lowercase 3 bytes).
        assert_eq!(deny_scan("İ İ acme"), vec![(6, 10, "acme".to_string())]);
        // Final sigma folds to sigma.
        assert_eq!(deny_scan("ΟΔΥΣΣΕΎΣ"), vec![(0, 16, "ΟΔΥΣΣΕΎΣ".to_string())]);
    }

    #[test]
    fn deny_list_rejects_control_characters_with_line() {
        let err = DenyList::parse("ok\nbad\u{7}entry\n", "deny.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "deny.txt:2:4: control character '\\u{7}' in deny-list entry"
        );
    }

    // ------------------------------------------------ entropy, luhn, iban

    #[test]
    fn entropy_known_values() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert_eq!(shannon_entropy("ab"), 1.0);
        assert_eq!(shannon_entropy("abcd"), 2.0);
        assert_eq!(shannon_entropy("aabbccdd"), 2.0);
        assert_eq!(shannon_entropy("ééàà"), 1.0); // characters, not bytes
        assert!((shannon_entropy("0123456789") - 10f64.log2()).abs() < 1e-12);
        assert!((shannon_entropy("aab") - 0.918_295_834_054_489_6).abs() < 1e-12);
        assert!(shannon_entropy("aaaa").is_sign_positive());
    }

    #[test]
    fn luhn_known_vectors() {
        for ok in [
            "79927398713",
            "4539148803436467",
            "4539 1488 0343 6467",
            "4539-1488-0343-6467",
            "378282246310005",
            "6011111111111117",
        ] {
            assert!(luhn_valid(ok), "{ok}");
        }
        for bad in [
            "79927398710",
            "4539148803436468",
            "4539x148803436467",
            "",
            "0",
            "12a",
        ] {
            assert!(!luhn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn iban_known_vectors() {
        for ok in [
            "DE89 3704 0044 0532 0130 00",
            "GB82WEST12345698765432",
            "gb82west12345698765432",
        ] {
            assert!(iban_valid(ok), "{ok}");
        }
        for bad in [
            "DE89 3704 0044 0532 0130 01",
            "DE8937040044",
            "1289370400440532013000",
            "DE89-3704-0044-0532-0130-00",
        ] {
            assert!(!iban_valid(bad), "{bad}");
        }
    }

    #[test]
    fn masking() {
        assert_eq!(mask("AKIAZ3MQ7RXK2LPW4TNB"), "AK****************NB");
        assert_eq!(mask("abcdefg"), "ab***fg");
        assert_eq!(mask("abcdef"), "******");
        assert_eq!(mask("ab"), "**");
        assert_eq!(mask(""), "");
        assert_eq!(mask("Zoë Ångström"), "Zo********öm");
        assert_eq!(mask("пароль12"), "па****12");
        assert_eq!(mask("ü"), "*");
        assert_eq!(mask("🔑🔑é🔑ü🔑🔑"), "🔑🔑***🔑🔑");
    }

    // ------------------------------------------------------------ errors

    /// Lines: 1 id, 2 [[rules]], 3 id, 4 category, 5 severity, 6 regex.
    const OK_RULE: &str = "id = \"p\"\n[[rules]]\nid = \"r\"\ncategory = \"secret\"\nseverity = \"low\"\nregex = '''tok_[0-9]+'''\n";

    fn parse_err(text: &str) -> String {
        let err = RulePack::parse(text, "bad.toml").unwrap_err();
        assert_eq!(err.origin(), Some("bad.toml"));
        err.to_string()
    }

    #[test]
    fn ok_rule_fixture_parses() {
        assert_eq!(RulePack::parse(OK_RULE, "ok.toml").unwrap().rule_ids(), vec!["r"]);
    }

    #[test]
    fn error_unknown_keys() {
        let e = parse_err(&format!("{OK_RULE}colour = \"red\"\n"));
        assert!(
            e.starts_with("bad.toml:7:1: unknown field `colour`, expected one of"),
            "{e}"
        );
        let e = parse_err("id = \"p\"\nversion = 2\n");
        assert!(e.starts_with("bad.toml:2:1: unknown field `version`"), "{e}");
        let e = parse_err(&format!("{OK_RULE}[rules.allowlist]\nwords = []\n"));
        assert_eq!(
            e,
            "bad.toml:8:1: unknown field `words`, expected `regexes` or `stopwords`"
        );
    }

    #[test]
    fn error_wrong_types_and_syntax() {
        let e = parse_err(&format!("{OK_RULE}entropy = \"high\"\n"));
        assert_eq!(e, "bad.toml:7:11: invalid type: string \"high\", expected f64");
        let e = parse_err(&format!("{OK_RULE}keywords = \"akia\"\n"));
        assert_eq!(
            e,
            "bad.toml:7:12: invalid type: string \"akia\", expected a sequence"
        );
        let e = parse_err("id = \"p\"\n[[rules]]\nid = \"r\"\ncategory = \"secret\"\nseverity = \"low\"\n");
        assert_eq!(e, "bad.toml:2:1: missing field `regex`");
        let e = parse_err("id = \"p\"\n[[rules]\n");
        assert!(e.starts_with("bad.toml:2:"), "{e}");
    }

    #[test]
    fn error_duplicate_ids() {
        let e = parse_err(&format!(
            "{OK_RULE}[[rules]]\nid = \"r\"\ncategory = \"pii\"\nseverity = \"low\"\nregex = 'x'\n"
        ));
        assert_eq!(e, "bad.toml:8:6: duplicate rule id `r` (first defined at line 3)");
        let a = RulePack::parse(OK_RULE, "a.toml").unwrap();
        let b = RulePack::parse(&format!("\n{OK_RULE}"), "b.toml").unwrap();
        let e = Scanner::new(&[a, b], None).unwrap_err();
        assert_eq!(e.line(), Some(4));
        assert_eq!(
            e.to_string(),
            "b.toml:4:1: duplicate rule id `r` (first defined at a.toml:3)"
        );
        let builtin = RulePack::builtin();
        let e = Scanner::new(&[builtin.clone(), builtin], None).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{BUILTIN_ORIGIN}:")), "{e}");
        assert!(
            e.to_string().contains("duplicate rule id `aws-access-key-id`"),
            "{e}"
        );
    }

    #[test]
    fn error_invalid_ids() {
        let e = parse_err(&OK_RULE.replace("id = \"r\"", "id = \"deny-list\""));
        assert_eq!(
            e,
            "bad.toml:3:6: rule id `deny-list` is reserved for the customer deny-list"
        );
        let e = parse_err(&OK_RULE.replace("id = \"r\"", "id = \"bad id\""));
        assert!(e.starts_with("bad.toml:3:6: invalid rule id `bad id`"), "{e}");
        let e = parse_err(&OK_RULE.replace("id = \"p\"", "id = \" \""));
        assert_eq!(e, "bad.toml:1:6: pack id must not be empty");
    }

    #[test]
    fn error_invalid_regexes() {
        let e = parse_err(&OK_RULE.replace("tok_[0-9]+", "tok_[0-9+"));
        assert!(
            e.starts_with("bad.toml:6:9: invalid regex in rule `r`: regex parse error"),
            "{e}"
        );
        let e = parse_err(&OK_RULE.replace("tok_[0-9]+", "x*"));
        assert_eq!(e, "bad.toml:6:9: regex of rule `r` matches the empty string");
        let e = parse_err(&format!("{OK_RULE}[allowlist]\nregexes = ['''ok''', '''(''']\n"));
        assert!(
            e.starts_with("bad.toml:8:22: invalid allowlist regex in the pack allowlist:"),
            "{e}"
        );
    }

    #[test]
    fn error_secret_group_missing() {
        let e = parse_err(&format!("{OK_RULE}secret_group = 1\n"));
        assert_eq!(
            e,
            "bad.toml:7:16: secret_group 1 of rule `r` does not exist: the regex has 0 capture group(s)"
        );
        let e = parse_err(&format!("{OK_RULE}secret_group = -1\n"));
        assert!(
            e.starts_with("bad.toml:7:16: secret_group -1 of rule `r` does not exist"),
            "{e}"
        );
        let e = parse_err(&format!("{OK_RULE}secret_group = \"tok\"\n"));
        assert_eq!(e, "bad.toml:7:16: secret_group `tok` of rule `r` does not exist: the regex has no group of that name");
    }

    #[test]
    fn error_entropy_category_severity_validator() {
        let e = parse_err(&format!("{OK_RULE}entropy = -0.5\n"));
        assert_eq!(
            e,
            "bad.toml:7:11: entropy -0.5 of rule `r` must be a finite number >= 0 (bits per character)"
        );
        let e = parse_err(&format!("{OK_RULE}entropy = nan\n"));
        assert!(e.starts_with("bad.toml:7:11: entropy NaN of rule `r`"), "{e}");
        let e = parse_err(&OK_RULE.replace("\"secret\"", "\"secrets\""));
        assert_eq!(
            e,
            "bad.toml:4:12: unknown category `secrets` in rule `r`: expected `secret` or `pii`"
        );
        let e = parse_err(&OK_RULE.replace("\"low\"", "\"urgent\""));
        assert_eq!(e, "bad.toml:5:12: unknown severity `urgent` in rule `r`: expected `low`, `medium`, `high` or `critical`");
        let e = parse_err(&format!("{OK_RULE}validate = \"mod11\"\n"));
        assert_eq!(
            e,
            "bad.toml:7:12: unknown validator `mod11` in rule `r`: expected `luhn` or `iban`"
        );
    }

    #[test]
    fn error_keywords_and_stopwords() {
        let e = parse_err(&format!("{OK_RULE}keywords = []\n"));
        assert_eq!(
            e,
            "bad.toml:7:12: empty keywords list in rule `r`: omit `keywords` to always run the rule"
        );
        let e = parse_err(&format!("{OK_RULE}keywords = [\"ok\", \"contraseña\"]\n"));
        assert_eq!(e, "bad.toml:7:19: keyword \"contraseña\" in rule `r` must be a non-empty ASCII string (use an ASCII part of the word)");
        let e = parse_err(&format!("{OK_RULE}[rules.allowlist]\nstopwords = [\"\"]\n"));
        assert_eq!(
            e,
            "bad.toml:8:14: empty stopword in rule `r` (it would ignore every secret)"
        );
    }

    #[test]
    fn error_io_names_the_file() {
        let e = RulePack::load(Path::new("/nonexistent/lethe/rules.toml")).unwrap_err();
        assert!(matches!(e, RuleError::Io { .. }));
        assert_eq!(e.origin(), Some("/nonexistent/lethe/rules.toml"));
        assert!(
            e.to_string()
                .starts_with("/nonexistent/lethe/rules.toml: cannot read:"),
            "{e}"
        );
        let e = DenyList::load(Path::new("/nonexistent/deny.txt")).unwrap_err();
        assert_eq!(e.origin(), Some("/nonexistent/deny.txt"));
    }

    // ------------------------------------------------ corpus occurrences

    #[test]
    fn occurrences_in_reports_first_location_or_absence() {
        let scanner = builtin_scanner();
        let generation =
            "key AKIAZ3MQ7RXK2LPW4TNB mail jane.roe@acme.io again AKIAZ3MQ7RXK2LPW4TNB card 4539148803436467";
        let findings = scanner.scan(generation);
        let corpus = [
            "nothing here",
            "x jane.roe@acme.io y jane.roe@acme.io",
            "zzAKIAZ3MQ7RXK2LPW4TNB and AKIAZ3MQ7RXK2LPW4TNB",
            "jane.roe@acme.io first in a later document",
        ];
        let occ = occurrences_in(corpus, &findings).unwrap();
        assert_eq!(
            occ,
            vec![
                Occurrence {
                    secret: "AKIAZ3MQ7RXK2LPW4TNB".into(),
                    first: Some(CorpusHit { doc: 2, offset: 2 }),
                },
                Occurrence {
                    secret: "jane.roe@acme.io".into(),
                    first: Some(CorpusHit { doc: 1, offset: 2 }),
                },
                Occurrence {
                    secret: "4539148803436467".into(),
                    first: None
                },
            ]
        );
        assert!(occ[0].regurgitated() && !occ[2].regurgitated());
        assert!(!format!("{occ:?}").contains("4539148803436467"));
    }

    #[test]
    fn occurrences_in_handles_nested_secrets_bytes_and_stops_early() {
        let finding = |s: &str| Finding {
            rule: DENY_LIST_RULE_ID.into(),
            category: Category::Denylist,
            severity: Severity::High,
            start: 0,
            end: s.len(),
            secret: s.into(),
            entropy: shannon_entropy(s),
        };
        let findings = [finding("Acme1234!"), finding("Acme"), finding("Acme")];
        let mut consumed = 0;
        let docs = ["--Acme1234!--", "never read"].into_iter().map(|d| {
            consumed += 1;
            d.as_bytes().to_vec()
        });
        let occ = occurrences_in(docs, &findings).unwrap();
        assert_eq!(consumed, 1);
        assert_eq!(
            occ.iter()
                .map(|o| (o.secret.as_str(), o.first))
                .collect::<Vec<_>>(),
            vec![
                ("Acme1234!", Some(CorpusHit { doc: 0, offset: 2 })),
                ("Acme", Some(CorpusHit { doc: 0, offset: 2 })),
            ]
        );
        let untouched = std::iter::from_fn(|| -> Option<&str> { panic!("corpus read without findings") });
        assert_eq!(occurrences_in(untouched, &[]).unwrap(), vec![]);
    }

    // ------------------------------------------- prefilter equivalence

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn string(&mut self, alphabet: &str, len: usize) -> String {
            let chars: Vec<char> = alphabet.chars().collect();
            (0..len).map(|_| chars[self.below(chars.len())]).collect()
        }
        fn digits(&mut self, len: usize) -> String {
            self.string("0123456789", len)
        }
    }

    const B62: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    fn luhn_complete(prefix: &str) -> String {
        (0..10)
            .map(|d| format!("{prefix}{d}"))
            .find(|s| luhn_valid(s))
            .unwrap()
    }

    fn planted(rng: &mut Rng) -> String {
        match rng.below(22) {
            0 => format!(
                "aws_access_key_id={}{}",
                ["AKIA", "ASIA", "A3TX"][rng.below(3)],
                rng.string("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
            ),
            1 => format!(
                "{}={}",
                [
                    "aws_secret_access_key",
                    "AWS_SECRET_KEY",
                    "aws_ſecret_access_key",
                    "awsSecretAccessKey"
                ][rng.below(4)],
                rng.string(&format!("{B62}/+"), 40)
            ),
            2 => format!(
                "gh{}_{}",
                ["p", "o", "u", "s", "r"][rng.below(5)],
                rng.string(B62, 36)
            ),
            3 => format!("github_pat_{}_{}", rng.string(B62, 22), rng.string(B62, 59)),
            4 => format!("glpat-{}", rng.string(B62, 20)),
            5 => format!(
                "xoxb-{}-{}-{}",
                rng.digits(12),
                rng.digits(13),
                rng.string(B62, 24)
            ),
            6 => format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                rng.string("ABCDEFGHJK0123456789", 8),
                rng.string("ABCDEFGHJK0123456789", 10),
                rng.string(B62, 24)
            ),
            7 => format!(
                "{}_{}_{}",
                ["sk", "rk"][rng.below(2)],
                ["live", "test"][rng.below(2)],
                rng.string(B62, 24)
            ),
            8 => format!("AIza{}", rng.string(&format!("{B62}_-"), 35)),
            9 => format!("sk-{}", rng.string(B62, 48)),
            10 => format!(
                "{} = \"{}\"",
                [
                    "api_key",
                    "API-KEY",
                    "clientSecret",
                    "x_auth_token",
                    "SECRET",
                    "client_ſecret",
                    "api_\u{212A}ey"
                ][rng.below(7)],
                rng.string("0123456789abcdef", 32)
            ),
            11 => RSA_KEY.to_string(),
            12 => JWT.to_string(),
            13 => format!(
                "{}: {}{}!",
                ["password", "PASSWD", "db_pwd", "Passphrase", "paſſword"][rng.below(5)],
                rng.string(B62, 8),
                rng.digits(2)
            ),
            14 => format!(
                "postgres://u{}:{}@db{}.example.net/app",
                rng.digits(2),
                rng.string(B62, 12),
                rng.digits(1)
            ),
            15 => format!(
                "{}.{}@{}.{}",
                rng.string("abcdefghij", 5),
                rng.string("klmnopqrst", 4),
                rng.string("uvwxyz", 6),
                ["com", "io", "de", "co.uk"][rng.below(4)]
            ),
            16 => [
                format!(
                    "+1 415 {} {}",
                    rng.digits(3).replace(['0', '1'], "5"),
                    rng.digits(4)
                ),
                format!("(212) 555-{}", rng.digits(4)),
                format!("020 7946 {}", rng.digits(4)),
                format!("+49 30 {}", rng.digits(7)),
            ][rng.below(4)]
            .clone(),
            17 => luhn_complete(&format!("4{}", rng.digits(14))),
            18 => {
                let bban = rng.digits(18);
                (2..=98)
                    .map(|c| format!("DE{c:02}{bban}"))
                    .find(|s| iban_valid(s))
                    .unwrap()
            }
            19 => format!(
                "{}-{}-{}",
                100 + rng.below(500),
                10 + rng.below(89),
                1000 + rng.below(8999)
            ),
            20 => "the PROJECT nightingale file".to_string(),
            _ => format!("ACME corp and Zoë Ångström {}", rng.string("ſK\u{212A}x", 3)),
        }
    }

    fn mutate(rng: &mut Rng, s: String) -> String {
        match rng.below(6) {
            0 => s.to_uppercase(),
            1 => s.to_lowercase(),
            2 => {
                // Drop one character: a near miss of the planted value.
                let mut chars: Vec<char> = s.chars().collect();
                if !chars.is_empty() {
                    chars.remove(rng.below(chars.len()));
                }
                chars.into_iter().collect()
            }
            _ => s,
        }
    }

    #[test]
    fn prefilter_never_changes_results() {
        let deny = DenyList::parse(DENY, "deny.txt").unwrap();
        let packs = [RulePack::builtin()];
        let with = Scanner::build(&packs, Some(&deny), true).unwrap();
        let without = Scanner::build(&packs, Some(&deny), false).unwrap();
        let misses: Vec<String> = near_misses().into_iter().map(|(_, t)| t).collect();
        let fillers = [
            "lorem ipsum",
            "naïve café Ζωή 東京 🔑",
            "fn main() {}",
            "\n",
            "key",
            "token:",
            "the secret",
            "password",
            "@",
            "://",
            "eyJ",
            "sk-",
            "+1",
            "0",
        ];
        let seps = [" ", "\n", ", ", "=", ": ", "\"", "", "\t"];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut rules_seen = std::collections::BTreeSet::new();
        let mut skipped_some_rule = 0;
        for _ in 0..600 {
            let mut text = String::new();
            for _ in 0..(2 + rng.below(7)) {
                let piece = match rng.below(3) {
                    0 => {
                        let p = planted(&mut rng);
                        mutate(&mut rng, p)
                    }
                    1 => misses[rng.below(misses.len())].clone(),
                    _ => fillers[rng.below(fillers.len())].to_string(),
                };
                text.push_str(&piece);
                text.push_str(seps[rng.below(seps.len())]);
            }
            let a = with.scan(&text);
            let b = without.scan(&text);
            assert_eq!(a, b, "prefilter changed results for {text:?}");
            rules_seen.extend(a.into_iter().map(|f| f.rule));
            if with.active_rules(&text).contains(&false) {
                skipped_some_rule += 1;
            }
        }
        let mut expected: Vec<&str> = DEFAULT_RULE_IDS.to_vec();
        expected.push(DENY_LIST_RULE_ID);
        expected.sort();
        assert_eq!(
            rules_seen.iter().map(String::as_str).collect::<Vec<_>>(),
            expected
        );
        assert!(
            skipped_some_rule > 300,
            "prefilter skipped rules in only {skipped_some_rule} texts"
        );
    }
}
