//! X25519 key agreement, HKDF-SHA256 derivation and ChaCha20-Poly1305 sealing of shares.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use curve25519_dalek::scalar::Scalar;
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::error::{CodecError, Result};

/// Bytes of every secret, public key, seed and AEAD key here.
pub const KEY_LEN: usize = 32;
/// Bytes of a ChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 12;

/// Exactly 32 bytes, or a one-line refusal naming `what`.
pub fn key32(bytes: &[u8], what: &str) -> Result<[u8; KEY_LEN]> {
    bytes.try_into().map_err(|_| {
        CodecError::param(format!(
            "{what} must be {KEY_LEN} bytes, got {}",
            bytes.len()
        ))
    })
}

/// A canonical Curve25519 scalar (uniform up to 2^-125) derived from `seed` for purpose `info`.
///
/// Used for X25519 secrets and self-mask seeds alike, so both can be Shamir-shared as one field
/// element each.
#[must_use]
pub fn derive_scalar(seed: &[u8], info: &[u8]) -> [u8; KEY_LEN] {
    let mut wide = [0u8; 64];
    Hkdf::<Sha256>::new(None, seed)
        .expand(info, &mut wide)
        .expect("64 bytes is within HKDF-SHA256's output limit");
    Scalar::from_bytes_mod_order_wide(&wide).to_bytes()
}

/// The X25519 public key of `secret`.
#[must_use]
pub fn public_key(secret: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// X25519 between `secret` and `peer`, then HKDF-SHA256 with `info`: a 32-byte key for one purpose.
///
/// A peer key of small order (all-zero shared secret) is refused: it would fix the derived key.
pub fn agree(secret: &[u8; KEY_LEN], peer: &[u8; KEY_LEN], info: &[u8]) -> Result<[u8; KEY_LEN]> {
    let shared = StaticSecret::from(*secret).diffie_hellman(&PublicKey::from(*peer));
    if !shared.was_contributory() {
        return Err(CodecError::input(
            "peer public key has small order (non-contributory X25519 agreement)",
        ));
    }
    let mut out = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(None, shared.as_bytes())
        .expand(info, &mut out)
        .expect("32 bytes is within HKDF-SHA256's output limit");
    Ok(out)
}

/// ChaCha20-Poly1305 encryption of `plaintext` bound to `aad`; output is ciphertext || 16-byte tag.
pub fn seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    ChaCha20Poly1305::new(key.into())
        .encrypt(
            nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CodecError::input("plaintext too long for ChaCha20-Poly1305"))
}

/// Decrypts what [`seal`] made; any change to key, nonce, aad or bytes is refused.
pub fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>> {
    ChaCha20Poly1305::new(key.into())
        .decrypt(nonce.into(), Payload { msg: sealed, aad })
        .map_err(|_| CodecError::input("ciphertext failed authentication (ChaCha20-Poly1305)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_purposes_differ() {
        let a = derive_scalar(b"alice", b"s");
        let b = derive_scalar(b"bob", b"s");
        let (pa, pb) = (public_key(&a), public_key(&b));
        let k1 = agree(&a, &pb, b"mask").unwrap();
        assert_eq!(k1, agree(&b, &pa, b"mask").unwrap());
        assert_ne!(k1, agree(&a, &pb, b"share").unwrap());
    }

    #[test]
    fn small_order_peer_is_refused() {
        let a = derive_scalar(b"alice", b"s");
        assert!(agree(&a, &[0u8; 32], b"x").is_err());
    }

    #[test]
    fn sealed_shares_detect_tampering() {
        let key = [7u8; 32];
        let nonce = [1u8; 12];
        let mut ct = seal(&key, &nonce, b"round", b"share").unwrap();
        assert_eq!(open(&key, &nonce, b"round", &ct).unwrap(), b"share");
        assert!(open(&key, &nonce, b"other", &ct).is_err());
        ct[0] ^= 1;
        assert!(open(&key, &nonce, b"round", &ct).is_err());
    }

    #[test]
    fn derived_scalars_are_canonical() {
        for i in 0u8..32 {
            let s = derive_scalar(&[i], b"x");
            assert!(bool::from(Scalar::from_canonical_bytes(s).is_some()));
        }
    }
}
