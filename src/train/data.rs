//! Training data as the trainer sees it: the training split concatenated into one token stream
//! (`<|bos|> document <|eos|>` after each other) cut into windows of the model's context length, and a
//! fresh, seeded order of those windows for every epoch.

use tch::{Device, Kind, Tensor};

use crate::corpus::tokenizer::{BOS_ID, EOS_ID};
use crate::corpus::{CorpusError, Doc};
use crate::model::MaskRng;

/// Windows of `len` tokens over a packed stream.
pub struct TokenWindows {
    stream: Vec<u32>,
    len: usize,
}

impl TokenWindows {
    /// Packs `docs` into one stream, stopping after `cap` tokens when given (`--unique-tokens`, to study
    /// repetition: fewer unique tokens, more epochs over them).
    pub fn pack(
        docs: impl Iterator<Item = Result<Doc, CorpusError>>,
        len: usize,
        cap: Option<u64>,
    ) -> Result<TokenWindows, CorpusError> {
        let mut stream = Vec::new();
        for doc in docs {
            let doc = doc?;
            stream.push(BOS_ID);
            stream.extend_from_slice(&doc.tokens);
            stream.push(EOS_ID);
            if cap.is_some_and(|c| stream.len() as u64 >= c) {
                break;
            }
        }
        if let Some(c) = cap {
            stream.truncate(c as usize);
        }
        Ok(TokenWindows { stream, len })
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
        let capped = TokenWindows::pack(docs(&[3, 2, 9]).into_iter(), 4, Some(6)).unwrap();
        assert_eq!(capped.count(), 1);
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
