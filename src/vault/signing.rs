//! The appliance's Ed25519 signing key, which signs release manifests and ledger checkpoints. Its PKCS#8
//! document is stored only wrapped by the master key; the public key is stored in the clear beside it so
//! anyone can verify a bundle with `lethe keys public` alone.

use std::fs;
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use super::keys::{write_secret_file, MasterKeyRing, VaultError, WrappedKey};

/// Purpose string bound into the wrapping of the signing key.
const PURPOSE: &str = "appliance/signing-key/ed25519";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningKeyFile {
    format: String,
    public_key: String,
    wrapped: WrappedKey,
}

/// A loaded signing key. The key pair lives only in memory.
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl Signer {
    /// Generates a key pair and writes it, wrapped, to `path` (mode 0600, never overwriting).
    /// Returns the hex public key.
    pub fn create(path: &Path, ring: &MasterKeyRing) -> Result<String, VaultError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| VaultError::Random)?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| VaultError::SigningKeyMalformed(e.to_string()))?;
        let public_key = hex::encode(pair.public_key().as_ref());
        let file = SigningKeyFile {
            format: "lethe-signing-key/1".into(),
            public_key: public_key.clone(),
            wrapped: ring.wrap(pkcs8.as_ref(), PURPOSE)?,
        };
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| VaultError::SigningKeyMalformed(e.to_string()))?;
        write_secret_file(path, text.as_bytes())?;
        Ok(public_key)
    }

    /// Loads and unwraps the key at `path`.
    pub fn load(path: &Path, ring: &MasterKeyRing) -> Result<Self, VaultError> {
        let text = fs::read_to_string(path).map_err(|source| VaultError::SigningKeyUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let file: SigningKeyFile =
            serde_json::from_str(&text).map_err(|e| VaultError::SigningKeyMalformed(e.to_string()))?;
        let pkcs8 = ring.unwrap_key(&file.wrapped, PURPOSE)?;
        let pair =
            Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| VaultError::SigningKeyMalformed(e.to_string()))?;
        if hex::encode(pair.public_key().as_ref()) != file.public_key {
            return Err(VaultError::SigningKeyMalformed(
                "stored public key does not match the private key".into(),
            ));
        }
        Ok(Self { pair })
    }

    /// Re-wraps the stored key under the ring's current master key version (after a rotation).
    pub fn rewrap_file(path: &Path, ring: &MasterKeyRing) -> Result<(), VaultError> {
        let text = fs::read_to_string(path).map_err(|source| VaultError::SigningKeyUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file: SigningKeyFile =
            serde_json::from_str(&text).map_err(|e| VaultError::SigningKeyMalformed(e.to_string()))?;
        if file.wrapped.master_version == ring.current && file.wrapped.master_key_id == ring.key_id {
            return Ok(());
        }
        file.wrapped = ring.rewrap(&file.wrapped, PURPOSE)?;
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| VaultError::SigningKeyMalformed(e.to_string()))?;
        super::keys::replace_secret_file(path, text.as_bytes())
    }

    /// The master key version the stored key is wrapped by.
    pub fn wrapped_version(path: &Path) -> Result<u32, VaultError> {
        let text = fs::read_to_string(path).map_err(|source| VaultError::SigningKeyUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let file: SigningKeyFile =
            serde_json::from_str(&text).map_err(|e| VaultError::SigningKeyMalformed(e.to_string()))?;
        Ok(file.wrapped.master_version)
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Checks an Ed25519 signature with a hex public key.
pub fn verify(public_key_hex: &str, message: &[u8], signature: &[u8]) -> bool {
    let Ok(pk) = hex::decode(public_key_hex) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_with_public_key_only_and_fails_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let ring = MasterKeyRing::generate(0).unwrap();
        let path = dir.path().join("signing.key");
        let pk = Signer::create(&path, &ring).unwrap();
        let signer = Signer::load(&path, &ring).unwrap();
        assert_eq!(signer.public_key_hex(), pk);
        let sig = signer.sign(b"manifest");
        assert!(verify(&pk, b"manifest", &sig));
        assert!(!verify(&pk, b"manifest!", &sig));
        let other = MasterKeyRing::generate(0).unwrap();
        assert!(matches!(
            Signer::load(&path, &other),
            Err(VaultError::WrongMasterKey { .. })
        ));
    }
}
