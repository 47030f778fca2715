//! The release-bundle reader (`release::bundle`): `manifest.json`, `manifest.sig` and the payload files
//! that `lethe release verify` checks, the ledger section a bundle carries, and the checkpoint-to-plain
//! weights conversion.
//!
//! The first byte picks what the rest is:
//! - 0: a bundle whose `manifest.json` is signed by the trusted key: parts `manifest.json`, then payload
//!   files (`name` line, then content; a name ending in `/` makes a directory). Reaches the manifest
//!   parser and the file checks; a bundle that verifies also has its ledger section checked.
//! - 1: a bundle as found: parts `manifest.json`, `manifest.sig`, the trusted key as typed, then files.
//! - 2: fields and files for `write_bundle`; whatever it writes must verify, to the same manifest.
//! - 3: a training checkpoint for `plain_weights` (safetensors).
#![no_main]

use std::path::Path;

use lethe::app::ledger::{heads_in, BundleLedger};
use lethe::release::bundle::{
    plain_weights, verify_bundle, write_bundle, ManifestInput, MANIFEST_FILE, SIGNATURE_FILE,
};
use lethe_fuzz::{first_byte, fresh_dir, named, parts, sign, stays_inside, write, SIGNING_PUBLIC_HEX};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, body) = first_byte(data);
    match mode % 4 {
        0 => signed(body),
        1 => as_found(body),
        2 => {
            if let Ok(w) = Written::arbitrary_take_rest(Unstructured::new(body)) {
                round_trip(w);
            }
        }
        _ => {
            let _ = plain_weights(body);
        }
    }
});

fn signed(body: &[u8]) {
    let parts = parts(body);
    let dir = fresh_dir("bundle");
    payload(&dir, &parts[1..]);
    write(&dir, MANIFEST_FILE, parts[0]);
    write(
        &dir,
        SIGNATURE_FILE,
        format!("{}\n", hex::encode(sign(parts[0]))).as_bytes(),
    );
    let Ok(verified) = verify_bundle(&dir, SIGNING_PUBLIC_HEX) else {
        return;
    };
    if let Ok(Some(ledger)) = BundleLedger::of_manifest(&verified.manifest.extra) {
        let _ = ledger.verify(SIGNING_PUBLIC_HEX);
    }
    let _ = heads_in(&dir);
}

fn as_found(body: &[u8]) {
    let parts = parts(body);
    let [manifest, signature, trusted, files @ ..] = &parts[..] else {
        return;
    };
    let dir = fresh_dir("bundle");
    payload(&dir, files);
    write(&dir, MANIFEST_FILE, manifest);
    write(&dir, SIGNATURE_FILE, signature);
    let _ = verify_bundle(&dir, &String::from_utf8_lossy(trusted));
    let _ = heads_in(&dir);
}

/// Writes payload parts into `dir`; names that would leave it are skipped.
fn payload(dir: &Path, files: &[&[u8]]) {
    for part in files {
        let (name, content) = named(part);
        match name.strip_suffix('/') {
            Some(sub) if stays_inside(sub) => {
                let _ = std::fs::create_dir(dir.join(sub));
            }
            None if stays_inside(&name) => {
                write(dir, &name, content);
            }
            _ => {}
        }
    }
}

/// What `write_bundle` is given. Fields the writer validates come valid unless the fuzzer says
/// otherwise, so that most inputs get as far as writing.
#[derive(Debug, Arbitrary)]
struct Written {
    created_at: Option<String>,
    run_id: String,
    audit_id: String,
    policy_sha256: [u8; 32],
    policy_uppercase: bool,
    key_id: Option<String>,
    public_key: Option<String>,
    approvals: String,
    extra: String,
    files: Vec<(String, Vec<u8>)>,
}

fn round_trip(w: Written) {
    let policy = hex::encode(w.policy_sha256);
    let input = ManifestInput {
        created_at: w
            .created_at
            .unwrap_or_else(|| "2026-12-03T10:00:00.5+01:00".into()),
        run_id: w.run_id,
        audit_id: w.audit_id,
        policy_sha256: if w.policy_uppercase {
            policy.to_uppercase()
        } else {
            policy
        },
        key_id: w.key_id,
        public_key_hex: w.public_key.unwrap_or_else(|| SIGNING_PUBLIC_HEX.into()),
        approvals: serde_json::from_str(&w.approvals).unwrap_or_default(),
        extra: serde_json::from_str(&w.extra).unwrap_or_default(),
    };
    let files: Vec<(&str, &[u8])> = w.files.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
    let target = fresh_dir("written").join("bundle");
    let Ok(manifest) = write_bundle(&target, &files, input, &sign) else {
        return;
    };
    let verified = verify_bundle(&target, SIGNING_PUBLIC_HEX).expect("a bundle write_bundle wrote verifies");
    assert_eq!(
        verified.manifest, manifest,
        "the verified manifest is not the one written"
    );
}
