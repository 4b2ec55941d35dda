//! Server-side aggregation: frames are decoded straight into one running float32 sum.

use rayon::prelude::*;

use crate::codecs::pipeline::ParsedFrame;
use crate::error::{CodecError, Result};
use crate::wire::frame::DEFAULT_MAX_ELEMENTS;

/// Weighted running sum of decoded updates; memory stays at about one model, however many frames arrive.
#[derive(Debug, Clone)]
pub struct Accumulator {
    sum: Vec<f32>,
    /// Dense frames decode here first, so a frame that fails half-way leaves `sum` untouched.
    scratch: Vec<f32>,
    total_weight: f64,
    count: usize,
}

impl Accumulator {
    pub fn new(n: usize) -> Result<Self> {
        if n == 0 || n as u64 > DEFAULT_MAX_ELEMENTS {
            return Err(CodecError::param(format!(
                "accumulator size must be in 1..={DEFAULT_MAX_ELEMENTS}, got {n}"
            )));
        }
        Ok(Self {
            sum: vec![0.0; n],
            scratch: Vec::new(),
            total_weight: 0.0,
            count: 0,
        })
    }

    fn check_weight(weight: f32) -> Result<()> {
        if weight.is_finite() {
            Ok(())
        } else {
            Err(CodecError::param(format!(
                "weight must be finite, got {weight}"
            )))
        }
    }

    /// Decodes `frame` and adds `weight` times it; on any error the sum is unchanged.
    pub fn add(&mut self, frame: &[u8], weight: f32) -> Result<()> {
        Self::check_weight(weight)?;
        let parsed = ParsedFrame::parse(frame, self.sum.len() as u64)?;
        if parsed.len() != self.sum.len() {
            return Err(CodecError::input(format!(
                "frame holds {} elements, accumulator holds {}",
                parsed.len(),
                self.sum.len()
            )));
        }
        if parsed.stages.len() > 1 {
            // Sparse frames validate indices and values before scattering a single one.
            parsed.add_into(weight, &mut self.sum)?;
        } else {
            self.scratch.clear();
            self.scratch.resize(self.sum.len(), 0.0);
            parsed.add_into(1.0, &mut self.scratch)?;
            axpy(weight, &self.scratch, &mut self.sum);
        }
        self.total_weight += f64::from(weight);
        self.count += 1;
        Ok(())
    }

    /// Adds an uncompressed update.
    pub fn add_dense(&mut self, x: &[f32], weight: f32) -> Result<()> {
        Self::check_weight(weight)?;
        if x.len() != self.sum.len() {
            return Err(CodecError::input(format!(
                "array holds {} elements, accumulator holds {}",
                x.len(),
                self.sum.len()
            )));
        }
        crate::codecs::pipeline::check_input(x, &[x.len() as u64])?;
        axpy(weight, x, &mut self.sum);
        self.total_weight += f64::from(weight);
        self.count += 1;
        Ok(())
    }

    /// The weighted sum so far.
    #[must_use]
    pub fn sum(&self) -> &[f32] {
        &self.sum
    }

    /// The weighted mean so far (sum over total weight).
    pub fn mean(&self) -> Result<Vec<f32>> {
        if self.total_weight == 0.0 {
            return Err(CodecError::input(
                "no weight accumulated yet: the mean is undefined",
            ));
        }
        let inv = (1.0 / self.total_weight) as f32;
        Ok(self.sum.par_iter().map(|v| v * inv).collect())
    }

    #[must_use]
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    #[must_use]
    pub fn count(&self) -> usize {
        self.count
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.sum.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sum.is_empty()
    }

    /// Starts a new sum, keeping the allocation.
    pub fn reset(&mut self) {
        self.sum.par_iter_mut().for_each(|v| *v = 0.0);
        self.total_weight = 0.0;
        self.count = 0;
    }
}

fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(1 << 16)
        .zip(x.par_chunks(1 << 16))
        .for_each(|(yc, xc)| {
            for (yi, xi) in yc.iter_mut().zip(xc) {
                *yi += a * xi;
            }
        });
}
