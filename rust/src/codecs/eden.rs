//! DRIVE/EDEN (Vargaftik et al. 2021/2022): randomized Hadamard rotation, Lloyd-Max codes, unbiased scale.

// The vector is cut into pieces with no padding: full blocks of [`FWHT_BLOCK`] elements, then the
// remainder split into its binary powers of two, largest first. Each piece of length `d` is sign
// flipped (seeded by its global indices), rotated by the orthonormal Hadamard transform into `z`,
// and each `z_i` is coded as the nearest Lloyd-Max centroid `c` of `z_i / sigma`, with
// `sigma = ||z|| / sqrt(d)`. EDEN's unbiased scale is `S = ||z||^2 / <z, sigma c>`; the wire
// carries `S * sigma = ||z||^2 / <z, c>` so that a coordinate decodes as `scale * c`.
//
// Payload (little-endian): one `scale: f32` per piece in piece order, then the codes of all `n`
// elements packed with [`crate::kernels::bitpack`] as one stream, `ceil(n * bits / 8)` bytes.

use std::fmt;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::codecs::codec::{Codec, Kind, Param, Terminal};
use crate::error::{CodecError, Result};
use crate::kernels::bitpack;
use crate::kernels::hadamard::{fwht_block_unscaled, sign_flip, FWHT_BLOCK};
use crate::kernels::lloyd_max::{boundaries, centroids};
use crate::kernels::rng::derive;
use crate::kernels::uninit;
use crate::wire::frame::Writer;

/// Elements quantized side by side in the multi-bit search.
const SEARCH_BATCH: usize = 16;

/// Sub-stream of the frame seed that draws the rotation signs, so other stages never reuse it.
const SIGN_STREAM: u64 = 0x4544_454E;

/// EDEN settings: bits per coordinate, one of 1, 2, 4, 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdenParams {
    pub bits: u32,
}

impl EdenParams {
    /// Validated constructor: only widths with a Lloyd-Max table are accepted.
    pub fn new(bits: u32) -> Result<Self> {
        if centroids(bits).is_none() {
            return Err(CodecError::param(format!(
                "eden bits must be 1, 2, 4 or 8, got {bits}"
            )));
        }
        Ok(Self { bits })
    }
}

/// Number of pieces (each carrying one scale) for a vector of `n` elements.
fn piece_count(n: usize) -> usize {
    n / FWHT_BLOCK + (n % FWHT_BLOCK).count_ones() as usize
}

/// Lengths of the remainder pieces (the binary powers of two of `rem`, largest first).
fn remainder_pieces(rem: usize) -> impl Iterator<Item = usize> {
    (0..usize::BITS)
        .rev()
        .map(|b| 1usize << b)
        .filter(move |p| rem & p != 0)
}

/// Payload bytes for `n` elements, or `None` on arithmetic overflow (a hostile `n`).
fn checked_len(n: usize, bits: u32) -> Option<usize> {
    let code_bytes = n.checked_mul(bits as usize)?.div_ceil(8);
    piece_count(n).checked_mul(4)?.checked_add(code_bytes)
}

/// Exact payload size of `n` elements: `4 * pieces + ceil(n * bits / 8)`.
#[must_use]
pub fn eden_len(n: usize, p: &EdenParams) -> usize {
    4 * piece_count(n) + bitpack::packed_len(n, p.bits)
}

/// Bound on every value a piece's inverse transform computes, partial sums included: a little
/// under float32's largest, so that rounding in the sixteen butterfly stages cannot reach Inf.
const VALUE_LIMIT: f64 = f32::MAX as f64 * (1.0 - 1.0 / 1024.0);

/// The quantizer of one width: centroids and their decision boundaries.
struct Table {
    centroids: &'static [f32],
    boundaries: &'static [f32],
    /// Largest centroid magnitude.
    largest: f32,
}

impl Table {
    fn new(bits: u32) -> Option<Self> {
        let centroids = centroids(bits)?;
        Some(Self {
            centroids,
            boundaries: boundaries(bits)?,
            largest: centroids.iter().fold(0.0f32, |m, c| m.max(c.abs())),
        })
    }

