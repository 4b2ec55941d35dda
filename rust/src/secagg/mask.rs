//! Mask vectors over Z_2^b expanded from 32-byte seeds by a keystream, AES-128-CTR or ChaCha20.
//!
//! Which keystream is the round's [`Prg`]: the server names it in the SecAgg+ setup every party
//! receives (`RoundSetup.prg` in `fedcore.secure`), so two parties can never expand one seed two
//! ways without noticing. In a ring of `b` bits, element `i` of the stream of `seed` is the low `b`
//! bits of the little-endian bytes `w·i .. w·i + w` of the keystream, `w` = [`element_bytes`]`(b)`
//! (1, 2 or 4):
//! - [`Prg::Aes128Ctr`]: AES-128 keyed by `seed[..16]` in CTR mode (NIST SP 800-38A) with the
//!   128-bit big-endian counter starting at `seed[16..]`;
//! - [`Prg::ChaCha20`]: ChaCha20 (RFC 8439) keyed by `seed` with the all-zero nonce.
//!
//! Each seed is used for one stream only (HKDF gives a fresh seed per round and pair), so a key
//! never restarts its counter. Masks are added
//! with wrapping u32 arithmetic and reduced mod 2^b at the end: 2^b divides 2^32, so the result
//! is the sum in Z_2^b.

use super::each_chunk;
use super::ring::{check_ring_bits, pack_serial, packed_len};
use crate::error::{CodecError, Result};
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes::Aes128;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;

/// Keystream bytes per block of AES.
const AES_BLOCK: usize = 16;
/// Counter blocks per batch handed to the cipher at once (4 KiB: one step of 4-byte elements).
const AES_BATCH: usize = STEP * 4 / AES_BLOCK;

/// AES-128 in CTR mode (NIST SP 800-38A) with a 128-bit big-endian counter (the whole block is
/// the counter, wrapping mod 2^128): keystream block `j` is `AES_k(counter + j)`.
///
/// The counter blocks are written a batch at a time and encrypted in place by RustCrypto's `aes`
/// (VAES-512, VAES-256 or AES-NI, detected at run time), so the keystream is the cipher's output
/// with nothing to XOR. RustCrypto's `ctr` 0.10 over `aes` 0.9 ran at 6.6 GB/s on one core of
/// this AMD EPYC, below `ctr` 0.9 over `aes` 0.8 (AES-NI only, 8.2 GB/s); batches of counter
/// blocks through `aes` 0.9 ran at 15 GB/s. The tests check the stream against `ctr` 0.9.
struct AesCtr {
    cipher: Aes128,
    /// The counter block of the next keystream block.
    counter: u128,
}

impl AesCtr {
    /// The stream of `seed` (key `seed[..16]`, initial counter `seed[16..]`) from keystream
    /// block `block` on.
    fn at(seed: &[u8; SEED_LEN], block: u64) -> Self {
        let (mut key, mut counter) = ([0u8; 16], [0u8; 16]);
        key.copy_from_slice(&seed[..16]);
        counter.copy_from_slice(&seed[16..]);
        Self {
            cipher: Aes128::new(&key.into()),
            counter: u128::from_be_bytes(counter).wrapping_add(u128::from(block)),
        }
    }

    /// Writes the next `out.len() / 16` keystream blocks into `out` (whole blocks only).
    fn fill(&mut self, out: &mut [u8]) {
        let (blocks, rest) = Array::slice_as_chunks_mut(out);
        debug_assert!(rest.is_empty(), "the keystream is written in whole blocks");
        for chunk in blocks.chunks_mut(AES_BATCH) {
            let (high, low) = ((self.counter >> 64) as u64, self.counter as u64);
            if low.checked_add(chunk.len() as u64).is_some() {
                // No carry into the high half inside this batch: it is one constant.
                let high = high.to_be_bytes();
                for (b, j) in chunk.iter_mut().zip(0u64..) {
                    b[..8].copy_from_slice(&high);
                    b[8..].copy_from_slice(&(low + j).to_be_bytes());
                }
            } else {
                for (b, j) in chunk.iter_mut().zip(0u128..) {
                    *b = Array(self.counter.wrapping_add(j).to_be_bytes());
                }
            }
            self.counter = self.counter.wrapping_add(chunk.len() as u128);
            self.cipher.encrypt_blocks(chunk);
        }
    }
}

