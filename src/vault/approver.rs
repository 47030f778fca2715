//! An approver's own credentials, which the appliance never holds: an Ed25519 key in a file of the
//! reviewer's (for the command line and the API) or a WebAuthn passkey in an authenticator (for the
//! console). The appliance keeps only public keys; an approval carries a signature over its statement
//! that anyone can check offline against the approver's registered key.
//!
//! WebAuthn (W3C Web Authentication Level 2): an assertion's signature covers
//! `authenticatorData || SHA-256(clientDataJSON)`, made with ECDSA P-256 (COSE algorithm -7, ES256).
//! Lethe's challenge is `SHA-256(statement)`, so the assertion binds the statement.

use std::path::Path;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

/// The first line of an approver key file.
const KEY_FILE_HEADER: &str = "# lethe approver key (Ed25519, PKCS#8, base64); keep it private";

/// A P-256 public key in SubjectPublicKeyInfo DER is this prefix and the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum ApproverError {
    #[error("cannot read approver key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write approver key {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path} already exists; choose another file or remove it first")]
    Exists { path: String },
    #[error("{path} is not a lethe approver key (expected the file `lethe approver keygen` writes)")]
    NotAKey { path: String },
    #[error("cannot generate a key: the operating system's random source failed")]
    Random,
    #[error("the public key is not valid: {0}")]
    PublicKey(String),
    #[error("the signature does not verify: {0}")]
    Signature(String),
}

/// The `base64url` alphabet without padding, as WebAuthn uses it.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64url_decode(s: &str, what: &str) -> Result<Vec<u8>, ApproverError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| ApproverError::Signature(format!("{what} is not base64url: {e}")))
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// An Ed25519 approver key, loaded from its file.
pub struct ApproverKey {
    pair: Ed25519KeyPair,
}

impl ApproverKey {
    /// Writes a new key to `path` (mode 0600, never over an existing file) and returns its public key
    /// (hex).
    pub fn generate(path: &Path) -> Result<String, ApproverError> {
        use std::io::Write as _;
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| ApproverError::Random)?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| ApproverError::Random)?;
        let text = format!(
            "{KEY_FILE_HEADER}\n{}\n",
            base64::engine::general_purpose::STANDARD.encode(doc.as_ref())
        );
        let display = path.display().to_string();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                ApproverError::Exists {
                    path: display.clone(),
                }
            } else {
                ApproverError::Write {
                    path: display.clone(),
                    source,
                }
            }
        })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|source| ApproverError::Write {
                path: display,
                source,
            })?;
        Ok(hex::encode(pair.public_key().as_ref()))
    }

    pub fn load(path: &Path) -> Result<ApproverKey, ApproverError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ApproverError::Read {
            path: display.clone(),
            source,
        })?;
        let not_a_key = || ApproverError::NotAKey {
            path: display.clone(),
        };
        let body = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(not_a_key)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| not_a_key())?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| not_a_key())?;
        Ok(ApproverKey { pair })
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// The signature (base64url) over `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        b64url(self.pair.sign(message).as_ref())
    }
}

/// Checks an Ed25519 public key's shape (32 bytes, hex).
pub fn check_ed25519_public_key(hex_key: &str) -> Result<(), ApproverError> {
    match hex::decode(hex_key.trim()) {
        Ok(b) if b.len() == 32 => Ok(()),
        Ok(b) => Err(ApproverError::PublicKey(format!(
            "an Ed25519 public key is 32 bytes; this one is {}",
            b.len()
        ))),
        Err(e) => Err(ApproverError::PublicKey(format!("not hex: {e}"))),
    }
}

/// An Ed25519 signature (base64url) by `public_key_hex` over `message`.
pub fn verify_ed25519(
    public_key_hex: &str,
    message: &[u8],
    signature_b64: &str,
) -> Result<(), ApproverError> {
    check_ed25519_public_key(public_key_hex)?;
    let pk = hex::decode(public_key_hex.trim()).map_err(|e| ApproverError::PublicKey(e.to_string()))?;
    let sig = b64url_decode(signature_b64, "the signature")?;
    signature::UnparsedPublicKey::new(&signature::ED25519, pk)
        .verify(message, &sig)
        .map_err(|_| {
            ApproverError::Signature("Ed25519 signature does not match the key and statement".into())
        })
}