    /// Whether a piece of `len` elements with wire `scale` decodes within float32: the decoder
    /// feeds `scale / sqrt(len) * c` to an unnormalised transform, whose `log2(len)` stages at
    /// most double the largest magnitude each, so no value exceeds `|scale| sqrt(len) max|c|`.
    /// The encoder refuses exactly what this refuses.
    fn decodable(&self, scale: f32, len: usize) -> bool {
        scale.is_finite()
            && f64::from(scale.abs()) * (len as f64).sqrt() * f64::from(self.largest) <= VALUE_LIMIT
    }

    /// Codes `z` into `codes` and returns the wire scale `||z||^2 / <z, c>` (0 for an all-zero piece).
    fn quantize(&self, z: &[f32], codes: &mut [u16]) -> f32 {
        let norm2 = lane_sum(z, |v| f64::from(v) * f64::from(v));
        if norm2 == 0.0 {
            codes.fill(0);
            return 0.0;
        }
        let sigma = (norm2 / z.len() as f64).sqrt();
        let dot = if self.centroids.len() == 2 {
            for (code, v) in codes.iter_mut().zip(z) {
                *code = u16::from(*v >= 0.0);
            }
            f64::from(self.centroids[1]) * lane_sum(z, |v| f64::from(v.abs()))
        } else {
            // Boundaries in z's units; unused slots are +inf so they never count.
            let mut scaled = [f32::INFINITY; 256];
            for (s, b) in scaled.iter_mut().zip(self.boundaries) {
                *s = (f64::from(*b) * sigma) as f32;
            }
            if self.boundaries.len() < 16 {
                self.code_by_count(z, codes, scaled[..16].try_into().expect("16 of 256"))
            } else {
                self.code_by_search(z, codes, &scaled)
            }
        };
        (norm2 / dot) as f32
    }

    /// Up to 4 bits: the code is the number of boundaries <= v, sixteen compares that vectorise.
    /// Returns `<z, c>`.
    fn code_by_count(&self, z: &[f32], codes: &mut [u16], scaled: &[f32; 16]) -> f64 {
        let mut lanes = [0.0f64; SEARCH_BATCH];
        for (cb, zb) in codes.chunks_mut(SEARCH_BATCH).zip(z.chunks(SEARCH_BATCH)) {
            for ((code, v), lane) in cb.iter_mut().zip(zb).zip(&mut lanes) {
                let p = scaled.iter().map(|b| usize::from(*b <= *v)).sum::<usize>();
                *code = p as u16;
                *lane += f64::from(*v) * f64::from(self.centroids[p]);
            }
        }
        lanes.iter().sum()
    }

    /// 8 bits: branchless binary search, a batch at a time so the independent searches overlap.
    /// Returns `<z, c>`.
    fn code_by_search(&self, z: &[f32], codes: &mut [u16], scaled: &[f32; 256]) -> f64 {
        let top = self.centroids.len() / 2;
        let mut lanes = [0.0f64; SEARCH_BATCH];
        for (cb, zb) in codes.chunks_mut(SEARCH_BATCH).zip(z.chunks(SEARCH_BATCH)) {
            let mut pos = [0usize; SEARCH_BATCH];
            let mut step = top;
            while step > 0 {
                for (p, v) in pos.iter_mut().zip(zb) {
                    *p += usize::from(scaled[(*p + step - 1) & 255] <= *v) * step;
                }
                step >>= 1;
            }
            for (((code, p), v), lane) in cb.iter_mut().zip(&pos).zip(zb).zip(&mut lanes) {
                *code = *p as u16;
                *lane += f64::from(*v) * f64::from(self.centroids[*p & 255]);
            }
        }
        lanes.iter().sum()
    }
}

