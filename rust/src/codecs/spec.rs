//! Codec specs: the `topk:0.01+quant:8` strings users write, parsed once into typed stages.

use std::fmt;

use crate::codecs::eden::EdenParams;
use crate::codecs::qsgd::QsgdParams;
use crate::codecs::quantize::QuantParams;
use crate::codecs::sign::SignParams;
use crate::error::{CodecError, Result};

/// Default elements per quantization chunk: header overhead stays under 2 % even at 1 bit.
pub const DEFAULT_QUANT_CHUNK: usize = 4096;
/// Default QSGD bucket, as in the paper's experiments' order of magnitude.
pub const DEFAULT_QSGD_BUCKET: usize = 1024;
/// Default elements per sign-scale chunk.
pub const DEFAULT_SIGN_CHUNK: usize = 4096;

/// Float formats of the identity codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    /// Bytes per element on the wire.
    #[must_use]
    pub fn width(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

/// One step of a codec pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    Identity(Dtype),
    Quantize(QuantParams),
    Qsgd(QsgdParams),
    Eden(EdenParams),
    Sign(SignParams),
    TopK { fraction: f64, sampled: bool },
    RandK { fraction: f64 },
}

impl Stage {
    /// Sparsifiers pick coordinates and hand the values on; every other stage ends a pipeline.
    #[must_use]
    pub fn is_sparsifier(&self) -> bool {
        matches!(self, Stage::TopK { .. } | Stage::RandK { .. })
    }

    /// Validates parameters so kernels can rely on their preconditions.
    pub fn validate(&self) -> Result<()> {
        match self {
            Stage::Identity(_) => Ok(()),
            Stage::Quantize(p) => {
                check_bits(p.bits, 1, 16, "quant")?;
                check_chunk(p.chunk, "quant chunk")
            }
            Stage::Qsgd(p) => {
                if !(1..=32767).contains(&p.levels) {
                    return Err(CodecError::param(format!(
                        "qsgd levels must be in 1..=32767, got {}",
                        p.levels
                    )));
                }
                check_chunk(p.bucket, "qsgd bucket")
            }
            Stage::Eden(p) => {
                if matches!(p.bits, 1 | 2 | 4 | 8) {
                    Ok(())
                } else {
                    Err(CodecError::param(format!(
                        "eden bits must be 1, 2, 4 or 8, got {}",
                        p.bits
                    )))
                }
            }
            Stage::Sign(p) => check_chunk(p.chunk, "sign chunk"),
            Stage::TopK { fraction, .. } | Stage::RandK { fraction } => check_fraction(*fraction),
        }
    }
}

fn check_bits(bits: u32, lo: u32, hi: u32, what: &str) -> Result<()> {
    if (lo..=hi).contains(&bits) {
        Ok(())
    } else {
        Err(CodecError::param(format!(
            "{what} bits must be in {lo}..={hi}, got {bits}"
        )))
    }
}

fn check_chunk(chunk: usize, what: &str) -> Result<()> {
    if chunk >= 8 && chunk % 8 == 0 && chunk <= 1 << 24 {
        Ok(())
    } else {
        Err(CodecError::param(format!(
            "{what} must be a multiple of 8 in 8..=16777216, got {chunk}"
        )))
    }
}

fn check_fraction(fraction: f64) -> Result<()> {
    if fraction.is_finite() && fraction > 0.0 && fraction <= 1.0 {
        Ok(())
    } else {
        Err(CodecError::param(format!(
            "fraction must be in (0, 1], got {fraction}"
        )))
    }
}

/// A validated pipeline: zero or more sparsifiers, then exactly one terminal stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    stages: Vec<Stage>,
}

/// Most stages a pipeline (and so a frame) may hold.
pub const MAX_STAGES: usize = 8;

impl Spec {
    /// Builds a pipeline, appending raw float32 when it ends in a sparsifier.
    pub fn new(mut stages: Vec<Stage>) -> Result<Self> {
        if stages.is_empty() {
            return Err(CodecError::param("a codec needs at least one stage"));
        }
        if stages.last().is_some_and(Stage::is_sparsifier) {
            stages.push(Stage::Identity(Dtype::F32));
        }
        if stages.len() > MAX_STAGES {
            return Err(CodecError::param(format!(
                "at most {MAX_STAGES} stages, got {}",
                stages.len()
            )));
        }
        let last = stages.len() - 1;
        for (i, stage) in stages.iter().enumerate() {
            stage.validate()?;
            if i < last && !stage.is_sparsifier() {
                return Err(CodecError::param(format!(
                    "'{}' must be the last stage: only topk and randk can hand values on",
                    StageDisplay(stage)
                )));
            }
        }
        Ok(Self { stages })
    }

