//! Vectors that clone in O(1) and copy on write one fixed-size chunk at a time.
//!
//! Snapshots hold per-student data by dense index ([`ChunkedVec`]) and each exam's results by
//! slot ([`SlotVec`]). Publishing a batch of changes copies only the chunks it touches, and each
//! copy is a plain array copy of small values.

use std::sync::Arc;

const CHUNK_LEN: usize = 16;

#[derive(Clone, Debug)]
pub(crate) struct ChunkedVec<T> {
    chunks: Arc<Vec<Arc<Vec<T>>>>,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec { chunks: Arc::default() }
    }
}

impl<T: Clone> ChunkedVec<T> {
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK_LEN)?.get(index % CHUNK_LEN)
    }

    pub(crate) fn push(&mut self, value: T) {
        let chunks = Arc::make_mut(&mut self.chunks);
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK_LEN => Arc::make_mut(chunk).push(value),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK_LEN);
                chunk.push(value);
                chunks.push(Arc::new(chunk));
            }
        }
    }

    /// Replaces the value at `index`, which must be below `len()`; returns false otherwise.
    pub(crate) fn set(&mut self, index: usize, value: T) -> bool {
        let chunks = Arc::make_mut(&mut self.chunks);
        let Some(chunk) = chunks.get_mut(index / CHUNK_LEN) else {
            return false;
        };
        match Arc::make_mut(chunk).get_mut(index % CHUNK_LEN) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        }
    }
}

/// A vector of small `Copy` values that grows at the end, in chunks of `N` values, each one
/// allocation of exactly `N` (choose `N` so that a chunk fills an allocator size class): an
/// exam's results by slot. Cloning is three reference counts; a change copies the chunk it
/// falls in, and a change before the last chunk also copies the list of full chunks (a pointer
/// each). Where `imbl::Vector` held each exam in a tree with four edge chunks of its own (two
/// of them empty when the vector only grows at the back), this holds the full chunks and one
/// more, so a board's exam results take their own size and little besides.
#[derive(Clone, Debug)]
pub(crate) struct SlotVec<T, const N: usize> {
    /// Every chunk but the last, each holding `N` values.
    full: Arc<Vec<Arc<[T; N]>>>,
    /// The last chunk, holding the last `len - N * full.len()` values (at least one); `None`
    /// when the vector is empty.
    tail: Option<Arc<[T; N]>>,
    len: usize,
}

impl<T, const N: usize> Default for SlotVec<T, N> {
    fn default() -> Self {
        SlotVec { full: Arc::default(), tail: None, len: 0 }
    }
}

impl<T: Copy, const N: usize> SlotVec<T, N> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The values, in order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        let in_tail = self.len.saturating_sub(N * self.full.len());
        let tail = self.tail.as_deref().map_or(&[][..], |tail| &tail[..in_tail.min(N)]);
        let values = self.full.iter().flat_map(|chunk| chunk.iter()).chain(tail);
        ExactLen { values, left: self.len }
    }

    /// Appends `value`.
    pub(crate) fn push(&mut self, value: T) {
        match &mut self.tail {
            Some(tail) if !self.len.is_multiple_of(N) => Arc::make_mut(tail)[self.len % N] = value,
            tail => {
                // The last chunk is full, or there is none: a new one, the old one full.
                let full = tail.replace(Arc::new([value; N]));
                if let Some(full) = full {
                    Arc::make_mut(&mut self.full).push(full);
                }
            }
        }
        self.len += 1;
    }

    /// Replaces the value at `index`, which must be below `len()`; returns false otherwise.
    pub(crate) fn set(&mut self, index: usize, value: T) -> bool {
        if index >= self.len {
            return false;
        }
        let (chunk, at) = (index / N, index % N);
        let chunk = if chunk < self.full.len() {
            Arc::make_mut(&mut self.full).get_mut(chunk)
        } else {
            self.tail.as_mut()
        };
        match chunk {
            Some(chunk) => Arc::make_mut(chunk)[at] = value,
            None => return false,
        }
        true
    }
}

impl<T: Copy, const N: usize> FromIterator<T> for SlotVec<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let mut vec = SlotVec::default();
        values.into_iter().for_each(|value| vec.push(value));
        vec
    }
}

/// An iterator that knows how many values it has left.
struct ExactLen<I> {
    values: I,
    left: usize,
}

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let value = self.values.next()?;
        self.left = self.left.saturating_sub(1);
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_are_unaffected_by_later_writes() {
        let mut values = ChunkedVec::default();
        (0..200).for_each(|i| values.push(i));
        let before = values.clone();
        assert!(values.set(130, -1));
        values.push(200);
        assert!(!values.set(500, 0));
        assert_eq!(before.get(130), Some(&130));
        assert_eq!(before.get(200), None);
        assert_eq!(values.get(130), Some(&-1));
        assert_eq!(values.get(200), Some(&200));
    }

    #[test]
    fn a_slot_vec_holds_what_a_vec_holds_and_its_clones_keep_theirs() {
        let mut values: SlotVec<u32, 4> = SlotVec::default();
        let mut model = Vec::new();
        let mut clones = Vec::new();
        for i in 0..40u32 {
            values.push(i);
            model.push(i);
            // Regrades before the last chunk, in it, and out of range.
            for index in [i as usize / 2, i as usize, i as usize + 1] {
                let changed = values.set(index, 1000 + i);
                assert_eq!(changed, index < model.len(), "set({index}) at length {}", model.len());
                if changed {
                    model[index] = 1000 + i;
                }
            }
            assert_eq!(values.len(), model.len());
            assert_eq!(values.iter().len(), model.len());
            assert_eq!(values.iter().copied().collect::<Vec<_>>(), model);
            clones.push((values.clone(), model.clone()));
        }
        for (clone, then) in &clones {
            assert_eq!(clone.iter().copied().collect::<Vec<_>>(), *then);
        }
        let collected: SlotVec<u32, 4> = model.iter().copied().collect();
        assert_eq!(collected.iter().copied().collect::<Vec<_>>(), model);
    }
}
