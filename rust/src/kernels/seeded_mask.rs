//! Seeded Bernoulli masks and bitmap extract/scatter: random-k and partial model sharing send a seed, not indices.

// Every element is selected independently with probability `fraction` (all of them when
// `fraction >= 1`, none when it is NaN or <= 0), so sender and receiver rebuild the same mask
// from `(n, fraction, seed)` alone, and the mask of `n` elements is a prefix of the mask of more.
// Elements come in blocks of `BLOCK_ELEMS`, block `b` drawn from its own stream:
// - `fraction >= 1/8`: element `i` is selected iff `hash_u64(seed, i) < fraction * 2^64`, one
//   draw per element (64 at a time, in a loop that vectorises);
// - `fraction < 1/8`: the gaps between selected elements are geometric, drawn from
//   `SplitMix64::new(hash_u64(derive(seed, GAP_STREAM), b))`: gap `floor(ln(u) * (1 / ln(1 - fraction)))`
//   with `u = (r >> 11 + 1/2) / 2^53`, so a block costs one draw per selected element, not per
//   element (randk:0.01 of 10M floats: about 100K draws instead of 10M). Both logarithms are
//   [`ln_series`], additions, multiplications and divisions only, so every IEEE platform draws
//   the same gaps (a libm `ln` may differ in the last bit, and a mask must not).
// Bitmaps are LSB-first: bit `i % 8` of byte `i / 8` stands for element `i`, and are `ceil(n / 8)` bytes.

use rayon::prelude::*;

use crate::error::{try_filled, CodecError, Result};
use crate::kernels::prefetch::{prefetch, CACHED_LINES};
use crate::kernels::rng::{derive, hash_u64, SplitMix64};
use crate::kernels::shared::run_shared;
use crate::kernels::topk::scatter_from;

/// Bitmap bytes per rayon task and per seeded block (65 536 elements).
const BLOCK_BYTES: usize = 1 << 13;

/// Elements per seeded block and rayon task (a multiple of 64).
const BLOCK_ELEMS: usize = BLOCK_BYTES * 8;

/// Fractions below this draw the gaps between selected elements instead of one draw per element.
const GAPS_BELOW: f64 = 0.125;

/// Gaps drawn ahead of the walk that places them.
pub(crate) const GAP_BATCH: usize = 16;

/// Sub-stream of the seed that draws gaps, so it never repeats the per-element draws.
const GAP_STREAM: u64 = 0x4741_5053;

/// How one mask selects.
#[derive(Clone, Copy)]
enum Rule {
    All,
    Nothing,
    /// One draw per element, compared with `fraction * 2^64`.
    PerElement {
        limit: u64,
    },
    /// Geometric gaps: `inv_log_q = 1 / ln(1 - fraction)`.
    Gaps {
        inv_log_q: f64,
    },
}

/// The seeded selection rule for one mask.
#[derive(Clone, Copy)]
struct SeededMask {
    seed: u64,
    rule: Rule,
}

impl SeededMask {
    /// `fraction` in (0, 1] by precondition; anything at or above 1 selects all, NaN or <= 0 selects none.
    fn new(fraction: f64, seed: u64) -> Self {
        let rule = if fraction >= 1.0 {
            Rule::All
        } else if fraction.is_nan() || fraction <= 0.0 {
            Rule::Nothing
        } else if fraction < GAPS_BELOW {
            Rule::Gaps {
                inv_log_q: 1.0 / ln_one_minus(fraction),
            }
        } else {
            // Float-to-int casts saturate, so the limit is always well defined.
            Rule::PerElement {
                limit: (fraction * 18_446_744_073_709_551_616.0) as u64,
            }
        };
        Self { seed, rule }
    }

    fn all(self) -> bool {
        matches!(self.rule, Rule::All)
    }

    /// Selection bits of block `block`'s first `len` elements (`len <= BLOCK_ELEMS`) into
    /// `words` (`len.div_ceil(64)` of them): bit `j % 64` of word `j / 64` for element `j`.
    fn block_words(self, block: usize, len: usize, words: &mut [u64]) {
        debug_assert_eq!(words.len(), len.div_ceil(64));
        let first = (block * BLOCK_ELEMS) as u64;
        match self.rule {
            Rule::All => {
                words.fill(u64::MAX);
                if !len.is_multiple_of(64) {
                    words[len / 64] = (1u64 << (len % 64)) - 1;
                }
            }
            Rule::Nothing => words.fill(0),
            Rule::PerElement { limit } => {
                for (g, w) in words.iter_mut().enumerate() {
                    let start = first + 64 * g as u64;
                    let count = (len - 64 * g).min(64);
                    *w = if count == 64 {
                        // Fixed trip count so the 64 hashes pipeline (and vectorise where the target allows).
                        let mut w = 0u64;
                        for j in 0..64 {
                            w |= u64::from(hash_u64(self.seed, start + j) < limit) << j;
                        }
                        w
                    } else {
                        (0..count as u64).fold(0, |w, j| {
                            w | u64::from(hash_u64(self.seed, start + j) < limit) << j
                        })
                    };
                }
            }
            Rule::Gaps { inv_log_q } => {
                words.fill(0);
                walk_gaps(self.seed, inv_log_q, block, len, |j| {
                    words[j / 64] |= 1u64 << (j % 64);
                });
            }
        }
    }

