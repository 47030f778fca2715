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
//! smallest offset, where `g[s..e]` occurs. The choice depends only on the corpus, never on hashing,
//! thread order or how the corpus was split into shards, so two runs over the same data report the
//! same evidence.
//!
//! **Text mode** ([`GenerationIndex::text`], the `--min-chars` audit) applies the same definition to
//! the sequences of Unicode scalar values (`str::chars`) of the generation and of each document, with
//! `min_len` counted in characters. Only the units of the report change: `gen_start` and `doc_offset`
//! are **byte** offsets (always at character starts), [`Span::len`], `longest` and `covered_tokens`
//! count **characters**, `covered_share` is covered characters over the generation's characters, and
//! the extra fields [`Span::bytes`] and [`Matches::covered_bytes`] give the same quantities in bytes.
//! In token mode those two fields are `None` and are left out of the serialized form, which is
//! therefore unchanged.
//!
//! # Algorithm
//!
//! The generations are small (about a million symbols) and the corpus large (hundreds of megabytes),
//! so [`GenerationIndex`] indexes the generations once and [`Scan`] streams the corpus document by
//! document, touching only a small sample of its positions.
//!
//! **Anchors.** With window width `w` and anchor stride `k` chosen so that `w + k - 1 <= min_len`
//! (see below), every interval of at least `min_len` symbols inside a document contains a window
//! `[p, p + w)` whose document-local offset `p` is a multiple of `k`: the first multiple of `k` at or
//! after the interval's start is at most `k - 1` further on, and the window ending `w` later still ends
//! inside the interval. The index holds every `w`-window of every generation (none crossing a
//! generation's end) in a table keyed by a 64-bit hash: a Bloom filter of 16 bits per window with
//! both of a window's two bits in one 64-bit word (one memory access per test, about 1.5% false
//! positives) as a cache-friendly prefilter, then buckets holding a 32-bit check and the window's
//! position. A scan hashes only the document windows at `p = 0, k, 2k, ...`, in batches so the
//! prefilter's memory loads overlap. Each candidate is verified symbol by symbol (hashes collide), then extended left and
//! right to the **maximal match pair**: the longest run of equal symbols on that diagonal (fixed
//! `generation position - document position`), bounded by the document's and the generation's ends.
//!
//! **Diagonals.** Per document, the scan remembers for each diagonal the document end of the last pair
//! found on it (pairs on one diagonal are found in document order); a hit inside that pair is
//! skipped, so a long match is extended once, not once per anchor it contains. Because of that, a
//! pair first found at anchor `p` starts after `p - k` (had it reached `p - k`, the anchor window
//! there would have found it first; only pairs found right after a skipped periodic stretch, below,
//! may reach further back), so left extension costs fewer than `k` comparisons, and right
//! extension costs the pair's length. Work per document is thus the sampled windows, plus per
//! verified hit a window comparison and a hash lookup, plus the total length of the distinct maximal
//! pairs. A paragraph repeated in 10,000 documents costs 10,000 extensions, linear in the text.
//!
//! **Periodic stretches.** Runs of one symbol, or of any short repeating unit, would still give
//! every anchor inside them a hit on every phase-aligned position of a periodic generation, and
//! about `(R + G) / q` distinct maximal pairs of up to `min(R, G)` symbols for a document run of `R`
//! and a generation run of `G` with period `q`. The scan avoids that exactly: when an anchor's window
//! equals four or more generation windows and has a period `q < w`, the scan measures
//! the maximal stretch `[c, f)` of the document on which `doc[x] == doc[x + q]` for `c <= x < f - q`.
//! A maximal pair whose document extent `[ds, de)` satisfies `ds >= c + q` and `de <= f` is
//! *shadowed*: the same text occurs at `ds - q`, inside a maximal pair (found, by induction on `ds`)
//! that covers at least the same generation extent at a smaller offset, so the shadowed pair can
//! change neither a span nor a location (a pair contained in another with a smaller start is never
//! reported, and with the same start it is neither the longest nor, at equal extent, the first). A
//! pair whose first anchor `p1` satisfies `p1 - k + 1 >= c + q` starts at or after `c + q`, so every
//! anchor in `[c + q + k - 1, f - w]` is skipped, and one extra window, `[f + 1 - w, f + 1)`, is
//! probed in its place: it lies inside every such pair that runs past `f`. The periodic run itself
//! is read once. What remains super-linear is only the first few anchors of each stretch, about
//! `G / q` pairs of up to `min(R, G)` symbols each.
//!
//! **Parameters.** For `min_len <= N` (`N` = 8 tokens, 16 bytes) the window is the whole minimum
//! (`w = min_len`, `k = 1`); otherwise `w = min_len / 4` clamped to `[N, 2N]` and
//! `k = min_len - w + 1`. With `min_len = 200` bytes that samples one 32-byte window every 169 bytes.
//!
//! **Result state.** A scan keeps, per generation position `s`, the one pair starting at `s` with the
//! largest end `e`, and among those the smallest `(document, offset)`; pairs shorter than `min_len`
//! are dropped. Memory is thus bounded by the generations' length whatever the corpus repeats, and
//! the state is a function of the *set* of documents seen (a per-key maximum and minimum), so adding
//! documents in any order, in any number of scans merged in any order ([`Scan::merge`], or
//! [`PartialScan`] through serde for other machines), gives exactly the same result.
//!
//! **From pairs to spans.** [`Scan::finish`] sweeps each generation's kept pairs by increasing start,
//! keeping `R`, the largest end among pairs with a smaller start; a pair `(s, e)` with `e > R` is a
//! span `[s, e)` at its kept location. Why this equals the definition: every occurring interval lies
//! in the maximal pair on its diagonal, so `E(i) = i + L(i)` is the largest end of a maximal pair
//! covering `i`. Let `E'(i)` be the same maximum over only the kept pairs. (1) If `L(i) >= min_len`,
//! the pair reaching `E(i)` is at least `E(i) - i >= min_len` long, hence kept: `E'(i) = E(i)`; if
//! `L(i) < min_len`, `E'(i) - i < min_len` too. (2) When `E(i) > E(i - 1)`, `E'(i) = E(i) > E(i - 1)
//! >= E'(i - 1)`; when `E(i) = E(i - 1)` and `L(i) >= min_len`, the pair reaching `E(i - 1)` starts
//! at or before `i - 1` and ends at `E(i) >= i + min_len`, so it is longer than `min_len`, kept, and
//! `E'(i - 1) = E'(i)`. So the spans read off `E'` are exactly those of `E`: a pair shorter than
//! `min_len` can never change which spans are reported (the same holds for any kept set between
//! "all long pairs" and "all pairs", which text mode uses below). A strict increase of `E'` can only
//! happen at a pair's start (a pair starting earlier also covers `i - 1`), which is why only pair
//! starts are visited, and `R >= E'(s - 1)` with equality whenever the comparison matters. (3)
//! Every occurrence of a span `[s, e)` lies in a maximal pair with start `<= s` and end `e` (its end
//! cannot exceed `E(s) = e`); a start `< s` would make `E(s - 1) >= e`, contradicting the span, and
//! that pair would be long, hence kept. So the occurrences are exactly the long pairs with extent
//! `(s, e)`, whose smallest location the state kept.
//!
//! **Text mode** works on UTF-8 bytes. A character-level match of `c >= min_chars` characters is a
//! byte-level match of at least `c` bytes, so byte anchoring with `min_len = min_chars` finds the
//! byte-maximal pair containing it. Each byte-maximal pair is trimmed to character boundaries: its
//! start moves forward to the first byte that starts a character (equal bytes, so in both strings),
//! and its end moves back to the last position that is a character boundary in *both* strings (the
//! byte after it starts a character, or the string ends). The trimmed pair is exactly the
//! character-level maximal pair on that diagonal: the character before it contains the first,
//! mismatching byte before the byte pair, and a further equal character after it would end at a
//! common boundary inside the byte pair. (For valid UTF-8 the two boundary conditions coincide,
//! since equal bytes from a character start hold the same complete characters; both are checked.)
//! A shadowed byte pair's trimmed pair is shadowed at the same shift, so periodic skipping carries
//! over. Trimmed pairs shorter than `min_chars` bytes are dropped,
//! those with fewer than `min_chars` characters are filtered when spans are read off (per start, the
//! kept pair with the largest end has the most characters, so the filter is exact).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

/// Errors of building an index or resuming a partial scan.
#[derive(Debug, thiserror::Error)]
pub enum NgramError {
    /// Generation positions are stored as `u32`; one index covers fewer than 2^32 symbols.
    #[error(
        "the generations hold {symbols} symbols; one regurgitation index covers at most {max}, so \
         split the generations into batches and scan each"
    )]
    GenerationsTooLarge {
        /// Symbols (tokens, or bytes in text mode) in all generations.
        symbols: u64,
        /// The largest supported total.
        max: u64,
    },
    /// A partial scan made with a different index (other generations, `min_len` or mode).
    #[error("the partial scan belongs to another generation index (fingerprint {found:#x}, this index {expected:#x})")]
    IndexMismatch {
        /// This index's fingerprint.
        expected: u64,
        /// The partial scan's fingerprint.
        found: u64,
    },
    /// A partial scan whose pairs do not fit this index's generations (corrupted or forged).
    #[error("the partial scan holds a pair {start}..{end} that does not fit the generations")]
    CorruptPartial {
        /// Global start of the offending pair.
        start: u64,
        /// Global end of the offending pair.
        end: u64,
    },
}

