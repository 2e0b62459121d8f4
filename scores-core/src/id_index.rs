//! The students' ids in byte order, each with its dense index: lookups, listings and ranks.
//!
//! A listing of every student reads every id in order. From a B-tree of `Arc<str>` keys, each id
//! was a cold line of its own and so was each leaf: 8–12 ms for 100k ids in the service, nearly
//! all of it waiting for memory. Here the ids sit one after another in blocks of up to
//! [`MAX_BLOCK`], so a listing reads memory in order, and a lookup is a binary search over the
//! blocks and then within one. Like the rest of a snapshot, the index clones in O(1) and shares
//! what it does not change: adding students copies the blocks they fall into, and the list of
//! blocks.

use std::sync::Arc;

/// The most ids in one block. A block that would grow past it is split into halves, so that
/// adding a student copies at most this many ids (~9 KB of faker-style ids).
const MAX_BLOCK: usize = 512;

/// Distinct ids in byte order, each with a student's dense index. See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdIndex {
    /// Non-empty blocks, each sorted, each entirely before the next.
    blocks: Arc<Vec<Arc<Block>>>,
    len: usize,
}

/// Ids, one after another in `text`: the `i`th ends at `ends[i]` and is the id of student
/// `indices[i]`.
#[derive(Debug, Default)]
struct Block {
    text: String,
    ends: Vec<u32>,
    indices: Vec<u32>,
}

