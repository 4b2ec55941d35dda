//! Per-chunk uniform min/max quantization to 1..=16 bits, round-to-nearest or unbiased stochastic.

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::codecs::codec::{Codec, Kind, Param, Terminal};
use crate::codecs::spec::{check_bits, check_chunk, DEFAULT_QUANT_CHUNK};
use crate::error::{CodecError, Result};
use crate::kernels::bitpack::{
    decode_runs, dispatch_bits, f32_at, ChunkedLayout, Code, RunDecoder, MAX_BITS,
};
use crate::kernels::simd::quantize_chunk;
use crate::kernels::uninit::as_uninit;
use crate::wire::frame::Writer;

/// Settings of the uniform quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantParams {
    /// Code width, 1..=16.
    pub bits: u32,
    /// Stochastic (unbiased) rounding instead of round-to-nearest.
    pub stochastic: bool,
    /// Elements per chunk sharing one `lo`/`step`; >= 8 and a multiple of 8.
    pub chunk: usize,
}

impl QuantParams {
    /// Checks the ranges the kernels rely on.
    pub fn validate(&self) -> Result<()> {
        self.problem().map_or(Ok(()), |m| Err(CodecError::param(m)))
    }

    fn problem(&self) -> Option<String> {
        if !(1..=MAX_BITS).contains(&self.bits) {
            Some(format!("quantization bits {} outside 1..=16", self.bits))
        } else if self.chunk < 8 || !self.chunk.is_multiple_of(8) {
            Some(format!(
                "quantization chunk {} is not a multiple of 8 that is >= 8",
                self.chunk
            ))
        } else {
            None
        }
    }

    fn layout(&self) -> ChunkedLayout {
        ChunkedLayout {
            chunk: self.chunk,
            head: 8,
            bits: self.bits,
        }
    }
}

/// Payload bytes for `n` elements: for every chunk `lo: f32, step: f32`, then the packed codes of
/// all elements ([`crate::kernels::bitpack`] layout); a code decodes to `lo + code * step`.
#[must_use]
pub fn quantize_len(n: usize, p: &QuantParams) -> usize {
    p.layout().len(n)
}

/// Quantizes `x` into `out` (`out.len() == quantize_len(x.len(), p)`) and returns the crc32c of
/// `out`; `seed` keys the stochastic rounding of element `i` through `(seed, i)` only, so the
/// bytes do not depend on thread count.
///
/// Refuses a NaN/Inf, naming the first, from the min/max pass every chunk makes anyway: callers
/// need not scan `x` first (`out` then holds garbage). Expects validated `p` and per-chunk
/// `max - min` finite in f32 (true when every `|x| < 1.7e38`). Round-to-nearest keeps every
/// element within `step / 2` (plus float rounding) of its decoded value.
pub fn quantize(x: &[f32], p: &QuantParams, seed: u64, out: &mut [u8]) -> Result<u32> {
    // SAFETY: the encoder writes only initialized bytes (heads copied or zeroed, codes packed).
    #[allow(unsafe_code)]
    let out = unsafe { as_uninit(out) };
    quantize_uninit(x, p, seed, out)
}

