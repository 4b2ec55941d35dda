//! The uniform quantizer's per-chunk kernel: min/max, step, and round-to-nearest or unbiased
//! stochastic codes written straight into the frame, with the next chunk prefetched. It knows
//! nothing of frames or params; `codecs::quantize` lays chunks out and `simd` builds this kernel
//! for AVX2.

use std::mem::MaybeUninit;

use crate::kernels::bitpack::{encode_runs, CodeSlot, RunEncoder};
use crate::kernels::prefetch::prefetch;
use crate::kernels::rng::uniform_pair;
use crate::kernels::uninit::{copied, zeroed};

/// Adding this to a float in `[0, 2^22)` leaves the round-to-nearest integer in the low
/// mantissa bits: a branch-free rounding the compiler vectorises.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Maps an element to `t = (x - lo) / step` in `[0, levels]`, the code before rounding.
#[derive(Clone, Copy)]
struct Scaler {
    lo: f32,
    /// 1 for normal steps; 2^64 for subnormal ones, whose reciprocal would overflow f32.
    pre: f32,
    inv_step: f32,
    levels: f32,
}

impl Scaler {
    /// `LIFTED` applies `pre`; normal steps skip it, a multiply by 1 in the hottest loop.
    #[inline]
    fn scaled<const LIFTED: bool>(self, v: f32) -> f32 {
        let d = v - self.lo;
        let t = if LIFTED { d * self.pre } else { d } * self.inv_step;
        if t < self.levels {
            t
        } else {
            self.levels
        }
    }
}

/// Round-to-nearest codes; `LIFTED` for subnormal steps (see [`Scaler::scaled`]).
struct NearestEncoder<const LIFTED: bool>(Scaler);

// SAFETY: writes every code: one per input element, `codes.len() == input.len()`.
#[allow(unsafe_code)]
unsafe impl<const LIFTED: bool> RunEncoder for NearestEncoder<LIFTED> {
    #[inline(always)]
    fn encode_run<C: CodeSlot>(&self, _offset: usize, input: &[f32], codes: &mut [C]) {
        let s = self.0;
        for (c, &v) in codes.iter_mut().zip(input) {
            *c = C::from_u32((s.scaled::<LIFTED>(v) + ROUND_MAGIC).to_bits() & 0xFFFF);
        }
    }
}

/// Unbiased stochastic codes; `first` is the global index of the chunk's first element.
struct StochasticEncoder {
    scaler: Scaler,
    seed: u64,
    first: usize,
}

// SAFETY: writes every code: `input` and `codes` are cut into the same runs, one code per element.
#[allow(unsafe_code)]
unsafe impl RunEncoder for StochasticEncoder {
    #[inline(always)]
    fn encode_run<C: CodeSlot>(&self, offset: usize, input: &[f32], codes: &mut [C]) {
        let s = self.scaler;
        let mut u = [0f32; UNIFORM_RUN];
        for (k, (xs, cs)) in input
            .chunks(UNIFORM_RUN)
            .zip(codes.chunks_mut(UNIFORM_RUN))
            .enumerate()
        {
            let u = &mut u[..xs.len()];
            fill_uniforms(self.seed, self.first + offset + k * UNIFORM_RUN, u);
            for ((c, &v), &u) in cs.iter_mut().zip(xs).zip(u.iter()) {
                *c = C::from_u32(stochastic_floor(s.scaled::<true>(v), u));
            }
        }
    }
}

/// Uniforms drawn per stack buffer; even, so pairs of elements never straddle two buffers.
const UNIFORM_RUN: usize = 256;

/// Encodes one chunk, prefetching `next` (the chunk after it) as it goes; a chunk holding a
/// NaN/Inf comes back zeroed with `finite: false`. `LANES` sizes the min/max pass to the build's
/// registers (see [`finite_range`]); inlined whole so [`quantize_chunk`] can build it for AVX2.
#[inline(always)]
pub(crate) fn encode_chunk<'h, 'c, const B: u32, const LANES: usize>(
    x: &[f32],
    next: &[f32],
    first: usize,
    seed: Option<u64>,
    head: &'h mut [MaybeUninit<u8>],
    codes: &'c mut [MaybeUninit<u8>],
) -> ChunkBytes<'h, 'c> {
    let levels = ((1u32 << B) - 1) as f32;
    let Some((lo, hi)) = finite_range::<LANES>(x) else {
        return ChunkBytes {
            head: zeroed(head),
            codes: zeroed(codes),
            finite: false,
        };
    };
    let (step, inv_step, pre) = chunk_step(lo, hi, levels);
    let mut fields = [0u8; 8];
    fields[..4].copy_from_slice(&lo.to_le_bytes());
    fields[4..].copy_from_slice(&step.to_le_bytes());
    let scaler = Scaler {
        lo,
        pre,
        inv_step,
        levels,
    };
    let codes = match seed {
        None if pre > 1.0 => {
            encode_prefetching::<B>(NearestEncoder::<true>(scaler), next, x, codes)
        }
        None => encode_prefetching::<B>(NearestEncoder::<false>(scaler), next, x, codes),
        Some(seed) => encode_prefetching::<B>(
            StochasticEncoder {
                scaler,
                seed,
                first,
            },
            next,
            x,
            codes,
        ),
    };
    ChunkBytes {
        head: copied(head, &fields),
        codes,
        finite: true,
    }
}

/// One chunk's header and codes, every byte written.
pub(crate) struct ChunkBytes<'h, 'c> {
    pub(crate) head: &'h mut [u8],
    pub(crate) codes: &'c mut [u8],
    /// False, with head and codes zeroed, when the chunk held a NaN/Inf.
    pub(crate) finite: bool,
}

