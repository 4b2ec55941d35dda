//! The sorting network built for AVX2 when the CPU has it, chosen at run time; `unsafe` only for
//! the feature-checked call. One block of 100 rows x 64 columns through the pruned median network
//! (898 comparators) on an AMD EPYC shared with other jobs, criterion medians
//! (`cargo bench --bench robust`): 52 us in the build target's SSE2, 32 us with AVX2.
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
