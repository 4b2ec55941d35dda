//! Coordinate-wise aggregators: median, trimmed mean, and Bulyan's closest-to-the-median mean.
//! Each block of W coordinates is copied from the K rows into a K x W scratch block, its columns
//! ordered (a pruned sorting network up to [`NETWORK_MAX`] rows, a per-column sort above), and
//! the ranks the aggregator needs are read off.

use rayon::prelude::*;

use super::network::{Network, Row, W};
use super::Updates;
use crate::error::{CodecError, Result};

/// Above this many rows a per-column sort beats the network, whose size grows as K log^2 K.
pub const NETWORK_MAX: usize = 256;

/// Orders every column of `rows`: by the network when there is one, else one sort per column.
fn order(rows: &mut [Row], net: Option<&Network>, w: usize, column: &mut Vec<f32>) {
    if let Some(net) = net {
        net.apply(rows);
        return;
    }
    for c in 0..w {
        column.clear();
        column.extend(rows.iter().map(|r| r[c]));
        column.sort_unstable_by(f32::total_cmp);
        for (r, v) in rows.iter_mut().zip(column.iter()) {
            r[c] = *v;
        }
    }
}

/// Coordinates copied per task: 16 blocks, so each row is read in 4 KB runs the prefetcher
/// follows (rows lie d floats apart; 64-float reads from 100 rows would each miss the cache).
const RUN: usize = 16 * W;

