//! Seeded Bernoulli masks and bitmap extract/scatter: random-k and partial model sharing send a seed, not indices.

// Element `i` is selected iff `hash_u64(seed, i) < fraction * 2^64` (every element when
// `fraction >= 1`), so sender and receiver rebuild the same mask from the seed alone. Bitmaps
// are LSB-first: bit `i % 8` of byte `i / 8` stands for element `i`, and are `ceil(n / 8)` bytes.

use rayon::prelude::*;

use crate::error::{CodecError, Result};
use crate::kernels::rng::hash_u64;

/// Bitmap bytes per rayon task (65 536 elements).
const BLOCK_BYTES: usize = 1 << 13;

/// The seeded selection rule for one mask.
#[derive(Clone, Copy)]
struct SeededMask {
    seed: u64,
    limit: u64,
    all: bool,
}

impl SeededMask {
    /// `fraction` in (0, 1] by precondition; anything at or above 1 selects all, NaN or <= 0 selects none.
    fn new(fraction: f64, seed: u64) -> Self {
        let all = fraction >= 1.0;
        // Float-to-int casts saturate and send NaN to 0, so the limit is always well defined.
        let limit = (fraction * 18_446_744_073_709_551_616.0) as u64;
        Self { seed, limit, all }
    }

    #[inline]
    fn selects(self, i: u64) -> bool {
        self.all || hash_u64(self.seed, i) < self.limit
    }

    /// Selection bits of elements `first .. first + count` (`count <= 64`), bit `j` for element `first + j`.
    #[inline]
    fn word(self, first: u64, count: usize) -> u64 {
        if self.all {
            return if count >= 64 {
                u64::MAX
            } else {
                (1u64 << count) - 1
            };
        }
        if count >= 64 {
            // Fixed trip count so the 64 hashes pipeline (and vectorise where the target allows).
            let mut w = 0u64;
            for j in 0..64 {
                w |= u64::from(hash_u64(self.seed, first + j) < self.limit) << j;
            }
            return w;
        }
        (0..count as u64).fold(0, |w, j| w | u64::from(self.selects(first + j)) << j)
    }
}

/// Elements per rayon task in the seeded kernels (a multiple of 64).
const BLOCK_ELEMS: usize = BLOCK_BYTES * 8;

/// Number of elements a seeded mask selects out of `n`.
#[must_use]
pub fn mask_count(n: usize, fraction: f64, seed: u64) -> usize {
    let mask = SeededMask::new(fraction, seed);
    if mask.all {
        return n;
    }
    (0..n)
        .into_par_iter()
        .with_min_len(1 << 16)
        .filter(|&i| mask.selects(i as u64))
        .count()
}

/// The seeded mask as an LSB-first bitmap of `ceil(n / 8)` bytes.
#[must_use]
pub fn mask_bitmap(n: usize, fraction: f64, seed: u64) -> Vec<u8> {
    let mask = SeededMask::new(fraction, seed);
    let mut out = vec![0u8; n.div_ceil(8)];
    out.par_chunks_mut(BLOCK_BYTES)
        .enumerate()
        .for_each(|(block, bytes)| {
            let first = block * BLOCK_ELEMS;
            for (g, dst) in bytes.chunks_mut(8).enumerate() {
                let start = first + 64 * g;
                let word = mask.word(start as u64, (n - start).min(64));
                dst.copy_from_slice(&word.to_le_bytes()[..dst.len()]);
            }
        });
    out
}

/// The values of `x` that the seeded mask selects, in index order.
///
/// One fused pass: each block draws its selection words and gathers straight away, so `x` is read once.
#[must_use]
pub fn mask_extract(x: &[f32], fraction: f64, seed: u64) -> Vec<f32> {
    let mask = SeededMask::new(fraction, seed);
    let expected = (BLOCK_ELEMS as f64 * fraction.clamp(0.0, 1.0) * 1.1) as usize + 64;
    let parts: Vec<Vec<f32>> = x
        .par_chunks(BLOCK_ELEMS)
        .enumerate()
        .map(|(block, xs)| {
            let mut values = Vec::with_capacity(expected.min(xs.len()));
            for (g, group) in xs.chunks(64).enumerate() {
                let mut word = mask.word((block * BLOCK_ELEMS + 64 * g) as u64, group.len());
                while word != 0 {
                    values.push(group[word.trailing_zeros() as usize]);
                    word &= word - 1;
                }
            }
            values
        })
        .collect();
    parts.concat()
}