/// One maximal span of a generation that occurs verbatim inside one corpus document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First token of the span in the generation (text mode: byte offset of its first character).
    pub gen_start: usize,
    /// Length in tokens (text mode: in characters).
    pub len: usize,
    /// Smallest index of a document that contains the span.
    pub doc: usize,
    /// Smallest offset of the span within `doc` (text mode: in bytes).
    pub doc_offset: usize,
    /// Text mode only: length in bytes. `None`, and absent from the serialized form, in token mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
}

/// Everything one generation shares verbatim with the corpus, per the module's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matches {
    /// Maximal spans of at least `min_len` tokens, by increasing `gen_start`.
    pub spans: Vec<Span>,
    /// Length of the longest span, 0 when there is none (text mode: characters).
    pub longest: usize,
    /// Generation tokens inside at least one span (text mode: characters).
    pub covered_tokens: usize,
    /// `covered_tokens` over the generation's length; 0 for an empty generation (text mode: over its
    /// number of characters).
    pub covered_share: f64,
    /// Text mode only: generation bytes inside at least one span. `None`, and absent from the
    /// serialized form, in token mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_bytes: Option<usize>,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u32 {}
}

/// A symbol the matcher works on: `u32` token ids, or `u8` bytes (text mode, or raw byte strings).
/// Sealed: the two implementations are the crate's.
pub trait Symbol: sealed::Sealed + Copy + Eq + Send + Sync + std::fmt::Debug + 'static {
    /// Windows are the whole minimum up to this many symbols, and at least this wide above it.
    const NARROW: usize;
    /// The widest window used.
    const WIDE: usize;
    /// A well-mixed 64-bit hash of a window (any length).
    fn hash_window(window: &[Self]) -> u64;
    /// Whether this byte continues a UTF-8 character (`10xxxxxx`); tokens never do.
    fn is_continuation(self) -> bool;
    /// The symbol as a number, for the index fingerprint.
    fn to_u64(self) -> u64;
}

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// The murmur3 64-bit finalizer: spreads every input bit over the whole word.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

#[inline]
fn absorb(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(MUL).rotate_left(31)
}

impl Symbol for u8 {
    const NARROW: usize = 16;
    const WIDE: usize = 32;

    #[inline]
    fn hash_window(window: &[u8]) -> u64 {
        let mut h = window.len() as u64;
        let mut chunks = window.chunks_exact(8);
        for c in &mut chunks {
            let word: [u8; 8] = c.try_into().expect("chunks_exact yields 8 bytes");
            h = absorb(h, u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            h = absorb(h, u64::from_le_bytes(word));
        }
        fmix64(h)
    }

    #[inline]
    fn is_continuation(self) -> bool {
        self & 0xC0 == 0x80
    }

    fn to_u64(self) -> u64 {
        u64::from(self)
    }
}

impl Symbol for u32 {
    const NARROW: usize = 8;
    const WIDE: usize = 16;

    #[inline]
    fn hash_window(window: &[u32]) -> u64 {
        let mut h = window.len() as u64;
        let mut chunks = window.chunks_exact(2);
        for c in &mut chunks {
            h = absorb(h, u64::from(c[0]) | (u64::from(c[1]) << 32));
        }
        if let [last] = chunks.remainder() {
            h = absorb(h, u64::from(*last));
        }
        fmix64(h)
    }

    #[inline]
    fn is_continuation(self) -> bool {
        false
    }

    fn to_u64(self) -> u64 {
        u64::from(self)
    }
}

/// Length of the common prefix of `a` and `b`, comparing in chunks (memcmp) first.
#[inline]
fn common_prefix<T: Eq>(a: &[T], b: &[T]) -> usize {
    const CHUNK: usize = 32;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    while i + CHUNK <= n && a[i..i + CHUNK] == b[i..i + CHUNK] {
        i += CHUNK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Length of the common suffix of `a` and `b`.
#[inline]
fn common_suffix<T: Eq>(a: &[T], b: &[T]) -> usize {
    const CHUNK: usize = 32;
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut i = 0;
    while i + CHUNK <= n && a[n - i - CHUNK..n - i] == b[n - i - CHUNK..n - i] {
        i += CHUNK;
    }
    while i < n && a[n - 1 - i] == b[n - 1 - i] {
        i += 1;
    }
    i
}

/// A multiplicative hasher for the scan's integer-keyed maps (std's SipHash is needlessly slow here).
#[derive(Default, Clone, Copy)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = absorb(self.0, u64::from(b));
        }
        self.0 = fmix64(self.0);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = fmix64(self.0 ^ n);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;

/// How lengths are measured: in symbols, or (text mode, bytes only) in UTF-8 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Symbols,
    Chars,
}

/// One indexed generation window: the low 32 bits of its hash and its global position.
#[derive(Debug, Clone, Copy)]
struct Entry {
    check: u32,
    pos: u32,
}

/// Every `w`-window of a set of generations, ready to be matched against streamed corpus documents.
pub struct GenerationIndex<S> {
    /// All generations, concatenated.
    text: Vec<S>,
    /// Generation `g` is `text[starts[g]..starts[g + 1]]`.
    starts: Vec<usize>,
    /// Minimum match length in symbols (text mode: characters, used as a byte bound while scanning).
    min_len: usize,
    unit: Unit,
    /// Window width.
    w: usize,
    /// Anchor stride.
    k: usize,
    /// Applied to every hash; all ones except in tests that force collisions.
    hash_mask: u64,
    /// Verified hits at one anchor that trigger periodicity detection ([`PERIODIC_HITS`]; tests
    /// vary it).
    periodic_hits: usize,
    /// Prefilter: a word per four windows, picked by the top `64 - filter_shift` bits of a hash.
    filter: Vec<u64>,
    filter_shift: u32,
    /// Bucket `b` (top `64 - bucket_shift` hash bits) is `entries[buckets[b]..buckets[b + 1]]`.
    buckets: Vec<u32>,
    bucket_shift: u32,
    entries: Vec<Entry>,
    /// Identifies the generations, `min_len` and mode, so partial scans of other indexes are refused.
    fingerprint: u64,
}

impl<S> std::fmt::Debug for GenerationIndex<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationIndex")
            .field("generations", &(self.starts.len() - 1))
            .field("symbols", &self.text.len())
            .field("min_len", &self.min_len)
            .field("text_mode", &(self.unit == Unit::Chars))
            .field("window", &self.w)
            .field("stride", &self.k)
            .field("windows", &self.entries.len())
            .finish()
    }
}

/// The two bits hash `h` sets in its prefilter word (a Bloom filter blocked to one word, so a test
/// costs one memory access). Taken from hash bits 20..32, disjoint from the top bits that pick the
/// word and the bucket (at most 32 of them).
#[inline]
fn filter_bits(h: u64) -> u64 {
    (1 << ((h >> 20) & 63)) | (1 << ((h >> 26) & 63))
}

/// Window width and anchor stride for `min_len` (at least 1); see the module doc.
fn window_params(min_len: usize, narrow: usize, wide: usize) -> (usize, usize) {
    let w = (min_len / 4).clamp(min_len.min(narrow), min_len.min(wide));
    (w, min_len - w + 1)
}

/// Smallest `b >= lo` with `2^b >= n`.
fn bits_for(n: usize, lo: u32) -> u32 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()).max(lo)
}

impl<S: Symbol> GenerationIndex<S> {
    /// Indexes `generations` (generation `g` of the results is `generations[g]`) for matches of at
    /// least `min_len` symbols (0 counts as 1). With `S = u8` this is plain byte matching; use
    /// [`GenerationIndex::text`] for character-level text.
    ///
    /// # Panics
    /// If the generations hold 2^32 or more symbols in all; [`GenerationIndex::try_new`] returns
    /// that as an error instead.
    pub fn new<G: AsRef<[S]>>(generations: &[G], min_len: usize) -> Self {
        Self::try_new(generations, min_len).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`GenerationIndex::new`], returning an error when the generations are too large.
    pub fn try_new<G: AsRef<[S]>>(generations: &[G], min_len: usize) -> Result<Self, NgramError> {
        let min_len = min_len.max(1);
        let (w, k) = window_params(min_len, S::NARROW, S::WIDE);
        Self::build(generations, min_len, Unit::Symbols, w, k, u64::MAX)
    }

