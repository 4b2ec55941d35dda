//! Server-side aggregation: frames are decoded straight into one running float32 sum.

use rayon::prelude::*;

use crate::codecs::pipeline::ParsedFrame;
use crate::error::{CodecError, Result};
use crate::kernels::huge_pages::try_filled_huge;
use crate::wire::frame::DEFAULT_MAX_ELEMENTS;

/// Weighted running sum of decoded updates; memory stays at about one model, however many frames arrive.
#[derive(Debug, Clone)]
pub struct Accumulator {
    sum: Vec<f32>,
    /// Dense frames whose values cannot be bounded from their headers decode here first, so a
    /// frame that fails half-way leaves `sum` untouched.
    scratch: Vec<f32>,
    /// The kept values of the last sparse frame: the next one decodes into the same pages.
    sparse: Vec<f32>,
    total_weight: f64,
    count: usize,
    /// An upper bound on every `|sum[i]|`: while `bound + |weight| * max|frame|` stays below
    /// float32's largest no add can overflow, and the element-wise check is skipped.
    bound: f64,
}

/// Largest value the running bound may reach before adds are checked element by element.
const SAFE: f64 = f32::MAX as f64 * 0.5;

impl Accumulator {
    pub fn new(n: usize) -> Result<Self> {
        if n == 0 || n as u64 > DEFAULT_MAX_ELEMENTS {
            return Err(CodecError::param(format!(
                "accumulator size must be in 1..={DEFAULT_MAX_ELEMENTS}, got {n}"
            )));
        }
        Ok(Self {
            // Huge pages: a sparse add scatters across the whole sum, a TLB miss per few adds on
            // 4 KiB pages.
            sum: try_filled_huge(n, 0.0, "float32 values for the sum")?,
            scratch: Vec::new(),
            sparse: Vec::new(),
            total_weight: 0.0,
            count: 0,
            bound: 0.0,
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

    /// Decodes `frame` and adds `weight` times it; on any error the sum is unchanged, and an add
    /// that would take any element past float32's range is refused whole.
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
            // Sparse frames validate indices and values before scattering a single one; the
            // decoded values' largest magnitude bounds what the scatter adds.
            let (values, scatter) =
                parsed.sparse_values_reusing(std::mem::take(&mut self.sparse))?;
            let added = f64::from(weight.abs()) * max_abs(&values);
            if self.bound + added > SAFE {
                let mut trial = self.sum.clone();
                scatter.add(&values, weight, &mut trial)?;
                check_finite_sum(&trial)?;
                self.sum = trial;
                self.bound = max_abs(&self.sum);
            } else {
                scatter.add(&values, weight, &mut self.sum)?;
                self.bound += added;
            }
            self.sparse = values;
        } else if let Some(added) = parsed
            .decoded_bound()
            .map(|b| f64::from(weight.abs()) * b)
            .filter(|added| self.bound + added <= SAFE)
        {
            // The headers bound the frame's values and no element can overflow: decode straight
            // into the sum, one pass. The codec checks every header before it writes anything.
            parsed.add_into(weight, &mut self.sum)?;
            self.bound += added;
        } else {
            if self.scratch.len() != self.sum.len() {
                self.scratch = try_filled_huge(self.sum.len(), 0.0, "float32 values")?;
            }
            parsed.decode_into(&mut self.scratch)?;
            add_bounded(&mut self.sum, &mut self.bound, weight, &self.scratch)?;
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
        // One pass finds both a NaN/Inf (refused, by the usual error) and the largest magnitude.
        let Some(largest) = max_abs_if_finite(x) else {
            crate::codecs::pipeline::check_input(x, &[x.len() as u64])?;
            return Err(CodecError::input("array holds NaN or Inf"));
        };
        add_bounded_by(&mut self.sum, &mut self.bound, weight, x, largest)?;
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
        self.bound = 0.0;
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

/// `sum += weight * x` unless an element would overflow (then `sum` is unchanged): checked
/// element by element only once the running `bound` could come near float32's largest.
fn add_bounded(sum: &mut [f32], bound: &mut f64, weight: f32, x: &[f32]) -> Result<()> {
    add_bounded_by(sum, bound, weight, x, max_abs(x))
}

/// [`add_bounded`] with `largest = max |x|` already known.
fn add_bounded_by(
    sum: &mut [f32],
    bound: &mut f64,
    weight: f32,
    x: &[f32],
    largest: f64,
) -> Result<()> {
    let added = f64::from(weight.abs()) * largest;
    if *bound + added > SAFE {
        if let Some(i) = first_overflow(weight, x, sum) {
            return Err(CodecError::input(format!(
                "adding this update would take element {i} of the sum past float32's range"
            )));
        }
        axpy(weight, x, sum);
        *bound = max_abs(sum);
    } else {
        axpy(weight, x, sum);
        *bound += added;
    }
    Ok(())
}

/// Largest `|v|`: an integer max of the bits with the sign cleared, which vectorises (a float
/// max must order NaN and does not), in parallel when `x` is large enough to pay for the hand-off.
/// Any NaN or Inf gives bits at or above `0x7F80_0000`.
fn max_abs_bits(x: &[f32]) -> u32 {
    let serial = |c: &[f32]| c.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF));
    if x.len() <= 1 << 18 {
        serial(x)
    } else {
        x.par_chunks(1 << 16).map(serial).reduce(|| 0, u32::max)
    }
}

/// Largest `|v|` (Inf if `x` holds a NaN or Inf).
fn max_abs(x: &[f32]) -> f64 {
    f64::from(f32::from_bits(max_abs_bits(x).min(INF_BITS)))
}

/// Largest `|v|` of an all-finite `x`; `None` if `x` holds a NaN or Inf.
fn max_abs_if_finite(x: &[f32]) -> Option<f64> {
    let bits = max_abs_bits(x);
    (bits < INF_BITS).then(|| f64::from(f32::from_bits(bits)))
}

/// Bits of float32's +Inf; every finite `|v|` has smaller bits, every NaN larger.
const INF_BITS: u32 = 0x7F80_0000;

/// Index of the first element where `y + a * x` is not finite, if any.
fn first_overflow(a: f32, x: &[f32], y: &[f32]) -> Option<usize> {
    y.par_iter()
        .zip(x.par_iter())
        .position_first(|(yi, xi)| !(yi + a * xi).is_finite())
}

/// Refuses a trial sum that holds a non-finite value.
fn check_finite_sum(sum: &[f32]) -> Result<()> {
    match sum.par_iter().position_first(|v| !v.is_finite()) {
        Some(i) => Err(CodecError::input(format!(
            "adding this update would take element {i} of the sum past float32's range"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact magnitudes are what the tests assert
mod tests {
    use super::*;

    #[test]
    fn the_largest_magnitude_from_bits_sees_nan_and_inf() {
        assert_eq!(max_abs(&[1.0, -3.5, 2.0]), 3.5);
        assert_eq!(max_abs_if_finite(&[-0.0, 0.0]), Some(0.0));
        assert_eq!(max_abs_if_finite(&[1.0, f32::NAN]), None);
        assert_eq!(max_abs_if_finite(&[1.0, f32::NEG_INFINITY]), None);
        assert_eq!(max_abs_if_finite(&[-f32::MAX]), Some(f64::from(f32::MAX)));
        // Large enough for the parallel path.
        let mut big: Vec<f32> = (0..1 << 20).map(|i| i as f32).collect();
        assert_eq!(max_abs(&big), f64::from((1 << 20) - 1));
        big[777_777] = f32::NAN;
        assert_eq!(max_abs_if_finite(&big), None);
    }

    #[test]
    fn a_dense_frame_near_overflow_is_refused_whole() {
        // Far from overflow a quant frame is added in one pass; near it, element by element.
        let x: Vec<f32> = (0..10_000).map(|i| (i % 7) as f32 - 3.0).collect();
        let frame =
            crate::pipeline::encode(&crate::Spec::parse("quant:8").unwrap(), &x, &[10_000], 0)
                .unwrap();
        let mut acc = Accumulator::new(10_000).unwrap();
        acc.add(&frame, 1.0).unwrap();
        acc.add(&frame, f32::MAX / 4.0).unwrap();
        let before = acc.sum().to_vec();
        assert!(acc.add(&frame, f32::MAX / 4.0).is_err());
        assert_eq!(acc.sum(), &before[..]);
        assert_eq!(acc.count(), 2);
    }
}
