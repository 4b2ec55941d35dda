//! Orthonormal fast Walsh–Hadamard transform and seeded sign flips: the randomized rotation of EDEN.

use rayon::prelude::*;

use crate::kernels::rng::hash_u64;

/// Largest block transformed in one go (256 KiB of f32, resident in L2); longer inputs combine blocks.
pub const FWHT_BLOCK: usize = 1 << 16;

/// Elements per rayon task in the cross-block stages, large enough to amortise scheduling.
const CROSS_CHUNK: usize = 1 << 14;

/// In-place orthonormal Walsh–Hadamard transform (scaled by `1/sqrt(len)`, so it is its own inverse).
///
/// `x.len()` must be a power of two (an empty slice is left alone). Inputs longer than
/// [`FWHT_BLOCK`] are transformed block by block in parallel, then combined across blocks.
pub fn fwht(x: &mut [f32]) {
    let len = x.len();
    debug_assert!(
        len == 0 || len.is_power_of_two(),
        "fwht length must be a power of two"
    );
    if len <= 1 || !len.is_power_of_two() {
        return;
    }
    if len <= FWHT_BLOCK {
        fwht_unscaled(x);
    } else {
        x.par_chunks_mut(FWHT_BLOCK).for_each(fwht_unscaled);
        let mut h = FWHT_BLOCK;
        while h < len {
            x.par_chunks_mut(2 * h).for_each(|pair| {
                let (a, b) = pair.split_at_mut(h);
                a.par_chunks_mut(CROSS_CHUNK)
                    .zip(b.par_chunks_mut(CROSS_CHUNK))
                    .for_each(|(a, b)| butterfly(a, b));
            });
            h *= 2;
        }
    }
    let scale = 1.0 / (len as f32).sqrt();
    if len <= FWHT_BLOCK {
        for v in x.iter_mut() {
            *v *= scale;
        }
    } else {
        x.par_chunks_mut(CROSS_CHUNK)
            .for_each(|c| c.iter_mut().for_each(|v| *v *= scale));
    }
}

/// `(a, b) <- (a + b, a - b)` elementwise; the loop the compiler vectorises.
#[inline]
fn butterfly(a: &mut [f32], b: &mut [f32]) {
    for (u, v) in a.iter_mut().zip(b.iter_mut()) {
        let (s, d) = (*u + *v, *u - *v);
        *u = s;
        *v = d;
    }
}

/// Two radix-2 stages (`h` and `2h`) in one sweep over quarters, halving the passes over memory.
#[inline]
fn radix4(x: &mut [f32], h: usize) {
    for quad in x.chunks_exact_mut(4 * h) {
        let (ab, cd) = quad.split_at_mut(2 * h);
        let (a, b) = ab.split_at_mut(h);
        let (c, d) = cd.split_at_mut(h);
        for (((a, b), c), d) in a
            .iter_mut()
            .zip(b.iter_mut())
            .zip(c.iter_mut())
            .zip(d.iter_mut())
        {
            let (s0, d0) = (*a + *b, *a - *b);
            let (s1, d1) = (*c + *d, *c - *d);
            *a = s0 + s1;
            *c = s0 - s1;
            *b = d0 + d1;
            *d = d0 - d1;
        }
    }
}

/// The 8-point transform (stages 1, 2, 4) on each run of eight, where the slices are too short to vectorise.
#[inline]
fn radix8_base(x: &mut [f32]) {
    for v in x.chunks_exact_mut(8) {
        let a = [
            v[0] + v[1],
            v[0] - v[1],
            v[2] + v[3],
            v[2] - v[3],
            v[4] + v[5],
            v[4] - v[5],
            v[6] + v[7],
            v[6] - v[7],
        ];
        let b = [
            a[0] + a[2],
            a[1] + a[3],
            a[0] - a[2],
            a[1] - a[3],
            a[4] + a[6],
            a[5] + a[7],
            a[4] - a[6],
            a[5] - a[7],
        ];
        v[0] = b[0] + b[4];
        v[1] = b[1] + b[5];
        v[2] = b[2] + b[6];
        v[3] = b[3] + b[7];
        v[4] = b[0] - b[4];
        v[5] = b[1] - b[5];
        v[6] = b[2] - b[6];
        v[7] = b[3] - b[7];
    }
}

/// Unnormalised transform (no `1/sqrt(len)`) of a power-of-two block of at most [`FWHT_BLOCK`]
/// elements: EDEN scales its pieces before, so partial sums stay within the input's L2 norm.
pub fn fwht_block_unscaled(x: &mut [f32]) {
    debug_assert!(x.len() <= FWHT_BLOCK && (x.is_empty() || x.len().is_power_of_two()));
    fwht_unscaled(x);
}

