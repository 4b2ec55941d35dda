//! QSGD (Alistarh et al. 2017): per-bucket L2 norm and unbiased stochastic levels `0..=s`.

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::codecs::codec::{Codec, Kind, Param, Terminal};
use crate::codecs::spec::{check_chunk, DEFAULT_QSGD_BUCKET};
use crate::error::{CodecError, Result};
use crate::kernels::bitpack::{
    decode_runs, dispatch_bits, encode_runs, f32_at, ChunkedLayout, Code, CodeSlot, RunDecoder,
    RunEncoder,
};
use crate::kernels::quant_chunk::{fill_uniforms, stochastic_floor};
use crate::kernels::uninit::{as_uninit, copied};
use crate::wire::frame::Writer;

/// Largest level count whose codes `[0, 2s]` still fit 16 bits.
pub const MAX_LEVELS: u32 = 32_767;

/// Settings of the QSGD quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QsgdParams {
    /// Levels `s` per sign, 1..=32767.
    pub levels: u32,
    /// Elements per bucket sharing one norm; >= 8 and a multiple of 8.
    pub bucket: usize,
}

impl QsgdParams {
    /// Checks the ranges the kernels rely on.
    pub fn validate(&self) -> Result<()> {
        self.problem().map_or(Ok(()), |m| Err(CodecError::param(m)))
    }

    /// Code width: `ceil(log2(2s + 1))`, the bit length of `2s`.
    #[must_use]
    pub fn code_bits(&self) -> u32 {
        u32::BITS - (2 * self.levels).leading_zeros()
    }

    fn problem(&self) -> Option<String> {
        if !(1..=MAX_LEVELS).contains(&self.levels) {
            Some(format!("qsgd levels {} outside 1..=32767", self.levels))
        } else if self.bucket < 8 || !self.bucket.is_multiple_of(8) {
            Some(format!(
                "qsgd bucket {} is not a multiple of 8 that is >= 8",
                self.bucket
            ))
        } else {
            None
        }
    }

    fn layout(&self) -> ChunkedLayout {
        ChunkedLayout {
            chunk: self.bucket,
            head: 4,
            bits: self.code_bits(),
        }
    }
}

/// Payload bytes for `n` elements: for every bucket `norm: f32`, then the packed codes of all
/// elements, where `code = s + sign * level` lies in `[0, 2s]` and decodes to
/// `norm * (code - s) / s`.
#[must_use]
pub fn qsgd_len(n: usize, p: &QsgdParams) -> usize {
    p.layout().len(n)
}

/// Encodes `x` into `out` (`out.len() == qsgd_len(x.len(), p)`), returning the crc32c of `out`;
/// the level of element `i` is drawn from `(seed, i)` only, so the bytes do not depend on thread
/// count.
///
/// Expects validated `p` and finite `x`. Unbiased: the mean of the decoded values over seeds is `x`.
/// Refuses a bucket whose norm does not decode within float32 (see [`norm_decodable`]), so the
/// decoder accepts whatever this writes.
pub fn qsgd_encode(x: &[f32], p: &QsgdParams, seed: u64, out: &mut [u8]) -> Result<u32> {
    // SAFETY: the encoder writes only initialized bytes (norms copied, codes packed).
    #[allow(unsafe_code)]
    let out = unsafe { as_uninit(out) };
    qsgd_encode_uninit(x, p, seed, out)
}

