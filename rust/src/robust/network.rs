//! Batcher's odd-even merge sorting network, pruned to the output ranks a kernel reads, applied
//! to a block of W columns at once: each comparator is a branch-free min/max over two rows of W
//! floats, which the compiler turns into vector instructions. For the K of a round (tens to a
//! few hundred) this sorts every column of a block faster than a per-column quickselect, whose
//! branches the CPU cannot predict.

/// Columns sorted together: K rows of 64 floats stay in L1 for K up to about 150.
pub const W: usize = 64;

/// One row of a block: the values of W consecutive coordinates from one update.
pub type Row = [f32; W];

/// A list of compare-exchange pairs `(i, j)`, `i < j`: after them row `i` holds the smaller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    n: usize,
    pairs: Vec<(u32, u32)>,
}

impl Network {
    /// A network that sorts `n` rows (Knuth's iterative form of Batcher's merge, any `n`).
    #[must_use]
    pub fn sorting(n: usize) -> Self {
        let mut pairs = Vec::new();
        let mut p = 1;
        while p < n {
            let mut k = p;
            while k >= 1 {
                let mut j = k % p;
                while j + k < n {
                    for i in 0..k.min(n - j - k) {
                        if (i + j) / (2 * p) == (i + j + k) / (2 * p) {
                            pairs.push(((i + j) as u32, (i + j + k) as u32));
                        }
                    }
                    j += 2 * k;
                }
                k /= 2;
            }
            p *= 2;
        }
        Self { n, pairs }
    }

    /// A sorting network cut down to the comparators that can change the rows `keep` selects
    /// (the median needs the two middle ranks, a trimmed mean the middle band).
    #[must_use]
    pub fn selecting(n: usize, keep: impl Fn(usize) -> bool) -> Self {
        let full = Self::sorting(n);
        let mut needed: Vec<bool> = (0..n).map(keep).collect();
        let mut pairs: Vec<(u32, u32)> = full
            .pairs
            .into_iter()
            .rev()
            .filter(|&(i, j)| {
                let (i, j) = (i as usize, j as usize);
                let used = needed[i] || needed[j];
                if used {
                    needed[i] = true;
                    needed[j] = true;
                }
                used
            })
            .collect();
        pairs.reverse();
        Self { n, pairs }
    }

    /// Rows this network orders.
    #[must_use]
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether it orders no rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Comparators it applies.
    #[must_use]
    pub fn comparators(&self) -> usize {
        self.pairs.len()
    }

    /// Orders each of the W columns of `rows` (finite values; `rows.len()` must be `len()`),
    /// in AVX2 registers when the CPU has them.
    pub fn apply(&self, rows: &mut [Row]) {
        super::simd::apply(self, rows);
    }

    /// [`Network::apply`] in the instructions the build targets, with no run-time choice (the
    /// AVX2 build inlines it; benches/robust.rs times the two).
    #[inline(always)]
    pub fn apply_portable(&self, rows: &mut [Row]) {
        assert_eq!(rows.len(), self.n, "a network of {} rows", self.n);
        for &(i, j) in &self.pairs {
            let (lo, hi) = rows.split_at_mut(j as usize);
            compare_exchange(&mut lo[i as usize], &mut hi[0]);
        }
    }
}

#[inline(always)]
fn compare_exchange(a: &mut Row, b: &mut Row) {
    for (x, y) in a.iter_mut().zip(b.iter_mut()) {
        let (p, q) = (*x, *y);
        *x = p.min(q);
        *y = p.max(q);
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // a network moves values, it never computes new ones
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// n rows of W pseudo-random values in [-8000, 8000) from a 64-bit LCG.
    fn columns(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32) / 1e3 - 8_000.0
        };
        (0..n).map(|_| (0..W).map(|_| next()).collect()).collect()
    }

    fn block(values: &[Vec<f32>]) -> Vec<Row> {
        values
            .iter()
            .map(|col| {
                let mut row = [0.0; W];
                for (c, v) in row.iter_mut().zip(col) {
                    *c = *v;
                }
                row
            })
            .collect()
    }

    #[test]
    fn batcher_sizes_match_the_known_counts() {
        // Knuth, TAOCP 5.3.4: Batcher's network on 2^t inputs has (t^2 - t + 4) 2^(t-2) - 1.
        assert_eq!(Network::sorting(8).comparators(), 19);
        assert_eq!(Network::sorting(16).comparators(), 63);
        assert_eq!(Network::sorting(1).comparators(), 0);
    }

    #[test]
    fn pruning_for_the_median_drops_comparators() {
        let full = Network::sorting(100);
        let med = Network::selecting(100, |r| r == 49 || r == 50);
        assert!(med.comparators() < full.comparators());
    }

    proptest! {
        #[test]
        fn sorts_every_column(n in 1usize..70, seed in any::<u64>()) {
            let values = columns(n, seed);
            let mut rows = block(&values);
            Network::sorting(n).apply(&mut rows);
            for c in 0..W {
                let mut col: Vec<f32> = values.iter().map(|r| r[c]).collect();
                col.sort_by(f32::total_cmp);
                let got: Vec<f32> = rows.iter().map(|r| r[c]).collect();
                prop_assert_eq!(got, col);
            }
        }

        #[test]
        fn a_pruned_network_still_places_its_ranks(n in 1usize..70, seed in any::<u64>()) {
            let values = columns(n, seed);
            let mut rows = block(&values);
            let keep = |r: usize| r == (n - 1) / 2 || r == n / 2;
            Network::selecting(n, keep).apply(&mut rows);
            for c in 0..W {
                let mut col: Vec<f32> = values.iter().map(|r| r[c]).collect();
                col.sort_by(f32::total_cmp);
                prop_assert_eq!(rows[(n - 1) / 2][c], col[(n - 1) / 2]);
                prop_assert_eq!(rows[n / 2][c], col[n / 2]);
            }
        }
    }
}