/// `out[i] += weight * v` for the selected `i`, taking `values` in index order.
///
/// `values` and `out` may come from an untrusted frame: `out.len()` must be `n` and
/// `values.len()` the mask's count.
pub fn mask_scatter_add(
    values: &[f32],
    n: usize,
    fraction: f64,
    seed: u64,
    weight: f32,
    out: &mut [f32],
) -> Result<()> {
    if out.len() != n {
        return Err(CodecError::input(format!(
            "mask output has {} elements, expected {n}",
            out.len()
        )));
    }
    bitmap_scatter_add(values, &mask_bitmap(n, fraction, seed), weight, out)
}

/// Checks that `bitmap` is exactly `ceil(n / 8)` bytes with no bit set at or past `n`.
fn check_bitmap(bitmap: &[u8], n: usize) -> Result<()> {
    if bitmap.len() != n.div_ceil(8) {
        return Err(CodecError::frame(format!(
            "bitmap is {} bytes, expected {} for {n} elements",
            bitmap.len(),
            n.div_ceil(8)
        )));
    }
    if n % 8 != 0 && bitmap.last().is_some_and(|&b| b >> (n % 8) != 0) {
        return Err(CodecError::frame(
            "bitmap has bits set past the last element",
        ));
    }
    Ok(())
}

/// Set bits per block of [`BLOCK_BYTES`] and their exclusive prefix sums (one more entry: the total).
fn block_offsets(bitmap: &[u8]) -> Vec<usize> {
    let counts: Vec<usize> = bitmap
        .par_chunks(BLOCK_BYTES)
        .map(|c| c.iter().map(|b| b.count_ones() as usize).sum())
        .collect();
    let mut offsets = Vec::with_capacity(counts.len() + 1);
    let mut total = 0;
    offsets.push(0);
    for c in counts {
        total += c;
        offsets.push(total);
    }
    offsets
}

/// Extract with a bitmap already known to fit `x`.
fn extract(x: &[f32], bitmap: &[u8]) -> Vec<f32> {
    let offsets = block_offsets(bitmap);
    let mut values = vec![0.0f32; offsets[offsets.len() - 1]];
    let mut slots: Vec<&mut [f32]> = Vec::with_capacity(offsets.len() - 1);
    let mut rest = values.as_mut_slice();
    for w in offsets.windows(2) {
        let (head, tail) = rest.split_at_mut(w[1] - w[0]);
        slots.push(head);
        rest = tail;
    }
    slots
        .into_par_iter()
        .zip(bitmap.par_chunks(BLOCK_BYTES))
        .zip(x.par_chunks(BLOCK_BYTES * 8))
        .for_each(|((slot, bytes), xs)| {
            let mut k = 0;
            for (j, &b) in bytes.iter().enumerate() {
                let mut bits = b;
                while bits != 0 {
                    slot[k] = xs[j * 8 + bits.trailing_zeros() as usize];
                    k += 1;
                    bits &= bits - 1;
                }
            }
        });
    values
}

/// The values of `x` whose bit is set in `bitmap` (`ceil(x.len() / 8)` bytes, LSB-first), in index order.
pub fn bitmap_extract(x: &[f32], bitmap: &[u8]) -> Result<Vec<f32>> {
    check_bitmap(bitmap, x.len())?;
    Ok(extract(x, bitmap))
}

