//! Mask vectors over Z_2^b expanded from 32-byte seeds by the ChaCha20 keystream.
//!
//! Element `i` of the stream of `seed` is little-endian bytes `4i .. 4i + 4` of ChaCha20 keyed
//! by `seed` with the all-zero nonce; each seed is used for one stream only (HKDF gives a fresh
//! seed per round and pair), so the fixed nonce never repeats under one key. Masks are added
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

/// Keystream bytes per step: small enough to stay in L1 while they are added.
const STEP: usize = 4096;
/// All-zero input, so the cipher writes its keystream instead of XORing it into a buffer.
static ZEROS: [u8; STEP] = [0u8; STEP];

/// `chunk[i] = chunk[i] ± stream[first + i]` for one seed's stream.
fn add_stream(mask: &Mask<'_>, first: usize, chunk: &mut [u32]) {
    let mut cipher = ChaCha20::new(mask.seed.into(), &[0u8; 12].into());
    cipher.seek(first as u64 * 4);
    let mut buf = [0u8; STEP];
    for part in chunk.chunks_mut(STEP / 4) {
        let bytes = &mut buf[..part.len() * 4];
        cipher
            .apply_keystream_b2b(&ZEROS[..bytes.len()], bytes)
            .expect("input and output buffers have equal lengths");
        let words = bytes
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
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
                add_stream(m, c * CHUNK, chunk);
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
    fn bad_ring_is_refused() {
        assert!(mask_stream(&[0u8; 32], 4, 0).is_err());
        assert!(mask_stream(&[0u8; 32], 4, 33).is_err());
    }
}