    fn build<G: AsRef<[S]>>(
        generations: &[G],
        min_len: usize,
        unit: Unit,
        w: usize,
        k: usize,
        hash_mask: u64,
    ) -> Result<Self, NgramError> {
        debug_assert!(w >= 1 && k >= 1 && w + k - 1 <= min_len);
        let symbols: usize = generations.iter().map(|g| g.as_ref().len()).sum();
        let max = u64::from(u32::MAX - 1);
        if symbols as u64 > max {
            return Err(NgramError::GenerationsTooLarge {
                symbols: symbols as u64,
                max,
            });
        }
        let mut text = Vec::with_capacity(symbols);
        let mut starts = Vec::with_capacity(generations.len() + 1);
        let mut fingerprint = fmix64(min_len as u64 ^ (u64::from(unit == Unit::Chars) << 63));
        for g in generations {
            starts.push(text.len());
            text.extend_from_slice(g.as_ref());
            fingerprint = absorb(fingerprint, g.as_ref().len() as u64);
            for &s in g.as_ref() {
                fingerprint = absorb(fingerprint, s.to_u64());
            }
        }
        starts.push(text.len());
        let fingerprint = fmix64(fingerprint);

        // Hash every window that lies inside one generation.
        let mut hashed: Vec<(u64, u32)> = Vec::new();
        for pair in starts.windows(2) {
            let (lo, hi) = (pair[0], pair[1]);
            if hi - lo >= w {
                for j in lo..=hi - w {
                    let h = S::hash_window(&text[j..j + w]) & hash_mask;
                    hashed.push((h, j as u32));
                }
            }
        }
        // At most one window per bucket on average; a filter word per four windows.
        let bucket_bits = bits_for(hashed.len(), 4);
        let filter_words_bits = bucket_bits - 2;
        let bucket_shift = 64 - bucket_bits;
        let filter_shift = 64 - filter_words_bits;
        let mut filter = vec![0u64; 1 << filter_words_bits];
        let mut buckets = vec![0u32; (1 << bucket_bits) + 1];
        for &(h, _) in &hashed {
            filter[(h >> filter_shift) as usize] |= filter_bits(h);
            buckets[(h >> bucket_shift) as usize + 1] += 1;
        }
        for b in 1..buckets.len() {
            buckets[b] += buckets[b - 1];
        }
        let mut fill = buckets.clone();
        let mut entries = vec![Entry { check: 0, pos: 0 }; hashed.len()];
        for &(h, pos) in &hashed {
            let slot = &mut fill[(h >> bucket_shift) as usize];
            entries[*slot as usize] = Entry { check: h as u32, pos };
            *slot += 1;
        }
        Ok(GenerationIndex {
            text,
            starts,
            min_len,
            unit,
            w,
            k,
            hash_mask,
            periodic_hits: PERIODIC_HITS,
            filter,
            filter_shift,
            buckets,
            bucket_shift,
            entries,
            fingerprint,
        })
    }

    /// A new, empty partial result for this index.
    pub fn scanner(&self) -> Scan<'_, S> {
        Scan {
            index: self,
            best: FastMap::default(),
            diagonals: FastMap::default(),
        }
    }

    /// Continues a partial result that was serialized elsewhere (another thread or machine).
    pub fn resume(&self, partial: PartialScan) -> Result<Scan<'_, S>, NgramError> {
        let mut scan = self.scanner();
        scan.merge_partial(partial)?;
        Ok(scan)
    }

    /// Scans `docs` (document `d` is `docs[d]`) and returns one [`Matches`] per generation, using up
    /// to `threads` threads (0 or 1: the calling thread only). The result does not depend on
    /// `threads`.
    pub fn scan_documents<D: AsRef<[S]> + Sync>(&self, docs: &[D], threads: usize) -> Vec<Matches> {
        self.scan_with(docs.len(), threads, |scan, d| {
            scan.add_document(d, docs[d].as_ref())
        })
    }

    fn scan_with(
        &self,
        n_docs: usize,
        threads: usize,
        add: impl Fn(&mut Scan<'_, S>, usize) + Sync,
    ) -> Vec<Matches> {
        use rayon::prelude::*;
        let sequential = || {
            let mut scan = self.scanner();
            for d in 0..n_docs {
                add(&mut scan, d);
            }
            scan.finish()
        };
        if threads <= 1 || n_docs <= 1 {
            return sequential();
        }
        match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
            Ok(pool) => pool
                .install(|| {
                    (0..n_docs)
                        .into_par_iter()
                        .fold(
                            || self.scanner(),
                            |mut scan, d| {
                                add(&mut scan, d);
                                scan
                            },
                        )
                        .reduce(
                            || self.scanner(),
                            |mut a, b| {
                                a.merge(b);
                                a
                            },
                        )
                })
                .finish(),
            // No threads to be had: the same result, on this one.
            Err(_) => sequential(),
        }
    }

    /// Number of generations indexed.
    pub fn num_generations(&self) -> usize {
        self.starts.len() - 1
    }

    /// Window width `w` and anchor stride `k` in use (symbols; bytes in text mode).
    pub fn window_and_stride(&self) -> (usize, usize) {
        (self.w, self.k)
    }

    /// Whether both prefilter bits for hash `h` are set.
    #[inline]
    fn filter_hit(&self, h: u64) -> bool {
        let bits = filter_bits(h);
        self.filter[(h >> self.filter_shift) as usize] & bits == bits
    }

    /// Index entries whose bucket matches hash `h`.
    #[inline]
    fn bucket(&self, h: u64) -> &[Entry] {
        let b = (h >> self.bucket_shift) as usize;
        &self.entries[self.buckets[b] as usize..self.buckets[b + 1] as usize]
    }

    /// The generation holding global position `pos`.
    fn generation_of(&self, pos: usize) -> usize {
        self.starts.partition_point(|&s| s <= pos) - 1
    }

    /// Per-generation results from the kept pairs `(global start, best)` sorted by start.
    fn results(&self, pairs: &[(u32, Best)]) -> Vec<Matches> {
        let mut out = Vec::with_capacity(self.num_generations());
        let mut next = 0;
        for g in 0..self.num_generations() {
            let (lo, hi) = (self.starts[g], self.starts[g + 1]);
            let first = next;
            while next < pairs.len() && (pairs[next].0 as usize) < hi {
                next += 1;
            }
            out.push(self.matches_for(lo, hi, &pairs[first..next]));
        }
        out
    }

    /// The module doc's sweep over one generation `text[lo..hi]`'s kept pairs.
    fn matches_for(&self, lo: usize, hi: usize, pairs: &[(u32, Best)]) -> Matches {
        let chars = self.unit == Unit::Chars;
        let gen = &self.text[lo..hi];
        // Text mode: `before[x]` characters start before byte `x` of the generation.
        let before: Vec<usize> = if chars {
            let mut before = Vec::with_capacity(gen.len() + 1);
            let mut n = 0;
            before.push(0);
            for &b in gen {
                n += usize::from(!b.is_continuation());
                before.push(n);
            }
            before
        } else {
            Vec::new()
        };
        let measure = |s: usize, e: usize| if chars { before[e] - before[s] } else { e - s };

        let mut spans = Vec::new();
        let mut reach = 0;
        for (start, best) in pairs {
            let (s, e) = (*start as usize - lo, best.end as usize - lo);
            if e > reach {
                let len = measure(s, e);
                if len >= self.min_len {
                    spans.push(Span {
                        gen_start: s,
                        len,
                        // Document indices and offsets were `usize` when recorded.
                        doc: best.doc as usize,
                        doc_offset: best.offset as usize,
                        bytes: chars.then_some(e - s),
                    });
                }
            }
            reach = reach.max(e);
        }

        let longest = spans.iter().map(|s| s.len).max().unwrap_or(0);
        let (mut covered, mut covered_bytes, mut covered_to) = (0, 0, 0);
        for s in &spans {
            let end = s.gen_start + s.bytes.unwrap_or(s.len);
            let from = s.gen_start.max(covered_to);
            covered += measure(from, end);
            covered_bytes += end - from;
            covered_to = end;
        }
        let total = measure(0, gen.len());
        Matches {
            spans,
            longest,
            covered_tokens: covered,
            covered_share: if total == 0 {
                0.0
            } else {
                covered as f64 / total as f64
            },
            covered_bytes: chars.then_some(covered_bytes),
        }
    }
}

impl GenerationIndex<u8> {
    /// Indexes UTF-8 `generations` for character-level matches of at least `min_chars` characters (0
    /// counts as 1); see the module doc for the units of the report. Documents are added with
    /// [`Scan::add_text`].
    ///
    /// # Panics
    /// If the generations hold 2^32 or more bytes in all; [`GenerationIndex::try_text`] returns that
    /// as an error instead.
    pub fn text<G: AsRef<str>>(generations: &[G], min_chars: usize) -> Self {
        Self::try_text(generations, min_chars).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`GenerationIndex::text`], returning an error when the generations are too large.
    pub fn try_text<G: AsRef<str>>(generations: &[G], min_chars: usize) -> Result<Self, NgramError> {
        let min_chars = min_chars.max(1);
        let (w, k) = window_params(min_chars, u8::NARROW, u8::WIDE);
        let bytes: Vec<&[u8]> = generations.iter().map(|g| g.as_ref().as_bytes()).collect();
        Self::build(&bytes, min_chars, Unit::Chars, w, k, u64::MAX)
    }

