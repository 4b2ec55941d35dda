//! Distances between updates and weighted combinations of them.
//!
//! Pairwise squared distances come from one K x K Gram matrix of the *centered* updates
//! (`|xi - xj|^2 = g_ii + g_jj - 2 g_ij`, distances do not change under a shift): centering
//! removes the shared mean that honest updates have in common, so the subtraction does not
//! cancel away their small differences. Each block of coordinates adds its f32 dot products to a
//! per-task f64 matrix; tasks are summed at the end.

use rayon::prelude::*;

use super::Updates;
use crate::error::{CodecError, Result};

/// Coordinates per Gram task: K rows of 512 floats (200 KB at K = 100) stay in L2.
const GRAM_BLOCK: usize = 512;
/// Coordinates per task in the combinations.
const COMBINE_BLOCK: usize = 1 << 14;
/// Coordinates per mixing task: K rows of 1024 floats stay in L2 while every output row reads them.
const MIX_BLOCK: usize = 1024;
/// Independent partial sums in a dot product, so the compiler can vectorise it.
const LANES: usize = 16;

/// Sum of `a[i] * b[i]` in LANES f32 lanes, folded into f64.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f32; LANES];
    let (ac, at) = (a.chunks_exact(LANES), a.chunks_exact(LANES).remainder());
    let bt = b.chunks_exact(LANES).remainder();
    for (x, y) in ac.zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = at.iter().zip(bt).map(|(x, y)| x * y).sum();
    acc.iter().map(|v| f64::from(*v)).sum::<f64>() + f64::from(tail)
}

/// Coordinate-wise mean of the updates (the point the Gram matrix is centered on).
fn column_mean(u: &Updates<'_>) -> Vec<f32> {
    let inv = 1.0 / u.k() as f64;
    let mut mean = vec![0.0f32; u.d()];
    mean.par_chunks_mut(COMBINE_BLOCK)
        .enumerate()
        .for_each(|(b, out)| {
            let col0 = b * COMBINE_BLOCK;
            let mut acc = vec![0.0f64; out.len()];
            for r in 0..u.k() {
                for (a, v) in acc.iter_mut().zip(&u.row(r)[col0..col0 + out.len()]) {
                    *a += f64::from(*v);
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                *o = (a * inv) as f32;
            }
        });
    mean
}

/// The K x K matrix of squared Euclidean distances between updates, row-major, zero diagonal.
#[must_use]
pub fn pairwise_sq_dists(u: &Updates<'_>) -> Vec<f64> {
    let (k, d) = (u.k(), u.d());
    let mean = column_mean(u);
    let blocks = d.div_ceil(GRAM_BLOCK);
    let gram = (0..blocks)
        .into_par_iter()
        .fold(
            || (vec![0.0f64; k * k], vec![0.0f32; k * GRAM_BLOCK]),
            |(mut g, mut centered), b| {
                let col0 = b * GRAM_BLOCK;
                let w = GRAM_BLOCK.min(d - col0);
                let m = &mean[col0..col0 + w];
                for r in 0..k {
                    let dst = &mut centered[r * w..(r + 1) * w];
                    for ((c, x), mu) in dst.iter_mut().zip(&u.row(r)[col0..col0 + w]).zip(m) {
                        *c = x - mu;
                    }
                }
                for i in 0..k {
                    let xi = &centered[i * w..(i + 1) * w];
                    for j in 0..=i {
                        g[i * k + j] += dot(xi, &centered[j * w..(j + 1) * w]);
                    }
                }
                (g, centered)
            },
        )
        .map(|(g, _)| g)
        .reduce(
            || vec![0.0f64; k * k],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );
    let mut dist = vec![0.0f64; k * k];
    for i in 0..k {
        for j in 0..i {
            let v = (gram[i * k + i] + gram[j * k + j] - 2.0 * gram[i * k + j]).max(0.0);
            dist[i * k + j] = v;
            dist[j * k + i] = v;
        }
    }
    dist
}

/// Squared Euclidean distance from every update to the point `z`.
pub fn sq_dists_to(u: &Updates<'_>, z: &[f32]) -> Result<Vec<f64>> {
    super::check_point(z, u.d(), "the point")?;
    Ok((0..u.k())
        .into_par_iter()
        .map(|r| sq_dist(u.row(r), z))
        .collect())
}

/// `|a - b|^2`, in LANES f32 lanes per chunk of coordinates, chunks summed in f64.
pub(crate) fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.chunks(COMBINE_BLOCK)
        .zip(b.chunks(COMBINE_BLOCK))
        .map(|(x, y)| {
            let mut acc = [0.0f32; LANES];
            let xc = x.chunks_exact(LANES);
            let (xt, yt) = (xc.remainder(), y.chunks_exact(LANES).remainder());
            for (p, q) in xc.zip(y.chunks_exact(LANES)) {
                for l in 0..LANES {
                    let t = p[l] - q[l];
                    acc[l] += t * t;
                }
            }
            let tail: f32 = xt.iter().zip(yt).map(|(p, q)| (p - q) * (p - q)).sum();
            acc.iter().map(|v| f64::from(*v)).sum::<f64>() + f64::from(tail)
        })
        .sum()
}