    /// Calls `f(block, first_element, words)` for every block of an `n`-element mask, in parallel.
    fn for_blocks<R: Send>(self, n: usize, f: impl Fn(usize, &[u64]) -> R + Sync + Send) -> Vec<R> {
        (0..n.div_ceil(BLOCK_ELEMS))
            .into_par_iter()
            .map(|b| {
                let len = (n - b * BLOCK_ELEMS).min(BLOCK_ELEMS);
                let mut words = [0u64; BLOCK_ELEMS / 64];
                let words = &mut words[..len.div_ceil(64)];
                self.block_words(b, len, words);
                f(b, words)
            })
            .collect()
    }
}

/// Calls `select(j)` for each element `j < len` of block `block` that a sparse mask keeps, in
/// ascending order: each gap to the next kept element is a geometric draw of the block's stream.
fn walk_gaps(seed: u64, inv_log_q: f64, block: usize, len: usize, mut select: impl FnMut(usize)) {
    let mut rng = SplitMix64::new(hash_u64(derive(seed, GAP_STREAM), block as u64));
    // Gaps are independent draws: computing a batch before walking them keeps the logarithms'
    // latency off the walk's dependency chain, and lets the batch run in vector lanes.
    let mut gaps = [0usize; GAP_BATCH];
    let mut j = 0usize;
    loop {
        crate::kernels::simd::draw_gaps(&mut rng, inv_log_q, &mut gaps);
        for &g in &gaps {
            j = j.saturating_add(g);
            if j >= len {
                return;
            }
            select(j);
            j += 1;
        }
    }
}

/// One batch of geometric gaps: `floor(ln(u) / ln(1 - fraction))` for uniforms `u` in (0, 1)
/// from `rng` (a gap past any block, or an infinite one, saturates).
#[inline(always)]
pub(crate) fn draw_gap_batch(rng: &mut SplitMix64, inv_log_q: f64, gaps: &mut [usize; GAP_BATCH]) {
    let mut raw = [0u64; GAP_BATCH];
    rng.next_batch(&mut raw);
    for (g, &r) in gaps.iter_mut().zip(&raw) {
        let u = ((r >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
        *g = (ln_unit(u) * inv_log_q) as usize;
    }
}

/// `2 * (s + s^3/3 + s^5/5 + ...)`, which is `ln((1 + s) / (1 - s))`, for `|s| <= 1/3`: IEEE
/// additions, multiplications and divisions in a fixed order, so the same bits on every platform.
fn ln_series(s: f64) -> f64 {
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for k in 0..24 {
        sum += term / f64::from(2 * k + 1);
        term *= s2;
    }
    2.0 * sum
}

/// `ln(1 - f)` for `f` in (0, 1/8), without cancellation: `1 - f = (1 + s) / (1 - s)` with
/// `s = -f / (2 - f)`.
fn ln_one_minus(f: f64) -> f64 {
    ln_series(-f / (2.0 - f))
}

/// `ln(u)` for a normal `u` in (0, 1]: `u = m * 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, then
/// `ln(m) = ln_series((m - 1) / (m + 1))` (so `|s| < 0.172`) in nine terms, within 1e-13 of libm.
#[inline(always)]
fn ln_unit(u: f64) -> f64 {
    const LN2: f64 = std::f64::consts::LN_2;
    let bits = u.to_bits();
    let m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000);
    // Branch-free (half of all draws take each side, so a branch would mispredict half the time).
    let high = m > std::f64::consts::SQRT_2;
    let e = ((bits >> 52) & 0x7FF) as i64 - 1023 + i64::from(high);
    let m = if high { m * 0.5 } else { m };
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0
                + s2 * (1.0 / 7.0
                    + s2 * (1.0 / 9.0
                        + s2 * (1.0 / 11.0
                            + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0 + s2 * (1.0 / 17.0))))))));
    e as f64 * LN2 + 2.0 * s * p
}

/// Number of elements a seeded mask selects out of `n`.
#[must_use]
pub fn mask_count(n: usize, fraction: f64, seed: u64) -> usize {
    let mask = SeededMask::new(fraction, seed);
    if mask.all() {
        return n;
    }
    mask.for_blocks(n, |_, words| {
        words.iter().map(|w| w.count_ones() as usize).sum::<usize>()
    })
    .into_iter()
    .sum()
}

