//! Student ids in byte order, as blocks of contiguous text, for listings.
//!
//! A listing of every student reads every id in order. Read from the id index (a B-tree of
//! `Arc<str>`), each id is a cold line of its own and so is each leaf: 8–12 ms for 100k ids in
//! the service, nearly all of it waiting for memory. Here the ids sit one after another in
//! blocks of up to [`MAX_BLOCK`], so a listing reads memory in order. Like the rest of a
//! snapshot, the set clones in O(1) and shares what it does not change: adding students copies
//! the blocks they fall into, and the list of blocks.

use std::sync::Arc;

/// The most ids in one block. A block that would grow past it is split into halves, so that
/// adding a student copies at most this many ids (~9 KB of faker-style ids).
const MAX_BLOCK: usize = 512;

/// A sorted set of distinct ids. See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct SortedIds {
    /// Non-empty blocks, each sorted, each entirely before the next.
    blocks: Arc<Vec<Arc<Block>>>,
}

/// Ids, one after another in `text`; the `i`th ends at `ends[i]`.
#[derive(Debug, Default)]
struct Block {
    text: String,
    ends: Vec<u32>,
}

impl Block {
    fn of<'a>(ids: impl IntoIterator<Item = &'a str>) -> Arc<Block> {
        let mut block = Block::default();
        for id in ids {
            block.text.push_str(id);
            // Ids are at most `StudentId::MAX_LEN` bytes, so a block's text stays far below 4 GiB.
            block.ends.push(block.text.len() as u32);
        }
        Arc::new(block)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn id(&self, i: usize) -> &str {
        let start = match i.checked_sub(1) {
            Some(previous) => self.ends[previous] as usize,
            None => 0,
        };
        &self.text[start..self.ends[i] as usize]
    }

    fn ids(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.id(i))
    }

    fn first(&self) -> &str {
        self.id(0)
    }

    fn last(&self) -> &str {
        self.id(self.len() - 1)
    }

    /// How many of the block's ids are at most `id`.
    fn rank_after(&self, id: &str) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.id(mid) <= id {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }
}

impl SortedIds {
    /// The set of `ids`, which must be sorted and distinct.
    pub(crate) fn from_sorted<'a>(ids: impl Iterator<Item = &'a str>) -> SortedIds {
        let ids: Vec<&str> = ids.collect();
        debug_assert!(ids.is_sorted_by(|a, b| a < b), "ids are sorted and distinct");
        SortedIds { blocks: Arc::new(blocks_of(&ids)) }
    }

    /// Adds `new` ids, in any order, none of them in the set already.
    pub(crate) fn insert(&mut self, mut new: Vec<&str>) {
        if new.is_empty() {
            return;
        }
        new.sort_unstable();
        let mut blocks = Vec::with_capacity(self.blocks.len() + new.len() / MAX_BLOCK + 1);
        let mut new = &new[..];
        for (i, block) in self.blocks.iter().enumerate() {
            // A block takes the new ids that come before the next block's first.
            let taken = match self.blocks.get(i + 1) {
                Some(next) => new.partition_point(|id| *id < next.first()),
                None => new.len(),
            };
            let (into_this, rest) = new.split_at(taken);
            new = rest;
            if into_this.is_empty() {
                blocks.push(Arc::clone(block));
                continue;
            }
            let mut merged: Vec<&str> = Vec::with_capacity(block.len() + into_this.len());
            let (mut old, mut added) = (block.ids().peekable(), into_this.iter().copied());
            let mut next_added = added.next();
            while let Some(id) = next_added {
                match old.next_if(|old| *old < id) {
                    Some(old) => merged.push(old),
                    None => {
                        merged.push(id);
                        next_added = added.next();
                    }
                }
            }
            merged.extend(old);
            blocks.extend(blocks_of(&merged));
        }
        if self.blocks.is_empty() {
            blocks = blocks_of(new);
        }
        self.blocks = Arc::new(blocks);
    }

    /// The ids after `after` (all when `None`), in order.
    pub(crate) fn after<'a>(&'a self, after: Option<&str>) -> impl Iterator<Item = &'a str> + 'a {
        let (first_block, first_id) = match after {
            None => (0, 0),
            Some(after) => {
                let block = self.blocks.partition_point(|block| block.last() <= after);
                (block, self.blocks.get(block).map_or(0, |block| block.rank_after(after)))
            }
        };
        let blocks = self.blocks.get(first_block..).unwrap_or_default();
        blocks.iter().enumerate().flat_map(move |(i, block)| {
            let skip = if i == 0 { first_id } else { 0 };
            (skip..block.len()).map(|j| block.id(j))
        })
    }
}