/// Min/max lanes of the portable build: four SSE2 (or NEON) vectors per accumulator.
pub(crate) const PORTABLE_LANES: usize = 16;

/// Min/max lanes of the AVX2 build: four 256-bit vectors per accumulator.
pub(crate) const AVX2_LANES: usize = 32;

/// Elements encoded between two prefetches of the next chunk's matching elements: 16 cache lines.
const PREFETCH_RUN: usize = 256;

/// Encodes a chunk with `enc`, run by run, asking the cache for the same run of `next` before
/// each: the memory stream of the next chunk overlaps this one's arithmetic.
#[inline(always)]
fn encode_prefetching<'c, const B: u32>(
    enc: impl RunEncoder,
    next: &[f32],
    x: &[f32],
    codes: &'c mut [MaybeUninit<u8>],
) -> &'c mut [u8] {
    struct Prefetching<'a, E> {
        enc: E,
        next: &'a [f32],
    }
    // SAFETY: writes every code, through `enc`'s own contract, run by run.
    #[allow(unsafe_code)]
    unsafe impl<E: RunEncoder> RunEncoder for Prefetching<'_, E> {
        #[inline(always)]
        fn encode_run<C: CodeSlot>(&self, offset: usize, input: &[f32], codes: &mut [C]) {
            for (k, (xs, cs)) in input
                .chunks(PREFETCH_RUN)
                .zip(codes.chunks_mut(PREFETCH_RUN))
                .enumerate()
            {
                let at = offset + k * PREFETCH_RUN;
                let ahead = self.next.get(at..).unwrap_or_default();
                prefetch(&ahead[..ahead.len().min(xs.len())]);
                self.enc.encode_run(at, xs, cs);
            }
        }
    }
    encode_runs::<B>(&Prefetching { enc, next }, x, codes)
}

/// `floor(t + u)` for `t >= 0` computed as `floor(t) + (u < frac(t))`, exact for any size of `t`.
#[inline]
pub(crate) fn stochastic_floor(t: f32, u: f32) -> u32 {
    let whole = t as i32;
    let frac = t - whole as f32;
    (whole + i32::from(u < frac)) as u32
}

/// The uniforms of elements `first..first + u.len()` (`first` even): element `i` takes one half
/// of `uniform_pair(seed, i / 2)`, so draws do not depend on how work is split.
#[inline]
pub(crate) fn fill_uniforms(seed: u64, first: usize, u: &mut [f32]) {
    debug_assert!(first.is_multiple_of(2));
    for (k, pair) in u.chunks_mut(2).enumerate() {
        let (a, b) = uniform_pair(seed, (first / 2 + k) as u64);
        pair[0] = a;
        if let Some(second) = pair.get_mut(1) {
            *second = b;
        }
    }
}

/// Smallest and largest element, or `None` if any is NaN/Inf, in one pass over `LANES`
/// independent lanes so the loop vectorises: [`PORTABLE_LANES`] for SSE2 and NEON builds,
/// [`AVX2_LANES`] for AVX2, which leaves 16 lanes scalar (8.8 against 0.9 ms per 10M floats,
/// in cache) while 32 lanes spill SSE2's registers (2.5 against 1.8 ms). Comparisons rather than
/// `f32::min` compile to bare `minps`/`maxps`, and a running sum, which a NaN/Inf makes
/// non-finite, detects them in one more instruction per vector.
#[inline(always)]
fn finite_range<const LANES: usize>(x: &[f32]) -> Option<(f32, f32)> {
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let mut sum = [0f32; LANES];
    let blocks = x.chunks_exact(LANES);
    let tail = blocks.remainder();
    for b in blocks {
        for j in 0..LANES {
            let v = b[j];
            lo[j] = if v < lo[j] { v } else { lo[j] };
            hi[j] = if v > hi[j] { v } else { hi[j] };
            sum[j] += v;
        }
    }
    // Huge finite values can overflow the sum too: only then is every element checked.
    let total: f32 = sum.iter().chain(tail).sum();
    if !total.is_finite() && !x.iter().all(|v| v.is_finite()) {
        return None;
    }
    let lo = lo
        .into_iter()
        .chain(tail.iter().copied())
        .fold(f32::INFINITY, f32::min);
    let hi = hi
        .into_iter()
        .chain(tail.iter().copied())
        .fold(f32::NEG_INFINITY, f32::max);
    Some((lo, hi))
}

/// `(step, 1 / (step * pre), pre)` for a chunk spanning `[lo, hi]`: all 0 but `pre` for a constant
/// chunk; a subnormal step is lifted by `pre = 2^64` so its reciprocal stays finite and exact enough.
fn chunk_step(lo: f32, hi: f32, levels: f32) -> (f32, f32, f32) {
    const LIFT: f32 = 18_446_744_073_709_551_616.0; // 2^64: exact, keeps lifted subnormals normal
    let range = f64::from(hi) - f64::from(lo);
    let mut step = ((range / f64::from(levels)) as f32).min(f32::MAX);
    if range > 0.0 && step == 0.0 {
        step = f32::from_bits(1); // the range/levels underflowed: the smallest subnormal still resolves it
    }
    if step >= f32::MIN_POSITIVE {
        (step, (1.0 / step).min(f32::MAX), 1.0)
    } else if step > 0.0 {
        (step, 1.0 / (step * LIFT), LIFT)
    } else {
        (0.0, 0.0, 1.0)
    }
}
