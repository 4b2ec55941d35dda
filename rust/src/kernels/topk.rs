//! Top-k magnitude selection in linear time (radix select, or a sampled threshold as in DGC), plus gather/scatter.

use rayon::prelude::*;

use crate::kernels::prefetch::prefetch;
use crate::kernels::rng::hash_u64;
use crate::kernels::shared::{run_shared, SERIAL_BELOW};

/// Bits of the magnitude key that the first histogram resolves (65 536 bins, 256 KiB, L2-resident).
const TOP_BITS: u32 = 16;
/// The remaining low bits of the 31-bit magnitude key.
const LOW_BITS: u32 = 31 - TOP_BITS;
/// Largest threshold bucket whose members are gathered directly; a fuller one gets a second histogram.
const CANDIDATE_LIMIT: usize = 1 << 20;
/// Smallest sample the sampled threshold is estimated from.
const MIN_SAMPLE: usize = 4096;
/// Consecutive elements per sampled run: 64 bytes, one cache line.
const SAMPLE_RUN: usize = 16;
/// Seed of the sample behind the exact selector's prefilter (its result does not depend on it).
const PREFILTER_SEED: u64 = 0x746F_706B;

/// Order-preserving integer key of `|v|`: for non-negative floats the bit pattern is monotone.
#[inline]
fn key(v: f32) -> u32 {
    v.to_bits() & 0x7FFF_FFFF
}

/// Elements per rayon task: small enough that work stealing balances a busy machine.
const CHUNK: usize = 1 << 16;