/// `out[i] += weight * v` for each set bit `i`, taking `values` in index order; all lengths are checked.
pub fn bitmap_scatter_add(
    values: &[f32],
    bitmap: &[u8],
    weight: f32,
    out: &mut [f32],
) -> Result<()> {
    check_bitmap(bitmap, out.len())?;
    let offsets = block_offsets(bitmap);
    let total = offsets[offsets.len() - 1];
    if values.len() != total {
        return Err(CodecError::frame(format!(
            "mask selects {total} elements, got {} values",
            values.len()
        )));
    }
    out.par_chunks_mut(BLOCK_BYTES * 8)
        .zip(bitmap.par_chunks(BLOCK_BYTES))
        .zip(offsets.par_windows(2))
        .for_each(|((os, bytes), w)| {
            let mut vs = values[w[0]..w[1]].iter();
            for (j, &b) in bytes.iter().enumerate() {
                let mut bits = b;
                while bits != 0 {
                    if let Some(v) = vs.next() {
                        os[j * 8 + bits.trailing_zeros() as usize] += weight * v;
                    }
                    bits &= bits - 1;
                }
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_selected(n: usize, fraction: f64, seed: u64) -> Vec<usize> {
        let limit = (fraction * 2f64.powi(64)) as u64;
        (0..n)
            .filter(|&i| fraction >= 1.0 || hash_u64(seed, i as u64) < limit)
            .collect()
    }

    #[test]
    fn count_matches_fraction_and_definition() {
        let n = 1_000_003;
        let c = mask_count(n, 0.1, 42);
        assert!((c as f64 - 100_000.3).abs() < 1500.0, "{c}");
        assert_eq!(c, naive_selected(n, 0.1, 42).len());
        assert_eq!(mask_count(n, 1.0, 42), n);
        assert_eq!(mask_count(0, 0.5, 42), 0);
        assert_ne!(mask_bitmap(1000, 0.5, 1), mask_bitmap(1000, 0.5, 2));
    }

    #[test]
    fn extract_then_scatter_restores_the_selected_values() {
        let n = 300_001;
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let v = mask_extract(&x, 0.25, 9);
        let sel = naive_selected(n, 0.25, 9);
        assert_eq!(v.len(), sel.len());
        assert!(sel
            .iter()
            .zip(&v)
            .all(|(&i, &val)| val.to_bits() == (i as f32).to_bits()));
        let mut out = vec![1.0f32; n];
        mask_scatter_add(&v, n, 0.25, 9, 2.0, &mut out).unwrap();
        for (i, o) in out.iter().enumerate() {
            let expected = if sel.binary_search(&i).is_ok() {
                1.0 + 2.0 * i as f32
            } else {
                1.0
            };
            assert_eq!(o.to_bits(), expected.to_bits());
        }
    }

    #[test]
    fn scatter_rejects_wrong_lengths() {
        let n = 1000;
        let c = mask_count(n, 0.3, 1);
        let mut out = vec![0.0f32; n];
        assert!(mask_scatter_add(&vec![0.0; c + 1], n, 0.3, 1, 1.0, &mut out).is_err());
        assert!(mask_scatter_add(&vec![0.0; c], n + 1, 0.3, 1, 1.0, &mut out).is_err());
        assert!(mask_scatter_add(&vec![0.0; c], n, 0.3, 1, 1.0, &mut out).is_ok());
        assert!(
            bitmap_scatter_add(&[1.0], &[0b1000], 1.0, &mut out[..3]).is_err(),
            "bit past n"
        );
        assert!(
            bitmap_scatter_add(&[1.0], &[1, 0], 1.0, &mut out[..3]).is_err(),
            "bitmap too long"
        );
        assert!(bitmap_extract(&out[..9], &[1]).is_err(), "bitmap too short");
    }

    proptest! {
        #[test]
        fn bitmap_round_trip(bits in proptest::collection::vec(any::<bool>(), 0..2000), weight in -4.0f32..4.0) {
            let n = bits.len();
            let mut bitmap = vec![0u8; n.div_ceil(8)];
            for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
                bitmap[i / 8] |= 1 << (i % 8);
            }
            let x: Vec<f32> = (0..n).map(|i| i as f32 - 7.0).collect();
            let v = bitmap_extract(&x, &bitmap).unwrap();
            let expected: Vec<f32> = x.iter().zip(&bits).filter(|(_, b)| **b).map(|(v, _)| *v).collect();
            prop_assert_eq!(&v, &expected);
            let mut out = vec![0.0f32; n];
            bitmap_scatter_add(&v, &bitmap, weight, &mut out).unwrap();
            for i in 0..n {
                let expected = if bits[i] { 0.0 + weight * x[i] } else { 0.0 };
                prop_assert_eq!(out[i].to_bits(), expected.to_bits());
            }
        }

        #[test]
        fn seeded_bitmap_matches_definition(n in 0usize..5000, fraction in 0.001f64..1.0, seed: u64) {
            let bitmap = mask_bitmap(n, fraction, seed);
            let from_bitmap: Vec<usize> = (0..n).filter(|&i| bitmap[i / 8] >> (i % 8) & 1 == 1).collect();
            prop_assert_eq!(&from_bitmap, &naive_selected(n, fraction, seed));
            prop_assert_eq!(mask_count(n, fraction, seed), from_bitmap.len());
        }

        #[test]
        fn random_bitmaps_never_panic(bitmap in proptest::collection::vec(any::<u8>(), 0..300), n in 0usize..2400, k in 0usize..600) {
            let mut out = vec![0.0f32; n];
            let _ = bitmap_scatter_add(&vec![1.0; k], &bitmap, 1.0, &mut out);
            let _ = bitmap_extract(&out, &bitmap);
        }
    }
}
