//! Exact verbatim-regurgitation matching: finds every span of a generation that occurs word for word
//! inside one training document, with the corpus location it was copied from.
//!
//! # Definition
//!
//! Let `g` be a generation of `m` tokens and `docs` the corpus. An interval `[s, e)` of `g` (with
//! `e > s`) *occurs* when `g[s..e]` equals `docs[d][o..o + (e - s)]` for some document `d` and offset
//! `o`: the whole interval lies inside one document, so text that would only match across the end of
//! one document and the start of the next does not occur.
//!
//! A **maximal span** is an occurring interval that cannot be extended by one token on either side:
//! `[s - 1, e)` does not occur (or `s == 0`) and `[s, e + 1)` does not occur (or `e == m`). For a
//! given `min_len` (tokens; 0 is treated as 1) the result lists every maximal span with
//! `e - s >= min_len`, ordered by `gen_start`. Equivalently, with `L(i)` the length of the longest
//! occurring interval that starts at `i`, the spans are `[i, i + L(i))` for every `i` with
//! `L(i) >= min_len` whose right end `i + L(i)` exceeds that of `i - 1`: a span is never contained in
//! another, so both starts and ends strictly increase.
//!
//! Every occurring interval of length at least `min_len` lies inside a reported span, so
//! `covered_tokens` (the number of generation positions inside at least one span) is exactly the
//! number of tokens covered by corpus text of at least `min_len` tokens; `covered_share` is that count
//! divided by `m` (0 for an empty generation) and `longest` is the longest span's length (0 if none).
//!
//! **Location.** Each span reports one occurrence: the smallest document index, and within it the
//! smallest offset, where `g[s..e]` occurs. The choice depends only on the corpus, never on hashing or
//! thread order, so two runs over the same data report the same evidence.
//!
//! # Algorithm
//!
//! [`CorpusIndex::build`] concatenates the documents, each followed by a separator symbol unique to it
//! and smaller than every token, and builds the suffix array by prefix doubling with counting sorts:
//! `O(n log n)` time and about `5n` `u32` of working memory for `n` = tokens + documents, keeping
//! `2n` plus a small range-minimum table afterwards. Because separators are unique and never equal
//! a generation token, a common prefix with any suffix stops at its document's end: no match can
//! cross a boundary, and there is nothing to verify afterwards because nothing is hashed.
//!
//! [`CorpusIndex::find`] computes `L(i)` for each generation position by a binary search over the
//! suffix array that carries the common-prefix lengths of both bounds (Manber and Myers), so each
//! search costs `O(L(i) + log n)` symbol comparisons in practice and `O(L(i) log n)` at worst. The
//! longest match at `i` is the longer common prefix with the two suffixes around the insertion
//! point. For each reported span, two more searches give the suffix-array range of its occurrences,
//! and a block range-minimum over that range gives the smallest text position, which is the smallest
//! (document, offset) because documents are laid out in index order.

use serde::{Deserialize, Serialize};

/// A corpus whose tokens and documents can be addressed with `u32` positions.
#[derive(Debug, thiserror::Error)]
pub enum NgramError {
    /// The suffix array stores `u32` positions; one index covers at most `u32::MAX - 1` symbols.
    #[error(
        "the corpus holds {tokens} tokens in {documents} documents; one regurgitation index covers at \
         most {max} tokens plus documents, so split the corpus into shards and search each"
    )]
    CorpusTooLarge { tokens: u64, documents: u64, max: u64 },
}

/// One maximal span of a generation that occurs verbatim inside one corpus document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First token of the span in the generation.
    pub gen_start: usize,
    /// Length in tokens.
    pub len: usize,
    /// Smallest index of a document that contains the span.
    pub doc: usize,
    /// Smallest offset of the span within `doc`.
    pub doc_offset: usize,
}

/// Everything one generation shares verbatim with the corpus, per the module's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matches {
    /// Maximal spans of at least `min_len` tokens, by increasing `gen_start`.
    pub spans: Vec<Span>,
    /// Length of the longest span, 0 when there is none.
    pub longest: usize,
    /// Generation tokens inside at least one span.
    pub covered_tokens: usize,
    /// `covered_tokens` over the generation's length; 0 for an empty generation.
    pub covered_share: f64,
}

/// Generation tokens that never occur in the corpus map here; no text symbol equals it.
const ABSENT: u32 = u32::MAX;