/// [`quantize`] into a buffer that may start uninitialized (a fresh frame).
pub(crate) fn quantize_uninit(
    x: &[f32],
    p: &QuantParams,
    seed: u64,
    out: &mut [MaybeUninit<u8>],
) -> Result<u32> {
    debug_assert!(p.problem().is_none(), "{p:?}");
    let stochastic = p.stochastic;
    let first_bad = AtomicUsize::new(usize::MAX);
    let too_wide = AtomicUsize::new(usize::MAX);
    let crc = p.layout().par_encode(x, out, |first, xs, head, codes| {
        let after = &x[first + xs.len()..];
        let next = &after[..after.len().min(xs.len())];
        let chunk = dispatch_bits!(
            p.bits,
            quantize_chunk(xs, next, first, stochastic.then_some(seed), head, codes)
        );
        if !chunk.finite {
            if let Some(i) = xs.iter().position(|v| !v.is_finite()) {
                first_bad.fetch_min(first + i, Ordering::Relaxed);
            }
        } else if !chunk_decodable(f32_at(chunk.head, 0), f32_at(chunk.head, 4), p.bits) {
            too_wide.fetch_min(first, Ordering::Relaxed);
        }
        (chunk.head, chunk.codes)
    })?;
    match (first_bad.into_inner(), too_wide.into_inner()) {
        (i, _) if i < x.len() => Err(CodecError::non_finite(i, x[i])),
        (_, i) if i < x.len() => Err(CodecError::input(format!(
            "the {}-element chunk at index {i} spans more than float32's range (values near ±3.4e38 of both signs): its frame would not decode",
            p.chunk
        ))),
        _ => Ok(crc),
    }
}

/// Whether a chunk header decodes within float32: `lo` and `step` finite, `step >= 0`, and the
/// largest code's `step * code` and `lo + step * code` finite, as the decoder computes them.
fn chunk_decodable(lo: f32, step: f32, bits: u32) -> bool {
    let max_code = ((1u32 << bits) - 1) as f32;
    lo.is_finite()
        && step.is_finite()
        && step >= 0.0
        && (step * max_code).is_finite()
        && (lo + step * max_code).is_finite()
}

/// Checks a payload of `n` elements before anything is written: byte count, params, and every
/// chunk's `lo` and `step` (finite, `step >= 0`, largest code within f32's range).
fn checked_layout(
    bytes: &[u8],
    n: usize,
    p: &QuantParams,
    out_len: usize,
) -> Result<ChunkedLayout> {
    let layout = p.layout();
    layout.check_decode(p.problem(), "quantized", bytes, n, out_len)?;
    for (i, head) in layout.heads(bytes, n).enumerate() {
        let (lo, step) = (f32_at(head, 0), f32_at(head, 4));
        if !chunk_decodable(lo, step, p.bits) {
            return Err(CodecError::frame(format!(
                "chunk {i} has lo {lo} and step {step}"
            )));
        }
    }
    Ok(layout)
}

/// Decodes a payload of `n` elements and adds `weight * value` into `out` (`out.len() == n`).
///
/// Rejects, before touching `out`, a wrong byte count, bad params, a non-finite `lo` or `step`,
/// a negative `step`, and a chunk whose largest code would decode past f32's range.
pub fn dequantize_add(
    bytes: &[u8],
    n: usize,
    p: &QuantParams,
    weight: f32,
    out: &mut [f32],
) -> Result<()> {
    let layout = checked_layout(bytes, n, p, out.len())?;
    layout.par_decode(bytes, out, |head, codes, o| {
        let dec = AffineDecoder::<true> {
            offset: weight * f32_at(head, 0),
            scale: weight * f32_at(head, 4),
        };
        dispatch_bits!(p.bits, decode_runs(&dec, codes, o));
    });
    Ok(())
}

/// Decodes a payload of `n` elements into `out`, whatever it held: one write per element, no
/// read of `out` (a fresh array's pages fault in once, on the write). The values are those
/// [`dequantize_add`] adds to zeros, bit for bit (`-0.0` comes out as `+0.0` there too).
pub fn dequantize_into(bytes: &[u8], n: usize, p: &QuantParams, out: &mut [f32]) -> Result<()> {
    let layout = checked_layout(bytes, n, p, out.len())?;
    layout.par_decode(bytes, out, |head, codes, o| {
        let dec = AffineDecoder::<false> {
            offset: f32_at(head, 0),
            scale: f32_at(head, 4),
        };
        dispatch_bits!(p.bits, decode_runs(&dec, codes, o));
    });
    Ok(())
}

