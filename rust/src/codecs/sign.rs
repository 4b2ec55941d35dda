//! Scaled sign (EF-signSGD, Karimireddy et al. 2019): one bit per element and a per-chunk scale.

use std::fmt;
use std::mem::MaybeUninit;

use crate::codecs::codec::{Codec, Kind, Param, Terminal};
use crate::codecs::spec::{check_chunk, DEFAULT_SIGN_CHUNK};
use crate::error::{CodecError, Result};
use crate::kernels::bitpack::{
    decode_runs, encode_runs, f32_at, ChunkedLayout, Code, CodeSlot, RunDecoder, RunEncoder,
};
use crate::kernels::uninit::{as_uninit, copied};
use crate::wire::frame::Writer;

/// Settings of the scaled-sign codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignParams {
    /// Elements per chunk sharing one scale; >= 8 and a multiple of 8.
    pub chunk: usize,
}

impl SignParams {
    /// Checks the range the kernels rely on.
    pub fn validate(&self) -> Result<()> {
        self.problem().map_or(Ok(()), |m| Err(CodecError::param(m)))
    }

    fn problem(self) -> Option<String> {
        (self.chunk < 8 || !self.chunk.is_multiple_of(8)).then(|| {
            format!(
                "sign chunk {} is not a multiple of 8 that is >= 8",
                self.chunk
            )
        })
    }

    fn layout(self) -> ChunkedLayout {
        ChunkedLayout {
            chunk: self.chunk,
            head: 4,
            bits: 1,
        }
    }
}

/// Payload bytes for `n` elements: for every chunk `scale: f32` (the chunk's mean `|x|`), then
/// one bit per element, set when `x < 0`; an element decodes to `-scale` or `+scale`.
#[must_use]
pub fn sign_len(n: usize, p: &SignParams) -> usize {
    p.layout().len(n)
}

/// Encodes `x` into `out` (`out.len() == sign_len(x.len(), p)`), returning the crc32c of `out`;
/// expects validated `p` and finite `x`.
pub fn sign_encode(x: &[f32], p: &SignParams, out: &mut [u8]) -> Result<u32> {
    // SAFETY: the encoder writes only initialized bytes (scales copied, bits packed).
    #[allow(unsafe_code)]
    let out = unsafe { as_uninit(out) };
    sign_encode_uninit(x, *p, out)
}

/// [`sign_encode`] into a buffer that may start uninitialized (a fresh frame).
pub(crate) fn sign_encode_uninit(
    x: &[f32],
    p: SignParams,
    out: &mut [MaybeUninit<u8>],
) -> Result<u32> {
    debug_assert!(p.problem().is_none(), "{p:?}");
    p.layout().par_encode(x, out, |_, xs, head, bits| {
        let head = copied(head, &mean_abs(xs).to_le_bytes());
        (head, encode_runs::<1>(&SignBits, xs, bits))
    })
}

/// Decodes a payload of `n` elements and adds `weight * value` into `out` (`out.len() == n`).
///
/// Rejects, before touching `out`, a wrong byte count, bad params and a non-finite or negative scale.
pub fn sign_decode_add(
    bytes: &[u8],
    n: usize,
    p: &SignParams,
    weight: f32,
    out: &mut [f32],
) -> Result<()> {
    let layout = p.layout();
    layout.check_decode(p.problem(), "sign", bytes, n, out.len())?;
    for (i, head) in layout.heads(bytes, n).enumerate() {
        let scale = f32_at(head, 0);
        if !scale.is_finite() || scale < 0.0 {
            return Err(CodecError::frame(format!("chunk {i} has scale {scale}")));
        }
    }
    layout.par_decode(bytes, out, |head, bits, o| {
        let value = weight * f32_at(head, 0);
        decode_runs::<1>(&SignDecoder { value }, bits, o);
    });
    Ok(())
}