/// `ids` (sorted) in blocks: one when they fit, else as many as needed to fill each about half,
/// so that the next students added to them do not split them at once.
fn blocks_of(ids: &[&str]) -> Vec<Arc<Block>> {
    if ids.len() <= MAX_BLOCK {
        return if ids.is_empty() { Vec::new() } else { vec![Block::of(ids.iter().copied())] };
    }
    let n_blocks = ids.len().div_ceil(MAX_BLOCK / 2);
    let per_block = ids.len().div_ceil(n_blocks);
    ids.chunks(per_block).map(|chunk| Block::of(chunk.iter().copied())).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn check(ids: &SortedIds, model: &BTreeSet<String>, cursors: &[String]) {
        assert!(ids.after(None).eq(model.iter().map(String::as_str)));
        for cursor in cursors {
            let expected = model.range::<str, _>((
                std::ops::Bound::Excluded(cursor.as_str()),
                std::ops::Bound::Unbounded,
            ));
            assert!(ids.after(Some(cursor)).eq(expected.map(String::as_str)), "after {cursor:?}");
        }
        for block in ids.blocks.iter() {
            assert!((1..=MAX_BLOCK).contains(&block.len()), "a block of {}", block.len());
        }
    }

    proptest! {
        // Each case inserts up to a few thousand ids and lists them many times.
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Batches of new ids, as the publisher adds them, and listings after any cursor (ids
        /// in the set, between them, before and after all of them) match a `BTreeSet`'s.
        #[test]
        fn batches_of_inserts_list_as_a_sorted_set_does(
            batches in proptest::collection::vec(
                proptest::collection::vec("[a-e]{1,3}[0-9]{0,3}", 0..700),
                1..5,
            ),
            cursors in proptest::collection::vec("[a-f]{0,3}[0-9]{0,2}", 0..8),
        ) {
            let mut ids = SortedIds::default();
            let mut model = BTreeSet::new();
            let mut snapshots = Vec::new();
            for batch in batches {
                let new: Vec<&str> = batch
                    .iter()
                    .map(String::as_str)
                    .filter(|id| !model.contains(*id))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                snapshots.push((ids.clone(), model.clone()));
                model.extend(new.iter().map(|id| id.to_string()));
                ids.insert(new);
                check(&ids, &model, &cursors);
            }
            // Earlier clones are untouched by later inserts.
            for (ids, model) in &snapshots {
                check(ids, model, &cursors);
            }
            let rebuilt = SortedIds::from_sorted(model.iter().map(String::as_str));
            check(&rebuilt, &model, &cursors);
        }
    }

    #[test]
    fn a_full_block_splits_and_nothing_is_lost() {
        let names: Vec<String> = (0..3 * MAX_BLOCK).map(|i| format!("id{i:05}")).collect();
        let mut ids = SortedIds::default();
        // One at a time, in an order that keeps adding to the same blocks.
        for name in names.iter().rev() {
            ids.insert(vec![name.as_str()]);
        }
        assert!(ids.after(None).eq(names.iter().map(String::as_str)));
        assert!(ids.blocks.len() >= 3);
        assert!(ids.blocks.iter().all(|block| block.len() <= MAX_BLOCK));
    }
}