/// An upper bound on every `|value|` the payload decodes to, from the chunk headers alone
/// (values lie in `[lo, lo + step * max_code]`); `None` for a payload [`dequantize_add`] refuses.
pub(crate) fn decoded_bound(bytes: &[u8], n: usize, p: &QuantParams) -> Option<f64> {
    let layout = checked_layout(bytes, n, p, n).ok()?;
    let max_code = f64::from((1u32 << p.bits) - 1);
    let largest = layout.heads(bytes, n).fold(0.0f64, |m, head| {
        let (lo, step) = (f64::from(f32_at(head, 0)), f64::from(f32_at(head, 4)));
        m.max(lo.abs()).max((lo + step * max_code).abs())
    });
    // The decoder rounds `lo + code * step` in float32: two roundings, each within 2^-24.
    Some(largest * (1.0 + 1e-6))
}

/// `offset + code * scale`, the weighted value of a code in a chunk, added to `out` (`ADD`) or
/// written over it (then `+ 0.0`, as adding to a zero would, so both give the same bits).
struct AffineDecoder<const ADD: bool> {
    offset: f32,
    scale: f32,
}

impl<const ADD: bool> RunDecoder for AffineDecoder<ADD> {
    #[inline]
    fn decode_run<C: Code>(&self, codes: &[C], out: &mut [f32]) {
        if ADD {
            for (o, &c) in out.iter_mut().zip(codes) {
                *o += self.offset + c.to_i32() as f32 * self.scale;
            }
        } else {
            for (o, &c) in out.iter_mut().zip(codes) {
                *o = (self.offset + c.to_i32() as f32 * self.scale) + 0.0;
            }
        }
    }
}

/// `quant:B[:stochastic][:chunk=N]`: wire id 4; header `bits: u8, stochastic: u8, chunk: u32`.
pub static QUANT: Kind = Kind {
    id: 4,
    names: &["quant"],
    usage: "quant:B",
    example: "quant:8",
    parse: |args| {
        let stochastic = args.flag("stochastic");
        let bits = args.required_u32(0, "a bit width", "quant bits")?;
        let chunk = args.option("chunk", DEFAULT_QUANT_CHUNK)?;
        Ok(Terminal::new(QuantParams {
            bits,
            stochastic,
            chunk,
        }))
    },
    read: |r| {
        let bits = u32::from(r.u8("quant bits")?);
        let stochastic = r.flag("quant stochastic flag")?;
        let chunk = r.u32("quant chunk")? as usize;
        Ok((
            Terminal::new(QuantParams {
                bits,
                stochastic,
                chunk,
            }),
            0,
        ))
    },
};

