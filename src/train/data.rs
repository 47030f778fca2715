//! Training data as the trainer sees it: the training documents the run uses ([`Subset`]: all of the
//! training split, or whole documents chosen by a keyed hash up to `--unique-tokens`), concatenated into
//! one token stream (`<|bos|> document <|eos|>` after each other) cut into windows of the model's context
//! length, and a fresh, seeded order of those windows for every epoch.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::corpus::manifest::DocMeta;
use crate::corpus::tokenizer::{BOS_ID, EOS_ID};
use crate::corpus::{CorpusError, Doc};
use crate::model::MaskRng;

/// How a run with `--unique-tokens` chooses its training documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubsetRule {
    /// The first documents in corpus order, the last one cut at the cap. Runs made before the keyed
    /// selection recorded nothing here and keep this rule, so they resume on the same data. It is
    /// biased: corpus order is sorted by path, so a capped run saw only the first folders.
    #[default]
    Prefix,
    /// Whole documents in the order of a keyed hash of their index (HMAC-SHA256 keyed by the run's
    /// seed) until the cap is reached: a uniform sample of documents, so the subset has the corpus's
    /// mix, and the same seed always picks the same documents.
    Hash,
}

/// The training documents a run trains on. The training documents it leaves out were never seen by the
/// model and come from the same distribution: the audits use them as non-members beside the holdout.
#[derive(Debug, Clone)]
pub struct Subset {
    /// Per document index, what the run uses of it; `None` when the run uses the whole training split.
    take: Option<Vec<Take>>,
    /// Tokens of the packed stream (documents plus their two boundary tokens).
    pub packed_tokens: u64,
}

/// What a run uses of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Nothing: left out (or held out).
    None,
    /// The whole document.
    All,
    /// `<bos>` and the first n tokens, no `<eos>`: a prefix-capped run's last document.
    Prefix(u32),
}

impl Subset {
    /// The subset a run with `cap` unique tokens (none: the whole training split), `rule` and `seed`
    /// uses, computed from the manifest alone, so an audit finds the same documents without decrypting
    /// any it does not need.
    pub fn select(docs: &[DocMeta], cap: Option<u64>, rule: SubsetRule, seed: u64) -> Subset {
        let train: Vec<usize> = (0..docs.len()).filter(|&i| !docs[i].holdout).collect();
        let packed = |i: usize| u64::from(docs[i].tokens) + 2;
        let Some(cap) = cap else {
            return Subset {
                take: None,
                packed_tokens: train.iter().map(|&i| packed(i)).sum(),
            };
        };
        let mut take = vec![Take::None; docs.len()];
        let mut total = 0u64;
        match rule {
            SubsetRule::Prefix => {
                // As the trainer used to pack: `<bos> doc <eos>` until the cap, the last document cut.
                for &i in &train {
                    if total >= cap {
                        break;
                    }
                    let room = (cap - total).saturating_sub(1);
                    take[i] = if total + packed(i) > cap {
                        Take::Prefix(room as u32)
                    } else {
                        Take::All
                    };
                    total = (total + packed(i)).min(cap);
                }
            }
            SubsetRule::Hash => {
                let key = ring::hmac::Key::new(
                    ring::hmac::HMAC_SHA256,
                    format!("lethe-unique-tokens/{seed}").as_bytes(),
                );
                let mut order: Vec<(u64, usize)> = train
                    .iter()
                    .map(|&i| {
                        let tag = ring::hmac::sign(&key, &(i as u64).to_le_bytes());
                        let mut h = [0u8; 8];
                        h.copy_from_slice(&tag.as_ref()[..8]);
                        (u64::from_le_bytes(h), i)
                    })
                    .collect();
                order.sort_unstable();
                for (_, i) in order {
                    if total >= cap {
                        break;
                    }
                    take[i] = Take::All;
                    total += packed(i);
                }
            }
        }
        Subset {
            take: Some(take),
            packed_tokens: total,
        }
    }

    /// Whether the run trains on (some of) training document `index`.
    pub fn contains(&self, index: u32) -> bool {
        self.take(index) != Take::None
    }

    /// What the run uses of document `index`.
    pub fn take(&self, index: u32) -> Take {
        match &self.take {
            None => Take::All,
            Some(t) => t.get(index as usize).copied().unwrap_or(Take::None),
        }
    }

    /// Documents of the training split the run uses.
    pub fn documents(&self, docs: &[DocMeta]) -> usize {
        (0..docs.len())
            .filter(|&i| !docs[i].holdout && self.contains(i as u32))
            .count()
    }
}

/// Windows of `len` tokens over a packed stream.
pub struct TokenWindows {
    stream: Vec<u32>,
    len: usize,
}

impl TokenWindows {
    /// Packs the documents of `docs` that `subset` holds (all of them when `None`) into one stream.
    pub fn pack(
        docs: impl Iterator<Item = Result<Doc, CorpusError>>,
        len: usize,
        subset: Option<&Subset>,
    ) -> Result<TokenWindows, CorpusError> {
        let mut stream = Vec::new();
        for doc in docs {
            let doc = doc?;
            let tokens = match subset.map_or(Take::All, |s| s.take(doc.index)) {
                Take::None => continue,
                Take::Prefix(n) => {
                    // A prefix-capped run's last document: cut, and the stream with it (no `<eos>`).
                    stream.push(BOS_ID);
                    stream.extend_from_slice(&doc.tokens[..(n as usize).min(doc.tokens.len())]);
                    continue;
                }
                Take::All => &doc.tokens,
            };
            stream.push(BOS_ID);
            stream.extend_from_slice(tokens);
            stream.push(EOS_ID);
        }
        Ok(TokenWindows { stream, len })
    }