/// A suffix array over a tokenized corpus, answering exact verbatim-match queries for any `min_len`.
#[derive(Debug)]
pub struct CorpusIndex {
    /// Document `d`'s tokens as symbols, then separator `d`. Separators are `0..docs`, tokens are
    /// `docs + rank among the corpus's distinct tokens`, so symbols are dense and fit a counting sort.
    text: Vec<u32>,
    /// Start of each document in `text`; strictly increasing since each holds at least its separator.
    doc_starts: Vec<u32>,
    /// Distinct corpus tokens, sorted: token `alphabet[k]` is symbol `docs + k`.
    alphabet: Vec<u32>,
    sa: Vec<u32>,
    min: RangeMin,
    tokens: usize,
}

impl CorpusIndex {
    /// Indexes `docs` in order; document `d` of the results is `docs[d]`.
    pub fn build<D: AsRef<[u32]>>(docs: &[D]) -> Result<CorpusIndex, NgramError> {
        let tokens: usize = docs.iter().map(|d| d.as_ref().len()).sum();
        let total = tokens as u64 + docs.len() as u64;
        // ABSENT must stay above every symbol, and positions up to `total` must fit a u32.
        let max = u64::from(u32::MAX - 1);
        if total > max {
            return Err(NgramError::CorpusTooLarge {
                tokens: tokens as u64,
                documents: docs.len() as u64,
                max,
            });
        }
        let mut alphabet: Vec<u32> = docs.iter().flat_map(|d| d.as_ref().iter().copied()).collect();
        alphabet.sort_unstable();
        alphabet.dedup();

        let n_docs = docs.len() as u32;
        let mut text = Vec::with_capacity(total as usize);
        let mut doc_starts = Vec::with_capacity(docs.len());
        for (d, doc) in docs.iter().enumerate() {
            doc_starts.push(text.len() as u32);
            for &t in doc.as_ref() {
                let k = alphabet
                    .binary_search(&t)
                    .expect("the alphabet holds every corpus token");
                text.push(n_docs + k as u32);
            }
            text.push(d as u32);
        }
        let sa = suffix_array(&text, n_docs as usize + alphabet.len());
        let min = RangeMin::new(&sa);
        Ok(CorpusIndex {
            text,
            doc_starts,
            alphabet,
            sa,
            min,
            tokens,
        })
    }

    /// Number of documents indexed.
    pub fn num_documents(&self) -> usize {
        self.doc_starts.len()
    }

    /// Number of corpus tokens indexed.
    pub fn num_tokens(&self) -> usize {
        self.tokens
    }

    /// The maximal spans of `generation` of at least `min_len` tokens (0 counts as 1) that occur
    /// inside one document, with their coverage; see the module doc for the exact definition.
    pub fn find(&self, generation: &[u32], min_len: usize) -> Matches {
        let min_len = min_len.max(1);
        let n_docs = self.doc_starts.len() as u32;
        let query: Vec<u32> = generation
            .iter()
            .map(|t| match self.alphabet.binary_search(t) {
                Ok(k) => n_docs + k as u32,
                Err(_) => ABSENT,
            })
            .collect();

        let mut spans = Vec::new();
        let mut prev_end = 0;
        for i in 0..query.len() {
            let len = self.longest_prefix(&query[i..]);
            let end = i + len;
            // Ends never decrease (a match's suffix is a match); an equal end means the span at `i`
            // sits inside the one at `i - 1`, so it is not maximal.
            if len >= min_len && end > prev_end {
                let (doc, doc_offset) = self.first_occurrence(&query[i..end]);
                spans.push(Span {
                    gen_start: i,
                    len,
                    doc,
                    doc_offset,
                });
            }
            prev_end = prev_end.max(end);
        }

        let longest = spans.iter().map(|s| s.len).max().unwrap_or(0);
        let mut covered_tokens = 0;
        let mut covered_to = 0;
        for s in &spans {
            let end = s.gen_start + s.len;
            covered_tokens += end - s.gen_start.max(covered_to);
            covered_to = end;
        }
        let covered_share = if generation.is_empty() {
            0.0
        } else {
            covered_tokens as f64 / generation.len() as f64
        };
        Matches {
            spans,
            longest,
            covered_tokens,
            covered_share,
        }
    }

    /// Length of the longest prefix of `pattern` that occurs in the text (inside one document).
    fn longest_prefix(&self, pattern: &[u32]) -> usize {
        let (_, below, above) = self.search(pattern, false);
        below.max(above)
    }