/// Counts, per bin, the elements that `bin` maps to `Some(bin)`: one histogram per rayon split, summed.
/// Counts fit in u32 because indices do (`n <= u32::MAX`).
fn histogram<const BINS: usize>(x: &[f32], bin: impl Fn(u32) -> Option<usize> + Sync) -> Vec<u32> {
    x.par_chunks(CHUNK)
        .fold(
            || vec![0u32; BINS],
            |mut h, c| {
                for v in c {
                    if let Some(b) = bin(key(*v)) {
                        h[b % BINS] += 1;
                    }
                }
                h
            },
        )
        .reduce(
            || vec![0u32; BINS],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

/// Scans bins from the top: the bin holding the `k`-th largest and the count strictly above it.
fn find_bin(hist: &[u32], k: usize, mut above: usize) -> (usize, usize) {
    for b in (0..hist.len()).rev() {
        if above + hist[b] as usize >= k {
            return (b, above);
        }
        above += hist[b] as usize;
    }
    (0, above)
}

/// Merges two ascending index lists into one.
fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] < b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Of the ascending indices `cands`, keeps the `k` of largest `|x|` (ties: lowest index), still ascending.
fn keep_largest(x: &[f32], cands: Vec<u32>, k: usize) -> Vec<u32> {
    if cands.len() <= k {
        return cands;
    }
    if k == 0 {
        return Vec::new();
    }
    let keys: Vec<u32> = cands.iter().map(|&i| key(x[i as usize])).collect();
    let mut order = keys.clone();
    let pos = order.len() - k;
    let t = *order.select_nth_unstable(pos).1;
    let above = order[pos..].iter().filter(|&&q| q > t).count();
    let mut quota = k - above;
    cands
        .into_iter()
        .zip(keys)
        .filter(|&(_, q)| {
            if q == t && quota > 0 {
                quota -= 1;
                return true;
            }
            q > t
        })
        .map(|(i, _)| i)
        .collect()
}

/// Ascending indices of exactly `k` elements of largest `|x|`; ties at the threshold go to the lowest indices.
///
/// Linear time, no sort. Large inputs first try one pass: a threshold read off a sample (set low,
/// four binomial standard deviations) keeps every element at or above it, and if at least `k`
/// pass, the top `k` are among them and an exact select on those few decides. Otherwise (or for
/// small inputs) radix select on the magnitude bits: a parallel histogram of the top 16 bits finds
/// the bucket of the `k`-th largest, one parallel pass gathers everything above it and the
/// bucket's members. The result never depends on the sample, only the speed does.
/// `k >= x.len()` returns every index. Precondition: `x` has no NaN (it would rank above infinity).
#[must_use]
pub fn topk_exact(x: &[f32], k: usize) -> Vec<u32> {
    let n = x.len();
    let m = sample_len(n);
    if k > 0 && k < n && 4 * m < n {
        let mut sample = sample_keys(x, m, PREFILTER_SEED);
        let cands = collect_at_least(x, threshold_at_rank(&mut sample, margin_rank(k, m, n, 4.0)));
        if cands.len() >= k {
            return keep_largest(x, cands, k);
        }
    }
    topk_exact_with_limit(x, k, CANDIDATE_LIMIT)
}

fn topk_exact_with_limit(x: &[f32], k: usize, candidate_limit: usize) -> Vec<u32> {
    let n = x.len();
    if k == 0 {
        return Vec::new();
    }
    if k >= n {
        return (0..n as u32).collect();
    }
    let hist = histogram::<{ 1 << TOP_BITS }>(x, |q| Some((q >> LOW_BITS) as usize));
    let (bucket, above) = find_bin(&hist, k, 0);
    if hist[bucket] as usize <= candidate_limit {
        let bucket = bucket as u32;
        let parts: Vec<(Vec<u32>, Vec<u32>)> = x
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(c, xs)| {
                let base = (c * CHUNK) as u32;
                let (mut over, mut cands) = (Vec::new(), Vec::new());
                for (i, v) in xs.iter().enumerate() {
                    let b = key(*v) >> LOW_BITS;
                    if b > bucket {
                        over.push(base + i as u32);
                    } else if b == bucket {
                        cands.push(base + i as u32);
                    }
                }
                (over, cands)
            })
            .collect();
        let over: Vec<u32> = parts.iter().flat_map(|p| p.0.iter().copied()).collect();
        let cands: Vec<u32> = parts.into_iter().flat_map(|p| p.1).collect();
        return merge_sorted(&over, &keep_largest(x, cands, k - above));
    }
    // The threshold bucket is huge (many near-equal magnitudes): resolve its low bits by a second histogram.
    let low = histogram::<{ 1 << LOW_BITS }>(x, |q| {
        (q >> LOW_BITS == bucket as u32).then_some((q & ((1 << LOW_BITS) - 1)) as usize)
    });
    let (low_bin, above) = find_bin(&low, k, above);
    let t = ((bucket as u32) << LOW_BITS) | low_bin as u32;
    let mut quota = k - above;
    let parts: Vec<(Vec<u32>, Vec<u32>)> = x
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, xs)| {
            let base = (c * CHUNK) as u32;
            let (mut over, mut ties) = (Vec::new(), Vec::new());
            for (i, v) in xs.iter().enumerate() {
                let q = key(*v);
                if q > t {
                    over.push(base + i as u32);
                } else if q == t && ties.len() < quota {
                    ties.push(base + i as u32);
                }
            }
            (over, ties)
        })
        .collect();
    let mut out = Vec::with_capacity(k);
    for (over, ties) in parts {
        let take = ties.len().min(quota);
        quota -= take;
        out.extend(merge_sorted(&over, &ties[..take]));
    }
    out
}

/// Ascending indices of at most `k` large-magnitude elements, from a threshold estimated on a seeded sample.
///
/// DGC-style (Lin et al. 2018): the threshold is read off a sample of `max(n / 100, 4096)`
/// elements (cache-line runs at seeded random positions), set a little low (three binomial
/// standard deviations) so that usually slightly more than `k` pass; one parallel pass collects them and an exact select
/// trims them to the `k` largest. If fewer than `k / 2` pass, the threshold is lowered once.
/// Small inputs, where a sample would be most of the vector, use [`topk_exact`].
#[must_use]
pub fn topk_sampled(x: &[f32], k: usize, seed: u64) -> Vec<u32> {
    let n = x.len();
    let m = sample_len(n);
    if k == 0 || k >= n || 4 * m >= n {
        return topk_exact(x, k);
    }
    let mut sample = sample_keys(x, m, seed);
    let rank = margin_rank(k, m, n, 3.0);
    let mut picked = collect_at_least(x, threshold_at_rank(&mut sample, rank));
    if picked.len() < k / 2 {
        let scaled = rank as f64 * 1.5 * k as f64 / picked.len().max(1) as f64;
        picked = collect_at_least(x, threshold_at_rank(&mut sample, scaled.ceil() as usize));
    }
    keep_largest(x, picked, k)
}