/// The uncompressed P-256 point (hex) of a passkey's public key as the browser reports it
/// (`AuthenticatorAttestationResponse.getPublicKey()`: SubjectPublicKeyInfo DER, base64url).
pub fn p256_point_from_spki(spki_b64: &str) -> Result<String, ApproverError> {
    let der =
        b64url_decode(spki_b64, "the public key").map_err(|e| ApproverError::PublicKey(e.to_string()))?;
    if der.len() != P256_SPKI_PREFIX.len() + 65 || der[..P256_SPKI_PREFIX.len()] != P256_SPKI_PREFIX {
        return Err(ApproverError::PublicKey(
            "the passkey's key is not an ECDSA P-256 key (ES256, COSE -7): Lethe accepts only those".into(),
        ));
    }
    let point = &der[P256_SPKI_PREFIX.len()..];
    if point[0] != 0x04 {
        return Err(ApproverError::PublicKey(
            "the P-256 point is not uncompressed".into(),
        ));
    }
    Ok(hex::encode(point))
}

/// The challenge a WebAuthn ceremony over `statement` uses: base64url(SHA-256(statement)).
pub fn challenge_for(statement: &[u8]) -> String {
    b64url(&sha256(statement))
}

/// What a passkey's client data must say.
#[derive(Debug, serde::Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
}

/// Checks WebAuthn client data (base64url JSON): its type (`webauthn.create` or `webauthn.get`), that
/// its challenge is `challenge`, and, when given, its origin. Returns the origin.
pub fn check_client_data(
    client_data_b64: &str,
    kind: &str,
    challenge: &str,
    origin: Option<&str>,
) -> Result<String, ApproverError> {
    let raw = b64url_decode(client_data_b64, "the client data")?;
    let cd: ClientData = serde_json::from_slice(&raw)
        .map_err(|e| ApproverError::Signature(format!("the client data is not WebAuthn client data: {e}")))?;
    if cd.kind != kind {
        return Err(ApproverError::Signature(format!(
            "the client data is for {:?}, not {kind:?}",
            cd.kind
        )));
    }
    if cd.challenge.trim_end_matches('=') != challenge {
        return Err(ApproverError::Signature(
            "the client data's challenge is not the one issued for this statement".into(),
        ));
    }
    if let Some(o) = origin {
        if cd.origin != o {
            return Err(ApproverError::Signature(format!(
                "the client data comes from origin {:?}, not {o:?}",
                cd.origin
            )));
        }
    }
    Ok(cd.origin)
}

