//! The stage registry: each stage's wire id, its header fields (written and read back with every
//! count checked), and the payload size a terminal stage writes. A new terminal codec adds its id,
//! its header fields here and its kernels in `pipeline::{encode_terminal, decode_terminal_add}`.

use crate::codecs::eden::{eden_len, EdenParams};
use crate::codecs::qsgd::{qsgd_len, QsgdParams};
use crate::codecs::quantize::{quantize_len, QuantParams};
use crate::codecs::sign::{sign_len, SignParams};
use crate::codecs::spec::{Dtype, Stage};
use crate::error::{CodecError, Result};
use crate::wire::frame::{Reader, Writer};

/// Wire ids of the stages (the frame's `codec id` byte is the first stage's).
pub(crate) mod id {
    pub const F32: u8 = 1;
    pub const F16: u8 = 2;
    pub const BF16: u8 = 3;
    pub const QUANT: u8 = 4;
    pub const QSGD: u8 = 5;
    pub const TOPK: u8 = 6;
    pub const RANDK: u8 = 7;
    pub const EDEN: u8 = 8;
    pub const SIGN: u8 = 9;
}

/// A stage as it travels: its parameters plus what the decoder must know (output count, seed).
#[derive(Debug, Clone, PartialEq)]
pub struct WireStage {
    pub stage: Stage,
    /// Elements this stage hands to the next one (sparsifiers) or encodes (terminal).
    pub count: u64,
    pub seed: u64,
}

/// Number of coordinates a top-k of `fraction` keeps out of `m`: at least one (of a non-empty input), at most all.
#[must_use]
pub fn topk_count(fraction: f64, m: usize) -> usize {
    ((fraction * m as f64).round() as usize).clamp(m.min(1), m)
}

/// Largest count of a seeded random-k that keeps each of `m` elements with probability `f`
/// that a decoder believes: the mean plus eight standard deviations plus 16 (a binomial tail
/// far below 2^-40), so an honest frame always passes and a forged count cannot claim more.
fn randk_count_plausible(count: u64, m: u64, f: f64) -> bool {
    let mean = f * m as f64;
    let slack = 8.0 * (mean * (1.0 - f)).max(0.0).sqrt() + 16.0;
    (count as f64 - mean).abs() <= slack
}

pub(crate) fn stage_id(stage: &Stage) -> u8 {
    match stage {
        Stage::Identity(Dtype::F32) => id::F32,
        Stage::Identity(Dtype::F16) => id::F16,
        Stage::Identity(Dtype::Bf16) => id::BF16,
        Stage::Quantize(_) => id::QUANT,
        Stage::Qsgd(_) => id::QSGD,
        Stage::TopK { .. } => id::TOPK,
        Stage::RandK { .. } => id::RANDK,
        Stage::Eden(_) => id::EDEN,
        Stage::Sign(_) => id::SIGN,
    }
}

pub(crate) fn write_stage(w: &mut Writer, ws: &WireStage) {
    w.u8(stage_id(&ws.stage));
    match &ws.stage {
        Stage::Identity(_) => {}
        Stage::Quantize(p) => {
            w.u8(p.bits as u8);
            w.u8(u8::from(p.stochastic));
            w.u32(p.chunk as u32);
        }
        Stage::Qsgd(p) => {
            w.u16(p.levels as u16);
            w.u32(p.bucket as u32);
        }
        Stage::TopK { fraction, sampled } => {
            w.u8(u8::from(*sampled));
            w.f64(*fraction);
            w.u64(ws.count);
        }
        Stage::RandK { fraction } => {
            w.f64(*fraction);
            w.u64(ws.seed);
            w.u64(ws.count);
        }
        Stage::Eden(p) => {
            w.u8(p.bits as u8);
            w.u64(ws.seed);
        }
        Stage::Sign(p) => w.u32(p.chunk as u32),
    }
}