/// Runs `finish(ordered block, width, out block)` on every block of W coordinates of the rows
/// `which` selects, runs of blocks spread over the rayon pool.
fn by_column_blocks(
    u: &Updates<'_>,
    which: &[usize],
    keep: impl Fn(usize) -> bool,
    finish: impl Fn(&[Row], usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let n = which.len();
    let net = (n <= NETWORK_MAX).then(|| Network::selecting(n, keep));
    let mut out = vec![0.0f32; u.d()];
    out.par_chunks_mut(RUN).enumerate().for_each_init(
        || (vec![[0.0f32; W]; n * (RUN / W)], Vec::with_capacity(n)),
        |(blocks, column), (b, out_run)| {
            let col0 = b * RUN;
            let span = out_run.len();
            for (i, &r) in which.iter().enumerate() {
                let src = &u.row(r)[col0..col0 + span];
                for (s, part) in src.chunks(W).enumerate() {
                    let row = &mut blocks[s * n + i];
                    row[..part.len()].copy_from_slice(part);
                    row[part.len()..].fill(0.0);
                }
            }
            for (s, out_block) in out_run.chunks_mut(W).enumerate() {
                let rows = &mut blocks[s * n..(s + 1) * n];
                let w = out_block.len();
                order(rows, net.as_ref(), w, column);
                finish(rows, w, out_block);
            }
        },
    );
    out
}

/// Midpoint of two floats, rounded once (as numpy's float32 median rounds it).
fn midpoint(a: f32, b: f32) -> f32 {
    ((f64::from(a) + f64::from(b)) * 0.5) as f32
}

/// Coordinate-wise median (the mean of the two middle values when K is even, as `np.median`).
#[must_use]
pub fn coordinate_median(u: &Updates<'_>) -> Vec<f32> {
    let n = u.k();
    let (lo, hi) = ((n - 1) / 2, n / 2);
    let all: Vec<usize> = (0..n).collect();
    by_column_blocks(
        u,
        &all,
        |r| r == lo || r == hi,
        |rows, w, out| {
            for (c, o) in out.iter_mut().enumerate().take(w) {
                *o = midpoint(rows[lo][c], rows[hi][c]);
            }
        },
    )
}

/// Coordinate-wise trimmed mean: per coordinate drop the `trim` smallest and `trim` largest of
/// the K values and average the rest (Yin et al. 2018).
pub fn trimmed_mean(u: &Updates<'_>, trim: usize) -> Result<Vec<f32>> {
    let n = u.k();
    if 2 * trim >= n {
        return Err(CodecError::param(format!(
            "trimming {trim} from each side of {n} updates leaves none"
        )));
    }
    let kept = (n - 2 * trim) as f64;
    let all: Vec<usize> = (0..n).collect();
    Ok(by_column_blocks(
        u,
        &all,
        |r| (trim..n - trim).contains(&r),
        |rows, w, out| {
            let mut sum = [0.0f64; W];
            for row in &rows[trim..n - trim] {
                for (s, v) in sum.iter_mut().zip(row) {
                    *s += f64::from(*v);
                }
            }
            for (o, s) in out.iter_mut().zip(&sum).take(w) {
                *o = (s / kept) as f32;
            }
        },
    ))
}

/// Bulyan's second phase (El Mhamdi et al. 2018): over the selected rows, per coordinate the
/// mean of the `beta` values closest to their median.
pub fn bulyan_coordinates(u: &Updates<'_>, selected: &[usize], beta: usize) -> Result<Vec<f32>> {
    let n = selected.len();
    if beta == 0 || beta > n {
        return Err(CodecError::param(format!(
            "beta must be in 1..={n} (the selected updates), got {beta}"
        )));
    }
    if let Some(&bad) = selected.iter().find(|&&r| r >= u.k()) {
        return Err(CodecError::param(format!(
            "selected update {bad} does not exist among {}",
            u.k()
        )));
    }
    Ok(by_column_blocks(
        u,
        selected,
        |_| true,
        |rows, w, out| {
            for (c, o) in out.iter_mut().enumerate().take(w) {
                *o = closest_to_median_mean(rows, c, beta);
            }
        },
    ))
}

/// Mean of the `beta` values of sorted column `c` nearest its median: a window grown outward.
fn closest_to_median_mean(rows: &[Row], c: usize, beta: usize) -> f32 {
    let n = rows.len();
    let med = f64::from(midpoint(rows[(n - 1) / 2][c], rows[n / 2][c]));
    let (mut lo, mut hi) = (n / 2, n / 2);
    let mut sum = 0.0f64;
    while hi - lo < beta {
        let left = (lo > 0).then(|| med - f64::from(rows[lo - 1][c]));
        let right = (hi < n).then(|| f64::from(rows[hi][c]) - med);
        match (left, right) {
            (Some(l), Some(r)) if l <= r => {
                lo -= 1;
                sum += f64::from(rows[lo][c]);
            }
            (Some(_), None) => {
                lo -= 1;
                sum += f64::from(rows[lo][c]);
            }
            _ => {
                sum += f64::from(rows[hi][c]);
                hi += 1;
            }
        }
    }
    (sum / beta as f64) as f32
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the kernels must give exactly the sorted reference's values
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted_columns(data: &[f32], k: usize, d: usize) -> Vec<Vec<f32>> {
        (0..d)
            .map(|c| {
                let mut col: Vec<f32> = (0..k).map(|r| data[r * d + c]).collect();
                col.sort_by(f32::total_cmp);
                col
            })
            .collect()
    }

    #[test]
    fn median_of_a_hand_case() {
        // Three clients, two coordinates; the outlier 100 does not move the median.
        let data = [1.0, -1.0, 2.0, 100.0, 3.0, 0.0];
        let u = Updates::new(&data, 3, 2).unwrap();
        assert_eq!(coordinate_median(&u), vec![2.0, 0.0]);
        let even = [1.0, 2.0, 4.0, 8.0];
        let u = Updates::new(&even, 4, 1).unwrap();
        assert_eq!(coordinate_median(&u), vec![3.0]);
    }

    #[test]
    fn trimmed_mean_of_a_hand_case() {
        let data = [-50.0, 1.0, 2.0, 3.0, 90.0];
        let u = Updates::new(&data, 5, 1).unwrap();
        assert_eq!(trimmed_mean(&u, 1).unwrap(), vec![2.0]);
        assert_eq!(trimmed_mean(&u, 0).unwrap(), vec![9.2]);
        assert!(trimmed_mean(&u, 3).is_err());
    }

    #[test]
    fn bulyan_keeps_the_values_nearest_the_median() {
        // Sorted column 0, 1, 1.5, 10: median 1.25, the two nearest are 1 and 1.5.
        let data = [10.0, 0.0, 1.5, 1.0];
        let u = Updates::new(&data, 4, 1).unwrap();
        assert_eq!(
            bulyan_coordinates(&u, &[0, 1, 2, 3], 2).unwrap(),
            vec![1.25]
        );
        assert_eq!(bulyan_coordinates(&u, &[1, 2, 3], 1).unwrap(), vec![1.0]);
        assert!(bulyan_coordinates(&u, &[0, 9], 1).is_err());
    }

    #[test]
    fn non_finite_input_is_refused_with_its_client() {
        let data = [1.0, 2.0, 3.0, f32::NAN];
        let err = Updates::new(&data, 2, 2).unwrap_err();
        assert!(err.to_string().contains("update 1"), "{err}");
    }

    proptest! {
        #[test]
        fn agree_with_sorting_each_column(
            k in 1usize..40, d in 1usize..150, seed in any::<u64>(), big in any::<bool>()
        ) {
            // `big` repeats rows so K passes NETWORK_MAX and the per-column sort runs too.
            let k = if big { k + NETWORK_MAX } else { k };
            let mut state = seed;
            let data: Vec<f32> = (0..k * d).map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32) / 1e4 - 800.0
            }).collect();
            let u = Updates::new(&data, k, d).unwrap();
            let cols = sorted_columns(&data, k, d);
            let med = coordinate_median(&u);
            let trim = (k - 1) / 3;
            let tm = trimmed_mean(&u, trim).unwrap();
            for c in 0..d {
                let col = &cols[c];
                prop_assert_eq!(med[c], midpoint(col[(k - 1) / 2], col[k / 2]));
                let kept = &col[trim..k - trim];
                let want = kept.iter().map(|v| f64::from(*v)).sum::<f64>() / kept.len() as f64;
                prop_assert!((f64::from(tm[c]) - want).abs() <= 1e-4 * want.abs().max(1.0));
            }
        }
    }
}