    /// Parses `a:b+c:d` spec strings (see DESIGN.md).
    pub fn parse(text: &str) -> Result<Self> {
        let stages = text
            .split('+')
            .map(|part| parse_stage(part.trim()))
            .collect::<Result<Vec<_>>>()?;
        Self::new(stages)
    }

    #[must_use]
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A trailing float32 after a sparsifier is implied, so the canonical form leaves it out.
        let n = self.stages.len();
        let shown = if n >= 2 && self.stages[n - 1] == Stage::Identity(Dtype::F32) {
            &self.stages[..n - 1]
        } else {
            &self.stages[..]
        };
        for (i, stage) in shown.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            write!(f, "{}", StageDisplay(stage))?;
        }
        Ok(())
    }
}

/// Canonical text of one stage: defaults are left out so `from_spec(str(c)) == c`.
struct StageDisplay<'a>(&'a Stage);

impl fmt::Display for StageDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Stage::Identity(Dtype::F32) => f.write_str("none"),
            Stage::Identity(Dtype::F16) => f.write_str("f16"),
            Stage::Identity(Dtype::Bf16) => f.write_str("bf16"),
            Stage::Quantize(p) => {
                write!(f, "quant:{}", p.bits)?;
                if p.stochastic {
                    f.write_str(":stochastic")?;
                }
                if p.chunk != DEFAULT_QUANT_CHUNK {
                    write!(f, ":chunk={}", p.chunk)?;
                }
                Ok(())
            }
            Stage::Qsgd(p) => {
                write!(f, "qsgd:{}", p.levels)?;
                if p.bucket != DEFAULT_QSGD_BUCKET {
                    write!(f, ":bucket={}", p.bucket)?;
                }
                Ok(())
            }
            Stage::Eden(p) => write!(f, "eden:{}", p.bits),
            Stage::Sign(p) => {
                f.write_str("sign")?;
                if p.chunk != DEFAULT_SIGN_CHUNK {
                    write!(f, ":chunk={}", p.chunk)?;
                }
                Ok(())
            }
            Stage::TopK { fraction, sampled } => {
                write!(f, "topk:{fraction}")?;
                if *sampled {
                    f.write_str(":sampled")?;
                }
                Ok(())
            }
            Stage::RandK { fraction } => write!(f, "randk:{fraction}"),
        }
    }
}

/// The words after a stage name: positional arguments, flags and `key=value` options.
struct Args<'a> {
    stage: &'a str,
    positional: Vec<&'a str>,
    options: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    fn split(stage: &'a str, words: &[&'a str]) -> Self {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        for word in words {
            match word.split_once('=') {
                Some((k, v)) => options.push((k.trim(), v.trim())),
                None => positional.push(word.trim()),
            }
        }
        Self {
            stage,
            positional,
            options,
        }
    }

    fn required(&self, index: usize, what: &str) -> Result<&'a str> {
        self.positional.get(index).copied().ok_or_else(|| {
            CodecError::param(format!(
                "'{}' needs {what}, e.g. {}",
                self.stage,
                example(self.stage)
            ))
        })
    }

    fn flag(&mut self, name: &str) -> bool {
        let before = self.positional.len();
        self.positional.retain(|w| *w != name);
        before != self.positional.len()
    }

    fn option(&mut self, name: &str, default: usize) -> Result<usize> {
        match self.options.iter().position(|(k, _)| *k == name) {
            Some(i) => {
                let (_, v) = self.options.remove(i);
                parse_int(v, &format!("{} {name}", self.stage))
            }
            None => Ok(default),
        }
    }

    fn finish(self, used: usize) -> Result<()> {
        if let Some(extra) = self.positional.get(used) {
            return Err(CodecError::param(format!(
                "unexpected argument '{extra}' for '{}'",
                self.stage
            )));
        }
        if let Some((k, _)) = self.options.first() {
            return Err(CodecError::param(format!(
                "unknown option '{k}' for '{}'",
                self.stage
            )));
        }
        Ok(())
    }
}

fn example(stage: &str) -> &'static str {
    match stage {
        "quant" => "quant:8",
        "qsgd" => "qsgd:4",
        "eden" => "eden:1",
        "topk" => "topk:0.01",
        "randk" => "randk:0.1",
        _ => "none",
    }
}

fn parse_int(text: &str, what: &str) -> Result<usize> {
    text.parse::<usize>()
        .map_err(|_| CodecError::param(format!("{what} must be a whole number, got '{text}'")))
}

