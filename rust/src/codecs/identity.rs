//! The identity codec: raw float32, float16 or bfloat16, little-endian, `m × width` bytes.

use std::fmt;
use std::mem::MaybeUninit;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::codecs::codec::{Codec, Kind, Param, Terminal};
use crate::codecs::input::SCAN_BLOCK;
use crate::codecs::spec::Dtype;
use crate::error::{CodecError, Result};
use crate::kernels::uninit;
use crate::wire::frame::Writer;

/// Raw float32 (`none`): wire id 1, no header fields.
pub static FLOAT32: Kind = Kind {
    id: 1,
    names: &["none", "f32", "float32"],
    usage: "none",
    example: "none",
    parse: |_| Ok(Terminal::new(Identity(Dtype::F32))),
    read: |_| Ok((Terminal::new(Identity(Dtype::F32)), 0)),
};

/// IEEE half precision (`f16`): wire id 2, no header fields.
pub static FLOAT16: Kind = Kind {
    id: 2,
    names: &["f16", "float16"],
    usage: "f16",
    example: "f16",
    parse: |_| Ok(Terminal::new(Identity(Dtype::F16))),
    read: |_| Ok((Terminal::new(Identity(Dtype::F16)), 0)),
};

/// bfloat16 (`bf16`): wire id 3, no header fields.
pub static BFLOAT16: Kind = Kind {
    id: 3,
    names: &["bf16", "bfloat16"],
    usage: "bf16",
    example: "bf16",
    parse: |_| Ok(Terminal::new(Identity(Dtype::Bf16))),
    read: |_| Ok((Terminal::new(Identity(Dtype::Bf16)), 0)),
};

/// The identity codec of one float format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity(pub Dtype);

impl Codec for Identity {
    fn kind(&self) -> &'static Kind {
        match self.0 {
            Dtype::F32 => &FLOAT32,
            Dtype::F16 => &FLOAT16,
            Dtype::Bf16 => &BFLOAT16,
        }
    }

    fn validate(&self) -> Result<()> {
        Ok(())
    }

    fn fmt_spec(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().usage)
    }

    fn describe(&self) -> (&'static str, Vec<(&'static str, Param)>) {
        let dtype = match self.0 {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::Bf16 => "bfloat16",
        };
        ("identity", vec![("dtype", Param::Text(dtype))])
    }

    fn write_params(&self, _w: &mut Writer, _seed: u64) {}

    fn payload_len(&self, m: usize) -> usize {
        m.saturating_mul(self.0.width())
    }

    fn encode(&self, values: &[f32], _seed: u64, out: &mut [MaybeUninit<u8>]) -> Result<u32> {
        let out = uninit::zeroed(out);
        encode_identity(self.0, values, out)?;
        Ok(crate::wire::checksum::crc32c(out))
    }

    fn decode_add(&self, payload: &[u8], _seed: u64, weight: f32, out: &mut [f32]) -> Result<()> {
        decode_identity(self.0, payload, weight, out, false)
    }

    /// Raw floats are copied, not added to zero, so `-0.0` stays `-0.0`.
    fn decode_into(&self, payload: &[u8], _seed: u64, out: &mut [f32]) -> Result<()> {
        decode_identity(self.0, payload, 1.0, out, true)
    }
}

/// Writes `values` as little-endian float32, float16 or bfloat16; float16 refuses values past its
/// range, bfloat16 saturates the few float32 values that round past its largest (within 0.4 % of
/// float32's largest) to `±bf16::MAX` rather than writing an Inf the decoder would refuse.
fn encode_identity(dtype: Dtype, values: &[f32], out: &mut [u8]) -> Result<()> {
    if dtype == Dtype::F32 {
        out.par_chunks_mut(4 * SCAN_BLOCK)
            .zip(values.par_chunks(SCAN_BLOCK))
            .for_each(|(o, v)| {
                for (dst, x) in o.chunks_exact_mut(4).zip(v) {
                    dst.copy_from_slice(&x.to_le_bytes());
                }
            });
        return Ok(());
    }
    if dtype == Dtype::F16 {
        if let Some(i) = values.iter().position(|v| v.abs() > f32::from(f16::MAX)) {
            return Err(CodecError::input(format!(
                "value {} at index {i} is outside float16's range (±65504); use bf16",
                values[i]
            )));
        }
    }
    let half = dtype == Dtype::F16;
    out.par_chunks_mut(2 * SCAN_BLOCK)
        .zip(values.par_chunks(SCAN_BLOCK))
        .for_each(|(o, v)| {
            for (dst, x) in o.chunks_exact_mut(2).zip(v) {
                let bits = if half {
                    f16::from_f32(*x).to_bits()
                } else {
                    let b = bf16::from_f32(*x);
                    if b.is_infinite() {
                        bf16::MAX.to_bits() | (b.to_bits() & 0x8000)
                    } else {
                        b.to_bits()
                    }
                };
                dst.copy_from_slice(&bits.to_le_bytes());
            }
        });
    Ok(())
}

/// Adds (or, with `copy`, writes) `weight` times the raw floats of `bytes` into `out`; refuses
/// a payload holding NaN or Inf.
fn decode_identity(
    dtype: Dtype,
    bytes: &[u8],
    weight: f32,
    out: &mut [f32],
    copy: bool,
) -> Result<()> {
    let width = dtype.width();
    let all_finite = out
        .par_chunks_mut(SCAN_BLOCK)
        .zip(bytes.par_chunks(width * SCAN_BLOCK))
        .map(|(o, b)| {
            let mut ok = true;
            for (dst, src) in o.iter_mut().zip(b.chunks_exact(width)) {
                let v = match dtype {
                    Dtype::F32 => f32::from_le_bytes([src[0], src[1], src[2], src[3]]),
                    Dtype::F16 => f16::from_bits(u16::from_le_bytes([src[0], src[1]])).to_f32(),
                    Dtype::Bf16 => bf16::from_bits(u16::from_le_bytes([src[0], src[1]])).to_f32(),
                };
                ok &= v.is_finite();
                *dst = if copy { weight * v } else { *dst + weight * v };
            }
            ok
        })
        .reduce(|| true, |a, b| a & b);
    if all_finite {
        Ok(())
    } else {
        Err(CodecError::frame("payload holds NaN or Inf values"))
    }
}
