//! Software prefetching, for walks over data that is mostly not in cache (a fold over many
//! students' rows): asking for a line some steps before it is used overlaps the waits that
//! would otherwise come one after another.

/// Asks for the cache line at `ptr`: a hint that never faults and changes no result.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` does not dereference its operand and cannot fault, whatever the
    // address; it only warms the cache.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
