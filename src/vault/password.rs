//! Password hashing: PBKDF2-HMAC-SHA256 (ring) with a per-password random salt, stored as
//! `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>` so the cost can rise later without breaking old
//! hashes. Hashing takes a noticeable fraction of a second by design: callers on an async runtime run it
//! with `spawn_blocking`.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

use super::VaultError;

/// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
pub const ITERATIONS: u32 = 600_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const SCHEME: &str = "pbkdf2-sha256";

/// Hashes `password` for storage.
pub fn hash(password: &str) -> Result<String, VaultError> {
    hash_with(password, ITERATIONS)
}

fn hash_with(password: &str, iterations: u32) -> Result<String, VaultError> {
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| VaultError::Random)?;
    let mut out = [0u8; HASH_LEN];
    let n = NonZeroU32::new(iterations).expect("iteration counts are positive constants");
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        n,
        &salt,
        password.as_bytes(),
        &mut out,
    );
    Ok(format!(
        "{SCHEME}${iterations}${}${}",
        B64.encode(salt),
        B64.encode(out)
    ))
}

/// What a sign-in checks a password against when there is no usable stored hash (an unknown user
/// name, an account without a password): a well-formed hash at the full cost whose password nobody
/// knows (its bytes are not the output of any password chosen here), so that an unknown name costs
/// the same time as a real one and the answer's timing does not say which names exist.
pub const DUMMY_HASH: &str =
    "pbkdf2-sha256$600000$bGV0aGUtZHVtbXktc2FsdA$h0Q3cGJUnVH6HdyMmeVjfUWk1aV0mN5aP1uGkq7yH0c";

/// The iteration count of a stored hash, when it is well formed.
pub fn iterations(stored: &str) -> Option<u32> {
    let mut parts = stored.split('$');
    match (parts.next(), parts.next()) {
        (Some(SCHEME), Some(iter)) => iter.parse().ok(),
        _ => None,
    }
}

/// True when `password` matches `stored`; false for a wrong password and for a malformed stored hash
/// (which must never let anyone in).
pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iter), Ok(salt), Ok(hash)) = (iter.parse::<u32>(), B64.decode(salt), B64.decode(hash)) else {
        return false;
    };
    let Some(iter) = NonZeroU32::new(iter) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iter,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// A one-time password for a new account: 20 characters from an alphabet without look-alikes
/// (about 114 bits).
pub fn generate_one_time() -> Result<String, VaultError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(23);
    let mut byte = [0u8; 1];
    while out.len() < 20 + 3 {
        if out.len() % 6 == 5 {
            out.push('-');
            continue;
        }
        rng.fill(&mut byte).map_err(|_| VaultError::Random)?;
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - (256 % ALPHABET.len());
        if (byte[0] as usize) < limit {
            out.push(ALPHABET[byte[0] as usize % ALPHABET.len()] as char);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_the_password_and_rejects_others() {
        let h = hash_with("correct horse", 1000).unwrap();
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horse ", &h));
        assert!(!verify("", &h));
    }

    #[test]
    fn malformed_hashes_never_verify() {
        for bad in [
            "",
            "pbkdf2-sha256$0$AA$AA",
            "plain",
            "pbkdf2-sha256$10$!!$AA",
            "md5$1$a$b",
        ] {
            assert!(!verify("", bad), "{bad}");
        }
    }

    #[test]
    fn stored_hash_uses_the_full_cost() {
        let h = hash("x").unwrap();
        assert!(h.starts_with("pbkdf2-sha256$600000$"), "{h}");
        assert!(verify("x", &h));
    }

    #[test]
    fn one_time_passwords_are_grouped_and_differ() {
        let a = generate_one_time().unwrap();
        let b = generate_one_time().unwrap();
        assert_eq!(a.len(), 23);
        assert_eq!(a.matches('-').count(), 3);
        assert_ne!(a, b);
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does_and_admits_nobody() {
        assert_eq!(iterations(DUMMY_HASH), Some(ITERATIONS));
        let real = hash("x").unwrap();
        assert_eq!(iterations(&real), iterations(DUMMY_HASH));
        for guess in ["", "password", "lethe", "dummy"] {
            assert!(!verify(guess, DUMMY_HASH));
        }
    }
}
