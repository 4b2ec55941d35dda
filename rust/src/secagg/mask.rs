//! Mask vectors over Z_2^b expanded from 32-byte seeds by the ChaCha20 keystream.
//!
//! In a ring of `b` bits, element `i` of the stream of `seed` is the little-endian bytes
//! `w·i .. w·i + w`, `w = ceil(b / 8)`, of ChaCha20 keyed by `seed` with the all-zero nonce (only
//! the low `b` bits of an element count, so no keystream is drawn for the rest); each seed is used
//! for one stream only (HKDF gives a fresh seed per round and pair), so the fixed nonce never
//! repeats under one key. Masks are added
//! with wrapping u32 arithmetic and reduced mod 2^b at the end: 2^b divides 2^32, so the result
//! is the sum in Z_2^b.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use rayon::prelude::*;

use super::ring::check_ring_bits;
use crate::error::{CodecError, Result};

/// Bytes of a mask seed.
pub const SEED_LEN: usize = 32;
/// Elements per rayon task: 64 KiB of keystream, which stays in L2 while it is added.
const CHUNK: usize = 1 << 14;

/// One mask stream to add to (or subtract from) a vector.
#[derive(Clone, Copy, Debug)]
pub struct Mask<'a> {
    /// The stream's ChaCha20 key.
    pub seed: &'a [u8; SEED_LEN],
    /// Subtract instead of add (the lower-numbered side of a pair adds, the other subtracts).
    pub negate: bool,
}

/// Elements per step: their keystream stays in L1 while it is added.
const STEP: usize = 1024;
/// All-zero input, so the cipher writes its keystream instead of XORing it into a buffer.
static ZEROS: [u8; STEP * 4] = [0u8; STEP * 4];

/// `chunk[i] = chunk[i] ± stream[first + i]` for one seed's stream of `W`-byte elements.
fn add_stream<const W: usize>(mask: &Mask<'_>, first: usize, chunk: &mut [u32]) {
    let mut cipher = ChaCha20::new(mask.seed.into(), &[0u8; 12].into());
    cipher.seek(first as u64 * W as u64);
    let mut buf = [0u8; STEP * 4];
    for part in chunk.chunks_mut(STEP) {
        let bytes = &mut buf[..part.len() * W];
        cipher
            .apply_keystream_b2b(&ZEROS[..bytes.len()], bytes)
            .expect("input and output buffers have equal lengths");
        let words = bytes.chunks_exact(W).map(|w| {
            let mut le = [0u8; 4];
            le[..W].copy_from_slice(w);
            u32::from_le_bytes(le)
        });
        if mask.negate {
            part.iter_mut()
                .zip(words)
                .for_each(|(a, r)| *a = a.wrapping_sub(r));
        } else {
            part.iter_mut()
                .zip(words)
                .for_each(|(a, r)| *a = a.wrapping_add(r));
        }
    }
}

fn refuse_oversize(n: usize) -> Result<()> {
    // ChaCha20's 32-bit block counter covers 256 GiB of keystream: 2^36 elements.
    if n as u64 > 1 << 36 {
        return Err(CodecError::input(format!(
            "a mask stream covers at most 2^36 elements, got {n}"
        )));
    }
    Ok(())
}

/// `acc[i] = acc[i] ± stream_m[i]` for every mask, then reduced mod 2^`ring_bits`; parallel over chunks.
pub fn apply_masks(acc: &mut [u32], masks: &[Mask<'_>], ring_bits: u32) -> Result<()> {
    let keep = check_ring_bits(ring_bits)?;
    refuse_oversize(acc.len())?;
    acc.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            for m in masks {
                // Only the low `ring_bits` of an element matter: draw ceil(ring_bits / 8) bytes of it.
                match ring_bits.div_ceil(8) {
                    1 => add_stream::<1>(m, c * CHUNK, chunk),
                    2 => add_stream::<2>(m, c * CHUNK, chunk),
                    3 => add_stream::<3>(m, c * CHUNK, chunk),
                    _ => add_stream::<4>(m, c * CHUNK, chunk),
                }
            }
            for a in chunk.iter_mut() {
                *a &= keep;
            }
        });
    Ok(())
}

/// The first `n` elements of `seed`'s mask stream in Z_2^`ring_bits` (tests and benchmarks).
pub fn mask_stream(seed: &[u8; SEED_LEN], n: usize, ring_bits: u32) -> Result<Vec<u32>> {
    let mut out = vec![0u32; n];
    apply_masks(
        &mut out,
        &[Mask {
            seed,
            negate: false,
        }],
        ring_bits,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_masks_cancel_exactly() {
        let (s1, s2) = ([1u8; 32], [2u8; 32]);
        let x: Vec<u32> = (0..100_000u32).map(|i| i % 1000).collect();
        let mut u = x.clone();
        apply_masks(
            &mut u,
            &[
                Mask {
                    seed: &s1,
                    negate: false,
                },
                Mask {
                    seed: &s2,
                    negate: true,
                },
            ],
            20,
        )
        .unwrap();
        assert_ne!(u, x);
        apply_masks(
            &mut u,
            &[
                Mask {
                    seed: &s1,
                    negate: true,
                },
                Mask {
                    seed: &s2,
                    negate: false,
                },
            ],
            20,
        )
        .unwrap();
        assert_eq!(u, x);
    }

    #[test]
    fn chunks_continue_one_stream() {
        // The parallel chunks must read consecutive keystream, like one sequential pass.
        let seed = [9u8; 32];
        let n = 3 * CHUNK + 5;
        let mut whole = vec![0u8; n * 4];
        let mut cipher = ChaCha20::new((&seed).into(), &[0u8; 12].into());
        cipher.apply_keystream(&mut whole);
        let want: Vec<u32> = whole
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        assert_eq!(mask_stream(&seed, n, 32).unwrap(), want);
    }

    #[test]
    fn narrow_rings_read_consecutive_three_byte_elements() {
        let seed = [4u8; 32];
        let n = CHUNK + 3 * STEP + 7;
        let mut whole = vec![0u8; n * 3];
        let mut cipher = ChaCha20::new((&seed).into(), &[0u8; 12].into());
        cipher.apply_keystream(&mut whole);
        let want: Vec<u32> = whole
            .chunks_exact(3)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], 0]) & 0x7f_ffff)
            .collect();
        assert_eq!(mask_stream(&seed, n, 23).unwrap(), want);
    }

    #[test]
    fn bad_ring_is_refused() {
        assert!(mask_stream(&[0u8; 32], 4, 0).is_err());
        assert!(mask_stream(&[0u8; 32], 4, 33).is_err());
    }
}