    /// Text mode: scans `docs` like [`GenerationIndex::scan_documents`].
    pub fn scan_texts<D: AsRef<str> + Sync>(&self, docs: &[D], threads: usize) -> Vec<Matches> {
        self.scan_with(docs.len(), threads, |scan, d| scan.add_text(d, docs[d].as_ref()))
    }
}

/// The kept pair for one generation start: its end and smallest location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Best {
    /// Global end (exclusive) in the index's concatenated generations.
    end: u32,
    doc: u64,
    offset: u64,
}

impl Best {
    /// Whether `self` should replace `old` for the same start: a larger end, or the same end at a
    /// smaller (document, offset).
    #[inline]
    fn beats(&self, old: &Best) -> bool {
        self.end > old.end || (self.end == old.end && (self.doc, self.offset) < (old.doc, old.offset))
    }
}

/// A partial result: the maximal match pairs of the documents added so far, reduced as the module doc
/// describes. Documents can be added in any order and scans merged in any order.
pub struct Scan<'a, S> {
    index: &'a GenerationIndex<S>,
    /// Global generation start to its kept pair.
    best: FastMap<u32, Best>,
    /// Scratch for the current document: diagonal (global generation position minus document
    /// position, as two's complement) to the document end of the last pair found on it.
    diagonals: FastMap<u64, usize>,
}

impl<S> std::fmt::Debug for Scan<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan").field("pairs", &self.best.len()).finish()
    }
}

/// Anchors hashed before their prefilter bits are tested, so the memory loads overlap.
const BATCH: usize = 16;

/// An anchor whose window equals at least this many generation windows triggers the search for a
/// periodic stretch (a cost heuristic only: skipping is exact whenever it happens).
const PERIODIC_HITS: usize = 4;

/// If the window `doc[a..a + w]` has a period `q < w` (smallest), the stretch `[c, f)` around it on
/// which `doc[x] == doc[x + q]` for all `c <= x < f - q`, with `c` looked for at most `q` back
/// (further back would not move the skipped zone). Costs `O(w^2 + f - a)`.
fn periodic_stretch<S: Symbol>(doc: &[S], a: usize, w: usize) -> Option<(usize, usize, usize)> {
    let window = &doc[a..a + w];
    let q = (1..w).find(|&q| window[q..] == window[..w - q])?;
    let mut f = a + w;
    f += common_prefix(&doc[f..], &doc[f - q..]);
    let c = a - common_suffix(&doc[a.saturating_sub(q)..a], &doc[a.saturating_sub(q) + q..a + q]);
    Some((c, f, q))
}

impl<'a, S: Symbol> Scan<'a, S> {
    /// Adds corpus document number `doc_index`. Adding the same document twice changes nothing;
    /// adding two different documents under one index makes the result name whichever location is
    /// smaller. In text mode, prefer [`Scan::add_text`]; bytes that are not UTF-8 are split into
    /// "characters" at every byte that is not `10xxxxxx`.
    pub fn add_document(&mut self, doc_index: usize, doc: &[S]) {
        let index = self.index;
        if index.entries.is_empty() || doc.len() < index.min_len {
            return;
        }
        if !self.diagonals.is_empty() {
            self.diagonals.clear();
            if self.diagonals.capacity() > 1 << 16 {
                self.diagonals.shrink_to(1 << 10);
            }
        }
        let (w, k) = (index.w, index.k);
        let last = doc.len() - w;
        // Next anchor to hash (a multiple of `k`); anchors in `zone` are skipped; `boundary` is an
        // extra probe due before any anchor at or after it; periodicity is looked for only from
        // `detect_from` on. See "Periodic stretches" in the module doc.
        let mut p = 0;
        let mut zone: Option<(usize, usize)> = None;
        let mut boundary: Option<usize> = None;
        let mut detect_from = 0;
        let mut hashes = [0u64; BATCH];
        loop {
            if let Some(b) = boundary {
                if p > last || p >= b {
                    let h = S::hash_window(&doc[b..b + w]) & index.hash_mask;
                    if index.filter_hit(h) {
                        self.probe(doc_index, doc, b, h);
                    }
                    boundary = None;
                }
            }
            if p > last {
                break;
            }
            if let Some((from, to)) = zone {
                if p >= from {
                    zone = None;
                    if p <= to {
                        p = to + k;
                    }
                    continue;
                }
            }
            // Anchors before the next event; both events lie after `p` here, so `limit >= p`.
            let mut limit = last;
            if let Some((from, _)) = zone {
                limit = limit.min(from - 1);
            }
            if let Some(b) = boundary {
                limit = limit.min(b - 1);
            }
            let n = BATCH.min((limit - p) / k + 1);
            for (i, h) in hashes.iter_mut().enumerate().take(n) {
                let a = p + i * k;
                *h = S::hash_window(&doc[a..a + w]) & index.hash_mask;
            }
            let mut hits = 0u32;
            for (i, &h) in hashes.iter().enumerate().take(n) {
                hits |= u32::from(index.filter_hit(h)) << i;
            }
            let mut next = p + n * k;
            while hits != 0 {
                let i = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                let a = p + i * k;
                let found = self.probe(doc_index, doc, a, hashes[i]);
                if found < index.periodic_hits || a < detect_from || zone.is_some() {
                    continue;
                }
                let Some((c, f, q)) = periodic_stretch(doc, a, w) else {
                    continue;
                };
                detect_from = f;
                // Every pair first anchored at or after `from` starts at or after `c + q`; those
                // ending by `f` are shadowed; the others contain the window ending at `f + 1`.
                let from = (a + k).max(c + q + k - 1).div_ceil(k) * k;
                let to = (f - w) / k * k;
                if from <= to {
                    zone = Some((from, to));
                    if f < doc.len() {
                        boundary = Some(f + 1 - w);
                    }
                    next = a + k;
                    break;
                }
            }
            p = next;
        }
    }

    /// Verifies and extends every index entry matching the window of hash `h` at document offset
    /// `p`; returns how many generation windows equal the document's there.
    #[inline]
    fn probe(&mut self, doc_index: usize, doc: &[S], p: usize, h: u64) -> usize {
        let index = self.index;
        let w = index.w;
        let window = &doc[p..p + w];
        let mut found = 0;
        for entry in index.bucket(h) {
            if entry.check != h as u32 {
                continue;
            }
            let j = entry.pos as usize;
            if index.text[j..j + w] != *window {
                continue;
            }
            found += 1;
            let diagonal = (j as u64).wrapping_sub(p as u64);
            if self.diagonals.get(&diagonal).is_some_and(|&end| end > p) {
                continue;
            }
            let g = index.generation_of(j);
            let (lo, hi) = (index.starts[g], index.starts[g + 1]);
            let left = common_suffix(&index.text[lo..j], &doc[..p]);
            let right = common_prefix(&index.text[j + w..hi], &doc[p + w..]);
            let (gs, ge, ds) = (j - left, j + w + right, p - left);
            self.diagonals.insert(diagonal, p + w + right);
            self.record(lo, hi, gs, ge, doc_index, doc, ds);
        }
        found
    }

