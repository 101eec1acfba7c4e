//! The `embedded` store: history in a redb file, so it survives restarts without any external
//! service. redb is a pure-Rust, crash-safe (copy-on-write, checksummed) embedded key-value store;
//! every append commits with immediate durability before the publisher gets its answer.
//!
//! Layout: table `updates` maps the sequence number to the JSON-encoded [`Update`]; multimap
//! `ids` maps each id to the sequence numbers that carry it (ids may repeat; a lookup takes the
//! first one still in history).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use super::pages::{self, Chunk};
use super::recent::{self, Keep, Recent};
use super::{Store, TransportError};
use crate::update::{Dispatched, Seq, Update};

const UPDATES: TableDefinition<u64, &[u8]> = TableDefinition::new("updates");
const IDS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("ids");

fn store_error(error: impl std::fmt::Display) -> TransportError {
    TransportError::Store(error.to_string())
}

/// History in a redb database file.
#[derive(Debug)]
pub struct EmbeddedStore {
    db: Database,
    /// Updates kept; 0 keeps all.
    capacity: u64,
    /// The newest sequence number given, stored or ephemeral; at open, the newest key. Only the
    /// sequencer appends.
    last_seq: AtomicU64,
    /// Updates in the file (keys skip the numbers given to ephemeral updates, so this is
    /// counted, not derived from the first and last keys).
    count: AtomicU64,
    /// Recent ephemeral updates, in memory only.
    recent: Mutex<Recent>,
}

impl EmbeddedStore {
    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        // Every change to it completes before anything can panic: a poisoned lock is usable.
        self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens (or creates) the database at `path`, creating missing parent directories.
    pub fn open(path: &Path, capacity: u64) -> Result<Self, TransportError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                TransportError::Store(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let db = Database::create(path).map_err(|e| {
            TransportError::Store(format!("cannot open history file {}: {e}", path.display()))
        })?;
        // Create both tables up front so that read transactions never meet a missing table.
        let txn = db.begin_write().map_err(store_error)?;
        let (count, last_seq) = {
            txn.open_multimap_table(IDS).map_err(store_error)?;
            let updates = txn.open_table(UPDATES).map_err(store_error)?;
            let count = updates.len().map_err(store_error)?;
            let last = updates.last().map_err(store_error)?.map_or(0, |(seq, _)| seq.value());
            (count, last)
        };
        txn.commit().map_err(store_error)?;
        Ok(Self {
            db,
            capacity,
            last_seq: AtomicU64::new(last_seq),
            count: AtomicU64::new(count),
            recent: Mutex::default(),
        })
    }
}

fn decode(seq: Seq, bytes: &[u8]) -> Result<Arc<Dispatched>, TransportError> {
    let update: Update = serde_json::from_slice(bytes)
        .map_err(|e| TransportError::Store(format!("corrupted update {seq} in history: {e}")))?;
    Ok(Arc::new(Dispatched::new(seq, update)))
}