fn parse_fraction(text: &str, stage: &str) -> Result<f64> {
    let fraction = text.parse::<f64>().map_err(|_| {
        CodecError::param(format!("{stage} fraction must be a number, got '{text}'"))
    })?;
    check_fraction(fraction)?;
    Ok(fraction)
}

fn parse_u32(text: &str, what: &str) -> Result<u32> {
    let value = parse_int(text, what)?;
    u32::try_from(value).map_err(|_| CodecError::param(format!("{what} is too large: {value}")))
}

fn parse_stage(part: &str) -> Result<Stage> {
    let mut words = part.split(':');
    let name = words.next().unwrap_or_default().trim().to_ascii_lowercase();
    let rest: Vec<&str> = words.collect();
    let mut args = Args::split(part.split(':').next().unwrap_or_default().trim(), &rest);
    let (stage, used) = match name.as_str() {
        "none" | "f32" | "float32" => (Stage::Identity(Dtype::F32), 0),
        "f16" | "float16" => (Stage::Identity(Dtype::F16), 0),
        "bf16" | "bfloat16" => (Stage::Identity(Dtype::Bf16), 0),
        "quant" => {
            let stochastic = args.flag("stochastic");
            let bits = parse_u32(args.required(0, "a bit width")?, "quant bits")?;
            let chunk = args.option("chunk", DEFAULT_QUANT_CHUNK)?;
            (
                Stage::Quantize(QuantParams {
                    bits,
                    stochastic,
                    chunk,
                }),
                1,
            )
        }
        "qsgd" => {
            let levels = parse_u32(args.required(0, "a number of levels")?, "qsgd levels")?;
            let bucket = args.option("bucket", DEFAULT_QSGD_BUCKET)?;
            (Stage::Qsgd(QsgdParams { levels, bucket }), 1)
        }
        "eden" => {
            let bits = parse_u32(args.required(0, "a bit width")?, "eden bits")?;
            (Stage::Eden(EdenParams { bits }), 1)
        }
        "sign" => {
            let chunk = args.option("chunk", DEFAULT_SIGN_CHUNK)?;
            (Stage::Sign(SignParams { chunk }), 0)
        }
        "topk" => {
            let sampled = args.flag("sampled");
            let exact = args.flag("exact");
            if sampled && exact {
                return Err(CodecError::param("topk is either exact or sampled, not both"));
            }
            let fraction = parse_fraction(args.required(0, "a fraction")?, "topk")?;
            (Stage::TopK { fraction, sampled }, 1)
        }
        "randk" => {
            let fraction = parse_fraction(args.required(0, "a fraction")?, "randk")?;
            (Stage::RandK { fraction }, 1)
        }
        "" => return Err(CodecError::param("empty stage in codec spec")),
        other => {
            return Err(CodecError::param(format!(
                "unknown codec '{other}': expected none, f16, bf16, quant:B, qsgd:S, topk:F, randk:F, eden:B or sign"
            )))
        }
    };
    args.finish(used)?;
    stage.validate()?;
    Ok(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_strings_round_trip() {
        for text in [
            "none",
            "f16",
            "bf16",
            "quant:8",
            "quant:4:stochastic",
            "quant:2:chunk=1024",
            "qsgd:4",
            "qsgd:8:bucket=512",
            "topk:0.01",
            "topk:0.1:sampled",
            "randk:0.25",
            "eden:1",
            "sign",
            "topk:0.01+quant:8",
            "randk:0.5+eden:2",
        ] {
            let spec = Spec::parse(text).unwrap();
            assert_eq!(spec.to_string(), text);
            assert_eq!(Spec::parse(&spec.to_string()).unwrap(), spec);
        }
    }

    #[test]
    fn trailing_sparsifier_gets_float32() {
        let spec = Spec::parse("topk:0.1").unwrap();
        assert_eq!(spec.stages().len(), 2);
        assert_eq!(spec.stages()[1], Stage::Identity(Dtype::F32));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (text, needle) in [
            ("quant:0", "1..=16"),
            ("quant:17", "1..=16"),
            ("topk:0", "(0, 1]"),
            ("topk:1.5", "(0, 1]"),
            ("topk:nan", "(0, 1]"),
            ("eden:3", "1, 2, 4 or 8"),
            ("zip", "unknown codec"),
            ("quant:8+topk:0.1", "last stage"),
            ("quant", "needs a bit width"),
            ("quant:8:chunk=7", "multiple of 8"),
            ("quant:8:foo=1", "unknown option"),
            ("sign:3", "unexpected argument"),
            ("", "empty stage"),
        ] {
            let err = Spec::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
