//! The iterative estimators: the geometric median by smoothed Weiszfeld (RFA, Pillutla et al.
//! 2022) and centered clipping (Karimireddy et al. 2021). Both repeat one step, a new point as a
//! weighted combination of the updates plus the previous point, followed by every update's
//! distance to the new point; one fused pass over each block of coordinates does both.

use rayon::prelude::*;

use super::distance::sq_dist;
use super::{check_point, normalized_weights, Updates};
use crate::error::{CodecError, Result};

/// Coordinates per fused task: K rows of 1024 floats (400 KB at K = 100) stay in L2.
const STEP_BLOCK: usize = 1024;

/// `keep * base + sum_i coeffs[i] * update_i`, and every update's squared distance to it.
fn step(u: &Updates<'_>, coeffs: &[f64], keep: f64, base: &[f32]) -> (Vec<f32>, Vec<f64>) {
    let k = u.k();
    let mut next = vec![0.0f32; u.d()];
    let dists = next
        .par_chunks_mut(STEP_BLOCK)
        .enumerate()
        .map(|(b, out)| {
            let col0 = b * STEP_BLOCK;
            let cols = col0..col0 + out.len();
            let mut acc: Vec<f64> = base[cols.clone()]
                .iter()
                .map(|v| keep * f64::from(*v))
                .collect();
            for (r, &c) in coeffs.iter().enumerate() {
                if c != 0.0 {
                    for (a, v) in acc.iter_mut().zip(&u.row(r)[cols.clone()]) {
                        *a += c * f64::from(*v);
                    }
                }
            }
            for (o, a) in out.iter_mut().zip(&acc) {
                *o = *a as f32;
            }
            (0..k)
                .map(|r| sq_dist(&u.row(r)[cols.clone()], out))
                .collect::<Vec<f64>>()
        })
        .reduce(
            || vec![0.0; k],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );
    (next, dists)
}

/// A geometric median and how the iteration ended.
#[derive(Clone, Debug, PartialEq)]
pub struct GeometricMedian {
    /// The estimate.
    pub point: Vec<f32>,
    /// Weiszfeld steps taken.
    pub iterations: usize,
    /// Whether the weighted sum of distances settled within `tol` before `max_iter` ran out.
    pub converged: bool,
}

/// Weighted geometric median `argmin_z sum_i w_i |x_i - z|` by smoothed Weiszfeld: start at the
/// weighted mean, then `z <- sum_i b_i x_i / sum_i b_i` with `b_i = w_i / max(nu, |x_i - z|)`,
/// until the objective changes by at most `tol` times itself.
pub fn geometric_median(
    u: &Updates<'_>,
    weights: &[f64],
    nu: f64,
    max_iter: usize,
    tol: f64,
) -> Result<GeometricMedian> {
    let w = normalized_weights(weights, u.k())?;
    if !(nu.is_finite() && nu > 0.0 && tol.is_finite() && tol >= 0.0) || max_iter == 0 {
        return Err(CodecError::param(format!(
            "geometric median needs nu > 0, tol >= 0 and max_iter >= 1, got {nu}, {tol}, {max_iter}"
        )));
    }
    let zero = vec![0.0f32; u.d()];
    let (mut z, mut d2) = step(u, &w, 0.0, &zero);
    let objective = |d2: &[f64]| -> f64 { w.iter().zip(d2).map(|(w, d)| w * d.sqrt()).sum() };
    let mut obj = objective(&d2);
    for it in 1..=max_iter {
        let beta: Vec<f64> = w
            .iter()
            .zip(&d2)
            .map(|(w, d)| w / d.sqrt().max(nu))
            .collect();
        let total: f64 = beta.iter().sum();
        let coeffs: Vec<f64> = beta.iter().map(|b| b / total).collect();
        let (z_next, d2_next) = step(u, &coeffs, 0.0, &zero);
        let obj_next = objective(&d2_next);
        let settled = (obj - obj_next).abs() <= tol * obj_next;
        (z, d2, obj) = (z_next, d2_next, obj_next);
        if settled {
            return Ok(GeometricMedian {
                point: z,
                iterations: it,
                converged: true,
            });
        }
    }
    Ok(GeometricMedian {
        point: z,
        iterations: max_iter,
        converged: false,
    })
}

/// Centered clipping: from `center`, `iters` times `v <- v + sum_i w_i (x_i - v) min(1, tau / |x_i - v|)`.
pub fn centered_clip(
    u: &Updates<'_>,
    weights: &[f64],
    center: &[f32],
    tau: f64,
    iters: usize,
) -> Result<Vec<f32>> {
    let w = normalized_weights(weights, u.k())?;
    check_point(center, u.d(), "the center")?;
    if !(tau.is_finite() && tau > 0.0) || iters == 0 {
        return Err(CodecError::param(format!(
            "centered clipping needs tau > 0 and iters >= 1, got {tau}, {iters}"
        )));
    }
    let mut v = center.to_vec();
    let mut d2: Vec<f64> = (0..u.k()).map(|r| sq_dist(u.row(r), &v)).collect();
    for _ in 0..iters {
        let coeffs: Vec<f64> = w
            .iter()
            .zip(&d2)
            .map(|(w, d)| w * (tau / d.sqrt()).min(1.0))
            .collect();
        let keep = 1.0 - coeffs.iter().sum::<f64>();
        (v, d2) = step(u, &coeffs, keep, &v);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_geometric_median_of_a_square_and_an_outlier() {
        // Corners of the unit square around the origin plus one far point: the median stays
        // near the origin (the mean would move 20 to the right).
        let data = [1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 100.0, 0.0];
        let u = Updates::new(&data, 5, 2).unwrap();
        let gm = geometric_median(&u, &[1.0; 5], 1e-6, 200, 1e-10).unwrap();
        assert!(gm.converged);
        assert!(gm.point[0] > 0.0 && gm.point[0] < 0.7, "{:?}", gm.point);
        assert!(gm.point[1].abs() < 1e-4, "{:?}", gm.point);
    }

    #[test]
    fn the_geometric_median_of_collinear_points_is_their_median() {
        let data = [0.0, 1.0, 2.0, 10.0, 50.0];
        let u = Updates::new(&data, 5, 1).unwrap();
        let gm = geometric_median(&u, &[1.0; 5], 1e-9, 500, 1e-12).unwrap();
        assert!((gm.point[0] - 2.0).abs() < 1e-3, "{:?}", gm.point);
    }

    #[test]
    fn centered_clipping_bounds_each_pull() {
        // One update 10 away, tau = 1: a single step from 0 moves by at most w * tau = 0.5.
        let data = [10.0, 0.0];
        let u = Updates::new(&data, 2, 1).unwrap();
        let v = centered_clip(&u, &[1.0, 1.0], &[0.0], 1.0, 1).unwrap();
        assert_eq!(v, vec![0.5]);
        // With a large tau it is the plain mean.
        let v = centered_clip(&u, &[1.0, 1.0], &[0.0], 1e3, 1).unwrap();
        assert_eq!(v, vec![5.0]);
        assert!(centered_clip(&u, &[1.0, 1.0], &[0.0, 1.0], 1.0, 1).is_err());
    }
}