/// The seeded mask as an LSB-first bitmap of `ceil(n / 8)` bytes; [`CodecError::Alloc`] when
/// the allocator cannot provide them.
pub fn mask_bitmap(n: usize, fraction: f64, seed: u64) -> Result<Vec<u8>> {
    let mask = SeededMask::new(fraction, seed);
    let mut out = try_filled(n.div_ceil(8), 0u8, "bitmap bytes")?;
    out.par_chunks_mut(BLOCK_BYTES)
        .enumerate()
        .for_each(|(block, bytes)| {
            let len = (n - block * BLOCK_ELEMS).min(BLOCK_ELEMS);
            let mut words = [0u64; BLOCK_ELEMS / 64];
            let words = &mut words[..len.div_ceil(64)];
            mask.block_words(block, len, words);
            for (dst, word) in bytes.chunks_mut(8).zip(words.iter()) {
                dst.copy_from_slice(&word.to_le_bytes()[..dst.len()]);
            }
        });
    Ok(out)
}

/// The values of `x` that the seeded mask selects, in index order.
///
/// One fused pass: each block draws its selection words and gathers straight away, so `x` is read once.
#[must_use]
pub fn mask_extract(x: &[f32], fraction: f64, seed: u64) -> Vec<f32> {
    let mask = SeededMask::new(fraction, seed);
    let parts = mask.for_blocks(x.len(), |block, words| {
        let xs = &x[block * BLOCK_ELEMS..];
        let selected = words.iter().map(|w| w.count_ones() as usize).sum();
        let mut values = Vec::with_capacity(selected);
        for (g, &w) in words.iter().enumerate() {
            let mut word = w;
            while word != 0 {
                values.push(xs[64 * g + word.trailing_zeros() as usize]);
                word &= word - 1;
            }
        }
        values
    });
    parts.concat()
}

