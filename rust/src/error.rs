//! The one error type of the crate; the Python layer maps each variant in one place.

use thiserror::Error;

/// Everything that can go wrong in fedcodec, from bad parameters to hostile frames.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// A codec parameter or spec string is out of range or malformed.
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// The input array cannot be encoded (empty, NaN/Inf, wrong length).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A frame is structurally wrong: bad magic, truncated, inconsistent lengths, too large.
    #[error("malformed frame: {0}")]
    Frame(String),
    /// A frame's bytes do not match its crc32c.
    #[error("checksum mismatch: frame says {expected:#010x}, bytes give {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    /// A buffer could not be allocated (Python sees `MemoryError`).
    #[error("out of memory: {0}")]
    Alloc(String),
}

impl CodecError {
    pub(crate) fn param(msg: impl Into<String>) -> Self {
        Self::InvalidParam(msg.into())
    }

    pub(crate) fn input(msg: impl Into<String>) -> Self {
        Self::InvalidInput(msg.into())
    }

    pub(crate) fn frame(msg: impl Into<String>) -> Self {
        Self::Frame(msg.into())
    }

    /// The refusal of a buffer of `len` items of `what` that the allocator could not provide.
    pub(crate) fn alloc(len: usize, what: &str) -> Self {
        Self::Alloc(format!("cannot allocate {len} {what}"))
    }

    /// The refusal of an input whose first NaN/Inf is `value` at flat `index`, worded alike by
    /// the up-front scan and by kernels that spot it in their own pass.
    pub(crate) fn non_finite(index: usize, value: f32) -> Self {
        Self::input(format!(
            "input holds a non-finite value ({value}) at flat index {index}"
        ))
    }
}

/// A vector of `len` copies of `value`, or [`CodecError::Alloc`] where the allocator refuses:
/// sizes that come from frames or callers never abort the process.
pub(crate) fn try_filled<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| CodecError::alloc(len, what))?;
    v.resize(len, value);
    Ok(v)
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, CodecError>;