impl Block {
    fn of<'a>(entries: impl IntoIterator<Item = (&'a str, u32)>) -> Arc<Block> {
        let mut block = Block::default();
        for (id, index) in entries {
            block.text.push_str(id);
            // Ids are at most `StudentId::MAX_LEN` bytes, so a block's text stays far below 4 GiB.
            block.ends.push(block.text.len() as u32);
            block.indices.push(index);
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

    fn entry(&self, i: usize) -> (&str, u32) {
        (self.id(i), self.indices[i])
    }

    fn entries(&self) -> impl Iterator<Item = (&str, u32)> {
        (0..self.len()).map(|i| self.entry(i))
    }

    fn first(&self) -> &str {
        self.id(0)
    }

    fn last(&self) -> &str {
        self.id(self.len() - 1)
    }

    /// How many of the block's ids come before `id` (or are `id`, with `or_equal`).
    fn rank_of(&self, id: &str, or_equal: bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            let before = if or_equal { self.id(mid) <= id } else { self.id(mid) < id };
            if before {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }
}

impl IdIndex {
    /// The index of `entries`, which must be sorted by id, with distinct ids.
    #[cfg(test)]
    pub(crate) fn from_sorted<'a>(entries: impl Iterator<Item = (&'a str, u32)>) -> IdIndex {
        let entries: Vec<(&str, u32)> = entries.collect();
        debug_assert!(entries.is_sorted_by(|a, b| a.0 < b.0), "ids are sorted and distinct");
        IdIndex { blocks: Arc::new(blocks_of(&entries)), len: entries.len() }
    }

    /// Adds `new` entries, in any order, none of whose ids the index holds already.
    pub(crate) fn insert(&mut self, mut new: Vec<(&str, u32)>) {
        if new.is_empty() {
            return;
        }
        new.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.len += new.len();
        let mut blocks = Vec::with_capacity(self.blocks.len() + new.len() / MAX_BLOCK + 1);
        let mut new = &new[..];
        for (i, block) in self.blocks.iter().enumerate() {
            // A block takes the new ids that come before the next block's first.
            let taken = match self.blocks.get(i + 1) {
                Some(next) => new.partition_point(|(id, _)| *id < next.first()),
                None => new.len(),
            };
            let (into_this, rest) = new.split_at(taken);
            new = rest;
            if into_this.is_empty() {
                blocks.push(Arc::clone(block));
                continue;
            }
            let mut merged = Vec::with_capacity(block.len() + into_this.len());
            let (mut old, mut added) = (block.entries().peekable(), into_this.iter().copied());
            let mut next_added = added.next();
            while let Some(entry) = next_added {
                match old.next_if(|old| old.0 < entry.0) {
                    Some(old) => merged.push(old),
                    None => {
                        merged.push(entry);
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

    /// How many ids the index holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The dense index of the student with id `id`.
    pub(crate) fn get(&self, id: &str) -> Option<u32> {
        let block = self.blocks.get(self.blocks.partition_point(|block| block.last() < id))?;
        let i = block.rank_of(id, false);
        (i < block.len() && block.id(i) == id).then(|| block.indices[i])
    }

    /// The ids after `after` (all when `None`), in order, each with its student's dense index.
    pub(crate) fn after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, u32)> + use<'a> {
        let (first_block, first_entry) = match after {
            None => (0, 0),
            Some(after) => {
                let block = self.blocks.partition_point(|block| block.last() <= after);
                (block, self.blocks.get(block).map_or(0, |block| block.rank_of(after, true)))
            }
        };
        let blocks = self.blocks.get(first_block..).unwrap_or_default();
        blocks.iter().enumerate().flat_map(move |(i, block)| {
            let skip = if i == 0 { first_entry } else { 0 };
            (skip..block.len()).map(|j| block.entry(j))
        })
    }
}

/// `entries` (sorted) in blocks: one when they fit, else as many as needed to fill each about
/// half, so that the next students added to them do not split them at once.
fn blocks_of(entries: &[(&str, u32)]) -> Vec<Arc<Block>> {
    if entries.len() <= MAX_BLOCK {
        return if entries.is_empty() { Vec::new() } else { vec![Block::of(entries.to_vec())] };
    }
    let n_blocks = entries.len().div_ceil(MAX_BLOCK / 2);
    let per_block = entries.len().div_ceil(n_blocks);
    entries.chunks(per_block).map(|chunk| Block::of(chunk.iter().copied())).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn as_entry<'a>((id, index): (&'a String, &u32)) -> (&'a str, u32) {
        (id.as_str(), *index)
    }

    fn check(index: &IdIndex, model: &BTreeMap<String, u32>, probes: &[String]) {
        assert_eq!(index.len(), model.len());
        assert!(index.after(None).eq(model.iter().map(as_entry)));
        for probe in probes {
            let expected = model.range::<str, _>((
                std::ops::Bound::Excluded(probe.as_str()),
                std::ops::Bound::Unbounded,
            ));
            assert!(index.after(Some(probe)).eq(expected.map(as_entry)), "after {probe:?}");
            assert_eq!(index.get(probe), model.get(probe).copied(), "get {probe:?}");
        }
        for (id, &student) in model {
            assert_eq!(index.get(id), Some(student), "get {id:?}");
        }
        for block in index.blocks.iter() {
            assert!((1..=MAX_BLOCK).contains(&block.len()), "a block of {}", block.len());
        }
    }

    proptest! {
        // Each case inserts up to a few thousand ids and looks each one up.
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Batches of new students, as the publisher adds them; lookups and listings after any
        /// cursor (ids in the index, between them, before and after all of them) match a
        /// `BTreeMap`'s.
        #[test]
        fn batches_of_inserts_answer_as_a_sorted_map_does(
            batches in proptest::collection::vec(
                proptest::collection::vec("[a-e]{1,3}[0-9]{0,3}", 0..700),
                1..5,
            ),
            probes in proptest::collection::vec("[a-f]{0,3}[0-9]{0,2}", 0..8),
        ) {
            let mut index = IdIndex::default();
            let mut model = BTreeMap::new();
            let mut clones = Vec::new();
            for batch in batches {
                let mut new = Vec::new();
                for id in batch {
                    if !model.contains_key(&id) {
                        let student = model.len() as u32;
                        model.insert(id.clone(), student);
                        new.push((id, student));
                    }
                }
                clones.push(index.clone());
                index.insert(new.iter().map(|(id, student)| (id.as_str(), *student)).collect());
                check(&index, &model, &probes);
            }
            // Earlier clones are untouched by later inserts.
            let mut earlier = model.clone();
            for clone in clones.iter().rev() {
                earlier.retain(|_, student| (*student as usize) < clone.len());
                check(clone, &earlier, &probes);
            }
            let rebuilt = IdIndex::from_sorted(model.iter().map(|(id, i)| (id.as_str(), *i)));
            check(&rebuilt, &model, &probes);
        }
    }

    #[test]
    fn a_full_block_splits_and_nothing_is_lost() {
        let names: Vec<String> = (0..3 * MAX_BLOCK).map(|i| format!("id{i:05}")).collect();
        let mut index = IdIndex::default();
        // One at a time, in an order that keeps adding to the same blocks.
        for (student, name) in names.iter().enumerate().rev() {
            index.insert(vec![(name.as_str(), student as u32)]);
        }
        let expected =
            names.iter().enumerate().map(|(student, name)| (name.as_str(), student as u32));
        assert!(index.after(None).eq(expected));
        assert!(index.blocks.len() >= 3);
        assert!(index.blocks.iter().all(|block| block.len() <= MAX_BLOCK));
    }
}