    /// (document, offset) of the smallest text position where `pattern` (non-empty, occurring) starts.
    fn first_occurrence(&self, pattern: &[u32]) -> (usize, usize) {
        let (lo, _, _) = self.search(pattern, false);
        let (hi, _, _) = self.search(pattern, true);
        debug_assert!(lo < hi, "a reported span occurs in the corpus");
        let pos = self.min.query(&self.sa, lo, hi);
        let doc = self.doc_starts.partition_point(|&s| s <= pos) - 1;
        (doc, (pos - self.doc_starts[doc]) as usize)
    }

    /// Binary search over the suffix array for the first suffix that is `>= pattern` (or, with
    /// `past_prefixed`, the first that is greater and does not start with `pattern`). Returns that
    /// index and the common-prefix lengths of `pattern` with the suffixes just below and at it.
    fn search(&self, pattern: &[u32], past_prefixed: bool) -> (usize, usize, usize) {
        let (mut lo, mut hi) = (0, self.sa.len());
        let (mut lcp_lo, mut lcp_hi) = (0, 0);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let suffix = &self.text[self.sa[mid] as usize..];
            // Every suffix between the bounds shares at least the shorter of their common prefixes.
            let mut h = lcp_lo.min(lcp_hi);
            while h < pattern.len() && h < suffix.len() && suffix[h] == pattern[h] {
                h += 1;
            }
            let suffix_below = if h == pattern.len() {
                past_prefixed
            } else {
                // A suffix that ends first is smaller; separators make that impossible for patterns
                // built from generation tokens, but the order stays right for any pattern.
                suffix.get(h).is_none_or(|&c| c < pattern[h])
            };
            if suffix_below {
                lo = mid + 1;
                lcp_lo = h;
            } else {
                hi = mid;
                lcp_hi = h;
            }
        }
        (lo, lcp_lo, lcp_hi)
    }
}

/// Tokens for the character-level variant: one token per Unicode scalar value, so offsets and
/// lengths are counted in characters.
pub fn chars_as_tokens(text: &str) -> Vec<u32> {
    text.chars().map(u32::from).collect()
}

/// Suffix array of `text`, whose symbols are dense in `0..alphabet`, by prefix doubling: after the
/// round with step `k`, suffixes are ordered by their first `2k` symbols, each round two stable
/// counting sorts. Stops when every rank is distinct, which unique separators make happen once `k`
/// passes the longest repeat.
fn suffix_array(text: &[u32], alphabet: usize) -> Vec<u32> {
    let n = text.len();
    if n == 0 {
        return Vec::new();
    }
    let mut count = vec![0u32; alphabet.max(n) + 1];
    let mut sa = vec![0u32; n];
    for &c in text {
        count[c as usize + 1] += 1;
    }
    for c in 1..count.len() {
        count[c] += count[c - 1];
    }
    for (i, &c) in text.iter().enumerate() {
        sa[count[c as usize] as usize] = i as u32;
        count[c as usize] += 1;
    }
    let mut rank = text.to_vec();
    let mut classes = alphabet;
    let mut scratch = vec![0u32; n];
    let mut k = 1;
    while classes < n {
        // Order by the second key (rank at i + k; suffixes shorter than that come first) ...
        let mut p = 0;
        for i in n.saturating_sub(k)..n {
            scratch[p] = i as u32;
            p += 1;
        }
        for &s in &sa {
            if s as usize >= k {
                scratch[p] = s - k as u32;
                p += 1;
            }
        }
        // ... then stably by the first.
        count[..=classes].fill(0);
        for &r in &rank {
            count[r as usize + 1] += 1;
        }
        for c in 1..=classes {
            count[c] += count[c - 1];
        }
        for &i in &scratch {
            let r = rank[i as usize] as usize;
            sa[count[r] as usize] = i;
            count[r] += 1;
        }
        let second = |i: usize| {
            if i + k < n {
                i64::from(rank[i + k])
            } else {
                -1
            }
        };
        scratch[sa[0] as usize] = 0;
        classes = 1;
        for j in 1..n {
            let (a, b) = (sa[j - 1] as usize, sa[j] as usize);
            if rank[a] != rank[b] || second(a) != second(b) {
                classes += 1;
            }
            scratch[b] = (classes - 1) as u32;
        }
        std::mem::swap(&mut rank, &mut scratch);
        k *= 2;
    }
    sa
}