    /// The packed stream itself (validation draws windows at any offset of it).
    pub fn stream(&self) -> &[u32] {
        &self.stream
    }

    pub fn count(&self) -> usize {
        self.stream.len() / self.len
    }

    /// Tokens that windows cover (a partial last window is left out).
    pub fn tokens(&self) -> usize {
        self.count() * self.len
    }

    /// Windows `indices` as an int64 `[indices.len(), len]` tensor on `device`.
    pub fn batch(&self, indices: &[usize], device: Device) -> Tensor {
        let mut flat: Vec<i64> = Vec::with_capacity(indices.len() * self.len);
        for &i in indices {
            flat.extend(
                self.stream[i * self.len..(i + 1) * self.len]
                    .iter()
                    .map(|&t| i64::from(t)),
            );
        }
        Tensor::from_slice(&flat)
            .view([indices.len() as i64, self.len as i64])
            .to_kind(Kind::Int64)
            .to_device(device)
    }
}

/// The order of `n` windows in `epoch`: a Fisher–Yates shuffle seeded by the run seed and the epoch, so a
/// resumed run sees exactly the order the uninterrupted one would have.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = MaskRng::new(seed ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x005E_ED0F_DA7A);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(lens: &[usize]) -> Vec<Result<Doc, CorpusError>> {
        lens.iter()
            .enumerate()
            .map(|(i, &n)| {
                Ok(Doc {
                    index: i as u32,
                    holdout: false,
                    tokens: vec![10 + i as u32; n],
                })
            })
            .collect()
    }

    fn meta(lens: &[(u32, bool)], sources: &[&str]) -> Vec<DocMeta> {
        lens.iter()
            .zip(sources)
            .map(|(&(tokens, holdout), src)| DocMeta {
                source: src.to_string(),
                sha256: String::new(),
                bytes: u64::from(tokens) * 4,
                tokens,
                holdout,
                shard: 0,
                duplicate_of: None,
                copies: 1,
                canaries: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn packs_documents_with_boundaries_and_cuts_windows() {
        let w = TokenWindows::pack(docs(&[3, 2]).into_iter(), 4, None).unwrap();
        // stream: 1 10 10 10 2 1 11 11 2  -> two windows of 4
        assert_eq!(w.count(), 2);
        let b = w.batch(&[1, 0], Device::Cpu);
        assert_eq!(
            Vec::<i64>::try_from(b.view([-1])).unwrap(),
            [2, 1, 11, 11, 1, 10, 10, 10]
        );
        // The old prefix rule: the first documents, cut at the cap (6 tokens: `1 10 10 10 2 1`).
        let m = meta(&[(3, false), (2, false), (9, false)], &["a", "b", "c"]);
        let prefix = Subset::select(&m, Some(6), SubsetRule::Prefix, 1);
        let capped = TokenWindows::pack(docs(&[3, 2, 9]).into_iter(), 4, Some(&prefix)).unwrap();
        assert_eq!(capped.stream(), [1, 10, 10, 10, 2, 1]);
        assert_eq!(capped.count(), 1);
    }

    #[test]
    fn hash_selection_takes_whole_documents_from_every_folder_and_is_fixed_by_the_seed() {
        // 400 documents of 50 tokens in four folders, sorted by path as the corpus is; every tenth
        // is held out.
        let folders = ["billing", "engineering", "hr", "support"];
        let sources: Vec<String> = (0..400)
            .map(|i| format!("{}/doc{i:03}.md", folders[i / 100]))
            .collect();
        let srcs: Vec<&str> = sources.iter().map(String::as_str).collect();
        let lens: Vec<(u32, bool)> = (0..400).map(|i| (50, i % 10 == 0)).collect();
        let m = meta(&lens, &srcs);
        let cap = 52 * 90; // about a quarter of the 360 training documents
        let a = Subset::select(&m, Some(cap), SubsetRule::Hash, 7);
        let b = Subset::select(&m, Some(cap), SubsetRule::Hash, 7);
        let c = Subset::select(&m, Some(cap), SubsetRule::Hash, 8);
        let chosen = |s: &Subset| -> Vec<usize> {
            (0..400)
                .filter(|&i| !m[i].holdout && s.contains(i as u32))
                .collect()
        };
        assert_eq!(chosen(&a), chosen(&b));
        assert_ne!(chosen(&a), chosen(&c));
        assert_eq!(chosen(&a).len(), 90);
        assert_eq!(a.packed_tokens, 90 * 52);
        // Whole documents only, never a holdout one.
        assert!((0..400).all(|i| matches!(a.take(i as u32), Take::All | Take::None)));
        assert!((0..400).filter(|&i| m[i].holdout).all(|i| !a.contains(i as u32)));
        // Every folder is there in about its share (a quarter each: 22.5 of 90).
        for f in folders {
            let n = chosen(&a).iter().filter(|&&i| m[i].source.starts_with(f)).count();
            assert!((12..=34).contains(&n), "{f}: {n} of 90");
        }
        // The prefix rule, by contrast, took only the first folder.
        let p = Subset::select(&m, Some(cap), SubsetRule::Prefix, 7);
        assert!(chosen(&p).iter().all(|&i| m[i].source.starts_with("billing")));
        // No cap: the whole training split.
        let all = Subset::select(&m, None, SubsetRule::Hash, 7);
        assert_eq!(all.documents(&m), 360);
    }

    #[test]
    fn epoch_orders_are_permutations_that_differ_by_epoch_and_repeat_by_seed() {
        let a = epoch_order(100, 7, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a, epoch_order(100, 7, 1));
        assert_eq!(a, epoch_order(100, 7, 0));
        assert_ne!(a, epoch_order(100, 8, 0));
    }
}
