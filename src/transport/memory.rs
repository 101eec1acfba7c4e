//! The `memory` store: history in process memory, lost at exit. For development, tests and hubs
//! whose clients never resume across a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use super::pages::{self, Chunk};
use super::recent::{self, Keep, Recent};
use super::{Store, TransportError};
use crate::update::{Dispatched, Seq, Update};

/// History kept in a ring of shared, already framed updates.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<History>,
    /// Updates kept; 0 keeps all.
    capacity: u64,
}

#[derive(Debug, Default)]
struct History {
    last_seq: Seq,
    /// Updates kept in history, in sequence order (numbers given to ephemeral ones are missing).
    updates: VecDeque<Arc<Dispatched>>,
    /// Recent ephemeral updates.
    recent: Recent,
    /// For each id in history: its first sequence number and how many updates carry it. Ids are
    /// publisher-chosen and may repeat; a lookup finds the first occurrence, as the reference hub.
    ids: HashMap<String, (Seq, u32)>,
}

impl MemoryStore {
    /// An empty store keeping at most `capacity` updates (0 = no limit).
    pub fn new(capacity: u64) -> Self {
        Self { inner: RwLock::default(), capacity }
    }

    fn history(&self) -> std::sync::RwLockReadGuard<'_, History> {
        // A poisoned lock means a panic while appending; the data is still consistent because
        // every mutation below completes before anything can panic, so keep serving.
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn last(&self) -> Result<Option<Arc<Dispatched>>, TransportError> {
        Ok(self.history().updates.back().cloned())
    }

    fn append(&self, updates: Vec<(Update, Keep)>) -> Result<Vec<Arc<Dispatched>>, TransportError> {
        let mut history = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut stored = Vec::with_capacity(updates.len());
        for (update, keep) in updates {
            history.last_seq += 1;
            let seq = history.last_seq;
            let dispatched = Arc::new(Dispatched::new(seq, update));
            match keep {
                Keep::Recent => {
                    history.recent.push(dispatched.clone());
                }
                Keep::History => {
                    let id = dispatched.id.as_str().to_owned();
                    history.ids.entry(id).or_insert((seq, 0)).1 += 1;
                    history.updates.push_back(dispatched.clone());
                }
            }
            stored.push(dispatched);
        }
        while self.capacity > 0 && history.updates.len() as u64 > self.capacity {
            let Some(old) = history.updates.pop_front() else {
                break;
            };
            let id = old.id.as_str();
            match history.ids.get(id).copied() {
                Some((_, 1)) => {
                    history.ids.remove(id);
                }
                Some((_, count)) => {
                    // A repeated id (rare): the next occurrence becomes the first one.
                    let next = history.updates.iter().find(|d| d.id.as_str() == id);
                    let next = next.map_or(0, |d| d.seq);
                    history.ids.insert(id.to_owned(), (next, count - 1));
                }
                None => {}
            }
        }
        Ok(stored)
    }

    fn len(&self) -> u64 {
        let history = self.history();
        (history.updates.len() + history.recent.len()) as u64
    }

    fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError> {
        let history = self.history();
        let Some(&(seq, _)) = history.ids.get(id) else { return Ok(history.recent.find(id)) };
        Ok(history.at(seq).cloned())
    }

    fn read(&self, after: Seq, max_bytes: usize) -> Result<Chunk, TransportError> {
        let history = self.history();
        let start = history.updates.partition_point(|d| d.seq <= after);
        let kept = history.updates.range(start..).cloned();
        let recent = history.recent.range(after, history.last_seq);
        Ok(pages::fill(recent::merge(kept, recent), max_bytes, history.last_seq))
    }
}

impl History {
    /// The update numbered `seq`, if still in history.
    fn at(&self, seq: Seq) -> Option<&Arc<Dispatched>> {
        let index = self.updates.binary_search_by_key(&seq, |d| d.seq).ok()?;
        self.updates.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_finds_reads_and_trims() {
        let store = MemoryStore::new(3);
        let ids = ["a", "b", "a", "c", "d"];
        let updates = ids.iter().map(|id| (Update::for_test(id), Keep::History)).collect();
        store.append(updates).expect("append");
        assert_eq!(store.last().expect("last").map(|d| d.seq), Some(5));
        // `a` at 1 and 3: once 1 is trimmed, the lookup finds the occurrence still in history.
        let found = |id| store.find(id).expect("find").map(|d| d.seq);
        assert_eq!(found("a"), Some(3));
        assert_eq!(found("b"), None);
        assert_eq!(found("c"), Some(4));
        let seqs = |after, max_bytes| {
            let chunk = store.read(after, max_bytes).expect("read");
            (chunk.updates.iter().map(|d| d.seq).collect::<Vec<_>>(), chunk.through)
        };
        assert_eq!(seqs(0, usize::MAX), (vec![3, 4, 5], 5));
        assert_eq!(seqs(3, usize::MAX), (vec![4, 5], 5));
        assert_eq!(seqs(2, 1), (vec![3], 3), "at least one update, even past the byte bound");
        assert_eq!(seqs(5, usize::MAX), (vec![], 5));
    }
}