impl Store for EmbeddedStore {
    fn last(&self) -> Result<Option<Arc<Dispatched>>, TransportError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(UPDATES).map_err(store_error)?;
        let last = table.last().map_err(store_error)?;
        last.map(|(seq, bytes)| decode(seq.value(), bytes.value())).transpose()
    }

    fn append(&self, updates: Vec<(Update, Keep)>) -> Result<Vec<Arc<Dispatched>>, TransportError> {
        let before = self.last_seq.load(Ordering::Acquire);
        let mut seq = before;
        let mut count = self.count.load(Ordering::Acquire);
        let mut stored = Vec::with_capacity(updates.len());
        let mut recent = self.recent();
        let written = (|| {
            let txn = self.db.begin_write().map_err(store_error)?;
            {
                let mut table = txn.open_table(UPDATES).map_err(store_error)?;
                let mut ids = txn.open_multimap_table(IDS).map_err(store_error)?;
                for (update, keep) in updates {
                    seq += 1;
                    if keep == Keep::History {
                        let bytes = serde_json::to_vec(&update).map_err(store_error)?;
                        table.insert(seq, bytes.as_slice()).map_err(store_error)?;
                        ids.insert(update.id.as_str(), seq).map_err(store_error)?;
                        count += 1;
                    }
                    let dispatched = Arc::new(Dispatched::new(seq, update));
                    if keep == Keep::Recent {
                        // Before the commit, so that a reader who sees this number finds it.
                        recent.push(dispatched.clone());
                    }
                    stored.push(dispatched);
                }
                if self.capacity > 0 && count > self.capacity {
                    let excess = usize::try_from(count - self.capacity).unwrap_or(usize::MAX);
                    let cut = table.iter().map_err(store_error)?.nth(excess - 1);
                    let cut = cut.transpose().map_err(store_error)?.map(|(key, _)| key.value());
                    if let Some(cut) = cut {
                        let removed =
                            table.extract_from_if(..=cut, |_, _| true).map_err(store_error)?;
                        for entry in removed {
                            let (old_seq, bytes) = entry.map_err(store_error)?;
                            let old: Update =
                                serde_json::from_slice(bytes.value()).map_err(store_error)?;
                            ids.remove(old.id.as_str(), old_seq.value()).map_err(store_error)?;
                            count -= 1;
                        }
                    }
                }
            }
            txn.commit().map_err(store_error)
        })();
        if let Err(error) = written {
            // The numbers are given again to the next updates.
            recent.truncate_after(before);
            return Err(error);
        }
        self.count.store(count, Ordering::Release);
        self.last_seq.store(seq, Ordering::Release);
        Ok(stored)
    }

    fn len(&self) -> u64 {
        self.count.load(Ordering::Acquire) + self.recent().len() as u64
    }

    fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let ids = txn.open_multimap_table(IDS).map_err(store_error)?;
        let mut seqs = ids.get(id).map_err(store_error)?;
        let Some(seq) = seqs.next().transpose().map_err(store_error)? else {
            return Ok(self.recent().find(id));
        };
        let table = txn.open_table(UPDATES).map_err(store_error)?;
        let bytes = table.get(seq.value()).map_err(store_error)?;
        bytes.map(|bytes| decode(seq.value(), bytes.value())).transpose()
    }

    fn read(&self, after: Seq, max_bytes: usize) -> Result<Chunk, TransportError> {
        // Everything up to `newest` is committed before the atomic is updated, so the read
        // transaction below sees all of it.
        let newest = self.last_seq.load(Ordering::Acquire);
        if after >= newest {
            return Ok(Chunk { updates: Vec::new(), through: newest });
        }
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(UPDATES).map_err(store_error)?;
        let range = table.range(after + 1..=newest).map_err(store_error)?;
        let mut failure = None;
        let updates = range.map_while(|entry| {
            let decoded = entry
                .map_err(store_error)
                .and_then(|(seq, bytes)| decode(seq.value(), bytes.value()));
            decoded.map_err(|error| failure = Some(error)).ok()
        });
        // Ephemeral updates numbered up to `newest` were kept before their batch was committed.
        let recent: Vec<_> = self.recent().range(after, newest).collect();
        let chunk = pages::fill(recent::merge(updates, recent.into_iter()), max_bytes, newest);
        match failure {
            Some(error) => Err(error),
            None => Ok(chunk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::{EventId, Topic};

    fn update(id: &str) -> Update {
        Update {
            id: EventId::new(id).expect("valid id"),
            topics: vec![Topic::new("https://e.com/t").expect("valid topic")],
            data: format!("data of {id}\nsecond line"),
            private: id.starts_with('p'),
            event_type: None,
            retry: Some(3),
        }
    }

    fn kept(updates: Vec<Update>) -> Vec<(Update, Keep)> {
        updates.into_iter().map(|u| (u, Keep::History)).collect()
    }

    #[test]
    fn ephemeral_updates_are_numbered_and_read_but_never_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("history.redb");
        {
            let store = EmbeddedStore::open(&path, 2).expect("open");
            let batch = vec![
                (update("a"), Keep::History),
                (update("e1"), Keep::Recent),
                (update("b"), Keep::History),
                (update("e2"), Keep::Recent),
                (update("c"), Keep::History),
            ];
            let seqs: Vec<Seq> =
                store.append(batch).expect("append").iter().map(|d| d.seq).collect();
            assert_eq!(seqs, [1, 2, 3, 4, 5]);
            assert_eq!(store.len(), 4, "two kept in the file (history_size 2), two recent");
            let read = store.read(0, usize::MAX).expect("read");
            let ids: Vec<&str> = read.updates.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(ids, ["e1", "b", "e2", "c"], "merged in order; `a` trimmed");
            assert_eq!(store.find("e2").expect("find").map(|d| d.seq), Some(4));
            assert_eq!(store.find("b").expect("find").map(|d| d.seq), Some(3));
        }
        let store = EmbeddedStore::open(&path, 2).expect("reopen");
        assert_eq!(store.len(), 2, "ephemeral updates are gone after a restart");
        assert!(store.find("e2").expect("find").is_none());
        let seqs = store.append(kept(vec![update("d")])).expect("append");
        assert_eq!(seqs[0].seq, 6, "numbering continues after the newest key");
        let read = store.read(0, usize::MAX).expect("read");
        assert_eq!(read.updates.iter().map(|d| d.seq).collect::<Vec<_>>(), [5, 6]);
    }

    #[test]
    fn survives_reopening_and_trims() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/history.redb");
        {
            let store = EmbeddedStore::open(&path, 3).expect("open");
            store.append(kept(vec![update("a"), update("b"), update("a")])).expect("append");
            store.append(kept(vec![update("c"), update("p1")])).expect("append");
        }
        let store = EmbeddedStore::open(&path, 3).expect("reopen");
        assert_eq!(store.last().expect("last").map(|d| d.seq), Some(5));
        assert_eq!(store.len(), 3);
        let found = |id| store.find(id).expect("find").map(|d| d.seq);
        assert_eq!(found("a"), Some(3), "first occurrence still kept");
        assert_eq!(found("b"), None, "trimmed");
        assert_eq!(found("p1"), Some(5));
        let read = store.read(0, usize::MAX).expect("read");
        assert_eq!(read.updates.iter().map(|d| d.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(read.through, 5);
        let p1 = update("p1");
        let last = &read.updates[2];
        assert_eq!((&last.id, &last.topics, last.private), (&p1.id, &p1.topics, true));
        assert_eq!(last.frame, p1.frame(), "round-trips every field");
        let one = store.read(3, 1).expect("read");
        assert_eq!((one.updates.len(), one.through), (1, 4), "byte bound, but never empty");
        assert!(store.read(5, usize::MAX).expect("read").updates.is_empty());
    }
}