/// Sample size for `n` elements: 1 %, at least [`MIN_SAMPLE`].
fn sample_len(n: usize) -> usize {
    (n / 100).max(MIN_SAMPLE)
}

/// Magnitude keys of about `m` elements: runs of [`SAMPLE_RUN`] consecutive elements (one cache line)
/// starting at seeded uniform run-aligned positions, so the sample costs `m / 16` cache misses, not `m`.
fn sample_keys(x: &[f32], m: usize, seed: u64) -> Vec<u32> {
    let runs = (x.len() / SAMPLE_RUN) as u128;
    let parts: Vec<[u32; SAMPLE_RUN]> = (0..m.div_ceil(SAMPLE_RUN) as u64)
        .into_par_iter()
        .map(|j| {
            let start = ((u128::from(hash_u64(seed, j)) * runs) >> 64) as usize * SAMPLE_RUN;
            let mut keys = [0u32; SAMPLE_RUN];
            for (k, v) in keys.iter_mut().zip(&x[start..start + SAMPLE_RUN]) {
                *k = key(*v);
            }
            keys
        })
        .collect();
    parts.concat()
}

/// Sample rank whose key lets about `k` of `n` pass, lowered by `sigmas` binomial standard deviations.
fn margin_rank(k: usize, m: usize, n: usize, sigmas: f64) -> usize {
    let expected = k as f64 * m as f64 / n as f64;
    (expected + sigmas * expected.sqrt() + 1.0).ceil() as usize
}

/// The `rank`-th largest key of the sample (rank clamped to the sample), or 0 (everything) past its end.
fn threshold_at_rank(sample: &mut [u32], rank: usize) -> u32 {
    if rank > sample.len() {
        return 0;
    }
    let pos = sample.len() - rank.max(1);
    *sample.select_nth_unstable(pos).1
}

/// Ascending indices of the elements whose magnitude key is at least `t`.
fn collect_at_least(x: &[f32], t: u32) -> Vec<u32> {
    let chunk = CHUNK;
    let parts: Vec<Vec<u32>> = x
        .par_chunks(chunk)
        .enumerate()
        .map(|(c, xs)| {
            let base = (c * chunk) as u32;
            xs.iter()
                .enumerate()
                .filter(|(_, v)| key(**v) >= t)
                .map(|(i, _)| base + i as u32)
                .collect()
        })
        .collect();
    parts.concat()
}

/// The values at `idx`. Precondition: every index is `< x.len()` (true for the selectors above).
#[must_use]
pub fn gather(x: &[f32], idx: &[u32]) -> Vec<f32> {
    idx.iter().map(|&i| x[i as usize]).collect()
}

/// `out[idx[j]] += weight * values[j]` for every `j`.
///
/// Precondition: `values.len() == idx.len()` and indices `< out.len()`, as
/// [`crate::wire::index_coding::decode_indices`] guarantees; an index out of range is skipped, never a panic.
pub fn scatter_add(values: &[f32], idx: &[u32], weight: f32, out: &mut [f32]) {
    /// Indices between a prefetch and its add: enough misses in flight to hide memory latency.
    const AHEAD: usize = 24;
    debug_assert_eq!(values.len(), idx.len());
    for (j, (&v, &i)) in values.iter().zip(idx).enumerate() {
        if let Some(later) = idx.get(j + AHEAD).and_then(|&a| out.get(a as usize)) {
            prefetch(std::slice::from_ref(later));
        }
        debug_assert!((i as usize) < out.len());
        if let Some(o) = out.get_mut(i as usize) {
            *o += weight * v;
        }
    }
}

