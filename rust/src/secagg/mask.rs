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
use super::ring::{
    check_ring_bits, check_rounding, pack_serial, packed_len, refuse_non_finite, Quantizer,
    Rounding,
};
use crate::error::{CodecError, Result};
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes::Aes128;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use std::sync::atomic::{AtomicBool, Ordering};

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
    #[inline(always)]
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
/// Elements per rayon task.
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

/// One mask's keystream, positioned where a chunk of the vector starts.
// A chunk's streams are one Vec of one variant: the AES key schedule's size costs nothing there.
#[allow(clippy::large_enum_variant)]
enum Keystream {
    Aes(AesCtr),
    ChaCha(ChaCha20),
}

impl Keystream {
    /// `seed`'s stream under `prg` from keystream byte `offset` (a multiple of 16) on.
    fn at(prg: Prg, seed: &[u8; SEED_LEN], offset: u64) -> Self {
        match prg {
            Prg::Aes128Ctr => Keystream::Aes(AesCtr::at(seed, offset / AES_BLOCK as u64)),
            Prg::ChaCha20 => {
                let mut cipher = ChaCha20::new(seed.into(), &[0u8; 12].into());
                cipher.seek(offset);
                Keystream::ChaCha(cipher)
            }
        }
    }

    /// Writes the next `out.len()` bytes of the stream (a multiple of 16).
    #[inline(always)]
    fn fill(&mut self, out: &mut [u8]) {
        match self {
            Keystream::Aes(cipher) => cipher.fill(out),
            Keystream::ChaCha(cipher) => cipher.write_keystream(out),
        }
    }
}