    /// Keeps the maximal pair `text[gs..ge] == doc[ds..]` (generation `text[lo..hi]`) if it is long
    /// enough and beats the kept pair at its start; text mode first trims it to characters.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn record(
        &mut self,
        lo: usize,
        hi: usize,
        mut gs: usize,
        mut ge: usize,
        doc_index: usize,
        doc: &[S],
        mut ds: usize,
    ) {
        let index = self.index;
        if index.unit == Unit::Chars {
            let text = &index.text;
            while gs < ge && text[gs].is_continuation() {
                gs += 1;
                ds += 1;
            }
            let boundary = |x: usize| {
                let y = ds + (x - gs);
                (x == hi || !text[x].is_continuation()) && (y == doc.len() || !doc[y].is_continuation())
            };
            while ge > gs && !boundary(ge) {
                ge -= 1;
            }
        }
        debug_assert!(gs >= lo);
        if ge - gs < index.min_len {
            return;
        }
        self.offer(
            gs as u32,
            Best {
                end: ge as u32,
                doc: doc_index as u64,
                offset: ds as u64,
            },
        );
    }

    #[inline]
    fn offer(&mut self, start: u32, best: Best) {
        self.best
            .entry(start)
            .and_modify(|old| {
                if best.beats(old) {
                    *old = best;
                }
            })
            .or_insert(best);
    }

    /// Folds another partial result of the same index into this one.
    ///
    /// # Panics
    /// If `other` was made from a different index (other generations, `min_len` or mode).
    pub fn merge(&mut self, other: Scan<'_, S>) {
        assert_eq!(
            self.index.fingerprint, other.index.fingerprint,
            "merging scans of different generation indexes"
        );
        let mut other = other.best;
        if other.len() > self.best.len() {
            std::mem::swap(&mut other, &mut self.best);
        }
        for (start, best) in other {
            self.offer(start, best);
        }
    }

    /// Folds a serialized partial result into this one, after checking it belongs to this index.
    pub fn merge_partial(&mut self, partial: PartialScan) -> Result<(), NgramError> {
        let index = self.index;
        if partial.fingerprint != index.fingerprint {
            return Err(NgramError::IndexMismatch {
                expected: index.fingerprint,
                found: partial.fingerprint,
            });
        }
        for pair in &partial.pairs {
            let (s, e) = (pair.start as usize, pair.end as usize);
            let fits = s < e && e <= index.text.len() && {
                let g = index.generation_of(s);
                e <= index.starts[g + 1]
            };
            if !fits {
                return Err(NgramError::CorruptPartial {
                    start: u64::from(pair.start),
                    end: u64::from(pair.end),
                });
            }
        }
        for pair in partial.pairs {
            self.offer(
                pair.start,
                Best {
                    end: pair.end,
                    doc: pair.doc,
                    offset: pair.offset,
                },
            );
        }
        Ok(())
    }

    /// The result: one [`Matches`] per generation, in index order.
    pub fn finish(self) -> Vec<Matches> {
        let mut pairs: Vec<(u32, Best)> = self.best.into_iter().collect();
        pairs.sort_unstable_by_key(|&(start, _)| start);
        self.index.results(&pairs)
    }
}

impl Scan<'_, u8> {
    /// Adds UTF-8 corpus document number `doc_index` (text mode); see [`Scan::add_document`].
    pub fn add_text(&mut self, doc_index: usize, doc: &str) {
        self.add_document(doc_index, doc.as_bytes());
    }
}

impl<S> Scan<'_, S> {
    /// The partial result in a serializable form, independent of the index's lifetime; pairs are
    /// sorted, so equal partial results serialize identically.
    pub fn to_partial(&self) -> PartialScan {
        let mut pairs: Vec<PartialPair> = self
            .best
            .iter()
            .map(|(&start, b)| PartialPair {
                start,
                end: b.end,
                doc: b.doc,
                offset: b.offset,
            })
            .collect();
        pairs.sort_unstable_by_key(|p| p.start);
        PartialScan {
            fingerprint: self.index.fingerprint,
            pairs,
        }
    }
}

impl<S> Serialize for Scan<'_, S> {
    /// Serializes as the equivalent [`PartialScan`].
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        self.to_partial().serialize(serializer)
    }
}

/// A [`Scan`]'s state detached from its index, to send to another thread or machine and resume
/// with [`GenerationIndex::resume`] or fold in with [`Scan::merge_partial`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialScan {
    /// The index's fingerprint (generations, `min_len`, mode).
    fingerprint: u64,
    /// Kept pairs by increasing start.
    pairs: Vec<PartialPair>,
}

impl PartialScan {
    /// Number of kept pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether no pair was found yet.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// One kept pair in global generation positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PartialPair {
    start: u32,
    end: u32,
    doc: u64,
    offset: u64,
}

/// Token mode in one call: the matches of each of `generations` against `docs` (document `d` is
/// `docs[d]`), single-threaded.
pub fn find_all<S: Symbol, D: AsRef<[S]>, G: AsRef<[S]>>(
    docs: &[D],
    generations: &[G],
    min_len: usize,
) -> Vec<Matches> {
    let index = GenerationIndex::new(generations, min_len);
    let mut scan = index.scanner();
    for (d, doc) in docs.iter().enumerate() {
        scan.add_document(d, doc.as_ref());
    }
    scan.finish()
}

/// Text mode in one call: the character-level matches of each of `generations` against `docs`.
pub fn find_all_text<D: AsRef<str>, G: AsRef<str>>(
    docs: &[D],
    generations: &[G],
    min_chars: usize,
) -> Vec<Matches> {
    let index = GenerationIndex::text(generations, min_chars);
    let mut scan = index.scanner();
    for (d, doc) in docs.iter().enumerate() {
        scan.add_text(d, doc.as_ref());
    }
    scan.finish()
}

