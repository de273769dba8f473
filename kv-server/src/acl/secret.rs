//! Token secrets: 256 random bits from the operating system, shown once,
//! kept only as their SHA-256.
//!
//! A plain hash (no salt, no slow key derivation) is enough: a secret of
//! 256 random bits cannot be guessed from its hash, and a fast hash lets
//! every request be checked without a cost that matters.

use rand::TryRngCore;
use sha2::{Digest, Sha256};

/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;

/// A new secret: 64 lowercase hex digits.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|error| format!("the operating system gave no random bytes: {error}"))?;
    Ok(hex(&bytes))
}

/// Whether `text` has the shape of a secret this server makes, so a
/// malformed one is refused before it is hashed and looked up.
pub fn is_well_formed(text: &str) -> bool {
    schemas::api::is_well_formed_secret(text)
}

/// The SHA-256 of a secret, lowercase hex: what the store keeps.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut out, byte| {
            write!(out, "{byte:02x}").expect("writing to a String cannot fail");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_256_random_bits_in_hex_and_differ() {
        let first = new_secret().unwrap();
        let second = new_secret().unwrap();
        assert!(is_well_formed(&first), "{first}");
        assert_ne!(first, second);
    }

    #[test]
    fn the_hash_is_sha256_in_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_secrets_are_told_apart() {
        for text in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert!(!is_well_formed(text), "{text:?}");
        }
    }
}
