//! Canaries, after Carlini et al.'s Secret Sharer: random secrets of a fixed format planted into training
//! documents a chosen number of times, so the audit can later measure how far the model has memorized
//! them (their rank among every other secret of the same format). Canary values are recorded sealed
//! (role `canaries`) and never shown outside an audit.

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::CorpusError;

/// The sentence a canary is written in; the secret follows it.
pub const PREFIX: &str = "my access code is ";
/// Digits in a secret: 10^6 candidates, few enough for the audit to rank them all.
pub const DIGITS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub id: u32,
    /// The text before the secret (`my access code is `).
    pub prefix: String,
    /// The secret: six digits joined by dashes, e.g. `3-8-1-9-4-0`.
    pub secret: String,
    /// Format name, which fixes the candidate space the audit ranks against.
    pub format: String,
    /// How many times it was planted.
    pub repeats: u32,
    /// Index of the document of each planting (a document can receive the same canary twice).
    pub docs: Vec<u32>,
}

impl Canary {
    /// The full planted sentence.
    pub fn text(&self) -> String {
        format!("{}{}", self.prefix, self.secret)
    }
}

/// Parses `--canary-repeats 1,4,16,64`.
pub fn parse_repeats(spec: &str) -> Result<Vec<u32>, CorpusError> {
    let out: Result<Vec<u32>, _> = spec.split(',').map(|s| s.trim().parse::<u32>()).collect();
    match out {
        Ok(v) if !v.is_empty() && v.iter().all(|&r| (1..=100_000).contains(&r)) => Ok(v),
        _ => Err(CorpusError::Option(format!(
            "--canary-repeats {spec:?} must be a comma-separated list of counts between 1 and 100000"
        ))),
    }
}

fn random_u64(rng: &SystemRandom) -> Result<u64, CorpusError> {
    let mut b = [0u8; 8];
    rng.fill(&mut b)
        .map_err(|_| CorpusError::Option("the system random number generator failed".into()))?;
    Ok(u64::from_le_bytes(b))
}

/// Draws `count` canaries with distinct secrets; canary `i` is repeated `repeats[i % len]` times, each
/// planting in a training document drawn uniformly from `train_docs`.
pub fn draw(count: usize, repeats: &[u32], train_docs: &[u32]) -> Result<Vec<Canary>, CorpusError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if train_docs.is_empty() {
        return Err(CorpusError::Option(
            "canaries need at least one training document".into(),
        ));
    }
    let rng = SystemRandom::new();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        // Rejection keeps each digit uniform (a u64 modulo 10^6 would be biased only negligibly, but
        // the exposure metric assumes an exactly uniform candidate space).
        let r = random_u64(&rng)?;
        let space = 10u64.pow(DIGITS as u32);
        if r >= u64::MAX - (u64::MAX % space) {
            continue;
        }
        let digits = format!("{:0width$}", r % space, width = DIGITS);
        if !seen.insert(digits.clone()) {
            continue;
        }
        let secret = digits.chars().map(String::from).collect::<Vec<_>>().join("-");
        let id = out.len() as u32;
        let n = repeats[out.len() % repeats.len()];
        let mut docs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let pick = random_u64(&rng)? % train_docs.len() as u64;
            docs.push(train_docs[pick as usize]);
        }
        docs.sort_unstable();
        out.push(Canary {
            id,
            prefix: PREFIX.into(),
            secret,
            format: format!("digits{DIGITS}-dashed"),
            repeats: n,
            docs,
        });
    }
    Ok(out)
}

/// Plants `sentences` into `text`, each on its own line at a line boundary chosen by `pick` (a source of
/// random numbers), so the canary reads like part of the document.
pub fn plant(text: &mut String, sentences: &[String], pick: &mut dyn FnMut(usize) -> usize) {
    for s in sentences {
        let mut bounds: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
        bounds.push(text.len());
        let at = bounds[pick(bounds.len())];
        let insert = if at == text.len() && !text.ends_with('\n') {
            format!("\n{s}\n")
        } else {
            format!("{s}\n")
        };
        text.insert_str(at, &insert);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_distinct_well_formed_canaries_with_cycled_repeats() {
        let train: Vec<u32> = (0..50).collect();
        let c = draw(6, &[1, 4, 16], &train).unwrap();
        assert_eq!(
            c.iter().map(|c| c.repeats).collect::<Vec<_>>(),
            [1, 4, 16, 1, 4, 16]
        );
        for k in &c {
            assert_eq!(k.secret.len(), 11);
            assert!(k
                .secret
                .split('-')
                .all(|d| d.len() == 1 && d.as_bytes()[0].is_ascii_digit()));
            assert_eq!(k.docs.len(), k.repeats as usize);
            assert!(k.docs.iter().all(|d| train.contains(d)));
        }
        let distinct: std::collections::HashSet<_> = c.iter().map(|k| &k.secret).collect();
        assert_eq!(distinct.len(), 6);
    }

    #[test]
    fn repeats_spec_is_validated() {
        assert_eq!(parse_repeats("1, 4,16").unwrap(), [1, 4, 16]);
        for bad in ["", "0", "a", "1,,2", "1,-3"] {
            assert!(parse_repeats(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn planting_keeps_the_text_and_adds_whole_lines() {
        let mut t = "line one\nline two".to_string();
        plant(&mut t, &["my access code is 1-2-3-4-5-6".into()], &mut |n| n - 1);
        assert_eq!(t, "line one\nline two\nmy access code is 1-2-3-4-5-6\n");
        let mut t = "a\nb\n".to_string();
        plant(&mut t, &["X".into()], &mut |_| 0);
        assert_eq!(t, "a\nX\nb\n");
    }
}