impl Codec for QuantParams {
    fn kind(&self) -> &'static Kind {
        &QUANT
    }

    fn validate(&self) -> Result<()> {
        check_bits(self.bits, 1, MAX_BITS, "quant")?;
        check_chunk(self.chunk, "quant chunk")
    }

    fn fmt_spec(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quant:{}", self.bits)?;
        if self.stochastic {
            f.write_str(":stochastic")?;
        }
        if self.chunk != DEFAULT_QUANT_CHUNK {
            write!(f, ":chunk={}", self.chunk)?;
        }
        Ok(())
    }

    fn describe(&self) -> (&'static str, Vec<(&'static str, Param)>) {
        (
            "quant",
            vec![
                ("bits", Param::Int(self.bits.into())),
                ("stochastic", Param::Bool(self.stochastic)),
                ("chunk", Param::Int(self.chunk as u64)),
            ],
        )
    }

    fn write_params(&self, w: &mut Writer, _seed: u64) {
        w.u8(self.bits as u8);
        w.u8(u8::from(self.stochastic));
        w.u32(self.chunk as u32);
    }

    fn payload_len(&self, m: usize) -> usize {
        quantize_len(m, self)
    }

    fn encode(&self, values: &[f32], seed: u64, out: &mut [MaybeUninit<u8>]) -> Result<u32> {
        quantize_uninit(values, self, seed, out)
    }

    fn decode_add(&self, payload: &[u8], _seed: u64, weight: f32, out: &mut [f32]) -> Result<()> {
        dequantize_add(payload, out.len(), self, weight, out)
    }

    fn decode_into(&self, payload: &[u8], _seed: u64, out: &mut [f32]) -> Result<()> {
        dequantize_into(payload, out.len(), self, out)
    }

    fn decoded_bound(&self, payload: &[u8], m: usize) -> Option<f64> {
        decoded_bound(payload, m, self)
    }

    fn checks_finite(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact decoded values are what some tests assert
mod tests {
    use super::*;
    use crate::kernels::rng::SplitMix64;
    use proptest::prelude::*;

    #[test]
    fn subnormal_ranges_keep_the_half_step_bound() {
        // The second case has a range so small that range / 127 underflows to zero.
        for (x, bits) in [1, 2, 7, 8, 16]
            .into_iter()
            .map(|b| ([8.4595e-41f32, 0.0, 3.0e-41, 1.0e-44], b))
            .chain([([4.8e-44f32, 0.0, 0.0, 0.0], 7)])
        {
            let p = QuantParams {
                bits,
                stochastic: false,
                chunk: 8,
            };
            let mut bytes = vec![0u8; quantize_len(x.len(), &p)];
            quantize(&x, &p, 0, &mut bytes).unwrap();
            let mut y = vec![0.0f32; x.len()];
            dequantize_add(&bytes, x.len(), &p, 1.0, &mut y).unwrap();
            let step = f32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            for (a, b) in x.iter().zip(&y) {
                assert!(
                    (a - b).abs() <= step / 2.0 + f32::from_bits(1),
                    "bits {bits}: {a} vs {b}"
                );
            }
        }
    }

    fn params(bits: u32, stochastic: bool, chunk: usize) -> QuantParams {
        QuantParams {
            bits,
            stochastic,
            chunk,
        }
    }

    fn gaussian_like(n: usize, seed: u64) -> Vec<f32> {
        let mut g = SplitMix64::new(seed);
        (0..n)
            .map(|_| ((g.next_f64() + g.next_f64() + g.next_f64() - 1.5) * 4.0) as f32)
            .collect()
    }

    fn encode(x: &[f32], p: &QuantParams, seed: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; quantize_len(x.len(), p)];
        let crc = quantize(x, p, seed, &mut bytes).unwrap();
        assert_eq!(
            crc,
            crc32c::crc32c(&bytes),
            "quantize returns its output's crc32c"
        );
        bytes
    }

    #[test]
    fn the_returned_crc_covers_every_task_and_the_partial_last_chunk() {
        let x = gaussian_like(100_003, 5);
        for (bits, stochastic) in [(3, false), (8, false), (8, true), (16, false)] {
            let p = QuantParams {
                bits,
                stochastic,
                chunk: 64,
            };
            encode(&x, &p, 9);
        }
    }

    fn decode(bytes: &[u8], n: usize, p: &QuantParams) -> Vec<f32> {
        let mut out = vec![0f32; n];
        dequantize_add(bytes, n, p, 1.0, &mut out).unwrap();
        out
    }

    fn step_of(bytes: &[u8], chunk_index: usize) -> f32 {
        f32_at(&bytes[chunk_index * 8..], 4)
    }

    /// Checks the round-to-nearest bound `|y - x| <= step / 2` up to f32 rounding of the chunk's
    /// range and magnitude.
    fn assert_within_half_step(x: &[f32], y: &[f32], bytes: &[u8], p: &QuantParams) {
        let levels = f64::from((1u32 << p.bits) - 1);
        for (c, (xc, yc)) in x.chunks(p.chunk).zip(y.chunks(p.chunk)).enumerate() {
            let step = f64::from(step_of(bytes, c));
            let magnitude = xc.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
            let slack = 4.0 * f64::from(f32::EPSILON) * (levels * step + magnitude);
            for (i, (&a, &b)) in xc.iter().zip(yc).enumerate() {
                let err = (f64::from(a) - f64::from(b)).abs();
                assert!(
                    err <= step / 2.0 + slack,
                    "chunk {c} element {i}: {a} -> {b}, step {step}, bits {}",
                    p.bits
                );
            }
        }
    }

    #[test]
    fn deterministic_error_is_at_most_half_a_step_for_every_width() {
        let x = gaussian_like(1000, 1);
        for bits in 1..=16 {
            for chunk in [8, 64, 256] {
                let p = params(bits, false, chunk);
                let bytes = encode(&x, &p, 0);
                assert_within_half_step(&x, &decode(&bytes, x.len(), &p), &bytes, &p);
            }
        }
    }

    #[test]
    fn chunk_extremes_are_exact() {
        let x = gaussian_like(300, 2);
        let p = params(8, false, 64);
        let y = decode(&encode(&x, &p, 0), x.len(), &p);
        for (xc, yc) in x.chunks(64).zip(y.chunks(64)) {
            let lo = xc.iter().copied().fold(f32::INFINITY, f32::min);
            let at = xc.iter().position(|&v| v == lo).unwrap();
            assert_eq!(yc[at], lo);
        }
    }

    #[test]
    fn constant_chunks_decode_exactly() {
        let mut x = vec![3.25f32; 40];
        x.extend(std::iter::repeat_n(-1.5f32, 13));
        for stochastic in [false, true] {
            let p = params(4, stochastic, 8);
            let bytes = encode(&x, &p, 5);
            assert_eq!(step_of(&bytes, 0), 0.0);
            assert_eq!(decode(&bytes, x.len(), &p), x);
        }
    }

    #[test]
    fn huge_and_subnormal_ranges_stay_decodable() {
        let x = [
            1e38, -1e38, 0.0, 1.0, 5.0, -5.0, 0.0, 0.0, 1e-45, -1e-45, 0.0, 1e-45,
        ];
        for bits in [1, 8, 16] {
            for stochastic in [false, true] {
                let p = params(bits, stochastic, 8);
                let bytes = encode(&x, &p, 3);
                let y = decode(&bytes, x.len(), &p);
                assert!(y.iter().all(|v| v.is_finite()), "bits {bits}: {y:?}");
                assert!(
                    y[8..].iter().all(|v| v.abs() <= 3e-45),
                    "bits {bits}: {y:?}"
                );
            }
        }
    }

    #[test]
    fn decode_adds_with_weight() {
        let x = gaussian_like(77, 3);
        let p = params(8, false, 16);
        let bytes = encode(&x, &p, 0);
        let once = decode(&bytes, x.len(), &p);
        let mut acc = vec![1.0f32; x.len()];
        dequantize_add(&bytes, x.len(), &p, 2.5, &mut acc).unwrap();
        for (a, o) in acc.iter().zip(&once) {
            assert!((a - (1.0 + 2.5 * o)).abs() <= 1e-5 * (1.0 + o.abs()));
        }
    }

    #[test]
    fn stochastic_rounding_is_unbiased() {
        let x = gaussian_like(24, 4);
        let p = params(2, true, 8);
        let seeds = 1000u64;
        let mut sum = vec![0f64; x.len()];
        for seed in 0..seeds {
            let y = decode(&encode(&x, &p, seed), x.len(), &p);
            for (s, v) in sum.iter_mut().zip(&y) {
                *s += f64::from(*v);
            }
        }
        let bytes = encode(&x, &p, 0);
        for (i, (&xi, s)) in x.iter().zip(&sum).enumerate() {
            let step = f64::from(step_of(&bytes, i / p.chunk));
            let lo = f64::from(f32_at(&bytes[i / p.chunk * 8..], 0));
            let t = (f64::from(xi) - lo) / step;
            let frac = t - t.floor();
            let sigma = step * (frac * (1.0 - frac) / seeds as f64).sqrt();
            let mean = s / seeds as f64;
            assert!(
                (mean - f64::from(xi)).abs() <= 4.0 * sigma + 1e-5 * step,
                "element {i}: mean {mean} x {xi} sigma {sigma}"
            );
        }
    }

    #[test]
    fn stochastic_codes_bracket_the_input() {
        let x = gaussian_like(500, 6);
        let p = params(6, true, 128);
        let bytes = encode(&x, &p, 77);
        let y = decode(&bytes, x.len(), &p);
        for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
            let step = step_of(&bytes, i / p.chunk);
            assert!((a - b).abs() <= step * 1.0001, "element {i}");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_thread_count() {
        let x = gaussian_like(100_003, 7);
        for p in [params(8, false, 1024), params(5, true, 64)] {
            let many = encode(&x, &p, 9);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let one = pool.install(|| encode(&x, &p, 9));
            assert_eq!(many, one);
        }
    }

    #[test]
    fn different_seeds_give_different_stochastic_codes() {
        let x = gaussian_like(256, 8);
        let p = params(4, true, 64);
        assert_ne!(encode(&x, &p, 1), encode(&x, &p, 2));
        assert_eq!(encode(&x, &p, 1), encode(&x, &p, 1));
    }

    #[test]
    fn non_finite_input_is_refused_naming_the_first() {
        let clean = gaussian_like(100_003, 11);
        // In a 16-lane block, in a chunk's tail past the blocks, in the short last chunk.
        let spots = [
            (40_000, f32::NAN),
            (70_995, f32::INFINITY),
            (100_002, f32::NEG_INFINITY),
        ];
        for p in [params(8, false, 1000), params(3, true, 64)] {
            for (at, bad) in spots {
                let mut x = clean.clone();
                x[at] = bad;
                let mut bytes = vec![0u8; quantize_len(x.len(), &p)];
                let err = quantize(&x, &p, 1, &mut bytes).unwrap_err();
                assert_eq!(err, CodecError::non_finite(at, bad), "{p:?}");
            }
            let mut x = clean.clone();
            for (at, bad) in spots.iter().rev() {
                x[*at] = *bad;
            }
            let mut bytes = vec![0u8; quantize_len(x.len(), &p)];
            let err = quantize(&x, &p, 1, &mut bytes).unwrap_err();
            assert!(err.to_string().contains("flat index 40000"), "{err}");
        }
    }

    #[test]
    fn huge_values_that_overflow_the_finiteness_sum_still_encode() {
        let x: Vec<f32> = (0..64)
            .map(|i| if i % 3 == 0 { 1.0e38 } else { 1.5e38 })
            .collect();
        let p = params(8, false, 32);
        let bytes = encode(&x, &p, 0);
        assert_within_half_step(&x, &decode(&bytes, x.len(), &p), &bytes, &p);
    }

    #[test]
    fn validate_names_the_bad_field() {
        assert!(params(8, false, 64).validate().is_ok());
        for bad in [
            params(0, false, 64),
            params(17, false, 64),
            params(8, false, 0),
            params(8, false, 12),
        ] {
            assert!(
                matches!(bad.validate(), Err(CodecError::InvalidParam(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_input_gives_empty_payload() {
        let p = params(8, true, 64);
        assert_eq!(quantize_len(0, &p), 0);
        assert!(encode(&[], &p, 1).is_empty());
        assert!(decode(&[], 0, &p).is_empty());
    }

    #[test]
    fn decoder_rejects_malformed_payloads() {
        let x = gaussian_like(20, 9);
        let p = params(4, false, 8);
        let bytes = encode(&x, &p, 0);
        let mut out = vec![0f32; x.len()];
        let frame_err = |r: Result<()>| matches!(r, Err(CodecError::Frame(_)));
        assert!(frame_err(dequantize_add(
            &bytes[..bytes.len() - 1],
            x.len(),
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(dequantize_add(
            &[bytes.clone(), vec![0]].concat(),
            x.len(),
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(dequantize_add(
            &bytes,
            x.len() + 1,
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(dequantize_add(
            &bytes,
            usize::MAX,
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(dequantize_add(
            &bytes,
            x.len(),
            &params(0, false, 8),
            1.0,
            &mut out
        )));
        assert!(frame_err(dequantize_add(
            &bytes,
            x.len(),
            &params(4, false, 7),
            1.0,
            &mut out
        )));
        for (at, value) in [
            (0, f32::NAN),
            (4, f32::INFINITY),
            (12, -1.0),
            (8, f32::NEG_INFINITY),
        ] {
            let mut bad = bytes.clone();
            bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
            let r = dequantize_add(&bad, x.len(), &p, 1.0, &mut out);
            assert!(frame_err(r), "header byte {at} = {value}");
        }
        assert!(
            out.iter().all(|&v| v == 0.0),
            "a rejected payload must not touch the output"
        );
    }

    #[test]
    fn decoder_survives_random_and_truncated_bytes() {
        let mut g = SplitMix64::new(10);
        for trial in 0..400 {
            let bits = 1 + (trial % 16) as u32;
            let chunk = 8 * (1 + g.below(4) as usize);
            let n = g.below(60) as usize;
            let p = params(bits, false, chunk);
            let len = if trial % 2 == 0 {
                quantize_len(n, &p)
            } else {
                g.below(100) as usize
            };
            let bytes: Vec<u8> = (0..len).map(|_| g.below(256) as u8).collect();
            let mut out = vec![0f32; n];
            if dequantize_add(&bytes, n, &p, 1.0, &mut out).is_ok() {
                assert_eq!(bytes.len(), quantize_len(n, &p));
            }
        }
    }

    #[test]
    fn decoding_into_writes_what_adding_to_zeros_gives_and_the_bound_holds() {
        let mut x = gaussian_like(100_003, 2);
        x[17] = -0.0;
        x[4096..8192].fill(-0.0);
        for bits in [1, 3, 8, 12, 16] {
            let p = params(bits, false, 4096);
            let bytes = encode(&x, &p, 1);
            let added = decode(&bytes, x.len(), &p);
            let mut written = vec![f32::NAN; x.len()];
            dequantize_into(&bytes, x.len(), &p, &mut written).unwrap();
            let same_bits = added
                .iter()
                .zip(&written)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same_bits, "bits {bits}");
            let bound = decoded_bound(&bytes, x.len(), &p).unwrap();
            let largest = added.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
            assert!(largest <= bound, "bits {bits}: {largest} > {bound}");
        }
        let p = params(8, false, 4096);
        let mut forged = encode(&x, &p, 1);
        forged[4..8].copy_from_slice(&f32::INFINITY.to_le_bytes());
        let mut out = vec![1.0f32; x.len()];
        assert!(dequantize_into(&forged, x.len(), &p, &mut out).is_err());
        assert!(out.iter().all(|&v| v == 1.0), "a refused payload wrote");
        assert_eq!(decoded_bound(&forged, x.len(), &p), None);
    }

    proptest! {
        #[test]
        fn round_trip_within_half_step(
            x in prop::collection::vec(-1.0e3f32..1.0e3, 1..400),
            bits in 1u32..=16,
            chunk_blocks in 1usize..20,
        ) {
            let p = params(bits, false, chunk_blocks * 8);
            let bytes = encode(&x, &p, 0);
            assert_within_half_step(&x, &decode(&bytes, x.len(), &p), &bytes, &p);
        }

        #[test]
        fn stochastic_round_trip_within_one_step(
            x in prop::collection::vec(-1.0e3f32..1.0e3, 1..400),
            bits in 1u32..=16,
            seed in any::<u64>(),
        ) {
            let p = params(bits, true, 32);
            let bytes = encode(&x, &p, seed);
            let y = decode(&bytes, x.len(), &p);
            for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
                let step = step_of(&bytes, i / p.chunk);
                prop_assert!((a - b).abs() <= step * 1.0001 + a.abs() * 1e-6);
            }
        }
    }
}