/// The keystream a mask seed expands into; part of the SecAgg+ setup, named on the wire.
///
/// AES-128-CTR is the default: with AES-NI (detected at run time) it expands several times faster
/// per core than ChaCha20, which stays for peers that announce it and for machines without AES-NI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prg {
    /// AES-128-CTR, key `seed[..16]`, initial counter block `seed[16..]`.
    Aes128Ctr,
    /// ChaCha20 (20 rounds), key `seed`, nonce all zero.
    ChaCha20,
}

impl Prg {
    /// Every PRG, the default first.
    pub const ALL: [Prg; 2] = [Prg::Aes128Ctr, Prg::ChaCha20];

    /// The PRG's name in the SecAgg+ setup.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Prg::Aes128Ctr => "aes128-ctr",
            Prg::ChaCha20 => "chacha20",
        }
    }

    /// The PRG named `name`, or a refusal listing the names this side knows.
    pub fn parse(name: &str) -> Result<Prg> {
        Prg::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Prg::ALL.iter().map(|p| p.name()).collect();
                CodecError::param(format!(
                    "unknown mask PRG '{name}': this side knows {}",
                    known.join(", ")
                ))
            })
    }
}

/// Bytes of a mask seed.
pub const SEED_LEN: usize = 32;
/// Elements per rayon task: 64 KiB of keystream, which stays in L2 while it is added.
const CHUNK: usize = 1 << 14;

/// One mask stream to add to (or subtract from) a vector.
#[derive(Clone, Copy, Debug)]
pub struct Mask<'a> {
    /// The stream's key (see [`Prg`] for how each PRG reads it).
    pub seed: &'a [u8; SEED_LEN],
    /// Subtract instead of add (the lower-numbered side of a pair adds, the other subtracts).
    pub negate: bool,
}

/// Elements per step: their keystream stays in L1 while it is added.
const STEP: usize = 1024;
/// All-zero input, so the cipher writes its keystream instead of XORing it into a buffer.
static ZEROS: [u8; STEP * 4] = [0u8; STEP * 4];

/// `a ± r` in Z_2^32, the sign a compile-time constant so each loop vectorizes.
#[inline(always)]
fn step<const NEG: bool>(a: &mut u32, r: u32) {
    *a = if NEG {
        a.wrapping_sub(r)
    } else {
        a.wrapping_add(r)
    };
}

/// `part[i] ± element i` of `bytes` (little-endian `W`-byte elements).
fn add_words<const W: usize, const NEG: bool>(part: &mut [u32], bytes: &[u8]) {
    for (a, w) in part.iter_mut().zip(bytes.chunks_exact(W)) {
        let mut le = [0u8; 4];
        le[..W].copy_from_slice(w);
        step::<NEG>(a, u32::from_le_bytes(le));
    }
}

/// `chunk[i] = chunk[i] ± stream[i]` for `W`-byte elements of a keystream that `keystream`
/// writes from the chunk's start, whole 16-byte blocks at a time (the last step may make up to
/// 15 bytes more than it uses: only a stream's end has a short step).
fn add_stream<const W: usize>(
    mut keystream: impl FnMut(&mut [u8]),
    negate: bool,
    chunk: &mut [u32],
) {
    let mut buf = [0u8; STEP * 4];
    for part in chunk.chunks_mut(STEP) {
        let len = part.len() * W;
        keystream(&mut buf[..len.next_multiple_of(AES_BLOCK)]);
        if negate {
            add_words::<W, true>(part, &buf[..len]);
        } else {
            add_words::<W, false>(part, &buf[..len]);
        }
    }
}

/// `chunk[i] = chunk[i] ± stream[first + i]` for one seed's stream under `prg`.
fn add_seed_stream<const W: usize>(prg: Prg, mask: &Mask<'_>, first: usize, chunk: &mut [u32]) {
    // Chunks start at multiples of CHUNK elements, so on a whole block of keystream.
    let offset = first as u64 * W as u64;
    match prg {
        Prg::Aes128Ctr => {
            let mut cipher = AesCtr::at(mask.seed, offset / AES_BLOCK as u64);
            add_stream::<W>(|out| cipher.fill(out), mask.negate, chunk);
        }
        Prg::ChaCha20 => {
            let mut cipher = ChaCha20::new(mask.seed.into(), &[0u8; 12].into());
            cipher.seek(offset);
            let keystream = |out: &mut [u8]| {
                cipher
                    .apply_keystream_b2b(&ZEROS[..out.len()], out)
                    .expect("input and output buffers have equal lengths");
            };
            add_stream::<W>(keystream, mask.negate, chunk);
        }
    }
}

