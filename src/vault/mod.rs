//! The vault owns every secret Lethe holds: the master key ring (key-encryption keys with ids and
//! versions), data keys wrapped under it, the Ed25519 signing key, and password hashing. Nothing above
//! this module touches raw key bytes.

pub mod approver;
pub mod keys;
pub mod password;
pub mod signing;
pub mod stream;

pub use keys::{MasterKeyRing, VaultError, WrappedKey};
pub use signing::Signer;

use ring::rand::{SecureRandom, SystemRandom};

/// `n` random bytes from the operating system's CSPRNG, hex encoded: the shape of every id Lethe makes.
pub fn random_hex(n: usize) -> Result<String, VaultError> {
    let mut buf = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| VaultError::Random)?;
    Ok(hex::encode(buf))
}
