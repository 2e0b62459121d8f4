//! A vector that clones in O(1) and copies on write one fixed-size chunk at a time.
//!
//! Snapshots hold per-student data by dense index. Publishing a batch of changes copies only the
//! chunks it touches, and each copy is a plain array copy of `CHUNK_LEN` small values.

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
}