/// Range minimum over the suffix array in linear memory: minima of blocks of `BLOCK` entries with a
/// sparse table over them, and a scan of the two partial blocks at the ends of a query.
#[derive(Debug)]
struct RangeMin {
    /// `levels[j][b]` is the minimum of blocks `b .. b + 2^j`.
    levels: Vec<Vec<u32>>,
}

const BLOCK: usize = 64;

impl RangeMin {
    fn new(values: &[u32]) -> RangeMin {
        let base: Vec<u32> = values
            .chunks(BLOCK)
            .map(|c| c.iter().copied().min().unwrap_or(u32::MAX))
            .collect();
        let mut levels = vec![base];
        let mut width = 1;
        while 2 * width <= levels[0].len() {
            let prev = &levels[levels.len() - 1];
            let next: Vec<u32> = (0..prev.len() - width)
                .map(|b| prev[b].min(prev[b + width]))
                .collect();
            levels.push(next);
            width *= 2;
        }
        RangeMin { levels }
    }

    /// Minimum of `values[lo..hi]`, which must be non-empty and the slice this table was built on.
    fn query(&self, values: &[u32], lo: usize, hi: usize) -> u32 {
        let (first, last) = (lo / BLOCK, (hi - 1) / BLOCK);
        let scan = |a: usize, b: usize| values[a..b].iter().copied().min().unwrap_or(u32::MAX);
        if first == last {
            return scan(lo, hi);
        }
        let mut best = scan(lo, (first + 1) * BLOCK).min(scan(last * BLOCK, hi));
        let (a, b) = (first + 1, last);
        if a < b {
            let j = (usize::BITS - 1 - (b - a).leading_zeros()) as usize;
            best = best.min(self.levels[j][a]).min(self.levels[j][b - (1 << j)]);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: deterministic, dependency-free randomness for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn tokens(&mut self, len: usize, alphabet: usize) -> Vec<u32> {
            (0..len).map(|_| self.below(alphabet) as u32).collect()
        }
    }

    /// First (document, offset) where `pattern` occurs inside one document, by scanning.
    fn brute_occurrence(docs: &[Vec<u32>], pattern: &[u32]) -> Option<(usize, usize)> {
        docs.iter().enumerate().find_map(|(d, doc)| {
            doc.windows(pattern.len())
                .position(|w| w == pattern)
                .map(|o| (d, o))
        })
    }

    /// The module's definition taken literally: every occurring interval of at least `min_len`
    /// tokens that cannot be extended left or right, found by trying every interval.
    fn brute_force(docs: &[Vec<u32>], generation: &[u32], min_len: usize) -> Matches {
        let min_len = min_len.max(1);
        let m = generation.len();
        let occurs = |s: usize, e: usize| brute_occurrence(docs, &generation[s..e]).is_some();
        let mut spans = Vec::new();
        let mut covered = vec![false; m];
        for s in 0..m {
            for e in (s + min_len)..=m {
                if !occurs(s, e) || (s > 0 && occurs(s - 1, e)) || (e < m && occurs(s, e + 1)) {
                    continue;
                }
                let (doc, doc_offset) = brute_occurrence(docs, &generation[s..e]).expect("checked above");
                spans.push(Span {
                    gen_start: s,
                    len: e - s,
                    doc,
                    doc_offset,
                });
                covered[s..e].iter_mut().for_each(|c| *c = true);
            }
        }
        let covered_tokens = covered.iter().filter(|&&c| c).count();
        Matches {
            longest: spans.iter().map(|s| s.len).max().unwrap_or(0),
            spans,
            covered_tokens,
            covered_share: if m == 0 {
                0.0
            } else {
                covered_tokens as f64 / m as f64
            },
        }
    }

    fn check(docs: &[Vec<u32>], generation: &[u32], min_len: usize) -> Matches {
        let index = CorpusIndex::build(docs).expect("small corpus");
        let got = index.find(generation, min_len);
        let want = brute_force(docs, generation, min_len);
        assert_eq!(
            got, want,
            "docs {docs:?} generation {generation:?} min_len {min_len}"
        );
        got
    }

    fn span(gen_start: usize, len: usize, doc: usize, doc_offset: usize) -> Span {
        Span {
            gen_start,
            len,
            doc,
            doc_offset,
        }
    }

    #[test]
    fn suffix_array_sorts_suffixes_with_unique_separators() {
        let mut rng = Rng(7);
        for _ in 0..300 {
            let docs: Vec<Vec<u32>> = (0..rng.below(5))
                .map(|_| {
                    let len = rng.below(12);
                    rng.tokens(len, 3)
                })
                .collect();
            let index = CorpusIndex::build(&docs).expect("small corpus");
            let mut naive: Vec<u32> = (0..index.text.len() as u32).collect();
            naive.sort_by(|&a, &b| index.text[a as usize..].cmp(&index.text[b as usize..]));
            assert_eq!(index.sa, naive, "docs {docs:?}");
        }
    }

    #[test]
    fn range_min_agrees_with_scanning() {
        let mut rng = Rng(11);
        let values: Vec<u32> = (0..1000).map(|_| rng.next() as u32).collect();
        let table = RangeMin::new(&values);
        for _ in 0..5000 {
            let lo = rng.below(values.len());
            let hi = lo + 1 + rng.below(values.len() - lo);
            let want = values[lo..hi].iter().copied().min();
            assert_eq!(Some(table.query(&values, lo, hi)), want, "{lo}..{hi}");
        }
    }

    #[test]
    fn matches_brute_force_on_random_small_inputs() {
        let mut rng = Rng(42);
        for case in 0..4000 {
            let alphabet = 1 + rng.below(4);
            let docs: Vec<Vec<u32>> = (0..rng.below(6))
                .map(|_| {
                    let len = rng.below(16);
                    rng.tokens(len, alphabet)
                })
                .collect();
            // Half the generations splice corpus pieces together so long matches are common.
            let generation = if case % 2 == 0 || docs.iter().all(|d| d.is_empty()) {
                let len = rng.below(20);
                rng.tokens(len, alphabet + 1)
            } else {
                let mut g = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    let doc = &docs[rng.below(docs.len())];
                    if doc.is_empty() {
                        continue;
                    }
                    let a = rng.below(doc.len());
                    let b = a + 1 + rng.below(doc.len() - a);
                    g.extend_from_slice(&doc[a..b]);
                    if rng.below(3) == 0 {
                        g.push(rng.below(alphabet + 1) as u32);
                    }
                }
                g
            };
            check(&docs, &generation, rng.below(6));
        }
    }

