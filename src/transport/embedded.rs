//! The `embedded` store: history in a redb file, so it survives restarts without any external
//! service. redb is a pure-Rust, crash-safe (copy-on-write, checksummed) embedded key-value store;
//! every append commits with immediate durability before the publisher gets its answer.
//!
//! Layout: table `updates` maps the sequence number to the JSON-encoded [`Update`]; multimap
//! `ids` maps each id to the sequence numbers that carry it (ids may repeat; a lookup takes the
//! first one still in history).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};

use super::pages::{self, Chunk};
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
    /// Mirror of the newest key, loaded at open: only the sequencer appends.
    last_seq: AtomicU64,
    /// Mirror of the oldest key (0 when empty): keys are contiguous, so the count is derived.
    first_seq: AtomicU64,
}

impl EmbeddedStore {
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
        let (first_seq, last_seq) = {
            txn.open_multimap_table(IDS).map_err(store_error)?;
            let updates = txn.open_table(UPDATES).map_err(store_error)?;
            let first = updates.first().map_err(store_error)?.map_or(0, |(seq, _)| seq.value());
            let last = updates.last().map_err(store_error)?.map_or(0, |(seq, _)| seq.value());
            (first, last)
        };
        txn.commit().map_err(store_error)?;
        Ok(Self {
            db,
            capacity,
            last_seq: AtomicU64::new(last_seq),
            first_seq: AtomicU64::new(first_seq),
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

    fn append(&self, updates: Vec<Update>) -> Result<Vec<Arc<Dispatched>>, TransportError> {
        let mut seq = self.last_seq.load(Ordering::Acquire);
        let mut stored = Vec::with_capacity(updates.len());
        let txn = self.db.begin_write().map_err(store_error)?;
        {
            let mut table = txn.open_table(UPDATES).map_err(store_error)?;
            let mut ids = txn.open_multimap_table(IDS).map_err(store_error)?;
            for update in updates {
                seq += 1;
                let bytes = serde_json::to_vec(&update).map_err(store_error)?;
                table.insert(seq, bytes.as_slice()).map_err(store_error)?;
                ids.insert(update.id.as_str(), seq).map_err(store_error)?;
                stored.push(Arc::new(Dispatched::new(seq, update)));
            }
            if self.capacity > 0 && seq > self.capacity {
                let cut = seq - self.capacity;
                let removed = table.extract_from_if(..=cut, |_, _| true).map_err(store_error)?;
                for entry in removed {
                    let (old_seq, bytes) = entry.map_err(store_error)?;
                    let old: Update = serde_json::from_slice(bytes.value()).map_err(store_error)?;
                    ids.remove(old.id.as_str(), old_seq.value()).map_err(store_error)?;
                }
            }
        }
        txn.commit().map_err(store_error)?;
        self.last_seq.store(seq, Ordering::Release);
        let first = match self.first_seq.load(Ordering::Acquire) {
            0 => stored.first().map_or(0, |d| d.seq),
            first => first,
        };
        let first = if self.capacity > 0 {
            first.max(seq.saturating_sub(self.capacity) + 1)
        } else {
            first
        };
        self.first_seq.store(first, Ordering::Release);
        Ok(stored)
    }

    fn len(&self) -> u64 {
        match self.first_seq.load(Ordering::Acquire) {
            0 => 0,
            first => self.last_seq.load(Ordering::Acquire) - first + 1,
        }
    }

    fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let ids = txn.open_multimap_table(IDS).map_err(store_error)?;
        let mut seqs = ids.get(id).map_err(store_error)?;
        let Some(seq) = seqs.next().transpose().map_err(store_error)? else { return Ok(None) };
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
        let chunk = pages::fill(updates, max_bytes, newest);
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

    #[test]
    fn survives_reopening_and_trims() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/history.redb");
        {
            let store = EmbeddedStore::open(&path, 3).expect("open");
            store.append(vec![update("a"), update("b"), update("a")]).expect("append");
            store.append(vec![update("c"), update("p1")]).expect("append");
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
