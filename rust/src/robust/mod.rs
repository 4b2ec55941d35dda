//! Byzantine-robust aggregation over the K updates of one round: the coordinate-wise kernels
//! (median, trimmed mean, Bulyan's closest-to-median mean), pairwise distances from one centered
//! K x K Gram matrix (Krum, Multi-Krum, Bulyan's selection, NNM), and the iterative estimators
//! (smoothed Weiszfeld for the geometric median, centered clipping, norm bounding).
//!
//! Updates arrive as one row-major K x d slice, a row per client. Every kernel works on column
//! blocks of all K rows (so one block of K x 64 floats sits in L1 while it is sorted or summed)
//! and spreads the blocks over rayon's pool.

pub mod coordinate;
pub mod distance;
pub mod network;
pub mod select;
mod simd;
pub mod weiszfeld;

use rayon::prelude::*;

use crate::error::{CodecError, Result};

pub use coordinate::{bulyan_coordinates, coordinate_median, trimmed_mean};
pub use distance::{mix_rows, pairwise_sq_dists, row_combination, sq_dists_to};
pub use select::{bulyan_select, krum_scores, krum_select};
pub use weiszfeld::{centered_clip, geometric_median, GeometricMedian};

/// K updates of d coordinates each, row-major, all finite: what every kernel here accepts.
#[derive(Clone, Copy, Debug)]
pub struct Updates<'a> {
    data: &'a [f32],
    k: usize,
    d: usize,
}

/// Floats scanned per task when the input is checked for NaN/Inf.
const SCAN_TASK: usize = 1 << 16;

impl<'a> Updates<'a> {
    /// Checks the shape and refuses NaN/Inf, naming the first offending client and coordinate
    /// (a Byzantine client can send them; the caller drops that client, no kernel guesses).
    pub fn new(data: &'a [f32], k: usize, d: usize) -> Result<Self> {
        if k == 0 || d == 0 {
            return Err(CodecError::input(format!(
                "robust aggregation needs at least one update of at least one coordinate, got {k} x {d}"
            )));
        }
        if k.checked_mul(d) != Some(data.len()) {
            return Err(CodecError::input(format!(
                "{} floats do not form {k} updates of {d} coordinates",
                data.len()
            )));
        }
        let bad = data
            .par_chunks(SCAN_TASK)
            .enumerate()
            .find_map_first(|(t, chunk)| {
                chunk
                    .iter()
                    .position(|v| !v.is_finite())
                    .map(|i| (t * SCAN_TASK + i, chunk[i]))
            });
        if let Some((flat, value)) = bad {
            return Err(CodecError::input(format!(
                "update {} holds a non-finite value ({value}) at coordinate {}",
                flat / d,
                flat % d
            )));
        }
        Ok(Self { data, k, d })
    }

    /// Number of updates (clients).
    #[must_use]
    pub fn k(&self) -> usize {
        self.k
    }

    /// Coordinates per update.
    #[must_use]
    pub fn d(&self) -> usize {
        self.d
    }

    /// Update `i`.
    #[must_use]
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

/// Checks per-client weights: one per update, finite, non-negative, summing to more than zero;
/// returns them normalised to sum to one.
pub fn normalized_weights(weights: &[f64], k: usize) -> Result<Vec<f64>> {
    if weights.len() != k {
        return Err(CodecError::param(format!(
            "{} weights for {k} updates",
            weights.len()
        )));
    }
    if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(CodecError::param(format!(
            "weights must be finite and >= 0, got {w}"
        )));
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(CodecError::param("weights sum to zero"));
    }
    Ok(weights.iter().map(|w| w / total).collect())
}

/// Checks that a vector has one value per coordinate, all finite.
pub(crate) fn check_point(z: &[f32], d: usize, what: &str) -> Result<()> {
    if z.len() != d {
        return Err(CodecError::input(format!(
            "{what} has {} coordinates, updates have {d}",
            z.len()
        )));
    }
    if let Some(i) = z.iter().position(|v| !v.is_finite()) {
        return Err(CodecError::non_finite(i, z[i]));
    }
    Ok(())
}