/// Keystream bytes per element in a ring of `ring_bits`: 1, 2 or 4 (only the low `ring_bits` count).
///
/// Not 3 for 17..=24 bits: reading 3-byte elements cost more than the extra keystream of 4-byte
/// ones (AES-128-CTR, 1M elements x 10 streams at 20 bits: 12-13 ms against 6.4 ms on one core).
#[must_use]
pub fn element_bytes(ring_bits: u32) -> usize {
    (ring_bits.div_ceil(8) as usize).next_power_of_two()
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

/// `acc[i] = acc[i] ± stream_m[i]` for every mask under `prg`, then reduced mod 2^`ring_bits`;
/// parallel over chunks, each chunk's keystream added while it is in L1 (no mask vector is built).
pub fn apply_masks(acc: &mut [u32], masks: &[Mask<'_>], ring_bits: u32, prg: Prg) -> Result<()> {
    let keep = check_ring_bits(ring_bits)?;
    refuse_oversize(acc.len())?;
    let work = acc.len().saturating_mul(masks.len().max(1));
    each_chunk(acc, CHUNK, work, |c, chunk| {
        mask_chunk(chunk, c * CHUNK, masks, ring_bits, prg, keep);
    });
    Ok(())
}

/// Chunk `chunk` (elements `first ..`) of `apply_masks`: every mask's stream added, then reduced.
fn mask_chunk(
    chunk: &mut [u32],
    first: usize,
    masks: &[Mask<'_>],
    ring_bits: u32,
    prg: Prg,
    keep: u32,
) {
    for m in masks {
        match element_bytes(ring_bits) {
            1 => add_seed_stream::<1>(prg, m, first, chunk),
            2 => add_seed_stream::<2>(prg, m, first, chunk),
            _ => add_seed_stream::<4>(prg, m, first, chunk),
        }
    }
    for a in chunk.iter_mut() {
        *a &= keep;
    }
}

/// `pack(x + Σ ±stream_m)` in Z_2^`ring_bits`: a client's masked upload in one pass, each chunk
/// masked and packed while it is in cache (no masked copy of the whole vector).
pub fn mask_and_pack(x: &[u32], masks: &[Mask<'_>], ring_bits: u32, prg: Prg) -> Result<Vec<u8>> {
    check_ring_bits(ring_bits)?;
    let mut out = vec![0u8; packed_len(x.len(), ring_bits)];
    mask_and_pack_into(x, masks, ring_bits, prg, &mut out)?;
    Ok(out)
}

/// [`mask_and_pack`] into `out`, which must hold exactly `packed_len(x.len(), ring_bits)` bytes:
/// the caller's buffer (a Python `bytes`) takes the upload with no copy.
pub fn mask_and_pack_into(
    x: &[u32],
    masks: &[Mask<'_>],
    ring_bits: u32,
    prg: Prg,
    out: &mut [u8],
) -> Result<()> {
    let keep = check_ring_bits(ring_bits)?;
    refuse_oversize(x.len())?;
    let need = packed_len(x.len(), ring_bits);
    if out.len() != need {
        return Err(CodecError::input(format!(
            "{} ring elements of {ring_bits} bits take {need} bytes, the output has {}",
            x.len(),
            out.len()
        )));
    }
    let work = x.len().saturating_mul(masks.len().max(1));
    // CHUNK is a multiple of 8, so every chunk's packed bytes start on a byte.
    each_chunk(out, CHUNK / 8 * ring_bits as usize, work, |c, packed| {
        let start = c * CHUNK;
        let mut chunk = x[start..(start + CHUNK).min(x.len())].to_vec();
        mask_chunk(&mut chunk, start, masks, ring_bits, prg, keep);
        pack_serial(&chunk, ring_bits, keep, packed);
    });
    Ok(())
}

/// The first `n` elements of `seed`'s mask stream under `prg` in Z_2^`ring_bits` (tests and benchmarks).
pub fn mask_stream(seed: &[u8; SEED_LEN], n: usize, ring_bits: u32, prg: Prg) -> Result<Vec<u32>> {
    let mut out = vec![0u32; n];
    apply_masks(
        &mut out,
        &[Mask {
            seed,
            negate: false,
        }],
        ring_bits,
        prg,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn words<const W: usize>(bytes: &[u8], keep: u32) -> Vec<u32> {
        bytes
            .chunks_exact(W)
            .map(|w| {
                let mut le = [0u8; 4];
                le[..W].copy_from_slice(w);
                u32::from_le_bytes(le) & keep
            })
            .collect()
    }

    /// The whole keystream of `seed` under `prg`, from one sequential cipher (no seeking, no chunks).
    fn keystream(prg: Prg, seed: &[u8; 32], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        match prg {
            Prg::Aes128Ctr => {
                let (key, counter) = seed.split_at(16);
                ctr::Ctr128BE::<aes_v08::Aes128>::new(key.into(), counter.into())
                    .apply_keystream(&mut out);
            }
            Prg::ChaCha20 => {
                ChaCha20::new(seed.into(), &[0u8; 12].into()).apply_keystream(&mut out);
            }
        }
        out
    }

    #[test]
    fn pair_masks_cancel_exactly() {
        let (s1, s2) = ([1u8; 32], [2u8; 32]);
        let x: Vec<u32> = (0..100_000u32).map(|i| i % 1000).collect();
        for prg in Prg::ALL {
            let mut u = x.clone();
            let masks = |first_negated: bool| {
                [
                    Mask {
                        seed: &s1,
                        negate: first_negated,
                    },
                    Mask {
                        seed: &s2,
                        negate: !first_negated,
                    },
                ]
            };
            apply_masks(&mut u, &masks(false), 20, prg).unwrap();
            assert_ne!(u, x);
            apply_masks(&mut u, &masks(true), 20, prg).unwrap();
            assert_eq!(u, x);
        }
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn aes_counter_blocks_match_rustcrypto_ctr(
            key: [u8; 16],
            // Counters anywhere, and just below where the low half or the whole counter wraps.
            counter in prop_oneof![
                any::<u128>(),
                (0u128..600).prop_map(|d| u128::from(u64::MAX) - d),
                (0u128..600).prop_map(|d| u128::MAX - d),
            ],
            block in 0u64..300,
            blocks in 0usize..600,
        ) {
            let seed: [u8; 32] = [key, counter.to_be_bytes()].concat().try_into().unwrap();
            let mut want = vec![0u8; (block as usize + blocks) * AES_BLOCK];
            ctr::Ctr128BE::<aes_v08::Aes128>::new(key[..].into(), counter.to_be_bytes()[..].into())
                .apply_keystream(&mut want);
            let mut got = vec![0u8; blocks * AES_BLOCK];
            let mut cipher = AesCtr::at(&seed, block);
            let (first, second) = got.split_at_mut(blocks / 3 * AES_BLOCK);
            cipher.fill(first);
            cipher.fill(second);
            prop_assert_eq!(&got[..], &want[block as usize * AES_BLOCK..]);
        }
    }

    #[test]
    fn aes_stream_matches_the_nist_ctr_vector() {
        // NIST SP 800-38A F.5.1 (CTR-AES128): key 2b7e..., initial counter f0f1...ff; the first
        // output block is plaintext XOR ciphertext of its block 1.
        let seed: [u8; 32] = [
            hex("2b7e151628aed2a6abf7158809cf4f3c"),
            hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"),
        ]
        .concat()
        .try_into()
        .unwrap();
        let plain = hex("6bc1bee22e409f96e93d7e117393172a");
        let cipher = hex("874d6191b620e3261bef6864990db6ce");
        let block: Vec<u8> = plain.iter().zip(&cipher).map(|(p, c)| p ^ c).collect();
        assert_eq!(block, hex("ec8cdf7398607cb0f2d21675ea9ea1e4"));
        let got = mask_stream(&seed, 4, 32, Prg::Aes128Ctr).unwrap();
        assert_eq!(got, words::<4>(&block, u32::MAX));
    }

    #[test]
    fn chacha_stream_matches_the_rfc_8439_vector() {
        // RFC 8439 A.1 test vector #1: all-zero key and nonce, block 0 of the keystream.
        let want = hex(concat!(
            "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7",
            "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
        ));
        let got = mask_stream(&[0u8; 32], 16, 32, Prg::ChaCha20).unwrap();
        assert_eq!(got, words::<4>(&want, u32::MAX));
    }

    #[test]
    fn chunks_continue_one_stream() {
        // The chunks, in order on this thread (small) or in rayon's pool (large), must read
        // consecutive keystream, like one sequential pass.
        let seed = [9u8; 32];
        for n in [3 * CHUNK + 5, super::super::SERIAL_BELOW + CHUNK + 5] {
            for prg in Prg::ALL {
                let want = words::<4>(&keystream(prg, &seed, n * 4), u32::MAX);
                assert_eq!(mask_stream(&seed, n, 32, prg).unwrap(), want, "{prg:?} {n}");
            }
        }
    }

    #[test]
    fn narrow_rings_read_the_low_bits_of_one_two_or_four_byte_elements() {
        let seed = [4u8; 32];
        let n = CHUNK + 3 * STEP + 7;
        for prg in Prg::ALL {
            let stream = keystream(prg, &seed, n * 4);
            let cases = [
                (7, words::<1>(&stream[..n], 0x7f)),
                (13, words::<2>(&stream[..2 * n], 0x1fff)),
                (23, words::<4>(&stream, 0x7f_ffff)),
            ];
            for (bits, want) in cases {
                assert_eq!(
                    mask_stream(&seed, n, bits, prg).unwrap(),
                    want,
                    "{prg:?} {bits}"
                );
            }
        }
    }

    #[test]
    fn masking_and_packing_in_one_pass_equals_the_two_steps() {
        let seeds = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let masks: Vec<Mask<'_>> = seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| Mask {
                seed,
                negate: i == 1,
            })
            .collect();
        for n in [0, 5, CHUNK + 3, super::super::SERIAL_BELOW / 3 + CHUNK + 1] {
            let x: Vec<u32> = (0..n as u32).map(|i| i % 4099).collect();
            for bits in [13, 20, 23, 32] {
                let mut two_steps = x.clone();
                apply_masks(&mut two_steps, &masks, bits, Prg::Aes128Ctr).unwrap();
                let want = super::super::pack(&two_steps, bits).unwrap();
                let got = mask_and_pack(&x, &masks, bits, Prg::Aes128Ctr).unwrap();
                assert_eq!(got, want, "{n} {bits}");
                let mut into = vec![0xa5u8; want.len()];
                mask_and_pack_into(&x, &masks, bits, Prg::Aes128Ctr, &mut into).unwrap();
                assert_eq!(into, want, "{n} {bits} into a dirty buffer");
            }
        }
    }

    #[test]
    fn the_two_prgs_expand_one_seed_differently() {
        let seed = [5u8; 32];
        assert_ne!(
            mask_stream(&seed, 64, 32, Prg::Aes128Ctr).unwrap(),
            mask_stream(&seed, 64, 32, Prg::ChaCha20).unwrap()
        );
    }

    #[test]
    fn prg_names_round_trip_and_unknown_names_are_refused() {
        for prg in Prg::ALL {
            assert_eq!(Prg::parse(prg.name()).unwrap(), prg);
        }
        let err = Prg::parse("chacha8").unwrap_err().to_string();
        assert!(err.contains("aes128-ctr, chacha20"), "{err}");
    }

    #[test]
    fn an_output_of_the_wrong_length_is_refused() {
        let seed = [1u8; 32];
        let masks = [Mask {
            seed: &seed,
            negate: false,
        }];
        let x = [7u32; 10];
        for len in [0, packed_len(10, 20) - 1, packed_len(10, 20) + 1] {
            let err = mask_and_pack_into(&x, &masks, 20, Prg::Aes128Ctr, &mut vec![0u8; len]);
            assert!(
                err.unwrap_err().to_string().contains("take 25 bytes"),
                "{len}"
            );
        }
    }

    #[test]
    fn bad_ring_is_refused() {
        for prg in Prg::ALL {
            assert!(mask_stream(&[0u8; 32], 4, 0, prg).is_err());
            assert!(mask_stream(&[0u8; 32], 4, 33, prg).is_err());
        }
    }
}