/// [`scatter_add`] for strictly increasing `idx` (a decoded top-k selection): the selection is
/// cut at indices into pieces that own disjoint ranges of `out`, shared between this thread and
/// the pool (see [`run_shared`]); one below [`SERIAL_BELOW`] indices stays on this thread.
pub fn scatter_add_sorted(values: &[f32], idx: &[u32], weight: f32, out: &mut [f32]) {
    debug_assert!(idx.windows(2).all(|w| w[0] < w[1]));
    if idx.len() < SERIAL_BELOW {
        scatter_from(values, idx, 0, weight, out);
        return;
    }
    let mut tasks = Vec::with_capacity(idx.len().div_ceil(SCATTER_PIECE));
    let (mut first, mut rest) = (0usize, out);
    for (j, (these, ids)) in values
        .chunks(SCATTER_PIECE)
        .zip(idx.chunks(SCATTER_PIECE))
        .enumerate()
    {
        let next = idx
            .get((j + 1) * SCATTER_PIECE)
            .map_or(first + rest.len(), |&i| i as usize)
            .clamp(first, first + rest.len());
        let (mine, later) = std::mem::take(&mut rest).split_at_mut(next - first);
        tasks.push((first, these, ids, mine));
        (first, rest) = (next, later);
    }
    run_shared(tasks, idx.len(), |(first, values, idx, out)| {
        scatter_from(values, idx, first, weight, out);
    });
}

/// Indices per piece of a parallel scatter.
const SCATTER_PIECE: usize = 1 << 14;

