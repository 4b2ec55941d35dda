//! An AVX2 build of the quantizer's chunk kernel ([`crate::kernels::quant_chunk`]), chosen at
//! run time; `unsafe` for the feature-checked call. 8-bit quantization of 10M floats on one
//! core of an AMD EPYC (Zen 3), medians of eight alternating runs: 7.5 ms portable, 5.9 ms AVX2
//! (4.2 ms with [`crate::kernels::prefetch`]). Other CPUs run the portable build.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use crate::kernels::quant_chunk::{encode_chunk, ChunkBytes, AVX2_LANES, PORTABLE_LANES};
use crate::kernels::rng::SplitMix64;
use crate::kernels::seeded_mask::{draw_gap_batch, GAP_BATCH};

/// [`encode_chunk`], built for AVX2 when the CPU has it: the same IEEE
/// operations in the same order, so the same bytes, in wider registers.
#[inline]
pub(crate) fn quantize_chunk<'h, 'c, const B: u32>(
    x: &[f32],
    next: &[f32],
    first: usize,
    seed: Option<u64>,
    head: &'h mut [MaybeUninit<u8>],
    codes: &'c mut [MaybeUninit<u8>],
) -> ChunkBytes<'h, 'c> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked on the line above.
        return unsafe { quantize_chunk_avx2::<B>(x, next, first, seed, head, codes) };
    }
    encode_chunk::<B, PORTABLE_LANES>(x, next, first, seed, head, codes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_chunk_avx2<'h, 'c, const B: u32>(
    x: &[f32],
    next: &[f32],
    first: usize,
    seed: Option<u64>,
    head: &'h mut [MaybeUninit<u8>],
    codes: &'c mut [MaybeUninit<u8>],
) -> ChunkBytes<'h, 'c> {
    encode_chunk::<B, AVX2_LANES>(x, next, first, seed, head, codes)
}

/// [`draw_gap_batch`], built for AVX-512 (with its 64-bit multiplies and conversions) when the CPU
/// has it: the same integer and IEEE operations lane by lane, so the same gaps, eight at a time.
#[inline]
pub(crate) fn draw_gaps(rng: &mut SplitMix64, inv_log_q: f64, gaps: &mut [usize; GAP_BATCH]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        // SAFETY: the CPU supports AVX-512 F, DQ and VL (DQ and VL imply F), checked just above.
        unsafe { draw_gaps_avx512(rng, inv_log_q, gaps) };
        return;
    }
    draw_gap_batch(rng, inv_log_q, gaps);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
fn draw_gaps_avx512(rng: &mut SplitMix64, inv_log_q: f64, gaps: &mut [usize; GAP_BATCH]) {
    draw_gap_batch(rng, inv_log_q, gaps);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::bitpack::dispatch_bits;
    use crate::kernels::bitpack::ChunkedLayout;
    use crate::kernels::uninit::as_uninit;
    use proptest::prelude::*;

    /// The build every CPU can run.
    fn portable<'h, 'c, const B: u32>(
        x: &[f32],
        next: &[f32],
        first: usize,
        seed: Option<u64>,
        head: &'h mut [MaybeUninit<u8>],
        codes: &'c mut [MaybeUninit<u8>],
    ) -> ChunkBytes<'h, 'c> {
        encode_chunk::<B, PORTABLE_LANES>(x, next, first, seed, head, codes)
    }

    /// Head and code bytes of one chunk through `encode`, written over garbage; `None` if the
    /// chunk was refused, in which case they must be zeros.
    fn chunk_bytes(
        x: &[f32],
        bits: u32,
        encode: impl for<'h, 'c> Fn(
            &[f32],
            &'h mut [MaybeUninit<u8>],
            &'c mut [MaybeUninit<u8>],
        ) -> ChunkBytes<'h, 'c>,
    ) -> Option<Vec<u8>> {
        let layout_len = ChunkedLayout {
            chunk: x.len().div_ceil(8) * 8,
            head: 8,
            bits,
        }
        .len(x.len());
        let mut out = vec![0xABu8; layout_len];
        let (head, codes) = out.split_at_mut(8);
        // SAFETY: the chunk encoders write only initialized bytes.
        let (h, c) = unsafe { (as_uninit(head), as_uninit(codes)) };
        let finite = encode(x, h, c).finite;
        if !finite {
            assert!(out.iter().all(|&b| b == 0), "a refused chunk is zeroed");
        }
        finite.then_some(out)
    }

    proptest! {
        #[test]
        fn the_dispatched_build_writes_the_portable_bytes(
            len in 1usize..700,
            bits in 1u32..=16,
            stochastic: bool,
            scale_exp in -140i32..100,
            seed: u64,
        ) {
            let mut g = SplitMix64::new(seed);
            let scale = 2f32.powi(scale_exp);
            let x: Vec<f32> = (0..len).map(|_| (g.next_f64() as f32 - 0.5) * scale).collect();
            let next: Vec<f32> = x.iter().rev().copied().collect();
            let seed = stochastic.then_some(seed);
            let portable = chunk_bytes(&x, bits, |x, h, c| {
                dispatch_bits!(bits, portable(x, &next, 0, seed, h, c))
            });
            let dispatched = chunk_bytes(&x, bits, |x, h, c| {
                dispatch_bits!(bits, quantize_chunk(x, &next, 0, seed, h, c))
            });
            prop_assert!(portable.is_some());
            prop_assert_eq!(portable, dispatched);
        }
    }

    #[test]
    fn both_builds_draw_the_same_gaps() {
        // Fractions from near 0 (gaps that saturate) to the largest that uses gaps.
        for fraction in [1e-300, 1e-12, 0.001, 0.01, 0.1, 0.124] {
            let inv_log_q = 1.0 / (1.0f64 - fraction).ln().min(-f64::MIN_POSITIVE);
            for seed in 0..200 {
                let (mut fast, mut portable) = (SplitMix64::new(seed), SplitMix64::new(seed));
                let (mut a, mut b) = ([0usize; GAP_BATCH], [0usize; GAP_BATCH]);
                for _ in 0..4 {
                    draw_gaps(&mut fast, inv_log_q, &mut a);
                    draw_gap_batch(&mut portable, inv_log_q, &mut b);
                    assert_eq!(a, b, "fraction {fraction}, seed {seed}");
                }
            }
        }
    }

    #[test]
    fn both_builds_refuse_a_chunk_with_a_nan() {
        let mut x = vec![0.5f32; 64];
        x[40] = f32::NAN;
        assert_eq!(
            chunk_bytes(&x, 8, |x, h, c| portable::<8>(x, &[], 0, None, h, c)),
            None
        );
        assert_eq!(
            chunk_bytes(&x, 8, |x, h, c| quantize_chunk::<8>(x, &[], 0, None, h, c)),
            None
        );
    }
}
