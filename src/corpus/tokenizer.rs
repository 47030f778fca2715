//! The corpus tokenizer: a byte-level BPE trained on the corpus itself with the HF `tokenizers` crate,
//! with four special tokens at fixed ids. Byte-level means every input round-trips exactly through
//! encode and decode (no normalizer, no prefix space), which the audits rely on to map tokens back to
//! corpus text. Stored sealed beside the shards; exported as a standard `tokenizer.json` at release.

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerImpl};

use super::CorpusError;

/// Special tokens, in id order: the trainer assigns ids 0..4 to them before any learned token.
pub const PAD: &str = "<|pad|>";
pub const BOS: &str = "<|bos|>";
pub const EOS: &str = "<|eos|>";
pub const MASK: &str = "<|mask|>";
pub const SPECIAL_TOKENS: [&str; 4] = [PAD, BOS, EOS, MASK];
pub const PAD_ID: u32 = 0;
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;
pub const MASK_ID: u32 = 3;

/// Smallest vocabulary accepted: the 256 byte symbols, the special tokens, and room for some merges.
pub const MIN_VOCAB: usize = 512;
/// Largest: token ids must fit the model's embedding and stay well inside u32.
pub const MAX_VOCAB: usize = 1 << 20;

/// A trained tokenizer.
pub struct CorpusTokenizer {
    inner: Tokenizer,
}

