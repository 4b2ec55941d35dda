//! Cache prefetch hints, `unsafe` for the intrinsic. Prefetching the next chunk while one
//! encodes takes 8-bit quantization of 10M floats from 5.9 to 4.2 ms on one Zen 3 core, and the
//! slot 24 indices ahead takes `topk::scatter_add` of 100K values into 10M floats from 1.5-2.0 ms
//! to 1.1-1.3 ms when the sum is not in cache.
#![allow(unsafe_code)]

/// Scattered lines a kernel may prefetch well ahead of their use (while it decodes their indices)
/// and still find in cache: 2^18 lines (16 MiB) fit in the 32 MiB last-level cache of the machine
/// measured. Past that the early lines are evicted before their turn, and prefetching them only
/// doubles the traffic.
pub(crate) const CACHED_LINES: usize = 1 << 18;

/// Elements of `f32` per 64-byte cache line.
const LINE: usize = 16;

/// Asks the cache for the lines that hold `data`, so they stream in while the CPU computes on
/// something else; a hint only, which neither faults nor changes a result.
#[inline(always)]
pub(crate) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for v in data.iter().step_by(LINE) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of every x86_64 CPU, and a prefetch of a valid address (a slice
        // element) reads nothing into the program and cannot fault.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(v).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