pub(crate) fn read_stage(r: &mut Reader<'_>, input_count: u64) -> Result<WireStage> {
    let code = r.u8("stage id")?;
    let terminal = |stage: Stage| WireStage {
        stage,
        count: input_count,
        seed: 0,
    };
    let ws = match code {
        id::F32 => terminal(Stage::Identity(Dtype::F32)),
        id::F16 => terminal(Stage::Identity(Dtype::F16)),
        id::BF16 => terminal(Stage::Identity(Dtype::Bf16)),
        id::QUANT => {
            let bits = u32::from(r.u8("quant bits")?);
            let stochastic = match r.u8("quant stochastic flag")? {
                0 => false,
                1 => true,
                other => {
                    return Err(CodecError::frame(format!(
                        "quant stochastic flag is {other}, not 0 or 1"
                    )))
                }
            };
            let chunk = r.u32("quant chunk")? as usize;
            terminal(Stage::Quantize(QuantParams {
                bits,
                stochastic,
                chunk,
            }))
        }
        id::QSGD => {
            let levels = u32::from(r.u16("qsgd levels")?);
            let bucket = r.u32("qsgd bucket")? as usize;
            terminal(Stage::Qsgd(QsgdParams { levels, bucket }))
        }
        id::EDEN => {
            let bits = u32::from(r.u8("eden bits")?);
            let seed = r.u64("eden seed")?;
            WireStage {
                stage: Stage::Eden(EdenParams { bits }),
                count: input_count,
                seed,
            }
        }
        id::SIGN => {
            let chunk = r.u32("sign chunk")? as usize;
            terminal(Stage::Sign(SignParams { chunk }))
        }
        id::TOPK => {
            let sampled = match r.u8("topk sampled flag")? {
                0 => false,
                1 => true,
                other => {
                    return Err(CodecError::frame(format!(
                        "topk sampled flag is {other}, not 0 or 1"
                    )))
                }
            };
            let fraction = r.f64("topk fraction")?;
            let count = r.u64("topk count")?;
            let most = usize::try_from(input_count)
                .map_or(u64::MAX, |m| topk_count(fraction.clamp(0.0, 1.0), m) as u64);
            if (count == 0 && input_count > 0) || count > most {
                return Err(CodecError::frame(format!(
                    "topk keeps {count} of {input_count} elements"
                )));
            }
            WireStage {
                stage: Stage::TopK { fraction, sampled },
                count,
                seed: 0,
            }
        }
        id::RANDK => {
            let fraction = r.f64("randk fraction")?;
            let seed = r.u64("randk seed")?;
            let count = r.u64("randk count")?;
            if count > input_count || !randk_count_plausible(count, input_count, fraction) {
                return Err(CodecError::frame(format!(
                    "randk keeps {count} of {input_count} elements, implausible for fraction {fraction}"
                )));
            }
            WireStage {
                stage: Stage::RandK { fraction },
                count,
                seed,
            }
        }
        other => return Err(CodecError::frame(format!("unknown stage id {other}"))),
    };
    ws.stage
        .validate()
        .map_err(|e| CodecError::frame(format!("stage parameters out of range: {e}")))?;
    Ok(ws)
}

/// Exact payload bytes a terminal stage writes for `m` values.
pub(crate) fn payload_len(stage: &Stage, m: usize) -> Result<usize> {
    if m == 0 {
        return Ok(0);
    }
    let len = match stage {
        Stage::Identity(dtype) => m
            .checked_mul(dtype.width())
            .ok_or_else(|| CodecError::frame("payload size overflows"))?,
        Stage::Quantize(p) => quantize_len(m, p),
        Stage::Qsgd(p) => qsgd_len(m, p),
        Stage::Eden(p) => eden_len(m, p),
        Stage::Sign(p) => sign_len(m, p),
        Stage::TopK { .. } | Stage::RandK { .. } => {
            return Err(CodecError::frame("a sparsifier cannot end a pipeline"))
        }
    };
    Ok(len)
}
