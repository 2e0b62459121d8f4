//! Software prefetching, for walks over data that is mostly not in cache: a fold over many
//! students' rows, a listing of many students' ids. Asking for a line some steps before it is
//! used overlaps the waits that would otherwise come one after another.

use std::collections::VecDeque;

/// How many items ahead [`Prefetched`] asks for memory.
const DISTANCE: usize = 16;

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

/// `inner`'s items, in order, each one's memory (at `address(item)`) asked for [`DISTANCE`]
/// items before it is yielded.
pub(crate) struct Prefetched<I: Iterator, F> {
    inner: I,
    ahead: VecDeque<I::Item>,
    address: F,
}

impl<I: Iterator, F> Prefetched<I, F> {
    pub(crate) fn new(inner: I, address: F) -> Prefetched<I, F> {
        Prefetched { inner, ahead: VecDeque::with_capacity(DISTANCE), address }
    }
}

impl<I, F, T> Iterator for Prefetched<I, F>
where
    I: Iterator,
    F: FnMut(&I::Item) -> *const T,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        while self.ahead.len() < DISTANCE {
            let Some(item) = self.inner.next() else { break };
            prefetch((self.address)(&item));
            self.ahead.push_back(item);
        }
        self.ahead.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_every_item_in_order() {
        for n in [0, 1, DISTANCE - 1, DISTANCE, DISTANCE + 1, 1000] {
            let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let walked: Vec<&String> =
                Prefetched::new(items.iter(), |s: &&String| s.as_ptr()).collect();
            assert_eq!(walked, items.iter().collect::<Vec<_>>());
        }
    }
}