/// A passkey assertion over `statement`: the client data (type `webauthn.get`, challenge
/// SHA-256(statement)), the authenticator data (relying party `rp_id`, user present), and the ECDSA
/// P-256 signature (DER, base64url) over `authenticatorData || SHA-256(clientDataJSON)` by the
/// uncompressed point `public_key_hex`. Returns whether the authenticator verified the user (UV).
pub fn verify_webauthn(
    public_key_hex: &str,
    rp_id: &str,
    statement: &[u8],
    authenticator_data_b64: &str,
    client_data_b64: &str,
    signature_b64: &str,
) -> Result<bool, ApproverError> {
    check_client_data(client_data_b64, "webauthn.get", &challenge_for(statement), None)?;
    let auth = b64url_decode(authenticator_data_b64, "the authenticator data")?;
    if auth.len() < 37 {
        return Err(ApproverError::Signature(format!(
            "the authenticator data is {} bytes; it has at least 37",
            auth.len()
        )));
    }
    if auth[..32] != sha256(rp_id.as_bytes())[..] {
        return Err(ApproverError::Signature(format!(
            "the assertion was made for another relying party than {rp_id:?}"
        )));
    }
    let flags = auth[32];
    if flags & 0x01 == 0 {
        return Err(ApproverError::Signature(
            "the authenticator did not see the user present (UP flag clear)".into(),
        ));
    }
    let client = b64url_decode(client_data_b64, "the client data")?;
    let mut signed = auth.clone();
    signed.extend_from_slice(&sha256(&client));
    let point = hex::decode(public_key_hex.trim()).map_err(|e| ApproverError::PublicKey(e.to_string()))?;
    let sig = b64url_decode(signature_b64, "the signature")?;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(&signed, &sig)
        .map_err(|_| {
            ApproverError::Signature(
                "the passkey's signature does not match its key and the statement".into(),
            )
        })?;
    Ok(flags & 0x04 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    #[test]
    fn an_ed25519_approver_key_signs_what_its_public_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rita.key");
        let pk = ApproverKey::generate(&path).unwrap();
        assert!(matches!(
            ApproverKey::generate(&path),
            Err(ApproverError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let key = ApproverKey::load(&path).unwrap();
        assert_eq!(key.public_key_hex(), pk);
        let sig = key.sign(b"statement");
        verify_ed25519(&pk, b"statement", &sig).unwrap();
        assert!(verify_ed25519(&pk, b"statemenT", &sig).is_err());
        std::fs::write(dir.path().join("junk"), "# x\nnot base64!\n").unwrap();
        assert!(matches!(
            ApproverKey::load(&dir.path().join("junk")),
            Err(ApproverError::NotAKey { .. })
        ));
        assert!(check_ed25519_public_key("abcd").is_err());
    }

    /// A passkey assertion made as an authenticator makes it (a P-256 key, authenticator data with the
    /// relying party's hash and flags, client data with the statement's challenge) verifies; any change
    /// to the statement, the relying party, the flags or the client data does not.
    #[test]
    fn a_webauthn_assertion_binds_statement_relying_party_and_presence() {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref(), &rng).unwrap();
        let point = hex::encode(pair.public_key().as_ref());
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        assert_eq!(p256_point_from_spki(&b64url(&spki)).unwrap(), point);
        assert!(p256_point_from_spki(&b64url(&spki[1..])).is_err());

        let assertion = |statement: &[u8], rp: &str, flags: u8| {
            let client = format!(
                r#"{{"type":"webauthn.get","challenge":"{}","origin":"http://localhost:8080"}}"#,
                challenge_for(statement)
            );
            let mut auth = sha256(rp.as_bytes());
            auth.push(flags);
            auth.extend_from_slice(&[0, 0, 0, 7]);
            let mut signed = auth.clone();
            signed.extend_from_slice(&sha256(client.as_bytes()));
            let sig = pair.sign(&rng, &signed).unwrap();
            (b64url(&auth), b64url(client.as_bytes()), b64url(sig.as_ref()))
        };
        let (a, c, s) = assertion(b"approve", "localhost", 0x05);
        assert!(verify_webauthn(&point, "localhost", b"approve", &a, &c, &s).unwrap());
        assert!(verify_webauthn(&point, "localhost", b"approvE", &a, &c, &s).is_err());
        assert!(verify_webauthn(&point, "example.com", b"approve", &a, &c, &s).is_err());
        let (a2, c2, s2) = assertion(b"approve", "localhost", 0x04);
        assert!(verify_webauthn(&point, "localhost", b"approve", &a2, &c2, &s2)
            .unwrap_err()
            .to_string()
            .contains("UP flag"));
        let (a3, c3, s3) = assertion(b"approve", "localhost", 0x01);
        assert!(!verify_webauthn(&point, "localhost", b"approve", &a3, &c3, &s3).unwrap());
        // Client data from a ceremony over another statement does not stand in for this one's.
        let (_, other, _) = assertion(b"reject", "localhost", 0x05);
        assert!(verify_webauthn(&point, "localhost", b"approve", &a, &other, &s)
            .unwrap_err()
            .to_string()
            .contains("challenge"));
    }
}
