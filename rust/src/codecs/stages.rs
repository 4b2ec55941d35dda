//! Stages on the wire: each stage's id and header fields, written and read back with every count
//! checked, and the payload size a terminal stage writes. The sparsifiers' fields are here; a
//! terminal codec writes and reads its own ([`crate::codecs::codec::Codec`], found through
//! [`crate::codecs::registry`]).

use crate::codecs::registry;
use crate::codecs::spec::Stage;
use crate::error::{CodecError, Result};
use crate::wire::frame::{Reader, Writer};

/// Wire ids of the sparsifiers (the frame's `codec id` byte is the first stage's; terminal
/// codecs' ids are in their [`crate::codecs::codec::Kind`]).
pub(crate) mod id {
    pub const TOPK: u8 = 6;
    pub const RANDK: u8 = 7;
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
        Stage::Terminal(codec) => codec.kind().id,
        Stage::TopK { .. } => id::TOPK,
        Stage::RandK { .. } => id::RANDK,
    }
}

pub(crate) fn write_stage(w: &mut Writer, ws: &WireStage) {
    w.u8(stage_id(&ws.stage));
    match &ws.stage {
        Stage::Terminal(codec) => codec.write_params(w, ws.seed),
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
    }
}

pub(crate) fn read_stage(r: &mut Reader<'_>, input_count: u64) -> Result<WireStage> {
    let code = r.u8("stage id")?;
    let ws = match code {
        id::TOPK => {
            let sampled = r.flag("topk sampled flag")?;
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
        other => match registry::by_id(other) {
            Some(kind) => {
                let (codec, seed) = (kind.read)(r)?;
                WireStage {
                    stage: Stage::Terminal(codec),
                    count: input_count,
                    seed,
                }
            }
            None => return Err(CodecError::frame(format!("unknown stage id {other}"))),
        },
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
        Stage::Terminal(codec) => codec.payload_len(m),
        Stage::TopK { .. } | Stage::RandK { .. } => {
            return Err(CodecError::frame("a sparsifier cannot end a pipeline"))
        }
    };
    Ok(len)
}
