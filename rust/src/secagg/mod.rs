//! Secure aggregation primitives (SecAgg+, Bell et al. CCS 2020) on whole vectors.
//!
//! The protocol's state machines live in Python (`fedcore.secure`); this module does the heavy
//! and the cryptographic parts: X25519 agreement and HKDF-SHA256 seeds (`keys`), AES-128-CTR
//! or ChaCha20 mask streams added in Z_2^b (`mask`), Shamir sharing over the Curve25519 scalar field (`shamir`),
//! and the fixed-point ring encoding with bit-packing (`ring`). Every primitive comes from a
//! RustCrypto or dalek crate; this module only composes them.

pub mod keys;
pub mod mask;
pub mod ring;
pub mod shamir;

pub use keys::{
    agree, agree_many, derive_scalar, is_small_order, key_fault, open, public_key, seal, KEY_LEN,
    NONCE_LEN,
};
pub use mask::{
    apply_masks, element_bytes, mask_and_pack, mask_and_pack_into, mask_stream,
    quantize_mask_and_pack_into, Mask, Prg, SEED_LEN,
};
pub use ring::{add_packed, check_ring_bits, pack, packed_len, quantize, unpack};
pub use shamir::{interpolate, share};

use rayon::prelude::*;

/// Elements of work below which a kernel stays on the calling thread: handing rayon's pool a few
/// tens of microseconds of work costs a wake-up and two context switches, milliseconds on a busy
/// machine (a simulated client's 20k-parameter update is such work).
const SERIAL_BELOW: usize = 1 << 18;

/// `f(i, chunk)` for each `size`-element chunk of `data`, in rayon's pool when `work` (elements
/// touched, all passes together) is at least [`SERIAL_BELOW`], else in order on this thread.
pub(crate) fn each_chunk<T: Send>(
    data: &mut [T],
    size: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if work < SERIAL_BELOW {
        data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}