/// `out[i] += weight * v` for the selected `i`, taking `values` in index order.
///
/// `values` and `out` may come from an untrusted frame: `out.len()` must be `n` and
/// `values.len()` the mask's count. Draws the mask once, into a bitmap of `n / 8` bytes.
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
    let mask = SeededMask::new(fraction, seed);
    if let (Rule::Gaps { inv_log_q }, Ok(_)) = (mask.rule, u32::try_from(n)) {
        // A sparse mask: its indices (4 bytes per kept element, not a bit per element) are
        // counted before anything is added, then scattered in order. Each block's indices come
        // straight from its gaps, their targets prefetched as they are drawn (while they fit in
        // cache), so the scatter finds them there; this thread starts at once and the pool
        // joins as it wakes.
        let blocks = n.div_ceil(BLOCK_ELEMS);
        let mut parts: Vec<Vec<u32>> = vec![Vec::new(); blocks];
        let target: &[f32] = out;
        let cached = values.len() <= CACHED_LINES;
        run_shared(
            parts.iter_mut().enumerate().collect(),
            values.len(),
            |(block, idx)| {
                let first = block * BLOCK_ELEMS;
                let len = (n - first).min(BLOCK_ELEMS);
                idx.reserve((len as f64 * fraction * 1.1) as usize + 16);
                walk_gaps(seed, inv_log_q, block, len, |j| {
                    if let Some(t) = target.get(first + j).filter(|_| cached) {
                        prefetch(std::slice::from_ref(t));
                    }
                    idx.push((first + j) as u32);
                });
            },
        );
        let selected: usize = parts.iter().map(Vec::len).sum();
        if selected != values.len() {
            return Err(CodecError::frame(format!(
                "mask selects {selected} elements, got {} values",
                values.len()
            )));
        }
        let mut rest = values;
        let mut tasks = Vec::with_capacity(blocks);
        for (block, (idx, out)) in parts.iter().zip(out.chunks_mut(BLOCK_ELEMS)).enumerate() {
            let (these, later) = rest.split_at(idx.len());
            tasks.push((block * BLOCK_ELEMS, these, idx, out));
            rest = later;
        }
        run_shared(tasks, selected, |(first, values, idx, out)| {
            scatter_from(values, idx, first, weight, out);
        });
        return Ok(());
    }
    bitmap_scatter_add(values, &mask_bitmap(n, fraction, seed)?, weight, out)
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
    if !n.is_multiple_of(8) && bitmap.last().is_some_and(|&b| b >> (n % 8) != 0) {
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

    /// The mask's definition (module comment), element by element, one block after another.
    fn naive_selected(n: usize, fraction: f64, seed: u64) -> Vec<usize> {
        if fraction >= 1.0 {
            return (0..n).collect();
        }
        if fraction >= GAPS_BELOW {
            let limit = (fraction * 2f64.powi(64)) as u64;
            return (0..n)
                .filter(|&i| hash_u64(seed, i as u64) < limit)
                .collect();
        }
        let mut out = Vec::new();
        for (b, first) in (0..n).step_by(BLOCK_ELEMS).enumerate() {
            let len = (n - first).min(BLOCK_ELEMS) as f64;
            let mut rng = SplitMix64::new(hash_u64(derive(seed, GAP_STREAM), b as u64));
            let mut gap = || {
                let u = ((rng.next_u64() >> 11) as f64 + 0.5) / 2f64.powi(53);
                (ln_unit(u) * (1.0 / ln_one_minus(fraction))).floor()
            };
            let mut j = gap();
            while j < len {
                out.push(first + j as usize);
                j += 1.0 + gap();
            }
        }
        out
    }

    #[test]
    fn the_portable_logarithms_match_libm() {
        for f in [1e-9, 1e-4, 0.01, 0.0625, 0.25, 0.5] {
            let (ours, libm) = (ln_one_minus(f), (-f).ln_1p());
            assert!(
                (ours - libm).abs() <= 4.0 * f64::EPSILON * libm.abs(),
                "{f}"
            );
        }
        let mut g = SplitMix64::new(5);
        for _ in 0..100_000 {
            let u = ((g.next_u64() >> 11) as f64 + 0.5) / 2f64.powi(53);
            let (ours, libm) = (ln_unit(u), u.ln());
            assert!((ours - libm).abs() <= 1e-13 * libm.abs().max(1e-3), "{u}");
        }
    }

    #[test]
    fn gap_drawn_masks_keep_each_element_with_the_fraction() {
        // 2M elements at 1 %: the count is binomial, within 6 standard deviations of 20 000.
        let c = mask_count(2_000_000, 0.01, 3) as f64;
        assert!(
            (c - 20_000.0).abs() < 6.0 * (20_000.0f64 * 0.99).sqrt(),
            "{c}"
        );
        // Every position is equally likely: both halves of every block get their share.
        let bitmap = mask_bitmap(1 << 20, 0.01, 4).unwrap();
        let first_halves: u32 = bitmap
            .chunks(BLOCK_BYTES)
            .map(|b| {
                b[..BLOCK_BYTES / 2]
                    .iter()
                    .map(|x| x.count_ones())
                    .sum::<u32>()
            })
            .sum();
        let all: u32 = bitmap.iter().map(|x| x.count_ones()).sum();
        let share = f64::from(first_halves) / f64::from(all);
        assert!((share - 0.5).abs() < 0.02, "{share}");
    }

    #[test]
    fn count_matches_fraction_and_definition() {
        let n = 1_000_003;
        let c = mask_count(n, 0.1, 42);
        assert!((c as f64 - 100_000.3).abs() < 1500.0, "{c}");
        assert_eq!(c, naive_selected(n, 0.1, 42).len());
        assert_eq!(mask_count(n, 1.0, 42), n);
        assert_eq!(mask_count(0, 0.5, 42), 0);
        assert_ne!(
            mask_bitmap(1000, 0.5, 1).unwrap(),
            mask_bitmap(1000, 0.5, 2).unwrap()
        );
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

    #[test]
    #[allow(clippy::float_cmp)] // untouched means bit for bit
    fn a_sparse_mask_scatters_by_index_as_the_bitmap_does() {
        // Below 1/8 the scatter walks the mask's indices; the bitmap path must agree exactly.
        let n = 1_000_003;
        for (fraction, seed) in [(0.01, 3), (0.1, 8), (1e-5, 1)] {
            let values: Vec<f32> = (0..mask_count(n, fraction, seed))
                .map(|i| i as f32)
                .collect();
            let mut by_index = vec![0.5f32; n];
            mask_scatter_add(&values, n, fraction, seed, 2.0, &mut by_index).unwrap();
            let mut by_bitmap = vec![0.5f32; n];
            let bitmap = mask_bitmap(n, fraction, seed).unwrap();
            bitmap_scatter_add(&values, &bitmap, 2.0, &mut by_bitmap).unwrap();
            assert_eq!(by_index, by_bitmap, "fraction {fraction}");
            let mut untouched = vec![0.5f32; n];
            let short = &values[..values.len().saturating_sub(1)];
            if !values.is_empty() {
                assert!(mask_scatter_add(short, n, fraction, seed, 2.0, &mut untouched).is_err());
                assert!(
                    untouched.iter().all(|&v| v == 0.5),
                    "a refused scatter wrote"
                );
            }
        }
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
        fn seeded_bitmap_matches_definition(n in 0usize..200_000, fraction in 0.001f64..1.0, seed: u64) {
            let bitmap = mask_bitmap(n, fraction, seed).unwrap();
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