/// Tokens for the character-level variant: one token per Unicode scalar value, so offsets and
/// lengths are counted in characters.
pub fn chars_as_tokens(text: &str) -> Vec<u32> {
    text.chars().map(u32::from).collect()
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

        fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                items.swap(i, self.below(i + 1));
            }
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

    fn matches_from(spans: Vec<Span>, covered: &[bool]) -> Matches {
        let covered_tokens = covered.iter().filter(|&&c| c).count();
        Matches {
            longest: spans.iter().map(|s| s.len).max().unwrap_or(0),
            spans,
            covered_tokens,
            covered_share: if covered.is_empty() {
                0.0
            } else {
                covered_tokens as f64 / covered.len() as f64
            },
            covered_bytes: None,
        }
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
                spans.push(span(s, e - s, doc, doc_offset));
                covered[s..e].iter_mut().for_each(|c| *c = true);
            }
        }
        matches_from(spans, &covered)
    }

    /// The definition's equivalent form, fast enough for larger inputs: `L(i)` by comparing the
    /// generation against every document offset, spans where `i + L(i)` increases.
    fn oracle_by_longest(docs: &[Vec<u32>], generation: &[u32], min_len: usize) -> Matches {
        let min_len = min_len.max(1);
        let m = generation.len();
        let mut spans = Vec::new();
        let mut covered = vec![false; m];
        let mut prev_end = 0;
        for i in 0..m {
            let mut best: Option<(usize, usize, usize)> = None; // (len, doc, offset)
            for (d, doc) in docs.iter().enumerate() {
                for o in 0..doc.len() {
                    let len = generation[i..]
                        .iter()
                        .zip(&doc[o..])
                        .take_while(|(a, b)| a == b)
                        .count();
                    if len > 0 && best.is_none_or(|(l, _, _)| len > l) {
                        best = Some((len, d, o));
                    }
                }
            }
            let (len, doc, offset) = best.unwrap_or((0, 0, 0));
            if len >= min_len && i + len > prev_end {
                spans.push(span(i, len, doc, offset));
                covered[i..i + len].iter_mut().for_each(|c| *c = true);
            }
            prev_end = prev_end.max(i + len);
        }
        matches_from(spans, &covered)
    }

    fn span(gen_start: usize, len: usize, doc: usize, doc_offset: usize) -> Span {
        Span {
            gen_start,
            len,
            doc,
            doc_offset,
            bytes: None,
        }
    }

    /// Scans `docs` in order with one scanner.
    fn scan_in_order<S: Symbol>(index: &GenerationIndex<S>, docs: &[Vec<S>]) -> Vec<Matches> {
        let mut scan = index.scanner();
        for (d, doc) in docs.iter().enumerate() {
            scan.add_document(d, doc);
        }
        scan.finish()
    }

    /// Splits the documents into random shards, each scanned in a random order (some resumed from
    /// a JSON round trip), and merges them in a random order.
    fn scan_sharded<S: Symbol>(index: &GenerationIndex<S>, docs: &[Vec<S>], rng: &mut Rng) -> Vec<Matches> {
        let shards = 1 + rng.below(4);
        let mut order: Vec<usize> = (0..docs.len()).collect();
        rng.shuffle(&mut order);
        let mut scans: Vec<Scan<'_, S>> = (0..shards).map(|_| index.scanner()).collect();
        for d in order {
            let s = rng.below(shards);
            scans[s].add_document(d, &docs[d]);
            if rng.below(8) == 0 {
                let json = serde_json::to_string(&scans[s]).expect("serializable");
                let partial: PartialScan = serde_json::from_str(&json).expect("round trip");
                scans[s] = index.resume(partial).expect("same index");
            }
        }
        rng.shuffle(&mut scans);
        let mut merged = index.scanner();
        for scan in scans {
            merged.merge(scan);
        }
        merged.finish()
    }

    /// A random valid (window, stride) for `min_len` and a hash mask that sometimes forces every
    /// window into one bucket, so verification is what keeps the result exact.
    fn random_params(min_len: usize, rng: &mut Rng) -> (usize, usize, u64, usize) {
        let min_len = min_len.max(1);
        let w = 1 + rng.below(min_len);
        let k = 1 + rng.below(min_len - w + 1);
        let mask = match rng.below(4) {
            0 => 0,
            1 => 0xF000_0000_0000_000F,
            _ => u64::MAX,
        };
        // Periodicity detection at every hit, by default, or never.
        let periodic = [1, PERIODIC_HITS, usize::MAX][rng.below(3)];
        (w, k, mask, periodic)
    }

    /// Checks the default index, a random parametrization and a random sharding against the oracle.
    fn check_tokens(
        docs: &[Vec<u32>],
        gens: &[Vec<u32>],
        min_len: usize,
        oracle: fn(&[Vec<u32>], &[u32], usize) -> Matches,
        rng: &mut Rng,
    ) -> Vec<Matches> {
        let want: Vec<Matches> = gens.iter().map(|g| oracle(docs, g, min_len)).collect();
        let got = find_all(docs, gens, min_len);
        assert_eq!(got, want, "docs {docs:?} gens {gens:?} min_len {min_len}");
        let (w, k, mask, periodic) = random_params(min_len, rng);
        let mut index =
            GenerationIndex::build(gens, min_len.max(1), Unit::Symbols, w, k, mask).expect("small");
        index.periodic_hits = periodic;
        let got = scan_in_order(&index, docs);
        assert_eq!(
            got, want,
            "w {w} k {k} mask {mask:#x} periodic {periodic} docs {docs:?} gens {gens:?}"
        );
        let got = scan_sharded(&index, docs, rng);
        assert_eq!(
            got, want,
            "sharded, docs {docs:?} gens {gens:?} min_len {min_len}"
        );
        want
    }

    fn check(docs: &[Vec<u32>], generation: &[u32], min_len: usize) -> Matches {
        let mut rng = Rng(min_len as u64 ^ generation.len() as u64);
        check_tokens(docs, &[generation.to_vec()], min_len, brute_force, &mut rng)
            .pop()
            .expect("one generation")
    }

    /// A generation that splices corpus pieces, sometimes with a stray token, so matches are long.
    fn spliced(docs: &[Vec<u32>], alphabet: usize, rng: &mut Rng) -> Vec<u32> {
        let mut g = Vec::new();
        if docs.iter().all(|d| d.is_empty()) || rng.below(3) == 0 {
            let len = rng.below(20);
            return rng.tokens(len, alphabet + 1);
        }
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
    }

    #[test]
    fn the_two_oracles_agree() {
        let mut rng = Rng(5);
        for _ in 0..1500 {
            let alphabet = 1 + rng.below(3);
            let docs: Vec<Vec<u32>> = (0..rng.below(5))
                .map(|_| {
                    let len = rng.below(14);
                    rng.tokens(len, alphabet)
                })
                .collect();
            let g = spliced(&docs, alphabet, &mut rng);
            let min_len = rng.below(5);
            assert_eq!(
                brute_force(&docs, &g, min_len),
                oracle_by_longest(&docs, &g, min_len),
                "docs {docs:?} g {g:?} min_len {min_len}"
            );
        }
    }

    #[test]
    fn matches_brute_force_on_random_small_alphabets() {
        for seed in 0..40 {
            let mut rng = Rng(1000 + seed);
            for _ in 0..100 {
                let alphabet = 2 + rng.below(3);
                let docs: Vec<Vec<u32>> = (0..rng.below(6))
                    .map(|_| {
                        let len = rng.below(18);
                        rng.tokens(len, alphabet)
                    })
                    .collect();
                let gens: Vec<Vec<u32>> = (0..1 + rng.below(3))
                    .map(|_| spliced(&docs, alphabet, &mut rng))
                    .collect();
                let min_len = [0, 1, 2, 3, 4, 5, 6, 9, 17, 1000][rng.below(10)];
                check_tokens(&docs, &gens, min_len, brute_force, &mut rng);
            }
        }
    }

    #[test]
    fn matches_the_oracle_on_larger_random_inputs() {
        let mut rng = Rng(3);
        for _ in 0..40 {
            let alphabet = 2 + rng.below(2);
            let docs: Vec<Vec<u32>> = (0..8)
                .map(|_| {
                    let len = rng.below(300);
                    rng.tokens(len, alphabet)
                })
                .collect();
            let gens: Vec<Vec<u32>> = (0..3)
                .map(|_| {
                    let mut g = spliced(&docs, alphabet, &mut rng);
                    g.extend(rng.tokens(40, alphabet));
                    g
                })
                .collect();
            for min_len in [1, 2, 4, 8, 13, 30] {
                check_tokens(&docs, &gens, min_len, oracle_by_longest, &mut rng);
            }
        }
    }

    #[test]
    fn every_window_and_stride_choice_is_exact() {
        let mut rng = Rng(77);
        for _ in 0..60 {
            let docs: Vec<Vec<u32>> = (0..4)
                .map(|_| {
                    let len = rng.below(40);
                    rng.tokens(len, 2)
                })
                .collect();
            let gens: Vec<Vec<u32>> = (0..2).map(|_| spliced(&docs, 2, &mut rng)).collect();
            for min_len in 1..=7 {
                let want: Vec<Matches> = gens
                    .iter()
                    .map(|g| oracle_by_longest(&docs, g, min_len))
                    .collect();
                for w in 1..=min_len {
                    for k in 1..=min_len - w + 1 {
                        for (mask, periodic) in [(u64::MAX, usize::MAX), (0, 1), (u64::MAX, 2)] {
                            let mut index = GenerationIndex::build(&gens, min_len, Unit::Symbols, w, k, mask)
                                .expect("small");
                            index.periodic_hits = periodic;
                            assert_eq!(scan_in_order(&index, &docs), want, "w {w} k {k}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn default_parameters_cover_min_len() {
        for min_len in 1..500 {
            for (narrow, wide) in [(8, 16), (16, 32)] {
                let (w, k) = window_params(min_len, narrow, wide);
                assert!(w >= 1 && k >= 1 && w + k - 1 <= min_len, "{min_len}: {w} {k}");
                if min_len <= narrow {
                    assert_eq!((w, k), (min_len, 1));
                }
            }
        }
        assert_eq!(window_params(200, 16, 32), (32, 169));
        assert_eq!(window_params(64, 8, 16), (16, 49));
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
        // Long runs straddling boundaries, with anchors on both sides.
        let docs = vec![(0..50).collect::<Vec<u32>>(), (50..100).collect()];
        let got = check(&docs, &(40..60).collect::<Vec<u32>>(), 11);
        assert_eq!(got.spans, vec![]);
        let got = check(&docs, &(40..60).collect::<Vec<u32>>(), 10);
        assert_eq!(got.spans, vec![span(0, 10, 0, 40), span(10, 10, 1, 0)]);
    }

    #[test]
    fn overlapping_spans_are_both_reported_and_covered_once() {
        let docs = vec![vec![1, 2, 3, 4], vec![3, 4, 5, 6]];
        let got = check(&docs, &[1, 2, 3, 4, 5, 6], 3);
        assert_eq!(got.spans, vec![span(0, 4, 0, 0), span(2, 4, 1, 0)]);
        assert_eq!(got.longest, 4);
        assert_eq!(got.covered_tokens, 6);
        assert_eq!(got.covered_share, 1.0);
        // Three spans overlapping pairwise, each from another document.
        let g: Vec<u32> = (0..30).collect();
        let docs = vec![g[0..14].to_vec(), g[10..24].to_vec(), g[20..30].to_vec()];
        let got = check(&docs, &g, 8);
        assert_eq!(
            got.spans,
            vec![span(0, 14, 0, 0), span(10, 14, 1, 0), span(20, 10, 2, 0)]
        );
        assert_eq!(got.covered_tokens, 30);
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
        let mut rng = Rng(9);
        for period in 1..5u32 {
            let unit: Vec<u32> = (0..period).collect();
            let docs = vec![
                unit.repeat(60),
                [unit.repeat(7), vec![9], unit.repeat(30)].concat(),
            ];
            let gens = vec![unit.repeat(25), [vec![9], unit.repeat(12), vec![9]].concat()];
            for min_len in [1, 3, 10, 40] {
                check_tokens(&docs, &gens, min_len, oracle_by_longest, &mut rng);
            }
        }
    }

    #[test]
    fn long_single_symbol_runs_are_exact_and_finish() {
        // 200,000 equal symbols against a 5,000-symbol run: about 10^9 comparisons, well under a
        // second in release; no time is asserted, but a quadratic-per-anchor scan would not end.
        let docs: Vec<Vec<u32>> = vec![vec![1, 2, 3], vec![7; 200_000]];
        let gens = vec![
            vec![7; 5_000],
            [vec![1, 2, 3], vec![7; 5_000], vec![4]].concat(),
            vec![7; 100],
        ];
        let got = find_all(&docs, &gens, 50);
        assert_eq!(got[0].spans, vec![span(0, 5_000, 1, 0)]);
        assert_eq!(got[1].spans, vec![span(3, 5_000, 1, 0)]);
        assert_eq!(got[1].covered_tokens, 5_000);
        assert_eq!(got[2].spans, vec![span(0, 100, 1, 0)]);
        // The generation run longer than the document run: one span per start.
        let got = find_all(&[vec![7u32; 300]], &[vec![7; 2_000]], 50);
        assert_eq!(got[0].spans.len(), 1_701);
        assert_eq!(got[0].spans[1_700], span(1_700, 300, 0, 0));
        assert_eq!(got[0].covered_tokens, 2_000);
        // Matches that run out of a long periodic stretch are found by the probe at its end.
        let docs: Vec<Vec<u32>> = vec![
            [vec![1], vec![7; 1_000], vec![2]].concat(),
            [vec![7; 100_000], vec![8, 9, 10]].concat(),
            [vec![3], [7, 6].repeat(50_000), vec![7, 5]].concat(),
        ];
        let gens = vec![
            [vec![7; 3_000], vec![8, 9]].concat(),
            [vec![1], vec![7; 500]].concat(),
            [vec![7; 500], vec![2]].concat(),
            [vec![4], [6, 7].repeat(700), vec![5, 4]].concat(),
        ];
        let got = find_all(&docs, &gens, 20);
        assert_eq!(got[0].spans, vec![span(0, 3_002, 1, 97_000)]);
        assert_eq!(got[1].spans, vec![span(0, 501, 0, 0)]);
        assert_eq!(got[2].spans, vec![span(0, 501, 0, 501)]);
        assert_eq!(got[3].spans, vec![span(1, 1_401, 2, 100_003 - 1_401)]);
        let mut rng = Rng(4);
        check_tokens(
            &[vec![5; 120], vec![5; 40]],
            &[vec![5; 90], vec![5; 300]],
            12,
            oracle_by_longest,
            &mut rng,
        );
    }

    #[test]
    fn paragraph_repeated_in_many_documents_names_the_first() {
        let mut rng = Rng(21);
        let paragraph = rng.tokens(300, 1000);
        let mut docs: Vec<Vec<u32>> = (0..2_000)
            .map(|i| {
                let mut d = rng.tokens(1 + i % 7, 1000);
                d.extend_from_slice(&paragraph);
                d.extend(rng.tokens(i % 5, 1000));
                d
            })
            .collect();
        docs.insert(0, rng.tokens(500, 1000));
        // One document repeats it 1,000 times back to back.
        docs.push(paragraph.repeat(1_000));
        let generation = [vec![5_000], paragraph.clone(), vec![5_001]].concat();
        let index = GenerationIndex::new(&[generation], 64);
        let want = vec![Matches {
            spans: vec![span(1, 300, 1, 1)],
            longest: 300,
            covered_tokens: 300,
            covered_share: 300.0 / 302.0,
            covered_bytes: None,
        }];
        assert_eq!(index.scan_documents(&docs, 1), want);
        assert_eq!(index.scan_documents(&docs, 3), want);
        let got = scan_sharded(&index, &docs, &mut rng);
        assert_eq!(got, want);
        // Only the repeating document: its first copy.
        let got = find_all(&[paragraph.repeat(50)], &[paragraph.repeat(3)], 64);
        assert_eq!(got[0].spans, vec![span(0, 900, 0, 0)]);
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
        assert_eq!(find_all(&docs, &[vec![1, 4, 9, 5, 3]], 0), vec![got]);
    }

    #[test]
    fn empty_inputs_report_nothing() {
        let none = Matches {
            spans: vec![],
            longest: 0,
            covered_tokens: 0,
            covered_share: 0.0,
            covered_bytes: None,
        };
        assert_eq!(check(&[vec![1, 2, 3]], &[], 1), none);
        let empty_corpus: Vec<Vec<u32>> = vec![];
        assert_eq!(find_all(&empty_corpus, &[vec![1, 2, 3]], 1), vec![none.clone()]);
        let no_gens: Vec<Vec<u32>> = vec![];
        assert_eq!(find_all(&[vec![1, 2, 3]], &no_gens, 1), vec![]);
        assert_eq!(check(&[vec![], vec![]], &[1, 2], 1).spans, vec![]);
        assert_eq!(
            check(&[vec![], vec![1, 2]], &[1, 2], 1).spans,
            vec![span(0, 2, 1, 0)]
        );
        let got = find_all(&[vec![], vec![1u32, 2]], &[vec![], vec![1, 2], vec![]], 2);
        assert_eq!(got[0], none);
        assert_eq!(got[1].spans, vec![span(0, 2, 1, 0)]);
        assert_eq!(got[2], none);
        assert_eq!(find_all_text(&[""], &["", "a"], 1)[1].covered_bytes, Some(0));
    }

    #[test]
    fn min_len_longer_than_everything_reports_nothing() {
        let got = check(&[vec![1, 2, 3, 4]], &[1, 2, 3], 4);
        assert_eq!(got.spans, vec![]);
        assert_eq!(got.covered_share, 0.0);
        let got = check(&[vec![1, 2, 3, 4]], &[1, 2, 3, 4], 5);
        assert_eq!(got.spans, vec![]);
        let got = find_all(&[vec![1u32; 10]], &[vec![1; 10]], usize::MAX);
        assert_eq!(got[0].spans, vec![]);
        let got = find_all(&[vec![1u32; 10]], &[vec![1; 10]], 10);
        assert_eq!(got[0].spans, vec![span(0, 10, 0, 0)]);
    }

    #[test]
    fn tokens_absent_from_the_corpus_and_extreme_ids_are_exact() {
        let docs = vec![vec![u32::MAX, 0, u32::MAX - 1], vec![0, u32::MAX]];
        let got = check(&docs, &[0, u32::MAX, 0, u32::MAX - 1, 17, u32::MAX], 2);
        assert_eq!(got.spans, vec![span(0, 2, 1, 0), span(1, 3, 0, 0)]);
        assert_eq!(got.covered_tokens, 4);
    }

    #[test]
    fn document_indices_beyond_u32_and_any_order_are_kept() {
        let index = GenerationIndex::new(&[vec![1u32, 2, 3, 4, 5]], 3);
        let mut scan = index.scanner();
        scan.add_document(6_000_000_000, &[9, 1, 2, 3, 4, 5]);
        scan.add_document(5_000_000_000, &[0, 0, 2, 3, 4, 5]);
        scan.add_document(7_000_000_000, &[1, 2, 3, 4, 5]);
        let got = scan.finish();
        assert_eq!(
            got[0].spans,
            vec![span(0, 5, 6_000_000_000, 1)],
            "the document with the smallest index holding the span"
        );
    }

    #[test]
    fn sharded_scans_merged_in_any_order_equal_one_scan() {
        let mut rng = Rng(99);
        for _ in 0..30 {
            let docs: Vec<Vec<u32>> = (0..30)
                .map(|_| {
                    let len = rng.below(200);
                    rng.tokens(len, 3)
                })
                .collect();
            let gens: Vec<Vec<u32>> = (0..5).map(|_| spliced(&docs, 3, &mut rng)).collect();
            for min_len in [1, 5, 12] {
                let index = GenerationIndex::new(&gens, min_len);
                let want = scan_in_order(&index, &docs);
                for _ in 0..5 {
                    assert_eq!(scan_sharded(&index, &docs, &mut rng), want);
                }
                assert_eq!(index.scan_documents(&docs, 2), want);
                assert_eq!(index.scan_documents(&docs, 4), want);
            }
        }
    }

    #[test]
    fn partial_scan_survives_a_serde_round_trip() {
        let docs = vec![vec![1u32, 2, 3, 4, 5, 6], vec![3, 4, 5, 6, 7]];
        let index = GenerationIndex::new(&[vec![2u32, 3, 4, 5, 6, 7]], 2);
        let mut scan = index.scanner();
        scan.add_document(0, &docs[0]);
        let partial = scan.to_partial();
        assert_eq!(partial.len(), 1);
        let json = serde_json::to_string(&scan).expect("serializable");
        assert_eq!(json, serde_json::to_string(&partial).expect("serializable"));
        let back: PartialScan = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, partial);
        let mut resumed = index.resume(back).expect("same index");
        resumed.add_document(1, &docs[1]);
        assert_eq!(resumed.finish(), find_all(&docs, &[vec![2u32, 3, 4, 5, 6, 7]], 2));
        // Another index, or pairs that do not fit, are refused.
        let other = GenerationIndex::new(&[vec![2u32, 3, 4, 5, 6, 7]], 3);
        assert!(matches!(
            other.resume(partial.clone()),
            Err(NgramError::IndexMismatch { .. })
        ));
        let mut forged = partial;
        forged.pairs[0].end = 99;
        assert!(matches!(
            index.resume(forged),
            Err(NgramError::CorruptPartial { .. })
        ));
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
        let got = find_all_text(&["xx€uro"], &["a€ur"], 2);
        let json = serde_json::to_value(&got[0]).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({
                "spans": [{"gen_start": 1, "len": 3, "doc": 0, "doc_offset": 2, "bytes": 5}],
                "longest": 3,
                "covered_tokens": 3,
                "covered_share": 0.75,
                "covered_bytes": 5,
            })
        );
        let back: Matches = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, got[0]);
    }

    // ---- text mode ----

    /// Byte offset of character `c` of `s` (its length past the end).
    fn byte_at(s: &str, c: usize) -> usize {
        s.char_indices().nth(c).map_or(s.len(), |(b, _)| b)
    }

    /// The character-level definition by brute force over `chars()`, reported in text mode's units.
    fn brute_text(docs: &[String], generation: &str, min_chars: usize) -> Matches {
        let tokens: Vec<Vec<u32>> = docs.iter().map(|d| chars_as_tokens(d)).collect();
        let by_chars = brute_force(&tokens, &chars_as_tokens(generation), min_chars);
        let spans: Vec<Span> = by_chars
            .spans
            .iter()
            .map(|s| {
                let start = byte_at(generation, s.gen_start);
                let end = byte_at(generation, s.gen_start + s.len);
                Span {
                    gen_start: start,
                    len: s.len,
                    doc: s.doc,
                    doc_offset: byte_at(&docs[s.doc], s.doc_offset),
                    bytes: Some(end - start),
                }
            })
            .collect();
        let mut covered = vec![false; generation.len()];
        for s in &spans {
            covered[s.gen_start..s.gen_start + s.bytes.expect("text")].fill(true);
        }
        Matches {
            spans,
            covered_bytes: Some(covered.iter().filter(|&&c| c).count()),
            ..by_chars
        }
    }

    fn check_text(docs: &[String], gens: &[String], min_chars: usize, rng: &mut Rng) -> Vec<Matches> {
        let want: Vec<Matches> = gens.iter().map(|g| brute_text(docs, g, min_chars)).collect();
        let got = find_all_text(docs, gens, min_chars);
        assert_eq!(got, want, "docs {docs:?} gens {gens:?} min_chars {min_chars}");
        let (w, k, mask, periodic) = random_params(min_chars, rng);
        let bytes: Vec<&[u8]> = gens.iter().map(|g| g.as_bytes()).collect();
        let mut index =
            GenerationIndex::build(&bytes, min_chars.max(1), Unit::Chars, w, k, mask).expect("small");
        index.periodic_hits = periodic;
        let doc_bytes: Vec<Vec<u8>> = docs.iter().map(|d| d.as_bytes().to_vec()).collect();
        assert_eq!(
            scan_in_order(&index, &doc_bytes),
            want,
            "w {w} k {k} mask {mask:#x} periodic {periodic}"
        );
        assert_eq!(scan_sharded(&index, &doc_bytes, rng), want, "sharded");
        want
    }

    /// Characters chosen so that byte-level matches often split them: `é` (C3 A9) and `©` (C2 A9)
    /// share a continuation byte, `Ğ` (C4 9E) shares `9E` with `𝄞` (F0 9D 84 9E), `ā` (C4 81) shares
    /// `81` with the combining acute accent (CC 81), which also follows plain letters.
    const PIECES: [&str; 10] = ["a", "e", "é", "©", "𝄞", "Ğ", "ā", "\u{301}", " ", "e\u{301}"];

    fn random_text(len: usize, pieces: &[&str], rng: &mut Rng) -> String {
        (0..len).map(|_| pieces[rng.below(pieces.len())]).collect()
    }

    /// A random substring of `s` on character boundaries.
    fn random_slice<'s>(s: &'s str, rng: &mut Rng) -> &'s str {
        let n = s.chars().count();
        if n == 0 {
            return s;
        }
        let a = rng.below(n);
        let b = a + 1 + rng.below(n - a);
        &s[byte_at(s, a)..byte_at(s, b)]
    }

    #[test]
    fn text_mode_matches_the_character_level_brute_force() {
        for seed in 0..30 {
            let mut rng = Rng(500 + seed);
            for _ in 0..60 {
                let mut pieces = PIECES.to_vec();
                rng.shuffle(&mut pieces);
                pieces.truncate(2 + rng.below(3));
                let docs: Vec<String> = (0..rng.below(5))
                    .map(|_| {
                        let len = rng.below(16);
                        random_text(len, &pieces, &mut rng)
                    })
                    .collect();
                let gens: Vec<String> = (0..1 + rng.below(3))
                    .map(|_| {
                        if docs.is_empty() || rng.below(3) == 0 {
                            let len = rng.below(16);
                            return random_text(len, &PIECES, &mut rng);
                        }
                        let mut g = String::new();
                        for _ in 0..1 + rng.below(3) {
                            let doc = &docs[rng.below(docs.len())];
                            g.push_str(random_slice(doc, &mut rng));
                            if rng.below(3) == 0 {
                                g.push_str(PIECES[rng.below(PIECES.len())]);
                            }
                        }
                        g
                    })
                    .collect();
                let min_chars = [0, 1, 2, 3, 4, 6, 9, 100][rng.below(8)];
                check_text(&docs, &gens, min_chars, &mut rng);
            }
        }
    }

    #[test]
    fn text_mode_never_splits_characters_that_share_bytes() {
        let mut rng = Rng(8);
        let s = |x: &str| x.to_string();
        // `é` and `©` end in the same byte; `𝄞` and `Ğ` too: those bytes alone are no match.
        let got = check_text(&[s("x©y")], &[s("éy"), s("𝄞"), s("Ğ")], 1, &mut rng);
        assert_eq!(got[0].spans.len(), 1);
        assert_eq!(
            got[0].spans[0],
            Span {
                gen_start: 2,
                len: 1,
                doc: 0,
                doc_offset: 3,
                bytes: Some(1)
            }
        );
        let got = check_text(&[s("aaĞbb")], &[s("𝄞bb"), s("aa𝄞")], 2, &mut rng);
        assert_eq!(got[0].spans[0].gen_start, 4);
        assert_eq!(got[0].spans[0].len, 2);
        assert_eq!(got[1].spans[0].len, 2);
        assert_eq!(got[1].spans[0].bytes, Some(2));
        // A long byte match that ends inside a character in the document only.
        let got = check_text(
            &[s("hello wor©")],
            &[s("hello wor"), s("hello woré")],
            3,
            &mut rng,
        );
        assert_eq!(got[0].spans[0].len, 9);
        assert_eq!(got[1].spans[0].len, 9);
        assert_eq!(got[1].covered_bytes, Some(9));
        assert_eq!(got[1].covered_tokens, 9);
        assert_eq!(got[1].covered_share, 0.9);
    }

    #[test]
    fn text_mode_counts_combining_characters_separately() {
        let mut rng = Rng(12);
        let s = |x: &str| x.to_string();
        // "e" + U+0301 is two characters; precomposed "é" is one and does not match it.
        let got = check_text(
            &[s("cafe\u{301} au lait"), s("café noir")],
            &[s("un cafe\u{301} noir"), s("café au lait")],
            4,
            &mut rng,
        );
        // "cafe\u{301} " from the first document, " noir" from the second.
        assert_eq!(got[0].spans.len(), 2);
        let s0 = got[0].spans[0];
        assert_eq!((s0.gen_start, s0.len, s0.bytes, s0.doc), (3, 6, Some(7), 0));
        // "café " from the second, " au lait" from the first.
        assert_eq!(got[1].spans.len(), 2);
        assert_eq!((got[1].spans[0].len, got[1].spans[1].len), (5, 8));
        // The accent alone matches an accent after another letter.
        let got = check_text(&[s("o\u{301}")], &[s("a\u{301}")], 1, &mut rng);
        assert_eq!(got[0].spans[0].doc_offset, 1);
        assert_eq!(got[0].spans[0].bytes, Some(2));
    }

    #[test]
    fn text_mode_handles_long_runs_and_scripts() {
        let docs = vec![
            "日本語のテキスト".to_string(),
            " ".repeat(100_000),
            format!("intro {} outro", "𝄞".repeat(3_000)),
        ];
        let gens = vec![
            format!("x{}y", " ".repeat(3_000)),
            format!("a {} b", "𝄞".repeat(500)),
            "a 本語のテ z".to_string(),
        ];
        let got = find_all_text(&docs, &gens, 4);
        assert_eq!(got[0].spans.len(), 1);
        assert_eq!((got[0].spans[0].gen_start, got[0].spans[0].len), (1, 3_000));
        assert_eq!((got[0].spans[0].doc, got[0].spans[0].doc_offset), (1, 0));
        // " 𝄞𝄞…" after "intro" and "𝄞𝄞… " before "outro": two overlapping spans.
        let s1: Vec<_> = got[1]
            .spans
            .iter()
            .map(|s| (s.gen_start, s.len, s.bytes, s.doc, s.doc_offset))
            .collect();
        assert_eq!(
            s1,
            vec![(1, 501, Some(2_001), 2, 5), (2, 501, Some(2_001), 2, 10_006)]
        );
        assert_eq!(got[1].covered_tokens, 502);
        assert_eq!(got[2].spans.len(), 1);
        let s2 = got[2].spans[0];
        assert_eq!(
            (s2.gen_start, s2.len, s2.bytes, s2.doc, s2.doc_offset),
            (2, 4, Some(12), 0, 3)
        );
        let index = GenerationIndex::text(&gens, 4);
        assert_eq!(index.scan_texts(&docs, 3), got);
    }
}
