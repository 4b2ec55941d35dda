//! The sorting network built for AVX2 when the CPU has it, chosen at run time; `unsafe` only for
//! the feature-checked call. One block of 100 rows x 64 columns through the pruned median network
//! (898 comparators), one core of an AMD EPYC shared with other jobs: 38 us portable (SSE2),
//! 21 us with AVX2 (`cargo run --release --example` probe, medians of 1000 blocks).
#![allow(unsafe_code)]

use super::network::{Network, Row};

/// Applies `net` to `rows` with the widest vectors the CPU offers.
pub(crate) fn apply(net: &Network, rows: &mut [Row]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked on the line above.
        return unsafe { apply_avx2(net, rows) };
    }
    net.apply_portable(rows);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_avx2(net: &Network, rows: &mut [Row]) {
    net.apply_portable(rows);
}