/// [`qsgd_encode`] into a buffer that may start uninitialized (a fresh frame).
pub(crate) fn qsgd_encode_uninit(
    x: &[f32],
    p: &QsgdParams,
    seed: u64,
    out: &mut [MaybeUninit<u8>],
) -> Result<u32> {
    debug_assert!(p.problem().is_none(), "{p:?}");
    let first_bad = AtomicUsize::new(usize::MAX);
    let crc = p.layout().par_encode(x, out, |first, xs, head, codes| {
        let norm = l2_norm(xs);
        if !norm_decodable(norm, p.levels) {
            first_bad.fetch_min(first, Ordering::Relaxed);
        }
        let head = copied(head, &norm.to_le_bytes());
        let levels = p.levels as f32;
        let enc = LevelEncoder {
            scale: if norm > 0.0 {
                (levels / norm).min(f32::MAX)
            } else {
                0.0
            },
            levels,
            seed,
            first,
        };
        (
            head,
            dispatch_bits!(p.code_bits(), encode_runs(&enc, xs, codes)),
        )
    })?;
    match first_bad.into_inner() {
        usize::MAX => Ok(crc),
        i => Err(CodecError::input(format!(
            "qsgd cannot code the bucket at index {i}: its L2 norm {:e} decodes past float32's range",
            l2_norm(&x[i..(i + p.bucket).min(x.len())])
        ))),
    }
}

/// Whether a bucket norm decodes within float32: finite, non-negative, and the largest level
/// `s * (norm / s)`, computed as the decoder computes it, finite too.
#[must_use]
pub fn norm_decodable(norm: f32, levels: u32) -> bool {
    let s = levels as f32;
    norm.is_finite() && norm >= 0.0 && (s * (norm / s)).is_finite()
}

/// Decodes a payload of `n` elements and adds `weight * value` into `out` (`out.len() == n`).
///
/// Rejects, before touching `out`, a wrong byte count, bad params and a non-finite or negative
/// norm. Codes above `2s` (only a forged payload has them) decode as `2s`, so every value stays
/// within `[-norm, norm]`.
pub fn qsgd_decode_add(
    bytes: &[u8],
    n: usize,
    p: &QsgdParams,
    weight: f32,
    out: &mut [f32],
) -> Result<()> {
    let layout = p.layout();
    layout.check_decode(p.problem(), "qsgd", bytes, n, out.len())?;
    for (i, head) in layout.heads(bytes, n).enumerate() {
        let norm = f32_at(head, 0);
        if !norm_decodable(norm, p.levels) {
            return Err(CodecError::frame(format!("bucket {i} has norm {norm}")));
        }
    }
    let s = p.levels as i32;
    layout.par_decode(bytes, out, |head, codes, o| {
        let dec = LevelDecoder {
            s,
            scale: weight * f32_at(head, 0) / p.levels as f32,
        };
        dispatch_bits!(p.code_bits(), decode_runs(&dec, codes, o));
    });
    Ok(())
}