/// Sum of `f` over `z` in eight independent f64 lanes, so the adds pipeline instead of forming one chain.
#[inline]
fn lane_sum(z: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = z.chunks_exact(8);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += f(*v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|v| f(*v)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// Encodes one piece starting at global index `offset`; returns its wire scale, or refuses a
/// piece whose frame would not decode within float32 (an L2 norm near float32's largest).
///
/// The piece is scaled by `1 / sqrt(len)` before the unnormalised transform, so every partial
/// sum stays within the piece's L2 norm and only a norm past float32 can overflow.
fn encode_piece(
    x: &[f32],
    offset: usize,
    sign_seed: u64,
    table: &Table,
    codes: &mut [u16],
) -> Result<f32> {
    let refuse = || {
        let norm = lane_sum(x, |v| f64::from(v) * f64::from(v)).sqrt();
        CodecError::input(format!(
            "eden cannot code elements {offset}..{}: their L2 norm {norm:.3e} would decode past float32's range",
            offset + x.len()
        ))
    };
    if lane_sum(x, |v| f64::from(v) * f64::from(v)).sqrt() > VALUE_LIMIT {
        return Err(refuse());
    }
    let pre = inv_sqrt(x.len());
    let mut z: Vec<f32> = x.iter().map(|v| v * pre).collect();
    sign_flip(&mut z, sign_seed, offset as u64);
    fwht_block_unscaled(&mut z);
    let scale = table.quantize(&z, codes);
    if table.decodable(scale, x.len()) {
        Ok(scale)
    } else {
        Err(refuse())
    }
}

/// `1 / sqrt(len)` in float32 (exact for the powers of four).
fn inv_sqrt(len: usize) -> f32 {
    (1.0 / (len as f64).sqrt()) as f32
}

/// Decodes one piece and adds `weight *` it into `out`.
fn decode_piece(
    codes: &[u16],
    scale: f32,
    offset: usize,
    sign_seed: u64,
    table: &Table,
    weight: f32,
    out: &mut [f32],
) {
    let pre = scale * inv_sqrt(codes.len());
    let mut z: Vec<f32> = codes
        .iter()
        .map(|&c| pre * table.centroids[usize::from(c)])
        .collect();
    fwht_block_unscaled(&mut z);
    sign_flip(&mut z, sign_seed, offset as u64);
    for (o, v) in out.iter_mut().zip(&z) {
        *o += weight * v;
    }
}

/// Encodes `x` into `out`, which must be exactly [`eden_len`]`(x.len(), p)` bytes.
///
/// Preconditions (validated by the caller): `p` came from [`EdenParams::new`], `x` is finite.
/// Full blocks are encoded in parallel; the bytes do not depend on the thread count. Refuses
/// (leaving `out` partly written) a piece whose L2 norm is so close to float32's largest that
/// its frame would not decode: the decoder accepts whatever this writes.
pub fn eden_encode(x: &[f32], p: &EdenParams, seed: u64, out: &mut [u8]) -> Result<()> {
    let table = Table::new(p.bits).expect("EdenParams must be validated");
    debug_assert_eq!(out.len(), eden_len(x.len(), p));
    let sign_seed = derive(seed, SIGN_STREAM);
    let n = x.len();
    let full = n / FWHT_BLOCK;
    let block_bytes = FWHT_BLOCK * p.bits as usize / 8;
    let (scale_bytes, code_bytes) = out.split_at_mut(4 * piece_count(n));
    let (block_codes, tail_codes) = code_bytes.split_at_mut(full * block_bytes);

    let mut scales = x[..full * FWHT_BLOCK]
        .par_chunks(FWHT_BLOCK)
        .zip(block_codes.par_chunks_mut(block_bytes))
        .enumerate()
        .map(|(b, (xb, ob))| {
            let mut codes = vec![0u16; FWHT_BLOCK];
            let scale = encode_piece(xb, b * FWHT_BLOCK, sign_seed, &table, &mut codes)?;
            ob.fill(0);
            bitpack::pack(&codes, p.bits, ob);
            Ok(scale)
        })
        .collect::<Result<Vec<f32>>>()?;

    let rem = n - full * FWHT_BLOCK;
    let mut codes = vec![0u16; rem];
    let mut start = 0;
    for len in remainder_pieces(rem) {
        let offset = full * FWHT_BLOCK + start;
        scales.push(encode_piece(
            &x[offset..offset + len],
            offset,
            sign_seed,
            &table,
            &mut codes[start..start + len],
        )?);
        start += len;
    }
    tail_codes.fill(0);
    bitpack::pack(&codes, p.bits, tail_codes);

    for (dst, s) in scale_bytes.chunks_exact_mut(4).zip(&scales) {
        dst.copy_from_slice(&s.to_le_bytes());
    }
    Ok(())
}

/// Decodes an EDEN payload of `n` elements and adds `weight *` the result into `out` (`out.len() == n`).
///
/// `bytes` is untrusted: its length must be exactly the payload size and every scale finite.
pub fn eden_decode_add(
    bytes: &[u8],
    n: usize,
    p: &EdenParams,
    seed: u64,
    weight: f32,
    out: &mut [f32],
) -> Result<()> {
    let table = Table::new(p.bits)
        .ok_or_else(|| CodecError::frame(format!("eden bits {} unsupported", p.bits)))?;
    if out.len() != n {
        return Err(CodecError::input(format!(
            "eden output has {} elements, frame has {n}",
            out.len()
        )));
    }
    let expected =
        checked_len(n, p.bits).ok_or_else(|| CodecError::frame("eden element count overflows"))?;
    if bytes.len() != expected {
        return Err(CodecError::frame(format!(
            "eden payload is {} bytes, expected {expected}",
            bytes.len()
        )));
    }
    let (scale_bytes, code_bytes) = bytes.split_at(4 * piece_count(n));
    let scales: Vec<f32> = scale_bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if scales.iter().any(|s| !s.is_finite()) {
        return Err(CodecError::frame("eden scale is not finite"));
    }
    let lens =
        std::iter::repeat_n(FWHT_BLOCK, n / FWHT_BLOCK).chain(remainder_pieces(n % FWHT_BLOCK));
    if let Some((i, s)) = lens
        .zip(&scales)
        .enumerate()
        .find_map(|(i, (len, s))| (!table.decodable(*s, len)).then_some((i, *s)))
    {
        return Err(CodecError::frame(format!(
            "eden scale {s:e} of piece {i} is too large to decode within float32",
        )));
    }
    let sign_seed = derive(seed, SIGN_STREAM);
    let full = n / FWHT_BLOCK;
    let block_bytes = FWHT_BLOCK * p.bits as usize / 8;
    let (block_codes, tail_codes) = code_bytes.split_at(full * block_bytes);
    let (out_blocks, out_tail) = out.split_at_mut(full * FWHT_BLOCK);

    out_blocks
        .par_chunks_mut(FWHT_BLOCK)
        .zip(block_codes.par_chunks(block_bytes))
        .zip(&scales[..full])
        .enumerate()
        .for_each(|(b, ((ob, cb), &scale))| {
            let mut codes = vec![0u16; FWHT_BLOCK];
            bitpack::unpack(cb, p.bits, &mut codes);
            decode_piece(&codes, scale, b * FWHT_BLOCK, sign_seed, &table, weight, ob);
        });

    let mut codes = vec![0u16; out_tail.len()];
    bitpack::unpack(tail_codes, p.bits, &mut codes);
    let mut start = 0;
    for (len, &scale) in remainder_pieces(out_tail.len()).zip(&scales[full..]) {
        let offset = full * FWHT_BLOCK + start;
        decode_piece(
            &codes[start..start + len],
            scale,
            offset,
            sign_seed,
            &table,
            weight,
            &mut out_tail[start..start + len],
        );
        start += len;
    }
    Ok(())
}

/// `eden:B`: wire id 8; header `bits: u8, seed: u64` (the decoder redraws the rotation).
pub static EDEN: Kind = Kind {
    id: 8,
    names: &["eden"],
    usage: "eden:B",
    example: "eden:1",
    parse: |args| {
        let bits = args.required_u32(0, "a bit width", "eden bits")?;
        Ok(Terminal::new(EdenParams { bits }))
    },
    read: |r| {
        let bits = u32::from(r.u8("eden bits")?);
        let seed = r.u64("eden seed")?;
        Ok((Terminal::new(EdenParams { bits }), seed))
    },
};

impl Codec for EdenParams {
    fn kind(&self) -> &'static Kind {
        &EDEN
    }

    fn validate(&self) -> Result<()> {
        Self::new(self.bits).map(|_| ())
    }

    fn fmt_spec(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eden:{}", self.bits)
    }

    fn describe(&self) -> (&'static str, Vec<(&'static str, Param)>) {
        ("eden", vec![("bits", Param::Int(self.bits.into()))])
    }

    fn write_params(&self, w: &mut Writer, seed: u64) {
        w.u8(self.bits as u8);
        w.u64(seed);
    }

    fn payload_len(&self, m: usize) -> usize {
        checked_len(m, self.bits).unwrap_or(usize::MAX)
    }

    fn encode(&self, values: &[f32], seed: u64, out: &mut [MaybeUninit<u8>]) -> Result<u32> {
        let out = uninit::zeroed(out);
        eden_encode(values, self, seed, out)?;
        Ok(crate::wire::checksum::crc32c(out))
    }

    fn decode_add(&self, payload: &[u8], seed: u64, weight: f32, out: &mut [f32]) -> Result<()> {
        eden_decode_add(payload, out.len(), self, seed, weight, out)
    }

    /// A piece decodes to at most `sqrt(65536)` times its largest centroid (below 4) times its input norm.
    fn growth(&self) -> f64 {
        256.0 * 4.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rng::{uniform_pair, SplitMix64};
    use proptest::prelude::*;

    /// Standard normal values by Box-Muller over the crate's stateless uniforms.
    fn normals(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let (u, v) = uniform_pair(seed, i as u64);
                let r = (-2.0 * (1.0 - f64::from(u)).ln()).sqrt();
                (r * (std::f64::consts::TAU * f64::from(v)).cos()) as f32
            })
            .collect()
    }

    fn round_trip(x: &[f32], bits: u32, seed: u64) -> Vec<f32> {
        let p = &EdenParams::new(bits).unwrap();
        let mut buf = vec![0u8; eden_len(x.len(), p)];
        eden_encode(x, p, seed, &mut buf).expect("encodes");
        let mut y = vec![0.0f32; x.len()];
        eden_decode_add(&buf, x.len(), p, seed, 1.0, &mut y).unwrap();
        y
    }

    fn vnmse(x: &[f32], y: &[f32]) -> f64 {
        let err: f64 = x.iter().zip(y).map(|(a, b)| f64::from(a - b).powi(2)).sum();
        let norm: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
        err / norm
    }

    #[test]
    fn vnmse_meets_targets_on_a_million_normals() {
        let x = normals(1 << 20, 3);
        for (bits, limit) in [(1, 0.60), (2, 0.14), (4, 0.01), (8, 1e-4)] {
            let e = vnmse(&x, &round_trip(&x, bits, 17));
            assert!(e <= limit, "{bits} bits: vNMSE {e}");
        }
    }

    #[test]
    fn mean_of_seeded_decodes_converges_to_input() {
        // 1000 = 512 + 256 + 128 + 64 + 32 + 8 exercises the remainder pieces; 4096 is one piece.
        // Unbiased means the error of the mean falls like 1/rounds, i.e. close to single / rounds.
        for n in [1000, 4096] {
            let x = normals(n, 8);
            for bits in [1, 2] {
                let rounds = 200;
                let p = &EdenParams::new(bits).unwrap();
                let mut buf = vec![0u8; eden_len(n, p)];
                let mut mean = vec![0.0f32; n];
                for s in 0..rounds {
                    eden_encode(&x, p, s, &mut buf).expect("encodes");
                    eden_decode_add(&buf, n, p, s, 1.0 / rounds as f32, &mut mean).unwrap();
                }
                let single = vnmse(&x, &round_trip(&x, bits, 1));
                let averaged = vnmse(&x, &mean);
                assert!(
                    averaged < 2.0 * single / rounds as f64,
                    "n {n}, {bits} bits: {averaged} vs single {single}"
                );
            }
        }
    }

    #[test]
    fn payload_has_no_padding() {
        let p = &EdenParams::new(1).unwrap();
        assert_eq!(eden_len(1, p), 4 + 1);
        assert_eq!(
            eden_len(FWHT_BLOCK + 3, p),
            3 * 4 + (FWHT_BLOCK + 3).div_ceil(8)
        );
        assert_eq!(eden_len(0, p), 0);
        let p8 = &EdenParams::new(8).unwrap();
        assert_eq!(eden_len(1 << 20, p8), 16 * 4 + (1 << 20));
    }

    #[test]
    fn zero_piece_decodes_to_zero_and_unsupported_bits_are_rejected() {
        let mut x = vec![0.0f32; 96];
        x[70] = 2.0; // the 64-piece is all zero, the 32-piece is not
        let y = round_trip(&x, 2, 4);
        assert!(y[..64].iter().all(|v| *v == 0.0));
        assert!(y[64..].iter().all(|v| v.is_finite()));
        assert!(EdenParams::new(3).is_err());
        let mut out = vec![0.0f32; 8];
        assert!(eden_decode_add(&[0; 8], 8, &EdenParams { bits: 3 }, 0, 1.0, &mut out).is_err());
    }

    #[test]
    fn decode_rejects_wrong_lengths_and_non_finite_scales() {
        let x = normals(70_000, 1);
        let p = &EdenParams::new(4).unwrap();
        let mut buf = vec![0u8; eden_len(x.len(), p)];
        eden_encode(&x, p, 2, &mut buf).expect("encodes");
        let mut out = vec![0.0f32; x.len()];
        for cut in [0, 1, 4, buf.len() - 1] {
            assert!(eden_decode_add(&buf[..cut], x.len(), p, 2, 1.0, &mut out).is_err());
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(eden_decode_add(&longer, x.len(), p, 2, 1.0, &mut out).is_err());
        let mut bad = buf.clone();
        bad[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(eden_decode_add(&bad, x.len(), p, 2, 1.0, &mut out).is_err());
        assert!(eden_decode_add(&buf, usize::MAX, p, 2, 1.0, &mut out).is_err());
        assert!(eden_decode_add(&buf, x.len(), p, 2, 1.0, &mut out[1..]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn decode_adds_weighted_and_is_deterministic(n in 1usize..3000, bits in prop::sample::select(vec![1u32, 2, 4, 8]), seed: u64) {
            let x = normals(n, seed);
            let p = &EdenParams::new(bits).unwrap();
            let mut a = vec![0u8; eden_len(n, p)];
            let mut b = vec![0u8; eden_len(n, p)];
            eden_encode(&x, p, seed, &mut a).expect("encodes");
            eden_encode(&x, p, seed, &mut b).expect("encodes");
            prop_assert_eq!(&a, &b);
            let mut once = vec![0.0f32; n];
            eden_decode_add(&a, n, p, seed, 1.0, &mut once).unwrap();
            let mut twice = vec![1.0f32; n];
            eden_decode_add(&a, n, p, seed, 2.0, &mut twice).unwrap();
            for (o, t) in once.iter().zip(&twice) {
                prop_assert!((1.0 + 2.0 * o - t).abs() <= 1e-4 * (1.0 + o.abs()));
            }
            prop_assert!(vnmse(&x, &once) < 1.0);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), n in 0usize..2000, bits in 0u32..10, seed: u64) {
            let mut out = vec![0.0f32; n];
            let _ = eden_decode_add(&bytes, n, &EdenParams { bits }, seed, 1.0, &mut out);
        }
    }

    #[test]
    fn random_payload_of_the_right_length_decodes_finite_or_errs() {
        let mut g = SplitMix64::new(5);
        let n = 1234;
        let p = &EdenParams::new(2).unwrap();
        let mut bytes: Vec<u8> = (0..eden_len(n, p)).map(|_| g.next_u64() as u8).collect();
        for s in bytes[..4 * piece_count(n)].chunks_exact_mut(4) {
            s.copy_from_slice(&1.5f32.to_le_bytes());
        }
        let mut out = vec![0.0f32; n];
        eden_decode_add(&bytes, n, p, 9, 1.0, &mut out).unwrap();
        assert!(out.iter().all(|v| v.is_finite()));
    }
}
