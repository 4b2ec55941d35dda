//! The terminal-codec interface: everything the spec parser, the frame writer and reader, the
//! decoder and the Python bindings need from a codec that turns values into a payload. A codec
//! implements [`Codec`], declares its [`Kind`] (wire id, spec names, constructors) beside it, and
//! takes one line in [`crate::codecs::registry`].

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::Arc;

use rayon::prelude::*;

use crate::codecs::spec::Args;
use crate::error::Result;
use crate::wire::frame::{Reader, Writer};

/// One parameter of a codec as Python sees it (`Codec.stages()` dicts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param {
    Int(u64),
    Float(f64),
    Bool(bool),
    Text(&'static str),
}

/// A terminal codec: the last stage of every pipeline, which writes the frame's value payload.
///
/// Parameters are validated once ([`Codec::validate`], called by the spec parser and the frame
/// reader), so the kernels may rely on them. Decoders must bound their work by the payload they
/// are handed: the frame reader has already checked that it is exactly [`Codec::payload_len`]
/// bytes for `out.len()` values, and that `out.len()` is within the frame's element budget.
pub trait Codec: fmt::Debug + Send + Sync + 'static {
    /// Wire id, spec names and constructors.
    fn kind(&self) -> &'static Kind;

    /// Refuses parameters the kernels cannot handle (a bad spec, or a forged frame header).
    fn validate(&self) -> Result<()>;

    /// The canonical spec text, defaults left out, so that parsing it gives this codec back.
    fn fmt_spec(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;

    /// Name and parameters, for building the Python codec objects.
    fn describe(&self) -> (&'static str, Vec<(&'static str, Param)>);

    /// Writes the stage's header fields after its id; `seed` is the stage's seed (written only
    /// by codecs whose decoder needs it).
    fn write_params(&self, w: &mut Writer, seed: u64);

    /// Exact payload bytes for `m` values (saturating, so a hostile `m` cannot overflow).
    fn payload_len(&self, m: usize) -> usize;

    /// Writes the payload of `values` into `out` (exactly `payload_len(values.len())` bytes,
    /// possibly uninitialized, every byte written) and returns its crc32c.
    fn encode(&self, values: &[f32], seed: u64, out: &mut [MaybeUninit<u8>]) -> Result<u32>;

    /// Adds `weight` times the decoded payload into `out` (`out.len()` values); refuses a payload
    /// that would decode to a non-finite value before touching `out`.
    fn decode_add(&self, payload: &[u8], seed: u64, weight: f32, out: &mut [f32]) -> Result<()>;

    /// Writes the decoded payload into `out`, whatever it held. The default zeroes `out` and adds;
    /// a codec that can write each value once overrides it (decode is then one pass).
    fn decode_into(&self, payload: &[u8], seed: u64, out: &mut [f32]) -> Result<()> {
        fill_zeros(out);
        self.decode_add(payload, seed, 1.0, out)
    }

    /// An upper bound on every `|value|` the payload decodes to (weight 1), read from its headers
    /// without decoding, when the codec has a cheap one: the accumulator then adds the frame
    /// straight into its sum, knowing no element can overflow. `None` (the default) means "decode
    /// into a scratch buffer first".
    fn decoded_bound(&self, _payload: &[u8], _m: usize) -> Option<f64> {
        None
    }

    /// Whether `encode` itself refuses NaN/Inf input with the usual error (so a single-stage
    /// pipeline of this codec can skip the separate scan).
    fn checks_finite(&self) -> bool {
        false
    }

    /// How far a decoded value's magnitude can exceed the largest input magnitude (random-k's
    /// rescaling is checked against float32's range with it).
    fn growth(&self) -> f64 {
        1.01
    }
}

/// Zeroes `out` on all cores (a decode that adds into it, or a refused one, starts from there).
pub(crate) fn fill_zeros(out: &mut [f32]) {
    out.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
}

/// What the registry knows of a codec before there is one: its wire id, the names a spec may
/// use for it (the first is canonical), a usage hint, and how to build one from spec arguments
/// or from a frame's stage header.
#[derive(Debug)]
pub struct Kind {
    pub id: u8,
    pub names: &'static [&'static str],
    /// How the spec is written, for error messages: `quant:B`.
    pub usage: &'static str,
    /// A valid spec, for error messages: `quant:8`.
    pub example: &'static str,
    /// Builds the codec from the words after its name (validated afterwards).
    pub parse: fn(&mut Args<'_>) -> Result<Terminal>,
    /// Reads the stage header fields after the id: the codec and the stage seed it carries (0 if none).
    pub read: fn(&mut Reader<'_>) -> Result<(Terminal, u64)>,
}

/// A shared, immutable terminal codec.
#[derive(Clone)]
pub struct Terminal(Arc<dyn Codec>);

impl Terminal {
    pub fn new(codec: impl Codec) -> Self {
        Self(Arc::new(codec))
    }

    /// Whether this is raw float32, the terminal implied after a trailing sparsifier.
    #[must_use]
    pub fn is_float32(&self) -> bool {
        self.kind().id == crate::codecs::identity::FLOAT32.id
    }
}

impl std::ops::Deref for Terminal {
    type Target = dyn Codec;
    fn deref(&self) -> &dyn Codec {
        &*self.0
    }
}

impl fmt::Display for Terminal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_spec(f)
    }
}

impl fmt::Debug for Terminal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Terminal({self})")
    }
}

/// Two codecs are equal when they write the same stage header: same id, same canonical parameters.
impl PartialEq for Terminal {
    fn eq(&self, other: &Self) -> bool {
        self.kind().id == other.kind().id && self.to_string() == other.to_string()
    }
}
