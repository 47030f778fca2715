//! The sealed-corpus reader (`corpus::sealed`): the manifest, canary list, tokenizer and shard records
//! inside a corpus directory, as the trainer, the auditors and `lethe corpus verify` read them.
//!
//! The input's first byte holds flags; the rest is parts (see `lethe_fuzz::parts`): the manifest JSON,
//! the canary list JSON, `tokenizer.json`, then the payload of shard 0, 1, ... Each present part is
//! sealed with the real writer (`seal_bytes`) under the test data key, so the fuzzer controls the
//! authenticated plaintext that the readers parse. With flag bit 0, the manifest's `files` list is
//! replaced by the real hashes of the sealed files, so `verify` gets past them to the shard records.
#![no_main]

use lethe::corpus::manifest::{FileMeta, Manifest};
use lethe::corpus::sealed::{
    seal_bytes, shard_file, shard_role, SealedCorpus, Split, CANARIES_FILE, MANIFEST_FILE, TOKENIZER_FILE,
};
use lethe_fuzz::{data_key, first_byte, fresh_dir, parts, stays_inside, CORPUS_ID, KEY_ID};
use libfuzzer_sys::fuzz_target;

/// Shard parts sealed at most (shard readers run on threads; more shards add time, not paths).
const MAX_SHARDS: usize = 4;
/// Documents decoded with the corpus tokenizer per input at most.
const MAX_DECODED: usize = 8;

fuzz_target!(|data: &[u8]| {
    let (flags, body) = first_byte(data);
    let parts = parts(body);
    let dir = fresh_dir("corpus");
    let key = data_key();
    let seal = |file: &str, role: &str, bytes: &[u8]| {
        seal_bytes(&dir, file, role, CORPUS_ID, &key, KEY_ID, bytes)
            .expect("sealing into the scratch directory")
    };
    let mut files = Vec::new();
    if let Some(canaries) = parts.get(1) {
        files.push(seal(CANARIES_FILE, "canaries", canaries));
    }
    if let Some(tokenizer) = parts.get(2) {
        files.push(seal(TOKENIZER_FILE, "tokenizer", tokenizer));
    }
    for (i, shard) in parts.iter().skip(3).take(MAX_SHARDS).enumerate() {
        files.push(seal(&shard_file(i as u32), &shard_role(i as u32), shard));
    }
    let Some(manifest) = manifest(parts[0], flags & 1 != 0, &files) else {
        return;
    };
    seal(MANIFEST_FILE, "manifest", &manifest);

    let Ok(corpus) = SealedCorpus::open(&dir, CORPUS_ID, data_key()) else {
        return;
    };
    let _ = corpus.verify();
    let docs: Vec<_> = corpus.documents(Split::All, 2).filter_map(Result::ok).collect();
    let upto = u32::from(flags >> 1);
    let _ = corpus.documents_in(Split::Train, 0..upto, 1).count();
    let _ = corpus.documents_in(Split::Holdout, upto..u32::MAX, 1).count();
    let _ = corpus.canaries();
    if let Ok(tokenizer) = corpus.tokenizer() {
        for doc in docs.iter().take(MAX_DECODED) {
            let _ = tokenizer.decode(&doc.tokens);
        }
    }
});

/// The manifest to seal: the input's, or (`real_files`) the input's with its `files` list replaced by
/// the sealed files' real metadata. `None` when it names a file outside the corpus directory: the
/// reader joins the names it is given (the manifest is authenticated under the data key), and a fuzz
/// run must not open the host's own files.
fn manifest(input: &[u8], real_files: bool, files: &[FileMeta]) -> Option<Vec<u8>> {
    let mut bytes = input.to_vec();
    if real_files {
        if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(input) {
            m.insert(
                "files".into(),
                serde_json::to_value(files).expect("metadata serializes"),
            );
            bytes = serde_json::to_vec(&m).expect("a JSON object serializes");
        }
    }
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(m) if !m.files.iter().all(|f| stays_inside(&f.file)) => None,
        _ => Some(bytes),
    }
}
