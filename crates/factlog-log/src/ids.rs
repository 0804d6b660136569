//! Event id -> location: the index behind durable idempotency.
//!
//! A store of ten million events holds ten million ids, and opening it must not pay for ten
//! million hash inserts. So the ids live in two parts: a `sorted` run, kept as two parallel
//! vectors (ids, locations) that the snapshot stores in exactly that layout and that load with a
//! sequential copy; and a `recent` hash map for ids added since. A lookup checks the map, then
//! binary-searches the run. The map is merged into the run only when the snapshot is written
//! (on close), never while appending, so no append waits for a merge.

use hashbrown::HashMap;

use crate::segment::Loc;

#[derive(Debug, Default, Clone)]
pub struct IdIndex {
    /// Sorted, without duplicates; `sorted_locs[i]` is where `sorted_ids[i]` is.
    sorted_ids: Vec<u128>,
    sorted_locs: Vec<Loc>,
    recent: HashMap<u128, Loc>,
}

impl IdIndex {
    /// Builds the index from a sorted run, as a snapshot stores it. `None` when `ids` is not
    /// strictly increasing or the lengths differ.
    pub fn from_sorted(ids: Vec<u128>, locs: Vec<Loc>) -> Option<Self> {
        if ids.len() != locs.len() || ids.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        Some(Self {
            sorted_ids: ids,
            sorted_locs: locs,
            recent: HashMap::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.sorted_ids.len() + self.recent.len()
    }

    pub fn get(&self, id: u128) -> Option<Loc> {
        if let Some(&loc) = self.recent.get(&id) {
            return Some(loc);
        }
        self.sorted_ids
            .binary_search(&id)
            .ok()
            .map(|i| self.sorted_locs[i])
    }

    pub fn contains(&self, id: u128) -> bool {
        self.get(id).is_some()
    }

    /// Adds an id that is not stored yet (the writer checks that first).
    pub fn insert(&mut self, id: u128, loc: Loc) {
        debug_assert!(!self.contains(id), "an id is stored once");
        self.recent.insert(id, loc);
    }

    /// Every (id, location) in id order: the run merged with the sorted recent ids.
    pub fn sorted(&self) -> Sorted<'_> {
        let mut recent: Vec<(u128, Loc)> = self.recent.iter().map(|(&i, &l)| (i, l)).collect();
        recent.sort_unstable_by_key(|&(id, _)| id);
        Sorted {
            index: self,
            at: 0,
            recent,
            recent_at: 0,
        }
    }

    /// Every (id, location), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u128, Loc)> + '_ {
        self.sorted_ids
            .iter()
            .copied()
            .zip(self.sorted_locs.iter().copied())
            .chain(self.recent.iter().map(|(&id, &loc)| (id, loc)))
    }
}

/// The ids of an [`IdIndex`] in order; see [`IdIndex::sorted`].
#[derive(Debug)]
pub struct Sorted<'a> {
    index: &'a IdIndex,
    at: usize,
    recent: Vec<(u128, Loc)>,
    recent_at: usize,
}

impl Iterator for Sorted<'_> {
    type Item = (u128, Loc);

    fn next(&mut self) -> Option<(u128, Loc)> {
        let run = self.index.sorted_ids.get(self.at).copied();
        let recent = self.recent.get(self.recent_at).copied();
        match (run, recent) {
            (Some(id), Some((r, _))) if id < r => {}
            (Some(_), None) => {}
            (_, Some(entry)) => {
                self.recent_at += 1;
                return Some(entry);
            }
            (None, None) => return None,
        }
        self.at += 1;
        Some((run?, self.index.sorted_locs[self.at - 1]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.index.sorted_ids.len() - self.at + self.recent.len() - self.recent_at;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Sorted<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the mix of loaded, inserted and merged ids, lookups agree with a hash map.
        #[test]
        fn agrees_with_a_hash_map(
            loaded in proptest::collection::btree_set(any::<u16>(), 0..200),
            inserted in proptest::collection::vec(any::<u16>(), 0..400),
        ) {
            let mut model = std::collections::HashMap::new();
            let ids: Vec<u128> = loaded.iter().map(|&i| u128::from(i)).collect();
            let locs: Vec<Loc> = loaded.iter().map(|&i| Loc::from_raw(u64::from(i) * 3)).collect();
            for (&id, &loc) in ids.iter().zip(&locs) {
                model.insert(id, loc);
            }
            let mut index = IdIndex::from_sorted(ids, locs).expect("sorted");
            for (n, &i) in inserted.iter().enumerate() {
                let id = u128::from(i);
                if model.contains_key(&id) {
                    continue;
                }
                let loc = Loc::from_raw(n as u64);
                model.insert(id, loc);
                index.insert(id, loc);
            }
            prop_assert_eq!(index.len(), model.len());
            for probe in 0..=u16::MAX as u128 / 64 {
                let id = probe * 64 % 65_536;
                prop_assert_eq!(index.get(id), model.get(&id).copied());
            }
            for (&id, &loc) in &model {
                prop_assert_eq!(index.get(id), Some(loc));
            }
            let sorted: Vec<(u128, Loc)> = index.sorted().collect();
            prop_assert_eq!(sorted.len(), model.len());
            prop_assert!(sorted.windows(2).all(|w| w[0].0 < w[1].0));
            prop_assert!(sorted.iter().all(|(id, loc)| model.get(id) == Some(loc)));
            // A run rebuilt from the sorted ids (as a snapshot does) answers the same.
            let (ids, locs): (Vec<u128>, Vec<Loc>) = sorted.into_iter().unzip();
            let reloaded = IdIndex::from_sorted(ids, locs).expect("sorted");
            for (&id, &loc) in &model {
                prop_assert_eq!(reloaded.get(id), Some(loc));
            }
        }
    }

    #[test]
    fn an_unsorted_run_is_refused() {
        let locs = vec![Loc::from_raw(1), Loc::from_raw(2)];
        assert!(IdIndex::from_sorted(vec![2, 1], locs.clone()).is_none());
        assert!(IdIndex::from_sorted(vec![1, 1], locs.clone()).is_none());
        assert!(IdIndex::from_sorted(vec![1], locs).is_none());
    }
}
