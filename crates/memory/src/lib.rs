//! Hints to the processor and the kernel about memory, for the hash tables
//! on the hot paths (the probe's flow table, the store's group-by).
//!
//! Both need what safe Rust cannot say: "fetch this cache line now, I will
//! read it in a moment" and "back this table with 2 MiB pages". The calls
//! are unsafe only by signature (a prefetch never faults and reads nothing
//! the program sees; the advice changes how pages are backed, not what they
//! hold), so this crate holds them once and every crate that uses them can
//! forbid unsafe code itself.

/// Asks the processor for the cache line holding `value`: a table lookup
/// issued a few keys ahead finds its slot in cache instead of waiting on
/// memory, so lookups into tables larger than the cache overlap.
#[allow(unsafe_code)]
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and never faults
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Asks the kernel to back the whole 2 MiB pages inside `values` with huge
/// pages where it can: random lookups over a table of tens of megabytes miss
/// the TLB on nearly every access with 4 KiB pages.
#[allow(unsafe_code)]
pub fn advise_huge_pages<T>(values: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = values.as_ptr() as usize;
        let end = start + std::mem::size_of_val(values);
        let (first, last) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if first < last {
            // SAFETY: an advice on whole pages inside the slice's own
            // allocation; it changes how the pages are backed, not their contents
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                )
            };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = values;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_leave_contents_alone() {
        // large enough to hold whole huge pages wherever it lands
        let mut values = vec![0u64; 3 << 20];
        values[12345] = 7;
        advise_huge_pages(&values);
        prefetch(&values[12345]);
        prefetch(&values[values.len() - 1]);
        assert_eq!(values[12345], 7);
        assert_eq!(values.iter().sum::<u64>(), 7);
    }
}