/// `||x||_2`, accumulated in f64 so no finite input overflows.
fn l2_norm(x: &[f32]) -> f32 {
    let mut acc = [0f64; 8];
    let blocks = x.chunks_exact(8);
    let tail = blocks.remainder();
    for b in blocks {
        for (a, &v) in acc.iter_mut().zip(b) {
            *a += f64::from(v) * f64::from(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a += f64::from(v) * f64::from(v);
    }
    acc.iter().sum::<f64>().sqrt() as f32
}

/// Codes `s + sign * floor(s * |v| / norm + u)` of one bucket.
struct LevelEncoder {
    /// `s / norm`, 0 for an all-zero bucket.
    scale: f32,
    levels: f32,
    seed: u64,
    first: usize,
}

/// Uniforms drawn per stack buffer; even, so pairs of elements never straddle two buffers.
const UNIFORM_RUN: usize = 256;

// SAFETY: writes every code: `input` and `codes` are cut into the same runs, one code per element.
#[allow(unsafe_code)]
unsafe impl RunEncoder for LevelEncoder {
    fn encode_run<C: CodeSlot>(&self, offset: usize, input: &[f32], codes: &mut [C]) {
        let s = self.levels as i32;
        let mut u = [0f32; UNIFORM_RUN];
        for (k, (xs, cs)) in input
            .chunks(UNIFORM_RUN)
            .zip(codes.chunks_mut(UNIFORM_RUN))
            .enumerate()
        {
            let u = &mut u[..xs.len()];
            fill_uniforms(self.seed, self.first + offset + k * UNIFORM_RUN, u);
            for ((c, &v), &u) in cs.iter_mut().zip(xs).zip(u.iter()) {
                let t = v.abs() * self.scale;
                let t = if t < self.levels { t } else { self.levels };
                let level = stochastic_floor(t, u) as i32;
                let code = if v < 0.0 { s - level } else { s + level };
                *c = C::from_u32(code as u32);
            }
        }
    }
}

/// Adds `(code - s) * scale` with `scale = weight * norm / s`, codes clamped to `2s`.
struct LevelDecoder {
    s: i32,
    scale: f32,
}

impl RunDecoder for LevelDecoder {
    fn decode_run<C: Code>(&self, codes: &[C], out: &mut [f32]) {
        let top = 2 * self.s;
        for (o, &c) in out.iter_mut().zip(codes) {
            let c = c.to_i32();
            let c = if c < top { c } else { top };
            *o += (c - self.s) as f32 * self.scale;
        }
    }
}

/// `qsgd:S[:bucket=N]`: wire id 5; header `levels: u16, bucket: u32`.
pub static QSGD: Kind = Kind {
    id: 5,
    names: &["qsgd"],
    usage: "qsgd:S",
    example: "qsgd:4",
    parse: |args| {
        let levels = args.required_u32(0, "a number of levels", "qsgd levels")?;
        let bucket = args.option("bucket", DEFAULT_QSGD_BUCKET)?;
        Ok(Terminal::new(QsgdParams { levels, bucket }))
    },
    read: |r| {
        let levels = u32::from(r.u16("qsgd levels")?);
        let bucket = r.u32("qsgd bucket")? as usize;
        Ok((Terminal::new(QsgdParams { levels, bucket }), 0))
    },
};

impl Codec for QsgdParams {
    fn kind(&self) -> &'static Kind {
        &QSGD
    }

    fn validate(&self) -> Result<()> {
        if !(1..=MAX_LEVELS).contains(&self.levels) {
            return Err(CodecError::param(format!(
                "qsgd levels must be in 1..={MAX_LEVELS}, got {}",
                self.levels
            )));
        }
        check_chunk(self.bucket, "qsgd bucket")
    }

    fn fmt_spec(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "qsgd:{}", self.levels)?;
        if self.bucket != DEFAULT_QSGD_BUCKET {
            write!(f, ":bucket={}", self.bucket)?;
        }
        Ok(())
    }

    fn describe(&self) -> (&'static str, Vec<(&'static str, Param)>) {
        (
            "qsgd",
            vec![
                ("levels", Param::Int(self.levels.into())),
                ("bucket", Param::Int(self.bucket as u64)),
            ],
        )
    }

    fn write_params(&self, w: &mut Writer, _seed: u64) {
        w.u16(self.levels as u16);
        w.u32(self.bucket as u32);
    }

    fn payload_len(&self, m: usize) -> usize {
        qsgd_len(m, self)
    }

    fn encode(&self, values: &[f32], seed: u64, out: &mut [MaybeUninit<u8>]) -> Result<u32> {
        qsgd_encode_uninit(values, self, seed, out)
    }

    fn decode_add(&self, payload: &[u8], _seed: u64, weight: f32, out: &mut [f32]) -> Result<()> {
        qsgd_decode_add(payload, out.len(), self, weight, out)
    }

    /// A bucket's norm can exceed its largest element by `sqrt(bucket)`.
    fn growth(&self) -> f64 {
        (self.bucket as f64).sqrt()
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact decoded values are what some tests assert
mod tests {
    use super::*;
    use crate::kernels::bitpack::unpack;
    use crate::kernels::rng::SplitMix64;
    use proptest::prelude::*;

    fn params(levels: u32, bucket: usize) -> QsgdParams {
        QsgdParams { levels, bucket }
    }

    fn signal(n: usize, seed: u64) -> Vec<f32> {
        let mut g = SplitMix64::new(seed);
        (0..n)
            .map(|_| ((g.next_f64() - 0.5) * 6.0) as f32)
            .collect()
    }

    fn encode(x: &[f32], p: &QsgdParams, seed: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; qsgd_len(x.len(), p)];
        let crc = qsgd_encode(x, p, seed, &mut bytes).expect("encodes");
        assert_eq!(
            crc,
            crc32c::crc32c(&bytes),
            "qsgd_encode returns its output's crc32c"
        );
        bytes
    }

    fn decode(bytes: &[u8], n: usize, p: &QsgdParams) -> Vec<f32> {
        let mut out = vec![0f32; n];
        qsgd_decode_add(bytes, n, p, 1.0, &mut out).unwrap();
        out
    }

    fn norms(x: &[f32], bucket: usize) -> Vec<f32> {
        x.chunks(bucket)
            .map(|b| b.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt() as f32)
            .collect()
    }

    #[test]
    fn code_bits_fit_two_s_plus_one_codes() {
        for (levels, bits) in [
            (1, 2),
            (2, 3),
            (3, 3),
            (4, 4),
            (127, 8),
            (128, 9),
            (32_767, 16),
        ] {
            assert_eq!(params(levels, 8).code_bits(), bits, "s = {levels}");
        }
    }

    #[test]
    fn decoded_values_lie_on_the_level_grid_next_to_x() {
        let x = signal(1001, 1);
        for levels in [1, 2, 7, 127, 255, 32_767] {
            let p = params(levels, 64);
            let y = decode(&encode(&x, &p, 3), x.len(), &p);
            let norms = norms(&x, 64);
            for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
                let norm = norms[i / 64];
                let unit = norm / levels as f32;
                assert!(
                    (a - b).abs() <= unit + 1e-5 * norm,
                    "s {levels} element {i}: {a} -> {b}"
                );
                assert!(b == 0.0 || (a < 0.0) == (b < 0.0), "sign kept: {a} -> {b}");
                let grid = f64::from(b) / (f64::from(norm) / f64::from(levels));
                assert!(
                    (grid - grid.round()).abs() < 1e-4 + 5e-7 * grid.abs(),
                    "on the grid: {b} / {unit}"
                );
            }
        }
    }

    #[test]
    fn codes_stay_in_zero_to_two_s() {
        let x = signal(300, 2);
        let p = params(5, 16);
        let bytes = encode(&x, &p, 4);
        let mut codes = vec![0u16; x.len()];
        unpack(
            &bytes[4 * x.len().div_ceil(16)..],
            p.code_bits(),
            &mut codes,
        );
        assert!(codes.iter().all(|&c| c <= 10));
        assert!(codes.iter().any(|&c| c < 5) && codes.iter().any(|&c| c > 5));
    }

    #[test]
    fn zero_bucket_decodes_to_zero() {
        let mut x = vec![0f32; 16];
        x.extend(signal(9, 3));
        let p = params(4, 16);
        let y = decode(&encode(&x, &p, 1), x.len(), &p);
        assert!(y[..16].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn encoding_is_unbiased() {
        let x = signal(24, 5);
        let p = params(2, 8);
        let seeds = 1000u64;
        let mut sum = vec![0f64; x.len()];
        for seed in 0..seeds {
            for (s, v) in sum
                .iter_mut()
                .zip(decode(&encode(&x, &p, seed), x.len(), &p))
            {
                *s += f64::from(v);
            }
        }
        let norms = norms(&x, 8);
        for (i, (&xi, s)) in x.iter().zip(&sum).enumerate() {
            let unit = f64::from(norms[i / 8]) / 2.0;
            let t = f64::from(xi.abs()) / unit;
            let frac = t - t.floor();
            let sigma = unit * (frac * (1.0 - frac) / seeds as f64).sqrt();
            let mean = s / seeds as f64;
            assert!(
                (mean - f64::from(xi)).abs() <= 4.0 * sigma + 1e-5 * unit,
                "element {i}: mean {mean} x {xi}"
            );
        }
    }

    #[test]
    fn bytes_do_not_depend_on_thread_count() {
        let x = signal(70_001, 6);
        let p = params(15, 512);
        let many = encode(&x, &p, 9);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(many, pool.install(|| encode(&x, &p, 9)));
        assert_ne!(many, encode(&x, &p, 10));
    }

    #[test]
    fn decode_adds_with_weight() {
        let x = signal(40, 7);
        let p = params(3, 8);
        let bytes = encode(&x, &p, 1);
        let once = decode(&bytes, x.len(), &p);
        let mut acc = vec![-1.0f32; x.len()];
        qsgd_decode_add(&bytes, x.len(), &p, 0.5, &mut acc).unwrap();
        for (a, o) in acc.iter().zip(&once) {
            assert!((a - (-1.0 + 0.5 * o)).abs() <= 1e-5 * (1.0 + o.abs()));
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        assert!(params(1, 8).validate().is_ok());
        for bad in [params(0, 8), params(32_768, 8), params(4, 4), params(4, 20)] {
            assert!(
                matches!(bad.validate(), Err(CodecError::InvalidParam(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_input_gives_empty_payload() {
        let p = params(7, 64);
        assert_eq!(qsgd_len(0, &p), 0);
        assert!(encode(&[], &p, 1).is_empty());
        assert!(decode(&[], 0, &p).is_empty());
    }

    #[test]
    fn decoder_rejects_malformed_payloads() {
        let x = signal(20, 8);
        let p = params(4, 8);
        let bytes = encode(&x, &p, 0);
        let mut out = vec![0f32; x.len()];
        let frame_err = |r: Result<()>| matches!(r, Err(CodecError::Frame(_)));
        assert!(frame_err(qsgd_decode_add(
            &bytes[..bytes.len() - 1],
            x.len(),
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(qsgd_decode_add(
            &bytes,
            x.len() - 1,
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(qsgd_decode_add(
            &bytes,
            usize::MAX,
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(qsgd_decode_add(
            &bytes,
            x.len(),
            &params(0, 8),
            1.0,
            &mut out
        )));
        for (at, value) in [(0, f32::NAN), (4, f32::INFINITY), (8, -1.0)] {
            let mut bad = bytes.clone();
            bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
            assert!(
                frame_err(qsgd_decode_add(&bad, x.len(), &p, 1.0, &mut out)),
                "norm at {at} = {value}"
            );
        }
        assert!(
            out.iter().all(|&v| v == 0.0),
            "a rejected payload must not touch the output"
        );
    }

    #[test]
    fn forged_codes_stay_within_the_norm() {
        let p = params(3, 8);
        let mut bytes = vec![0xFFu8; qsgd_len(8, &p)];
        bytes[..4].copy_from_slice(&2.0f32.to_le_bytes());
        let y = decode(&bytes, 8, &p);
        assert!(y.iter().all(|&v| v == 2.0), "{y:?}");
    }

    #[test]
    fn decoder_survives_random_and_truncated_bytes() {
        let mut g = SplitMix64::new(11);
        for trial in 0..400 {
            let p = params(1 + g.below(300) as u32, 8 * (1 + g.below(4) as usize));
            let n = g.below(60) as usize;
            let len = if trial % 2 == 0 {
                qsgd_len(n, &p)
            } else {
                g.below(100) as usize
            };
            let bytes: Vec<u8> = (0..len).map(|_| g.below(256) as u8).collect();
            let mut out = vec![0f32; n];
            if qsgd_decode_add(&bytes, n, &p, 1.0, &mut out).is_ok() {
                assert_eq!(bytes.len(), qsgd_len(n, &p));
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip_within_one_level(
            x in prop::collection::vec(-1.0e3f32..1.0e3, 1..300),
            levels in 1u32..=32_767,
            bucket_blocks in 1usize..10,
            seed in any::<u64>(),
        ) {
            let p = params(levels, bucket_blocks * 8);
            let y = decode(&encode(&x, &p, seed), x.len(), &p);
            let norms = norms(&x, p.bucket);
            for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
                let norm = norms[i / p.bucket];
                prop_assert!((a - b).abs() <= norm / levels as f32 + 1e-5 * norm, "element {}: {} -> {}", i, a, b);
                prop_assert!(b.abs() <= norm * (1.0 + 1e-6));
            }
        }
    }
}
