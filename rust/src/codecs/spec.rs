//! Codec specs: the `topk:0.01+quant:8` strings users write, parsed once into typed stages.

use std::fmt;

use crate::codecs::codec::Terminal;
use crate::codecs::identity::Identity;
use crate::codecs::registry;
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

/// One step of a codec pipeline: a sparsifier, or the terminal codec that writes the payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    Terminal(Terminal),
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
            Stage::Terminal(codec) => codec.validate(),
            Stage::TopK { fraction, .. } | Stage::RandK { fraction } => check_fraction(*fraction),
        }
    }
}

/// Refuses a bit width outside `lo..=hi`.
pub(crate) fn check_bits(bits: u32, lo: u32, hi: u32, what: &str) -> Result<()> {
    if (lo..=hi).contains(&bits) {
        Ok(())
    } else {
        Err(CodecError::param(format!(
            "{what} bits must be in {lo}..={hi}, got {bits}"
        )))
    }
}

/// Refuses a chunk that is not a multiple of 8 in `8..=2^24`.
pub(crate) fn check_chunk(chunk: usize, what: &str) -> Result<()> {
    if chunk >= 8 && chunk.is_multiple_of(8) && chunk <= 1 << 24 {
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
            stages.push(Stage::Terminal(Terminal::new(Identity(Dtype::F32))));
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
        let shown = if n >= 2 && matches!(&self.stages[n - 1], Stage::Terminal(t) if t.is_float32())
        {
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
            Stage::Terminal(codec) => write!(f, "{codec}"),
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

/// The words after a stage name: positional arguments, flags and `key=value` options, which a
/// codec's [`crate::codecs::codec::Kind::parse`] takes; whatever it leaves is refused.
pub struct Args<'a> {
    stage: &'a str,
    example: &'static str,
    positional: Vec<&'a str>,
    options: Vec<(&'a str, &'a str)>,
    used: usize,
}

impl<'a> Args<'a> {
    fn split(stage: &'a str, example: &'static str, words: &[&'a str]) -> Self {
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
            example,
            positional,
            options,
            used: 0,
        }
    }

    /// Positional argument `index` (flags removed first), or an error naming `what` is missing.
    pub fn required(&mut self, index: usize, what: &str) -> Result<&'a str> {
        self.used = self.used.max(index + 1);
        self.positional.get(index).copied().ok_or_else(|| {
            CodecError::param(format!(
                "'{}' needs {what}, e.g. {}",
                self.stage, self.example
            ))
        })
    }

    /// Positional argument `index` as a whole number that fits 32 bits (`name` for errors).
    pub fn required_u32(&mut self, index: usize, what: &str, name: &str) -> Result<u32> {
        parse_u32(self.required(index, what)?, name)
    }

    /// Whether the word `name` was given (it is removed from the positional arguments).
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.positional.len();
        self.positional.retain(|w| *w != name);
        before != self.positional.len()
    }

    /// The whole-number option `name=N`, or `default`.
    pub fn option(&mut self, name: &str, default: usize) -> Result<usize> {
        match self.options.iter().position(|(k, _)| *k == name) {
            Some(i) => {
                let (_, v) = self.options.remove(i);
                parse_int(v, &format!("{} {name}", self.stage))
            }
            None => Ok(default),
        }
    }

    fn finish(self) -> Result<()> {
        if let Some(extra) = self.positional.get(self.used) {
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
    let written = words.next().unwrap_or_default().trim();
    let name = written.to_ascii_lowercase();
    let rest: Vec<&str> = words.collect();
    let example = match name.as_str() {
        "topk" => "topk:0.01",
        "randk" => "randk:0.1",
        other => registry::by_name(other).map_or("none", |k| k.example),
    };
    let mut args = Args::split(written, example, &rest);
    let stage = match name.as_str() {
        "topk" => {
            let sampled = args.flag("sampled");
            let exact = args.flag("exact");
            if sampled && exact {
                return Err(CodecError::param(
                    "topk is either exact or sampled, not both",
                ));
            }
            let fraction = parse_fraction(args.required(0, "a fraction")?, "topk")?;
            Stage::TopK { fraction, sampled }
        }
        "randk" => {
            let fraction = parse_fraction(args.required(0, "a fraction")?, "randk")?;
            Stage::RandK { fraction }
        }
        "" => return Err(CodecError::param("empty stage in codec spec")),
        other => match registry::by_name(other) {
            Some(kind) => Stage::Terminal((kind.parse)(&mut args)?),
            None => {
                return Err(CodecError::param(format!(
                    "unknown codec '{other}': expected {}, topk:F or randk:F",
                    registry::usages()
                )))
            }
        },
    };
    args.finish()?;
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
        assert_eq!(
            spec.stages()[1],
            Stage::Terminal(Terminal::new(Identity(Dtype::F32)))
        );
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
