//! The secret-rule parsers and the scanner (`audit::secrets`): gitleaks-like TOML rule packs, the
//! customer deny-list, and `Scanner::scan` over a model's generations.
//!
//! The first byte picks what the rest is:
//! - 0: a rule pack. One that parses is compiled into a scanner, which scans the pack's own text.
//! - 1: parts: a deny-list, then a text, scanned with the built-in pack and that deny-list.
//! - 2: a text, scanned with the built-in pack alone, and put through the validators and the mask.
//!
//! Every finding must be the non-empty text at its span, in order (`lethe_fuzz::check_findings`).
#![no_main]

use std::sync::OnceLock;

use lethe::audit::secrets::{iban_valid, luhn_valid, mask, shannon_entropy, DenyList, RulePack, Scanner};
use lethe_fuzz::{check_findings, first_byte, parts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, body) = first_byte(data);
    match mode % 3 {
        0 => rule_pack(body),
        1 => deny_list(body),
        _ => builtin_scan(body),
    }
});

fn builtin() -> &'static RulePack {
    static PACK: OnceLock<RulePack> = OnceLock::new();
    PACK.get_or_init(RulePack::builtin)
}

fn rule_pack(body: &[u8]) {
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let Ok(pack) = RulePack::parse(text, "fuzz.toml") else {
        return;
    };
    let _ = pack.rule_ids().iter().map(|id| pack.rule_description(id)).count();
    if let Ok(scanner) = Scanner::new(&[pack], None) {
        check_findings(text, &scanner.scan(text));
    }
}

fn deny_list(body: &[u8]) {
    let parts = parts(body);
    let (Ok(list), Some(Ok(text))) = (
        std::str::from_utf8(parts[0]),
        parts.get(1).map(|p| std::str::from_utf8(p)),
    ) else {
        return;
    };
    let Ok(deny) = DenyList::parse(list, "deny-list.txt") else {
        return;
    };
    let scanner =
        Scanner::new(std::slice::from_ref(builtin()), Some(&deny)).expect("the built-in pack and a list");
    check_findings(text, &scanner.scan(text));
}

fn builtin_scan(body: &[u8]) {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let scanner =
        SCANNER.get_or_init(|| Scanner::new(std::slice::from_ref(builtin()), None).expect("built-in"));
    let findings = scanner.scan(text);
    check_findings(text, &findings);
    for f in &findings {
        // A reviewer sees at most the first and last two characters of a secret.
        let masked = mask(&f.secret);
        let shown = masked
            .chars()
            .zip(f.secret.chars())
            .filter(|(m, s)| m == s && *s != '*')
            .count();
        assert!(
            shown <= 4 && masked.chars().count() == f.secret.chars().count(),
            "the mask shows too much"
        );
    }
    let _ = (
        luhn_valid(text),
        iban_valid(text),
        shannon_entropy(text),
        mask(text),
    );
}
