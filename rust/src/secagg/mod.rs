//! Secure aggregation primitives (SecAgg+, Bell et al. CCS 2020) on whole vectors.
//!
//! The protocol's state machines live in Python (`fedcore.secure`); this module does the heavy
//! and the cryptographic parts: X25519 agreement and HKDF-SHA256 seeds (`keys`), ChaCha20 mask
//! streams added in Z_2^b (`mask`), Shamir sharing over the Curve25519 scalar field (`shamir`),
//! and the fixed-point ring encoding with bit-packing (`ring`). Every primitive comes from a
//! RustCrypto or dalek crate; this module only composes them.

pub mod keys;
pub mod mask;
pub mod ring;
pub mod shamir;

pub use keys::{agree, derive_scalar, open, public_key, seal, KEY_LEN, NONCE_LEN};
pub use mask::{apply_masks, mask_stream, Mask, SEED_LEN};
pub use ring::{add_packed, check_ring_bits, pack, packed_len, quantize, unpack};
pub use shamir::{interpolate, share};