    #[test]
    fn matches_brute_force_on_larger_random_inputs() {
        let mut rng = Rng(3);
        for _ in 0..40 {
            let docs: Vec<Vec<u32>> = (0..8)
                .map(|_| {
                    let len = rng.below(200);
                    rng.tokens(len, 2)
                })
                .collect();
            let generation = rng.tokens(60, 2);
            for min_len in [1, 4, 8] {
                check(&docs, &generation, min_len);
            }
        }
    }

    #[test]
    fn span_that_only_matches_across_a_document_boundary_does_not_count() {
        let docs = vec![vec![1, 2, 3], vec![4, 5, 6]];
        let got = check(&docs, &[2, 3, 4, 5], 3);
        assert_eq!(got.spans, vec![]);
        assert_eq!(got.covered_tokens, 0);
        let got = check(&docs, &[2, 3, 4, 5], 2);
        assert_eq!(got.spans, vec![span(0, 2, 0, 1), span(2, 2, 1, 0)]);
        assert_eq!(got.covered_tokens, 4);
    }

    #[test]
    fn overlapping_spans_are_both_reported_and_covered_once() {
        let docs = vec![vec![1, 2, 3, 4], vec![3, 4, 5, 6]];
        let got = check(&docs, &[1, 2, 3, 4, 5, 6], 3);
        assert_eq!(got.spans, vec![span(0, 4, 0, 0), span(2, 4, 1, 0)]);
        assert_eq!(got.longest, 4);
        assert_eq!(got.covered_tokens, 6);
        assert_eq!(got.covered_share, 1.0);
    }

    #[test]
    fn periodic_text_reports_one_span_at_the_first_offset() {
        let docs = vec![[1, 2].repeat(10)];
        let got = check(&docs, &[[1, 2].repeat(5), vec![1, 1, 2, 1]].concat(), 2);
        assert_eq!(got.spans, vec![span(0, 11, 0, 0), span(11, 3, 0, 0)]);
        assert_eq!(got.covered_tokens, 14);
        let got = check(&docs, &[2, 1, 2, 1, 2], 1);
        assert_eq!(got.spans, vec![span(0, 5, 0, 1)]);
        // A period-3 generation against a period-2 corpus: only pairs of tokens match.
        check(&docs, &[1, 2, 2].repeat(6), 1);
        check(&[vec![7; 30], vec![7; 3]], &[7; 40], 5);
    }

