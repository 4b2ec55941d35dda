//! X25519 key agreement, HKDF-SHA256 derivation and ChaCha20-Poly1305 sealing of shares.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use hkdf::Hkdf;
use rayon::prelude::*;
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

/// Why a key on the curve's twist is refused.
const TWIST_KEY: &str = "it is not on Curve25519 (a point of its twist)";
/// Why a key of small order is refused (the shared secret is all zero whatever the secret key).
const SMALL_ORDER_KEY: &str = "it has small order (non-contributory X25519 agreement)";

/// Why X25519 with `public` is refused: it lies on the curve's twist, or it has small order;
/// `None` for a usable key.
#[must_use]
pub fn key_fault(public: &[u8; KEY_LEN]) -> Option<&'static str> {
    if MontgomeryPoint(*public).to_edwards(0).is_none() {
        Some(TWIST_KEY)
    } else if is_small_order(public) {
        Some(SMALL_ORDER_KEY)
    } else {
        None
    }
}

/// X25519 (RFC 7748) of `secret` and the curve point `peer`, or `None` for a point of the twist.
///
/// The same function as x25519-dalek's Montgomery ladder on every key of the curve (a test checks
/// it against the ladder), computed as dalek's variable-base scalar multiplication on the
/// birationally equivalent Edwards curve, which runs in its vector backend where the CPU has one
/// (AVX2 here): 34 us an agreement with its HKDF against 53 us for the ladder alone on this AMD
/// EPYC (`cargo bench --bench secagg -- agreement`). `u` of `[k]P` does not depend on which of the
/// two points with that `u` is taken, so sign 0 is. Every step is constant time in dalek except the
/// decompression, which only sees the public key.
fn x25519(secret: &[u8; KEY_LEN], peer: &[u8; KEY_LEN]) -> Option<MontgomeryPoint> {
    let point = MontgomeryPoint(*peer).to_edwards(0)?;
    Some(point.mul_clamped(*secret).to_montgomery())
}

/// X25519 between `secret` and `peer`, then HKDF-SHA256 with `info`: a 32-byte key for one purpose.
///
/// A peer key that [`key_fault`] faults is refused: off the curve it is no honest party's key, and
/// of small order it would fix the derived key.
pub fn agree(secret: &[u8; KEY_LEN], peer: &[u8; KEY_LEN], info: &[u8]) -> Result<[u8; KEY_LEN]> {
    let refuse = |why: &str| CodecError::input(format!("peer public key refused: {why}"));
    let shared = x25519(secret, peer).ok_or_else(|| refuse(TWIST_KEY))?;
    // MontgomeryPoint's == is constant time (subtle's ct_eq): the shared secret is secret.
    if shared == MontgomeryPoint([0u8; KEY_LEN]) {
        return Err(refuse(SMALL_ORDER_KEY));
    }
    let mut out = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(None, shared.as_bytes())
        .expand(info, &mut out)
        .expect("32 bytes is within HKDF-SHA256's output limit");
    Ok(out)
}

/// [`agree`] with every key of `peers`, in parallel: one key per peer, in order.
///
/// A client's agreements with all its neighbours in one call (X25519 is most of a small round's
/// cost); an unusable peer key is refused naming its index in `peers`.
pub fn agree_many(
    secret: &[u8; KEY_LEN],
    peers: &[[u8; KEY_LEN]],
    info: &[u8],
) -> Result<Vec<[u8; KEY_LEN]>> {
    peers
        .par_iter()
        .enumerate()
        .map(|(i, peer)| {
            agree(secret, peer, info).map_err(|e| CodecError::input(format!("peer key {i}: {e}")))
        })
        .collect()
}