/// `sum_i coeffs[i] * update_i`, accumulated in f64 per coordinate.
pub fn row_combination(u: &Updates<'_>, coeffs: &[f64]) -> Result<Vec<f32>> {
    if coeffs.len() != u.k() {
        return Err(CodecError::param(format!(
            "{} coefficients for {} updates",
            coeffs.len(),
            u.k()
        )));
    }
    if let Some(c) = coeffs.iter().find(|c| !c.is_finite()) {
        return Err(CodecError::param(format!(
            "coefficients must be finite, got {c}"
        )));
    }
    let mut out = vec![0.0f32; u.d()];
    combine_into(u, coeffs, &mut out);
    Ok(out)
}

/// Writes `sum_i coeffs[i] * update_i` into `out` (checked lengths and finite coefficients).
pub(crate) fn combine_into(u: &Updates<'_>, coeffs: &[f64], out: &mut [f32]) {
    out.par_chunks_mut(COMBINE_BLOCK).enumerate().for_each_init(
        || vec![0.0f64; COMBINE_BLOCK],
        |acc, (b, out)| {
            let col0 = b * COMBINE_BLOCK;
            let acc = &mut acc[..out.len()];
            acc.fill(0.0);
            for (r, &c) in coeffs.iter().enumerate() {
                if c == 0.0 {
                    continue;
                }
                for (a, v) in acc.iter_mut().zip(&u.row(r)[col0..col0 + out.len()]) {
                    *a += c * f64::from(*v);
                }
            }
            for (o, a) in out.iter_mut().zip(acc.iter()) {
                *o = *a as f32;
            }
        },
    );
}

/// Rows of `mixing @ updates` (`mixing` is `rows x K`, row-major): each output a weighted
/// combination of updates, as nearest-neighbour mixing makes them. One pass over the updates:
/// each block of coordinates is read once (it stays in L2) and feeds every output row.
pub fn mix_rows(u: &Updates<'_>, mixing: &[f64], rows: usize) -> Result<Vec<f32>> {
    let (k, d) = (u.k(), u.d());
    if rows.checked_mul(k) != Some(mixing.len()) {
        return Err(CodecError::param(format!(
            "a mixing matrix of {} entries is not {rows} x {k}",
            mixing.len()
        )));
    }
    if let Some(c) = mixing.iter().find(|c| !c.is_finite()) {
        return Err(CodecError::param(format!(
            "mixing weights must be finite, got {c}"
        )));
    }
    let blocks: Vec<Vec<f32>> = (0..d.div_ceil(MIX_BLOCK))
        .into_par_iter()
        .map_init(
            || vec![0.0f64; MIX_BLOCK],
            |acc, b| {
                let col0 = b * MIX_BLOCK;
                let w = MIX_BLOCK.min(d - col0);
                let acc = &mut acc[..w];
                let mut block = Vec::with_capacity(rows * w);
                for coeffs in mixing.chunks(k) {
                    acc.fill(0.0);
                    for (r, &c) in coeffs.iter().enumerate() {
                        if c != 0.0 {
                            for (a, v) in acc.iter_mut().zip(&u.row(r)[col0..col0 + w]) {
                                *a += c * f64::from(*v);
                            }
                        }
                    }
                    block.extend(acc.iter().map(|a| *a as f32));
                }
                block
            },
        )
        .collect();
    let mut out = vec![0.0f32; rows * d];
    for (b, block) in blocks.iter().enumerate() {
        let col0 = b * MIX_BLOCK;
        let w = block.len() / rows.max(1);
        for (dst, src) in out.chunks_mut(d).zip(block.chunks(w.max(1))) {
            dst[col0..col0 + w].copy_from_slice(src);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_of_a_hand_case() {
        // (0,0), (3,4), (6,8): distances 5, 10, 5 apart; squares 25, 100, 25.
        let data = [0.0, 0.0, 3.0, 4.0, 6.0, 8.0];
        let u = Updates::new(&data, 3, 2).unwrap();
        let d = pairwise_sq_dists(&u);
        assert_eq!(d, vec![0.0, 25.0, 100.0, 25.0, 0.0, 25.0, 100.0, 25.0, 0.0]);
        assert_eq!(sq_dists_to(&u, &[3.0, 4.0]).unwrap(), vec![25.0, 0.0, 25.0]);
    }

    #[test]
    fn centering_keeps_small_differences_of_large_updates() {
        // Two updates 1e3 from the origin and 1e-2 apart in each of 4096 coordinates.
        let d = 4096;
        let mut data = vec![1e3f32; 2 * d];
        for v in &mut data[d..] {
            *v += 1e-2;
        }
        let u = Updates::new(&data, 2, d).unwrap();
        let got = pairwise_sq_dists(&u)[1];
        let want = sq_dist(u.row(0), u.row(1));
        assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
    }

    #[test]
    fn combinations_weight_rows() {
        let data = [1.0, 2.0, 3.0, 4.0];
        let u = Updates::new(&data, 2, 2).unwrap();
        assert_eq!(row_combination(&u, &[0.5, 0.5]).unwrap(), vec![2.0, 3.0]);
        assert_eq!(
            mix_rows(&u, &[1.0, 0.0, 0.25, 0.75], 2).unwrap(),
            vec![1.0, 2.0, 2.5, 3.5]
        );
        assert!(row_combination(&u, &[1.0]).is_err());
        assert!(mix_rows(&u, &[1.0, 0.0, 0.0], 2).is_err());
    }
}