    #[test]
    fn generation_equal_to_a_whole_document_names_the_first_document_holding_it() {
        let docs = vec![vec![9, 9, 5, 6, 7, 8], vec![5, 6, 7, 8], vec![5, 6, 7, 8]];
        let got = check(&docs, &[5, 6, 7, 8], 4);
        assert_eq!(got.spans, vec![span(0, 4, 0, 2)]);
        let docs = vec![vec![5, 6, 7], vec![1, 5, 6, 7, 8], vec![5, 6, 7, 8]];
        let got = check(&docs, &[5, 6, 7, 8], 2);
        assert_eq!(got.spans, vec![span(0, 4, 1, 1)]);
        assert_eq!(got.covered_share, 1.0);
    }

    #[test]
    fn min_len_one_reports_every_maximal_run_and_zero_means_one() {
        let docs = vec![vec![3, 1, 4, 1, 5]];
        let got = check(&docs, &[1, 4, 9, 5, 3], 1);
        assert_eq!(
            got.spans,
            vec![span(0, 2, 0, 1), span(3, 1, 0, 4), span(4, 1, 0, 0)]
        );
        assert_eq!(got.covered_tokens, 4);
        assert_eq!(got.covered_share, 0.8);
        assert_eq!(
            CorpusIndex::build(&docs)
                .expect("small corpus")
                .find(&[1, 4, 9, 5, 3], 0),
            got
        );
    }

    #[test]
    fn empty_inputs_report_nothing() {
        let none = Matches {
            spans: vec![],
            longest: 0,
            covered_tokens: 0,
            covered_share: 0.0,
        };
        assert_eq!(check(&[vec![1, 2, 3]], &[], 1), none);
        let empty_corpus: Vec<Vec<u32>> = vec![];
        let index = CorpusIndex::build(&empty_corpus).expect("empty corpus");
        assert_eq!((index.num_documents(), index.num_tokens()), (0, 0));
        assert_eq!(index.find(&[1, 2, 3], 1).spans, vec![]);
        assert_eq!(check(&[vec![], vec![]], &[1, 2], 1).spans, vec![]);
        assert_eq!(
            check(&[vec![], vec![1, 2]], &[1, 2], 1).spans,
            vec![span(0, 2, 1, 0)]
        );
    }

    #[test]
    fn generation_shorter_than_min_len_reports_nothing() {
        let got = check(&[vec![1, 2, 3, 4]], &[1, 2, 3], 4);
        assert_eq!(got.spans, vec![]);
        assert_eq!(got.covered_share, 0.0);
    }

    #[test]
    fn tokens_absent_from_the_corpus_and_extreme_ids_are_exact() {
        let docs = vec![vec![u32::MAX, 0, u32::MAX - 1], vec![0, u32::MAX]];
        let got = check(&docs, &[0, u32::MAX, 0, u32::MAX - 1, 17, u32::MAX], 2);
        assert_eq!(got.spans, vec![span(0, 2, 1, 0), span(1, 3, 0, 0)]);
        assert_eq!(got.covered_tokens, 4);
    }

    #[test]
    fn char_variant_counts_unicode_characters() {
        let docs: Vec<Vec<u32>> = ["naïve café ☕ au lait", "日本語のテキスト"]
            .iter()
            .map(|d| chars_as_tokens(d))
            .collect();
        let generation = chars_as_tokens("a café ☕ and 本語のテ");
        let got = check(&docs, &generation, 4);
        assert_eq!(got.spans, vec![span(1, 9, 0, 5), span(13, 4, 1, 1)]);
    }

    #[test]
    fn results_serialize_with_the_documented_field_names() {
        let got = check(&[vec![1, 2, 3]], &[1, 2, 3, 4], 2);
        let json = serde_json::to_value(&got).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({
                "spans": [{"gen_start": 0, "len": 3, "doc": 0, "doc_offset": 0}],
                "longest": 3,
                "covered_tokens": 3,
                "covered_share": 0.75,
            })
        );
        let back: Matches = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, got);
    }
}