/// The masks' keystreams (`width` bytes an element) for the chunk that starts at element `first`.
fn streams_at(first: usize, masks: &[Mask<'_>], width: usize, prg: Prg) -> Vec<Keystream> {
    // Chunks start at multiples of CHUNK elements, so on a whole block of keystream.
    let offset = first as u64 * width as u64;
    masks
        .iter()
        .map(|m| Keystream::at(prg, m.seed, offset))
        .collect()
}

/// `part[i] = part[i] ± stream_m[i]` for every mask, each stream's next `part.len()` elements made
/// in `buf` and added while both are in L1 (the last step of a stream may make up to 15 bytes
/// more keystream than it uses: only a stream's end has a short step).
///
/// Built for AVX-512 where the CPU has it: the same integer operations, so the same sums, with the
/// counter blocks and the adds in 512-bit registers (the portable build writes each counter
/// block with two 8-byte stores and adds in 128-bit registers: half of a mask's time beside
/// the cipher's).
fn add_streams(
    part: &mut [u32],
    streams: &mut [Keystream],
    masks: &[Mask<'_>],
    width: usize,
    buf: &mut [u8; STEP * 4],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU supports AVX-512 BW (which implies F), checked on the line above.
        return unsafe { add_streams_avx512(part, streams, masks, width, buf) };
    }
    add_streams_portable(part, streams, masks, width, buf);
}

/// [`add_streams_portable`] compiled with AVX-512 F and BW enabled (call only where the CPU has them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn add_streams_avx512(
    part: &mut [u32],
    streams: &mut [Keystream],
    masks: &[Mask<'_>],
    width: usize,
    buf: &mut [u8; STEP * 4],
) {
    add_streams_portable(part, streams, masks, width, buf);
}

/// [`add_streams`] in portable code.
#[inline(always)]
fn add_streams_portable(
    part: &mut [u32],
    streams: &mut [Keystream],
    masks: &[Mask<'_>],
    width: usize,
    buf: &mut [u8; STEP * 4],
) {
    let len = part.len() * width;
    for (stream, mask) in streams.iter_mut().zip(masks) {
        stream.fill(&mut buf[..len.next_multiple_of(AES_BLOCK)]);
        let bytes = &buf[..len];
        match (width, mask.negate) {
            (1, false) => add_words::<1, false>(part, bytes),
            (1, true) => add_words::<1, true>(part, bytes),
            (2, false) => add_words::<2, false>(part, bytes),
            (2, true) => add_words::<2, true>(part, bytes),
            (_, false) => add_words::<4, false>(part, bytes),
            (_, true) => add_words::<4, true>(part, bytes),
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
/// parallel over chunks, each L1-sized step of a chunk taking every mask's keystream while it is
/// in L1 (no mask vector is built).
pub fn apply_masks(acc: &mut [u32], masks: &[Mask<'_>], ring_bits: u32, prg: Prg) -> Result<()> {
    let keep = check_ring_bits(ring_bits)?;
    refuse_oversize(acc.len())?;
    let work = acc.len().saturating_mul(masks.len().max(1));
    let width = element_bytes(ring_bits);
    each_chunk(acc, CHUNK, work, |c, chunk| {
        let mut streams = streams_at(c * CHUNK, masks, width, prg);
        let mut buf = [0u8; STEP * 4];
        for part in chunk.chunks_mut(STEP) {
            add_streams(part, &mut streams, masks, width, &mut buf);
            for a in part.iter_mut() {
                *a &= keep;
            }
        }
    });
    Ok(())
}

/// Where a masked upload's ring elements come from, `STEP` elements at a time.
trait RingSource: Sync {
    /// What one chunk carries from step to step.
    type Chunk;
    /// Elements in all.
    fn len(&self) -> usize;
    /// That state for the chunk that starts at element `first`.
    fn chunk(&self, first: usize) -> Self::Chunk;
    /// Writes elements `first .. first + out.len()` into `out`, a chunk's steps in order (a chunk
    /// starts at a multiple of `CHUNK`); false if they could not be made (non-finite input).
    fn fill(&self, state: &mut Self::Chunk, first: usize, out: &mut [u32]) -> bool;
}

/// Ring elements the caller already has.
struct Codes<'a>(&'a [u32]);

impl RingSource for Codes<'_> {
    type Chunk = ();
    fn len(&self) -> usize {
        self.0.len()
    }
    fn chunk(&self, _first: usize) {}
    fn fill(&self, (): &mut (), first: usize, out: &mut [u32]) -> bool {
        out.copy_from_slice(&self.0[first..first + out.len()]);
        true
    }
}

/// Floats rounded into codes as they are masked (`quantize`'s codes, never stored whole).
struct Rounded<'a> {
    x: &'a [f32],
    rounding: Rounding,
    seed: &'a [u8; 32],
}

impl RingSource for Rounded<'_> {
    type Chunk = Quantizer;
    fn len(&self) -> usize {
        self.x.len()
    }
    fn chunk(&self, first: usize) -> Quantizer {
        Quantizer::at(self.rounding, self.seed, first)
    }
    fn fill(&self, quantizer: &mut Quantizer, first: usize, out: &mut [u32]) -> bool {
        quantizer.codes(&self.x[first..first + out.len()], out)
    }
}

/// `pack(source + Σ ±stream_m)` in Z_2^`ring_bits` into `out`, each L1-sized step made, masked
/// and packed while it is in L1; false if the source could not make some element.
fn mask_source_into(
    source: &impl RingSource,
    masks: &[Mask<'_>],
    ring_bits: u32,
    prg: Prg,
    out: &mut [u8],
) -> Result<bool> {
    let keep = check_ring_bits(ring_bits)?;
    let n = source.len();
    refuse_oversize(n)?;
    let need = packed_len(n, ring_bits);
    if out.len() != need {
        return Err(CodecError::input(format!(
            "{n} ring elements of {ring_bits} bits take {need} bytes, the output has {}",
            out.len()
        )));
    }
    let width = element_bytes(ring_bits);
    let all_made = AtomicBool::new(true);
    let work = n.saturating_mul(masks.len() + 1);
    // CHUNK and STEP are multiples of 8, so every chunk's and step's packed bytes start on a byte.
    each_chunk(out, CHUNK / 8 * ring_bits as usize, work, |c, packed| {
        let first = c * CHUNK;
        let mut state = source.chunk(first);
        let mut streams = streams_at(first, masks, width, prg);
        let (mut part, mut buf) = ([0u32; STEP], [0u8; STEP * 4]);
        let mut made = true;
        let steps = (first..(first + CHUNK).min(n)).step_by(STEP);
        for (start, bytes) in steps.zip(packed.chunks_mut(STEP / 8 * ring_bits as usize)) {
            let part = &mut part[..STEP.min(n - start)];
            made &= source.fill(&mut state, start, part);
            add_streams(part, &mut streams, masks, width, &mut buf);
            pack_serial(part, ring_bits, keep, bytes);
        }
        if !made {
            all_made.store(false, Ordering::Relaxed);
        }
    });
    Ok(all_made.into_inner())
}

/// `pack(x + Σ ±stream_m)` in Z_2^`ring_bits`: a client's masked upload in one pass, each step
/// masked and packed while it is in L1 (no masked copy of the vector).
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
    mask_source_into(&Codes(x), masks, ring_bits, prg, out).map(|_| ())
}

/// `pack(quantize(x, clip, bits, seed) + Σ ±stream_m)` in Z_2^`ring_bits` into `out`
/// (`packed_len(x.len(), ring_bits)` bytes): a client's update rounded, masked and packed in one
/// pass, its codes never stored whole; the same bytes as [`quantize`] then [`mask_and_pack_into`].
#[allow(clippy::too_many_arguments)]
pub fn quantize_mask_and_pack_into(
    x: &[f32],
    clip: f32,
    bits: u32,
    seed: &[u8; 32],
    masks: &[Mask<'_>],
    ring_bits: u32,
    prg: Prg,
    out: &mut [u8],
) -> Result<()> {
    let rounding = check_rounding(clip, bits)?;
    if ring_bits < bits {
        return Err(CodecError::param(format!(
            "codes of {bits} bits do not fit a ring of {ring_bits} bits"
        )));
    }
    let source = Rounded { x, rounding, seed };
    if !mask_source_into(&source, masks, ring_bits, prg, out)? {
        refuse_non_finite(x)?;
    }
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
    // The reference CTR mode (`ctr` 0.9) speaks `cipher` 0.4's traits.
    use ctr::cipher::{KeyIvInit as _, StreamCipher as _};

    /// One mask per seed, negated where `negate` says.
    fn masks_of<'a>(seeds: &'a [[u8; 32]], negate: &[bool]) -> Vec<Mask<'a>> {
        seeds
            .iter()
            .zip(negate)
            .map(|(seed, &negate)| Mask { seed, negate })
            .collect()
    }

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
        let masks = masks_of(&seeds, &[false, true, false]);
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
    fn rounding_masking_and_packing_in_one_pass_equals_the_three_steps() {
        let seeds = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let masks = masks_of(&seeds, &[false, true, false]);
        let rounding_seed = [7u8; 32];
        for n in [
            0,
            5,
            STEP + 3,
            CHUNK + 3,
            super::super::SERIAL_BELOW / 3 + CHUNK + 1,
        ] {
            let x: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 40.0).collect();
            for (bits, ring_bits) in [(4, 7), (12, 13), (16, 23), (24, 32)] {
                for prg in Prg::ALL {
                    let codes = super::super::quantize(&x, 1.0, bits, &rounding_seed).unwrap();
                    let want = mask_and_pack(&codes, &masks, ring_bits, prg).unwrap();
                    let mut got = vec![0xa5u8; want.len()];
                    quantize_mask_and_pack_into(
                        &x,
                        1.0,
                        bits,
                        &rounding_seed,
                        &masks,
                        ring_bits,
                        prg,
                        &mut got,
                    )
                    .unwrap();
                    assert_eq!(got, want, "{n} {bits} {ring_bits} {prg:?}");
                }
            }
        }
    }

    #[test]
    fn one_pass_rounding_refuses_non_finite_input_and_codes_wider_than_the_ring() {
        let seed = [1u8; 32];
        let masks = [Mask {
            seed: &seed,
            negate: false,
        }];
        let mut x = vec![0.5f32; 3 * CHUNK];
        x[2 * CHUNK + 17] = f32::NAN;
        let mut out = vec![0u8; packed_len(x.len(), 20)];
        let err =
            quantize_mask_and_pack_into(&x, 1.0, 16, &seed, &masks, 20, Prg::Aes128Ctr, &mut out);
        let err = err.unwrap_err().to_string();
        assert!(
            err.contains(&format!("flat index {}", 2 * CHUNK + 17)),
            "{err}"
        );
        let mut out = vec![0u8; packed_len(4, 12)];
        let err = quantize_mask_and_pack_into(
            &[0.0; 4],
            1.0,
            16,
            &seed,
            &masks,
            12,
            Prg::Aes128Ctr,
            &mut out,
        );
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("do not fit a ring of 12 bits"));
    }

    proptest! {
        #[test]
        fn one_pass_uploads_equal_rounding_then_masking_for_any_ring(
            raw in prop::collection::vec(any::<u32>(), 0..3 * STEP),
            clip_bits in 1u32..0x7f80_0000,
            bits in 1u32..=24,
            extra in 0u32..=8,
            signs in prop::collection::vec(any::<bool>(), 0..4),
            chacha: bool,
        ) {
            // Values of every size, from raw bits (the non-finite patterns replaced by small values).
            let clip = f32::from_bits(clip_bits);
            let x: Vec<f32> = raw
                .iter()
                .map(|&r| {
                    let v = f32::from_bits(r);
                    if v.is_finite() { v } else { (r % 7) as f32 - 3.0 }
                })
                .collect();
            let ring_bits = (bits + extra).min(32);
            let prg = if chacha { Prg::ChaCha20 } else { Prg::Aes128Ctr };
            let seeds: Vec<[u8; 32]> = (0..signs.len() as u8).map(|i| [i; 32]).collect();
            let masks = masks_of(&seeds, &signs);
            let rounding_seed = [9u8; 32];
            let codes = super::super::quantize(&x, clip, bits, &rounding_seed).unwrap();
            let want = mask_and_pack(&codes, &masks, ring_bits, prg).unwrap();
            let mut got = vec![0u8; want.len()];
            quantize_mask_and_pack_into(&x, clip, bits, &rounding_seed, &masks, ring_bits, prg, &mut got)
                .unwrap();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn the_dispatched_adds_equal_the_portable_ones(
            raw in prop::collection::vec(any::<u32>(), 0..=STEP),
            width in prop::sample::select(vec![1usize, 2, 4]),
            negate in prop::collection::vec(any::<bool>(), 0..4),
            key: [u8; 16],
            // Counters anywhere, and just below where the low half or the whole counter wraps.
            counter in prop_oneof![
                any::<u128>(),
                (0u128..300).prop_map(|d| u128::from(u64::MAX) - d),
                (0u128..300).prop_map(|d| u128::MAX - d),
            ],
            chacha: bool,
        ) {
            let prg = if chacha { Prg::ChaCha20 } else { Prg::Aes128Ctr };
            let seeds: Vec<[u8; 32]> = (0..negate.len() as u128)
                .map(|i| [key, counter.wrapping_add(i * 7).to_be_bytes()].concat().try_into().unwrap())
                .collect();
            let masks = masks_of(&seeds, &negate);
            let mut buf = [0u8; STEP * 4];
            let (mut dispatched, mut portable) = (raw.clone(), raw);
            let mut streams = streams_at(0, &masks, width, prg);
            add_streams(&mut dispatched, &mut streams, &masks, width, &mut buf);
            add_streams(&mut dispatched, &mut streams, &masks, width, &mut buf);
            let mut streams = streams_at(0, &masks, width, prg);
            add_streams_portable(&mut portable, &mut streams, &masks, width, &mut buf);
            add_streams_portable(&mut portable, &mut streams, &masks, width, &mut buf);
            prop_assert_eq!(dispatched, portable);
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
