//! What every encoder checks first: a non-empty, finite array whose shape holds its elements.

use rayon::prelude::*;

use crate::error::{CodecError, Result};

/// Elements checked per task when scanning input for NaN/Inf.
pub(crate) const SCAN_BLOCK: usize = 1 << 16;

/// Index of the first NaN/Inf, scanning in parallel blocks.
pub(crate) fn first_non_finite(x: &[f32]) -> Option<usize> {
    x.par_chunks(SCAN_BLOCK)
        .position_first(|block| !block.iter().fold(true, |ok, v| ok & v.is_finite()))
        .and_then(|b| {
            let start = b * SCAN_BLOCK;
            x[start..]
                .iter()
                .position(|v| !v.is_finite())
                .map(|i| start + i)
        })
}

/// Checks what every encoder needs: a non-empty, finite array whose shape matches its length.
pub fn check_input(x: &[f32], shape: &[u64]) -> Result<()> {
    check_shape(x, shape)?;
    check_finite(x)
}

/// Refuses an array holding a NaN/Inf, naming the first one.
pub(crate) fn check_finite(x: &[f32]) -> Result<()> {
    first_non_finite(x).map_or(Ok(()), |i| Err(CodecError::non_finite(i, x[i])))
}

/// Refuses an empty array, or a shape that does not hold exactly its elements.
pub(crate) fn check_shape(x: &[f32], shape: &[u64]) -> Result<()> {
    if x.is_empty() {
        return Err(CodecError::input("cannot encode an empty array"));
    }
    let product = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    if product != Some(x.len() as u64) {
        return Err(CodecError::input(format!(
            "shape {shape:?} does not hold {} elements",
            x.len()
        )));
    }
    if shape.len() > crate::wire::frame::MAX_NDIM {
        return Err(CodecError::input(format!(
            "{} dimensions exceed the limit of {}",
            shape.len(),
            crate::wire::frame::MAX_NDIM
        )));
    }
    Ok(())
}