/// `out[i - first] += weight * v` on this thread: `out` starts at element `first` of the whole
/// array (an index outside `out` is skipped).
pub(crate) fn scatter_from(
    values: &[f32],
    idx: &[u32],
    first: usize,
    weight: f32,
    out: &mut [f32],
) {
    const AHEAD: usize = 24;
    let at = |i: u32| (i as usize).checked_sub(first);
    for (j, (&v, &i)) in values.iter().zip(idx).enumerate() {
        if let Some(later) = idx.get(j + AHEAD).and_then(|&a| out.get(at(a)?)) {
            prefetch(std::slice::from_ref(later));
        }
        if let Some(o) = at(i).and_then(|i| out.get_mut(i)) {
            *o += weight * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rng::SplitMix64;
    use proptest::prelude::*;

    /// Reference: sort by (|x| descending, index ascending), take k, sort ascending.
    fn naive(x: &[f32], k: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..x.len() as u32).collect();
        order.sort_by(|&a, &b| {
            x[b as usize]
                .abs()
                .total_cmp(&x[a as usize].abs())
                .then(a.cmp(&b))
        });
        order.truncate(k);
        order.sort_unstable();
        order
    }

    fn gaussianish(n: usize, seed: u64) -> Vec<f32> {
        let mut g = SplitMix64::new(seed);
        (0..n)
            .map(|_| ((0..4).map(|_| g.next_f64()).sum::<f64>() - 2.0) as f32)
            .collect()
    }

    #[test]
    fn exact_matches_naive_on_a_large_input() {
        let x = gaussianish(300_000, 1);
        for k in [1, 10, 3000, 150_000, 299_999] {
            let expected = naive(&x, k);
            assert_eq!(topk_exact(&x, k), expected, "k = {k}");
            assert_eq!(
                topk_exact_with_limit(&x, k, CANDIDATE_LIMIT),
                expected,
                "radix, k = {k}"
            );
        }
    }

    #[test]
    fn exact_handles_a_flood_of_ties_in_both_paths() {
        let mut x = vec![0.5f32; 200_000];
        x[7] = -0.75;
        x[199_999] = 2.0;
        for limit in [CANDIDATE_LIMIT, 16] {
            let got = topk_exact_with_limit(&x, 1000, limit);
            assert_eq!(got, naive(&x, 1000));
            assert_eq!(&got[..3], &[0, 1, 2]);
        }
    }

    #[test]
    fn sampled_is_close_to_exact_on_smooth_data() {
        let x = gaussianish(2_000_000, 3);
        let k = 20_000;
        let got = topk_sampled(&x, k, 11);
        assert!(got.len() <= k && got.len() >= k * 9 / 10, "{}", got.len());
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        let exact = topk_exact(&x, k);
        let common = merge_sorted(&got, &exact)
            .windows(2)
            .filter(|w| w[0] == w[1])
            .count();
        assert!(common >= got.len() * 99 / 100, "{common} of {}", got.len());
        assert_eq!(got, topk_sampled(&x, k, 11));
    }

    #[test]
    fn sampled_lowers_the_threshold_when_the_sample_is_unrepresentative() {
        // Plant large values exactly at the sampled positions, so the sample overestimates the threshold.
        let n = 1_000_000;
        let seed = 5;
        let mut x: Vec<f32> = (0..n).map(|i| 1e-3 + i as f32 * 1e-9).collect();
        let plant = |x: &mut [f32], seed: u64| {
            for j in 0..(n / 100 / SAMPLE_RUN) as u64 {
                let start = ((u128::from(hash_u64(seed, j)) * (n / SAMPLE_RUN) as u128) >> 64)
                    as usize
                    * SAMPLE_RUN;
                x[start..start + SAMPLE_RUN].fill(1.0);
            }
        };
        plant(&mut x, seed);
        let k = 100_000;
        let exact = topk_exact(&x, k);
        assert_eq!(topk_sampled(&x, k, seed), exact);
        assert_eq!(exact, topk_exact_with_limit(&x, k, CANDIDATE_LIMIT));
        // The same trap for the exact selector's own prefilter sample: it must fall back, still exact.
        let mut y: Vec<f32> = (0..n).map(|i| 1e-3 + i as f32 * 1e-9).collect();
        plant(&mut y, PREFILTER_SEED);
        assert_eq!(topk_exact(&y, k), naive(&y, k));
    }

    #[test]
    fn gather_and_scatter_add_round_trip() {
        let x = [1.0f32, -2.0, 3.0, -4.0];
        let idx = topk_exact(&x, 2);
        assert_eq!(idx, vec![2, 3]);
        let v = gather(&x, &idx);
        let mut out = vec![1.0f32; 4];
        scatter_add(&v, &idx, 0.5, &mut out);
        assert_eq!(out, vec![1.0, 1.0, 2.5, -1.0]);
    }

    #[test]
    fn a_sorted_scatter_split_across_threads_adds_what_a_serial_one_adds() {
        // Many pieces, each owning the range of `out` up to the next piece's first index.
        let mut g = SplitMix64::new(4);
        let n = 3_000_000;
        let idx: Vec<u32> = (0..n as u32).filter(|_| g.next_f64() < 0.2).collect();
        assert!(idx.len() > SERIAL_BELOW);
        let values: Vec<f32> = idx.iter().map(|&i| (i % 97) as f32 - 48.0).collect();
        let mut serial = vec![1.0f32; n];
        scatter_add(&values, &idx, 0.5, &mut serial);
        let mut split = vec![1.0f32; n];
        scatter_add_sorted(&values, &idx, 0.5, &mut split);
        assert_eq!(serial, split);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn exact_matches_naive(x in proptest::collection::vec(prop_oneof![-3i8..3i8, any::<i8>()].prop_map(f32::from), 0..400), k in 0usize..450, limit in 1usize..64) {
            let expected = naive(&x, k.min(x.len()));
            prop_assert_eq!(&topk_exact(&x, k), &expected);
            prop_assert_eq!(&topk_exact_with_limit(&x, k, limit), &expected);
        }

        #[test]
        fn sampled_returns_ascending_top_indices(n in 1usize..60_000, frac in 0.0f64..1.0, seed: u64) {
            let x = gaussianish(n, seed);
            let k = (n as f64 * frac) as usize;
            let got = topk_sampled(&x, k, seed);
            prop_assert!(got.len() <= k);
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(got.last().is_none_or(|&i| (i as usize) < n));
        }
    }
}