/// Unnormalised transform of a power-of-two block that fits in cache.
fn fwht_unscaled(x: &mut [f32]) {
    let len = x.len();
    let mut h = 1;
    if len >= 8 {
        radix8_base(x);
        h = 8;
    }
    while 4 * h <= len {
        radix4(x, h);
        h *= 4;
    }
    while h < len {
        for pair in x.chunks_exact_mut(2 * h) {
            let (a, b) = pair.split_at_mut(h);
            butterfly(a, b);
        }
        h *= 2;
    }
}

/// Multiplies element `j` by a seeded Rademacher sign of its global index `offset + j`.
///
/// The sign of global index `g` is bit `g % 64` of `hash_u64(seed, g / 64)`, so one hash serves
/// 64 elements and any split of a vector into pieces flips the same signs. Applying it twice is
/// the identity.
pub fn sign_flip(x: &mut [f32], seed: u64, offset: u64) {
    let mut j = 0usize;
    while j < x.len() {
        let g = offset.wrapping_add(j as u64);
        let word = hash_u64(seed, g >> 6);
        let first_bit = (g & 63) as u32;
        let take = ((64 - first_bit) as usize).min(x.len() - j);
        let mut bits = word >> first_bit;
        for v in &mut x[j..j + take] {
            *v = f32::from_bits(v.to_bits() ^ (((bits & 1) as u32) << 31));
            bits >>= 1;
        }
        j += take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rng::SplitMix64;
    use proptest::prelude::*;

    fn naive_fwht(x: &[f32]) -> Vec<f32> {
        let n = x.len();
        let scale = 1.0 / (n as f64).sqrt();
        (0..n)
            .map(|i| {
                let s: f64 = (0..n)
                    .map(|j| {
                        let sign = if (i & j).count_ones() % 2 == 0 {
                            1.0
                        } else {
                            -1.0
                        };
                        sign * f64::from(x[j])
                    })
                    .sum();
                (s * scale) as f32
            })
            .collect()
    }

    fn random_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut g = SplitMix64::new(seed);
        (0..n).map(|_| (g.next_f64() * 2.0 - 1.0) as f32).collect()
    }

    #[test]
    fn matches_naive_transform_for_every_small_size() {
        for log in 0..=9 {
            let x = random_vec(1 << log, log);
            let mut y = x.clone();
            fwht(&mut y);
            for (a, b) in y.iter().zip(naive_fwht(&x)) {
                assert!((a - b).abs() < 1e-4, "len {}: {a} vs {b}", 1 << log);
            }
        }
    }

    #[test]
    fn large_input_is_self_inverse_and_norm_preserving() {
        let x = random_vec(1 << 18, 5);
        let mut y = x.clone();
        fwht(&mut y);
        let nx: f64 = x.iter().map(|v| f64::from(*v).powi(2)).sum();
        let ny: f64 = y.iter().map(|v| f64::from(*v).powi(2)).sum();
        assert!((nx - ny).abs() / nx < 1e-5);
        fwht(&mut y);
        let err = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-5, "max error {err}");
    }

    #[test]
    fn cross_block_stages_match_the_definition() {
        // A unit vector at index i transforms to the Hadamard row i, scaled: check a few entries.
        let n = 1 << 17;
        let i = 70_001usize;
        let mut x = vec![0.0f32; n];
        x[i] = 1.0;
        fwht(&mut x);
        let s = 1.0 / (n as f32).sqrt();
        for j in [0usize, 1, 65_535, 65_536, 99_999, n - 1] {
            let expected = if (i & j).count_ones().is_multiple_of(2) {
                s
            } else {
                -s
            };
            assert!((x[j] - expected).abs() < 1e-7);
        }
    }

    #[test]
    fn sign_flip_is_split_invariant_and_balanced() {
        let x = vec![1.0f32; 1000];
        let mut whole = x.clone();
        sign_flip(&mut whole, 9, 37);
        let mut parts = x.clone();
        let (a, b) = parts.split_at_mut(301);
        sign_flip(a, 9, 37);
        sign_flip(b, 9, 37 + 301);
        assert_eq!(whole, parts);
        let negatives = whole.iter().filter(|v| **v < 0.0).count();
        assert!((400..600).contains(&negatives), "{negatives}");
        let mut other = x.clone();
        sign_flip(&mut other, 10, 37);
        assert_ne!(whole, other);
    }

    proptest! {
        #[test]
        fn sign_flip_twice_is_identity(x in proptest::collection::vec(-1e6f32..1e6, 0..300), seed: u64, offset in 0u64..1 << 40) {
            let mut y = x.clone();
            sign_flip(&mut y, seed, offset);
            for (a, b) in x.iter().zip(&y) {
                prop_assert_eq!(a.abs().to_bits(), b.abs().to_bits());
            }
            sign_flip(&mut y, seed, offset);
            prop_assert_eq!(x, y);
        }

        #[test]
        fn fwht_round_trips(log in 0u32..12, seed: u64) {
            let x = random_vec(1 << log, seed);
            let mut y = x.clone();
            fwht(&mut y);
            fwht(&mut y);
            for (a, b) in x.iter().zip(&y) {
                prop_assert!((a - b).abs() < 1e-5);
            }
        }
    }
}
