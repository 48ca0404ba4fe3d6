//! The background thread's local store: every chain of this process within the bounds, and
//! which entries Redis has not accepted yet.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::entry::ChainEntry;

/// One correlation id's entries here, oldest first.
#[derive(Debug)]
struct Local {
    entries: VecDeque<ChainEntry>,
    /// The newest `unsent` entries are not in Redis yet.
    unsent: usize,
    /// Listed in [`Store::dirty`].
    dirty: bool,
    last_append: Instant,
}

/// Bounded: at most `max_entries` per id, `bound` entries in all (the ids first seen longest
/// ago go first), and an id untouched for `ttl` is forgotten.
#[derive(Debug)]
pub(super) struct Store {
    ids: HashMap<Arc<str>, Local>,
    /// Ids in the order first seen (an id removed early is skipped when met).
    order: VecDeque<Arc<str>>,
    /// Ids with entries Redis has not accepted, in the order they got them.
    dirty: VecDeque<Arc<str>>,
    total: usize,
    max_entries: usize,
    bound: usize,
    ttl: Duration,
}

/// A batch of appends for Redis: per id, the entries it lacks.
pub(super) type Unsent = Vec<(Arc<str>, Vec<ChainEntry>)>;

impl Store {
    pub(super) fn new(max_entries: usize, bound: usize, ttl: Duration) -> Self {
        Self {
            ids: HashMap::new(),
            order: VecDeque::new(),
            dirty: VecDeque::new(),
            total: 0,
            max_entries,
            bound,
            ttl,
        }
    }

    /// Adds `entry` to the chain of `id`; returns how many entries Redis never got were let go
    /// to keep the bounds.
    pub(super) fn append(&mut self, id: &str, entry: ChainEntry, now: Instant) -> u64 {
        let mut lost = 0;
        if !self.ids.contains_key(id) {
            let key: Arc<str> = id.into();
            self.order.push_back(key.clone());
            self.ids.insert(
                key,
                Local {
                    entries: VecDeque::new(),
                    unsent: 0,
                    dirty: false,
                    last_append: now,
                },
            );
        }
        let Some(local) = self.ids.get_mut(id) else {
            return lost;
        };
        local.entries.push_back(entry);
        local.unsent += 1;
        local.last_append = now;
        self.total += 1;
        if local.entries.len() > self.max_entries {
            local.entries.pop_front();
            self.total -= 1;
            if local.unsent > local.entries.len() {
                local.unsent = local.entries.len();
                lost += 1;
            }
        }
        if !local.dirty {
            local.dirty = true;
            if let Some((key, _)) = self.ids.get_key_value(id) {
                self.dirty.push_back(key.clone());
            }
        }
        while self.total > self.bound {
            match self.evict_oldest() {
                Some(unsent) => lost += unsent,
                None => break,
            }
        }
        // Ids let go leave their place in `dirty`: bounded by dropping those places once they
        // outnumber the live ids.
        if self.dirty.len() > 2 * self.ids.len() + 1_024 {
            self.compact_dirty();
        }
        lost
    }

    /// Whether `key` is the live id's own key (not a former id of the same text).
    fn is_live(&self, key: &Arc<str>) -> bool {
        self.ids
            .get_key_value(key)
            .is_some_and(|(live, local)| Arc::ptr_eq(live, key) && local.dirty)
    }

    fn compact_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        self.dirty = dirty.into_iter().filter(|key| self.is_live(key)).collect();
    }

    /// Forgets the id first seen longest ago; its entries Redis lacked are returned.
    fn evict_oldest(&mut self) -> Option<u64> {
        while let Some(key) = self.order.pop_front() {
            if let Some(local) = self.ids.remove(&key) {
                self.total -= local.entries.len();
                return Some(local.unsent as u64);
            }
        }
        None
    }

    /// Forgets the ids untouched for the TTL, met in the order first seen (an id still in use
    /// stops the walk: the TTL is checked again on the next call). Returns the entries Redis
    /// lacked among them.
    pub(super) fn expire(&mut self, now: Instant) -> u64 {
        let mut lost = 0;
        while let Some(key) = self.order.front() {
            match self.ids.get(key) {
                Some(local) if now.duration_since(local.last_append) < self.ttl => break,
                Some(_) => {
                    if let Some(local) = self.ids.remove(key) {
                        self.total -= local.entries.len();
                        lost += local.unsent as u64;
                    }
                }
                None => {}
            }
            self.order.pop_front();
        }
        lost
    }

    /// The entries of `id` here, oldest first.
    pub(super) fn chain(&self, id: &str) -> Vec<ChainEntry> {
        self.ids
            .get(id)
            .map(|local| local.entries.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Up to `ids` ids with what Redis lacks of each, oldest first; they stay unsent until
    /// [`sent`](Self::sent).
    pub(super) fn unsent(&self, ids: usize) -> Unsent {
        self.dirty
            .iter()
            .filter(|key| self.is_live(key))
            .filter_map(|key| {
                let local = self.ids.get(key)?;
                let from = local.entries.len() - local.unsent.min(local.entries.len());
                Some((key.clone(), local.entries.range(from..).cloned().collect()))
            })
            .filter(|(_, entries): &(Arc<str>, Vec<ChainEntry>)| !entries.is_empty())
            .take(ids)
            .collect()
    }

    /// Redis accepted `batch`: those entries are sent (entries appended since stay unsent).
    pub(super) fn sent(&mut self, batch: &Unsent) {
        for (key, entries) in batch {
            if let Some(local) = self.ids.get_mut(key) {
                local.unsent = local.unsent.saturating_sub(entries.len());
                if local.unsent == 0 {
                    local.dirty = false;
                }
            }
        }
        self.compact_dirty();
    }

    /// Entries kept, in all.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.total
    }

    /// Whether some entries wait for Redis.
    pub(super) fn has_unsent(&self) -> bool {
        !self.dirty.is_empty()
    }
}