/// Whether `public` has small order (on the curve or its twist), so that X25519 with it gives the
/// all-zero secret whatever the secret key: exactly the keys [`agree`] refuses.
///
/// u([8]P) = 0 iff P's order divides 8 (a clamped secret is 8 times an integer below the prime
/// subgroup orders, so [secret]P is the identity iff [8]P is). Four ladder steps instead of a full
/// agreement: the server checks every advertised key this way.
#[must_use]
pub fn is_small_order(public: &[u8; KEY_LEN]) -> bool {
    let eight = [true, false, false, false].into_iter();
    MontgomeryPoint(*public).mul_bits_be(eight) == MontgomeryPoint([0u8; KEY_LEN])
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
    fn many_agreements_match_one_by_one_and_name_a_bad_key() {
        let me = derive_scalar(b"me", b"s");
        let peers: Vec<[u8; 32]> = (0u8..9)
            .map(|i| public_key(&derive_scalar(&[i], b"s")))
            .collect();
        let keys = agree_many(&me, &peers, b"pair").unwrap();
        for (peer, key) in peers.iter().zip(&keys) {
            assert_eq!(*key, agree(&me, peer, b"pair").unwrap());
        }
        let mut bad = peers.clone();
        bad[4] = [0u8; 32];
        let err = agree_many(&me, &bad, b"pair").unwrap_err().to_string();
        assert!(err.contains("peer key 4"), "{err}");
    }

    /// libsodium's blocklist of small-order X25519 keys (0, 1, the two points of order 8, p - 1, p, p + 1).
    const SMALL_ORDER: [&str; 7] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];

    fn key(hex: &str) -> [u8; 32] {
        let bytes: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    #[test]
    fn the_key_check_refuses_exactly_what_agreement_refuses() {
        let probe = derive_scalar(b"probe", b"s");
        for hex in SMALL_ORDER {
            for high_bit in [0u8, 0x80] {
                let mut public = key(hex);
                public[31] |= high_bit; // X25519 ignores the top bit
                assert!(key_fault(&public).is_some(), "{hex} {high_bit}");
                assert!(agree(&probe, &public, b"x").is_err(), "{hex} {high_bit}");
            }
        }
        let mut twist = 0;
        for i in 0u8..=255 {
            let public = public_key(&derive_scalar(&[i], b"s"));
            assert_eq!(key_fault(&public), None);
            let mut raw = derive_scalar(&[i], b"raw"); // arbitrary bytes: curve or twist points
            raw[31] ^= i;
            let refused = agree(&probe, &raw, b"x").is_err();
            assert_eq!(key_fault(&raw).is_some(), refused);
            twist += usize::from(refused);
        }
        // About half of all u lie on the twist.
        assert!((90..=166).contains(&twist), "{twist} of 256 refused");
    }

    /// X25519 by the book: x25519-dalek's Montgomery ladder.
    fn ladder(secret: &[u8; 32], peer: &[u8; 32]) -> [u8; 32] {
        StaticSecret::from(*secret)
            .diffie_hellman(&PublicKey::from(*peer))
            .to_bytes()
    }

    proptest::proptest! {
        #[test]
        fn agreement_through_edwards_is_x25519_on_every_curve_point(
            secret: [u8; 32],
            peer_secret: [u8; 32],
            raw: [u8; 32],
        ) {
            // An honest peer's key, and arbitrary bytes (on the curve about half the time).
            let honest = public_key(&peer_secret);
            let shared = x25519(&secret, &honest).expect("a public key is on the curve");
            proptest::prop_assert_eq!(shared.to_bytes(), ladder(&secret, &honest));
            if let Some(shared) = x25519(&secret, &raw) {
                proptest::prop_assert_eq!(shared.to_bytes(), ladder(&secret, &raw));
            }
        }
    }

    #[test]
    fn non_canonical_keys_agree_as_in_the_ladder() {
        // u + p and u with the top bit set: X25519 reads both as u (u = 9 is the base point).
        let secret = derive_scalar(b"probe", b"s");
        let p = key("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        for small in 9u8..=16 {
            let mut canonical = [0u8; 32];
            canonical[0] = small;
            let mut plus_p = p;
            plus_p[0] += small; // p's low byte is 0xed: no carry for u below 19
            let mut top_bit = canonical;
            top_bit[31] = 0x80;
            let want = x25519(&secret, &canonical).map(|s| s.to_bytes());
            for public in [plus_p, top_bit] {
                let got = x25519(&secret, &public).map(|s| s.to_bytes());
                assert_eq!(got, want, "{small}");
                if let Some(shared) = got {
                    assert_eq!(shared, ladder(&secret, &public), "{small}");
                }
            }
        }
        assert!(x25519(&secret, &key(&format!("09{}", "0".repeat(62)))).is_some());
    }

    #[test]
    fn the_small_order_points_agree_on_zero_as_in_the_ladder() {
        let secret = derive_scalar(b"probe", b"s");
        for hex in SMALL_ORDER {
            let public = key(hex);
            if let Some(shared) = x25519(&secret, &public) {
                assert_eq!(shared.to_bytes(), [0u8; 32], "{hex}");
            }
            assert_eq!(ladder(&secret, &public), [0u8; 32], "{hex}");
        }
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