/// Mean `|x|`, accumulated in f64 so no finite input overflows.
fn mean_abs(x: &[f32]) -> f32 {
    let mut acc = [0f64; 8];
    let blocks = x.chunks_exact(8);
    let tail = blocks.remainder();
    for b in blocks {
        for (a, &v) in acc.iter_mut().zip(b) {
            *a += f64::from(v.abs());
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a += f64::from(v.abs());
    }
    (acc.iter().sum::<f64>() / x.len() as f64) as f32
}

/// Bit 1 for a negative element.
struct SignBits;

// SAFETY: writes every code: one per input element, `codes.len() == input.len()`.
#[allow(unsafe_code)]
unsafe impl RunEncoder for SignBits {
    #[inline]
    fn encode_run<C: CodeSlot>(&self, _offset: usize, input: &[f32], codes: &mut [C]) {
        for (c, &v) in codes.iter_mut().zip(input) {
            *c = C::from_u32(u32::from(v < 0.0));
        }
    }
}

/// Adds `value` for bit 0 and `-value` for bit 1, the bit flipping the sign bit: no branch, and
/// no `2 * value` that could overflow for a scale near float32's largest.
struct SignDecoder {
    value: f32,
}

impl RunDecoder for SignDecoder {
    #[inline]
    fn decode_run<C: Code>(&self, codes: &[C], out: &mut [f32]) {
        for (o, &c) in out.iter_mut().zip(codes) {
            *o += f32::from_bits(self.value.to_bits() ^ ((c.to_i32() as u32) << 31));
        }
    }
}

/// `sign[:chunk=N]`: wire id 9; header `chunk: u32`.
pub static SIGN: Kind = Kind {
    id: 9,
    names: &["sign"],
    usage: "sign",
    example: "sign",
    parse: |args| {
        let chunk = args.option("chunk", DEFAULT_SIGN_CHUNK)?;
        Ok(Terminal::new(SignParams { chunk }))
    },
    read: |r| {
        let chunk = r.u32("sign chunk")? as usize;
        Ok((Terminal::new(SignParams { chunk }), 0))
    },
};

impl Codec for SignParams {
    fn kind(&self) -> &'static Kind {
        &SIGN
    }

    fn validate(&self) -> Result<()> {
        check_chunk(self.chunk, "sign chunk")
    }

    fn fmt_spec(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sign")?;
        if self.chunk != DEFAULT_SIGN_CHUNK {
            write!(f, ":chunk={}", self.chunk)?;
        }
        Ok(())
    }

    fn describe(&self) -> (&'static str, Vec<(&'static str, Param)>) {
        ("sign", vec![("chunk", Param::Int(self.chunk as u64))])
    }

    fn write_params(&self, w: &mut Writer, _seed: u64) {
        w.u32(self.chunk as u32);
    }

    fn payload_len(&self, m: usize) -> usize {
        sign_len(m, self)
    }

    fn encode(&self, values: &[f32], _seed: u64, out: &mut [MaybeUninit<u8>]) -> Result<u32> {
        sign_encode_uninit(values, *self, out)
    }

    fn decode_add(&self, payload: &[u8], _seed: u64, weight: f32, out: &mut [f32]) -> Result<()> {
        sign_decode_add(payload, out.len(), self, weight, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rng::SplitMix64;
    use proptest::prelude::*;

    fn signal(n: usize, seed: u64) -> Vec<f32> {
        let mut g = SplitMix64::new(seed);
        (0..n)
            .map(|_| ((g.next_f64() - 0.5) * 10.0) as f32)
            .collect()
    }

    fn encode(x: &[f32], p: SignParams) -> Vec<u8> {
        let mut bytes = vec![0u8; sign_len(x.len(), &p)];
        let crc = sign_encode(x, &p, &mut bytes).expect("encodes");
        assert_eq!(
            crc,
            crc32c::crc32c(&bytes),
            "sign_encode returns its output's crc32c"
        );
        bytes
    }

    fn decode(bytes: &[u8], n: usize, p: SignParams) -> Vec<f32> {
        let mut out = vec![0f32; n];
        sign_decode_add(bytes, n, &p, 1.0, &mut out).unwrap();
        out
    }

    fn mean_abs_reference(x: &[f32]) -> f32 {
        (x.iter().map(|v| f64::from(v.abs())).sum::<f64>() / x.len() as f64) as f32
    }

    #[test]
    fn decodes_to_signed_chunk_mean_magnitude() {
        let x = signal(1003, 1);
        let p = SignParams { chunk: 64 };
        let y = decode(&encode(&x, p), x.len(), p);
        for (c, (xc, yc)) in x.chunks(64).zip(y.chunks(64)).enumerate() {
            let scale = mean_abs_reference(xc);
            for (&a, &b) in xc.iter().zip(yc) {
                let want = if a < 0.0 { -scale } else { scale };
                assert!(
                    (b - want).abs() <= 1e-6 * scale,
                    "chunk {c}: {a} -> {b}, want {want}"
                );
            }
        }
    }

    #[test]
    fn payload_is_one_bit_per_element_plus_scales() {
        let p = SignParams { chunk: 32 };
        assert_eq!(sign_len(100, &p), 4 * 4 + 13);
        let bytes = encode(
            &[-1.0, 2.0, -3.0, 0.0, -0.0, 5.0, -6.0, 7.0, -8.0],
            SignParams { chunk: 8 },
        );
        assert_eq!(&bytes[8..], &[0b0100_0101, 0b1]);
    }

    #[test]
    fn decode_adds_with_weight() {
        let x = signal(50, 2);
        let p = SignParams { chunk: 16 };
        let bytes = encode(&x, p);
        let once = decode(&bytes, x.len(), p);
        let mut acc = vec![2.0f32; x.len()];
        sign_decode_add(&bytes, x.len(), &p, -3.0, &mut acc).unwrap();
        for (a, o) in acc.iter().zip(&once) {
            assert!((a - (2.0 - 3.0 * o)).abs() <= 1e-5 * (1.0 + o.abs()));
        }
    }

    #[test]
    fn bytes_do_not_depend_on_thread_count() {
        let x = signal(90_001, 3);
        let p = SignParams { chunk: 256 };
        let many = encode(&x, p);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(many, pool.install(|| encode(&x, p)));
    }

    #[test]
    fn validate_names_the_bad_field() {
        assert!(SignParams { chunk: 8 }.validate().is_ok());
        for chunk in [0, 4, 9] {
            assert!(matches!(
                SignParams { chunk }.validate(),
                Err(CodecError::InvalidParam(_))
            ));
        }
    }

    #[test]
    fn empty_input_gives_empty_payload() {
        let p = SignParams { chunk: 64 };
        assert_eq!(sign_len(0, &p), 0);
        assert!(encode(&[], p).is_empty());
        assert!(decode(&[], 0, p).is_empty());
    }

    #[test]
    fn decoder_rejects_malformed_payloads() {
        let x = signal(20, 4);
        let p = SignParams { chunk: 8 };
        let bytes = encode(&x, p);
        let mut out = vec![0f32; x.len()];
        let frame_err = |r: Result<()>| matches!(r, Err(CodecError::Frame(_)));
        assert!(frame_err(sign_decode_add(
            &bytes[..bytes.len() - 1],
            x.len(),
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(sign_decode_add(
            &bytes,
            x.len() + 1,
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(sign_decode_add(
            &bytes,
            usize::MAX,
            &p,
            1.0,
            &mut out
        )));
        assert!(frame_err(sign_decode_add(
            &bytes,
            x.len(),
            &SignParams { chunk: 3 },
            1.0,
            &mut out
        )));
        for (at, value) in [(0, f32::NAN), (4, f32::NEG_INFINITY), (8, -0.5)] {
            let mut bad = bytes.clone();
            bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
            assert!(
                frame_err(sign_decode_add(&bad, x.len(), &p, 1.0, &mut out)),
                "scale at {at} = {value}"
            );
        }
        assert!(
            out.iter().all(|&v| v == 0.0),
            "a rejected payload must not touch the output"
        );
    }

    #[test]
    fn decoder_survives_random_and_truncated_bytes() {
        let mut g = SplitMix64::new(12);
        for trial in 0..400 {
            let p = SignParams {
                chunk: 8 * (1 + g.below(4) as usize),
            };
            let n = g.below(80) as usize;
            let len = if trial % 2 == 0 {
                sign_len(n, &p)
            } else {
                g.below(100) as usize
            };
            let bytes: Vec<u8> = (0..len).map(|_| g.below(256) as u8).collect();
            let mut out = vec![0f32; n];
            if sign_decode_add(&bytes, n, &p, 1.0, &mut out).is_ok() {
                assert_eq!(bytes.len(), sign_len(n, &p));
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip_keeps_signs_and_chunk_scale(
            x in prop::collection::vec(-1.0e3f32..1.0e3, 1..300),
            chunk_blocks in 1usize..10,
        ) {
            let p = SignParams { chunk: chunk_blocks * 8 };
            let y = decode(&encode(&x, p), x.len(), p);
            for (xc, yc) in x.chunks(p.chunk).zip(y.chunks(p.chunk)) {
                let scale = mean_abs_reference(xc);
                for (&a, &b) in xc.iter().zip(yc) {
                    prop_assert!((b.abs() - scale).abs() <= 1e-6 * scale);
                    prop_assert_eq!(b < 0.0, a < 0.0);
                }
            }
        }
    }
}