impl CorpusTokenizer {
    /// Trains a byte-level BPE of `vocab` entries on `docs`.
    pub fn train<I, S>(docs: I, vocab: usize) -> Result<CorpusTokenizer, CorpusError>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if !(MIN_VOCAB..=MAX_VOCAB).contains(&vocab) {
            return Err(CorpusError::Tokenizer(format!(
                "vocabulary size {vocab} is outside {MIN_VOCAB}..={MAX_VOCAB}"
            )));
        }
        let specials = SPECIAL_TOKENS
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        // No prefix space and no offset trimming: decode(encode(x)) == x for every string.
        let byte_level = ByteLevel::new(false, false, true);
        let mut imp: TokenizerImpl<BPE, NormalizerWrapper, ByteLevel, PostProcessorWrapper, ByteLevel> =
            TokenizerImpl::new(BPE::default());
        imp.with_pre_tokenizer(Some(byte_level));
        imp.with_decoder(Some(byte_level));
        imp.train(&mut trainer, docs)
            .map_err(|e| CorpusError::Tokenizer(format!("training failed: {e}")))?;
        // Training registered the special tokens (ids 0..4) in the added vocabulary.
        let tok = CorpusTokenizer::wrap(Tokenizer::from(imp));
        tok.check_specials()?;
        Ok(tok)
    }

    /// Loads a tokenizer from its `tokenizer.json` bytes.
    pub fn from_json(bytes: &[u8]) -> Result<CorpusTokenizer, CorpusError> {
        // `tokenizers` 0.22 panics instead of failing on some malformed documents (a JSON syntax error
        // inside `decoder`: `DecoderHelper::deserialize(..).expect("Helper")`), found by the
        // `sealed_corpus` fuzz target; a panic there is an invalid file like any other.
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            .map_err(|e| CorpusError::Tokenizer(format!("tokenizer.json is invalid: {e}")))?;
        let inner = std::panic::catch_unwind(|| Tokenizer::from_bytes(bytes))
            .map_err(|_| {
                CorpusError::Tokenizer(
                    "tokenizer.json is invalid: the tokenizers library could not parse it".into(),
                )
            })?
            .map_err(|e| CorpusError::Tokenizer(format!("tokenizer.json is invalid: {e}")))?;
        let tok = CorpusTokenizer::wrap(inner);
        tok.check_specials()?;
        Ok(tok)
    }

    /// The standard `tokenizer.json` document, loadable by HF `tokenizers` in any language.
    pub fn to_json(&self) -> Result<String, CorpusError> {
        self.inner
            .to_string(false)
            .map_err(|e| CorpusError::Tokenizer(format!("cannot serialise: {e}")))
    }

    /// Corpus text that happens to spell a special token (`<|mask|>` in a document about this very
    /// product) must be encoded as text: a document must never be able to inject a mask or a boundary.
    fn wrap(mut inner: Tokenizer) -> CorpusTokenizer {
        inner.set_encode_special_tokens(true);
        CorpusTokenizer { inner }
    }

    fn check_specials(&self) -> Result<(), CorpusError> {
        for (id, t) in SPECIAL_TOKENS.iter().enumerate() {
            if self.inner.token_to_id(t) != Some(id as u32) {
                return Err(CorpusError::Tokenizer(format!(
                    "special token {t} is not at id {id}"
                )));
            }
        }
        Ok(())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, CorpusError> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| CorpusError::Tokenizer(format!("encoding failed: {e}")))
    }

    /// Encodes many texts in parallel.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, CorpusError> {
        let inputs: Vec<tokenizers::EncodeInput> = texts.iter().map(|t| (*t).into()).collect();
        self.inner
            .encode_batch_fast(inputs, false)
            .map(|encs| encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
            .map_err(|e| CorpusError::Tokenizer(format!("encoding failed: {e}")))
    }

    /// The UTF-8 bytes each token id stands for (0 for the special tokens), indexed by id. Byte-level
    /// BPE writes every byte as one symbol, so a token's byte count is its symbol count. Bits per byte
    /// divide by these, which lets runs with different tokenizers compare.
    pub fn token_bytes(&self) -> Vec<u32> {
        (0..self.vocab_size() as u32)
            .map(|id| {
                if (id as usize) < SPECIAL_TOKENS.len() {
                    return 0;
                }
                self.inner.id_to_token(id).map_or(0, |t| t.chars().count() as u32)
            })
            .collect()
    }

    /// Text of `ids`; special tokens are dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, CorpusError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| CorpusError::Tokenizer(format!("decoding failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `sealed_corpus` fuzz target: a JSON syntax error inside `decoder` made `tokenizers`
    /// panic; it is an invalid tokenizer file now.
    #[test]
    fn a_malformed_decoder_is_an_error_not_a_panic() {
        let e = CorpusTokenizer::from_json(b"{\"decoder\":{\"type\":\"\x01\"}}")
            .err()
            .expect("refused");
        assert!(e.to_string().contains("tokenizer.json is invalid"), "{e}");
    }

    fn sample() -> Vec<String> {
        (0..200)
            .map(|i| format!("Ticket #{i}: the VPN for customer {} drops every {} minutes.\n  fn main() {{ println!(\"é ü 日本\"); }}", i % 7, i % 13))
            .collect()
    }

    #[test]
    fn round_trips_exactly_and_keeps_special_ids() {
        let docs = sample();
        let tok = CorpusTokenizer::train(docs.iter(), 600).unwrap();
        assert!(tok.vocab_size() <= 600 && tok.vocab_size() > 300);
        for d in docs.iter().take(20).chain(
            ["  leading spaces", "tabs\tand\r\nCRLF", "🦀 emoji", ""]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .iter(),
        ) {
            let ids = tok.encode(d).unwrap();
            assert!(ids.iter().all(|&i| i >= 4), "no special ids from plain text");
            assert_eq!(&tok.decode(&ids).unwrap(), d);
        }
        // Special-token text in a document is just text, never the special id.
        let ids = tok.encode("<|mask|>").unwrap();
        assert!(!ids.contains(&MASK_ID));
        let json = tok.to_json().unwrap();
        let back = CorpusTokenizer::from_json(json.as_bytes()).unwrap();
        assert_eq!(back.encode(&docs[3]).unwrap(), tok.encode(&docs[3]).unwrap());
        assert_eq!(
            back.encode_batch(&[&docs[1], &docs[2]]).unwrap()[1],
            tok.encode(&docs[2]).unwrap()
        );
    }

    #[test]
    fn refuses_silly_vocabulary_sizes() {
        assert!(matches!(
            CorpusTokenizer::train(["a"].iter(), 10),
            Err(CorpusError::Tokenizer(_))
        ));
    }
}
