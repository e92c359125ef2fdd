//! The event index: an LSM tree (fjall) in `<data_dir>/eventlog`, one
//! keyspace, keys as in [`super::keys`].
//!
//! Why an LSM tree and not the sled database the other stages use: the
//! index takes two or three inserts per ingested event, and sled's B-tree
//! copies a node per insert (≈ 65 µs per event measured here) where an
//! LSM tree appends to a memtable (≈ 9 µs); see BENCHMARKS.md.
//!
//! Durability: batches are atomic and reach the OS when committed; they are
//! made durable only by [`Index::persist`] — the event log's checkpoint —
//! because the write-ahead log already holds everything not yet persisted
//! here and is replayed after a crash.

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};
use std::ops::Range;
use std::path::Path;

/// Block cache of the index.
const CACHE_BYTES: u64 = 64 << 20;
/// Journal kept before memtables must be flushed; it bounds the memory the
/// memtables waiting for a flush can hold (writes stall beyond it).
const JOURNAL_BYTES: u64 = 128 << 20;
/// One memtable.
const MEMTABLE_BYTES: u64 = 32 << 20;
/// fjall's flush and compaction threads. fjall 3.1 keeps its first worker
/// for flushes: while another compacts, that worker hands every compaction
/// request back to the queue in a loop, a busy spin that took ~6 % of the
/// gateway's CPU under ingest with two workers. With a third, an idle worker
/// takes the request; one worker would make flushes wait behind compactions.
/// Measured in BENCHMARKS.md (ingest and metering).
const WORKER_THREADS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the event index in {dir} is locked: another gateway (or one still shutting down) has it open")]
    Locked { dir: String },
    #[error("event index: {0}")]
    Storage(#[from] fjall::Error),
}

/// A handle on the index; cheap to clone.
#[derive(Clone)]
pub struct Index {
    db: Database,
    keyspace: Keyspace,
}

/// One key and value read from the index.
pub type Entry = (Slice, Slice);

impl Index {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let db = Database::builder(dir)
            .cache_size(CACHE_BYTES)
            .max_journaling_size(JOURNAL_BYTES)
            .worker_threads(WORKER_THREADS)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => IndexError::Locked { dir: dir.display().to_string() },
                e => IndexError::Storage(e),
            })?;
        let keyspace =
            db.keyspace("eventlog", || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES))?;
        Ok(Index { db, keyspace })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Slice>, IndexError> {
        Ok(self.keyspace.get(key)?)
    }

    /// Entries with keys in `range`, in key order.
    pub fn range(&self, range: Range<Vec<u8>>) -> impl Iterator<Item = Result<Entry, IndexError>> + use<> {
        self.keyspace.range(range).map(|g| Ok(g.into_inner()?))
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn prefix(&self, prefix: &[u8]) -> impl Iterator<Item = Result<Entry, IndexError>> + use<> {
        self.keyspace.prefix(prefix).map(|g| Ok(g.into_inner()?))
    }

    /// A batch of changes, applied atomically by [`Batch::commit`].
    pub fn batch(&self) -> Batch<'_> {
        Batch { db: &self.db, keyspace: &self.keyspace, changes: Vec::new() }
    }

    /// Memtables full and waiting to be flushed. fjall halts every write
    /// for 100 ms at a time while four wait, so background work (a meter
    /// build) pauses before that.
    pub fn sealed_memtables(&self) -> usize {
        self.keyspace.sealed_memtable_count()
    }

    /// Makes every committed batch durable (fsync).
    pub fn persist(&self) -> Result<(), IndexError> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }
}

/// Changes to the index, applied all or nothing.
pub struct Batch<'a> {
    db: &'a Database,
    keyspace: &'a Keyspace,
    /// Key and new value (`None`: removed), in the order they were made.
    changes: Vec<(Slice, Option<Slice>)>,
}

impl Batch<'_> {
    pub fn insert(&mut self, key: impl Into<Slice>, value: impl Into<Slice>) {
        self.changes.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<Slice>) {
        self.changes.push((key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Room for `n` more changes.
    pub fn reserve(&mut self, n: usize) {
        self.changes.reserve(n);
    }

    /// Applies the changes in key order: the memtable is a skip list searched
    /// from its top for every insert, and consecutive keys share most of
    /// that path, so sorted inserts find it in the CPU cache (see
    /// BENCHMARKS.md). The sort is stable: of two changes to one key the
    /// later still wins, as it would applied in order.
    pub fn commit(mut self) -> Result<(), IndexError> {
        self.changes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), self.changes.len()).durability(None);
        for (key, value) in self.changes {
            match value {
                Some(value) => batch.insert(self.keyspace, key, value),
                None => batch.remove(self.keyspace, key),
            }
        }
        Ok(batch.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_two_changes_to_one_key_in_a_batch_the_later_wins_though_the_batch_is_sorted() {
        let dir = std::env::temp_dir().join(format!("tollgate-index-order-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let index = Index::open(&dir).unwrap();
        let mut batch = index.batch();
        batch.insert(b"k".to_vec(), b"first".to_vec());
        batch.insert(b"b".to_vec(), b"x".to_vec());
        batch.remove(b"k".to_vec());
        batch.insert(b"a".to_vec(), b"y".to_vec());
        batch.insert(b"k".to_vec(), b"last".to_vec());
        batch.insert(b"gone".to_vec(), b"z".to_vec());
        batch.remove(b"gone".to_vec());
        batch.commit().unwrap();
        assert_eq!(index.get(b"k").unwrap().as_deref(), Some(&b"last"[..]));
        assert_eq!(index.get(b"gone").unwrap(), None);
        let keys: Vec<Vec<u8>> = index.prefix(b"").map(|e| e.unwrap().0.to_vec()).collect();
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec(), b"k".to_vec()]);
        drop(index);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
