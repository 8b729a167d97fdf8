//! The Raft log on RocksDB (openraft's [`RaftLogStorage`] and [`RaftLogReader`]).
//!
//! Layout of `<data dir>/meta`, one column family per concern:
//! - `logs`: key = log index as 8 big-endian bytes (so iteration order is log order),
//!   value = the JSON `Entry`.
//! - `meta`: keys `vote`, `committed`, `last_purged`, JSON `Vote` / `LogId` values.
//! - `snapshot`: keys `meta` (JSON `SnapshotMeta`) and `data` (the JSON `MetadataImage`),
//!   written together by the state machine (see `state_machine.rs`).
//!
//! Writes that Raft's safety depends on (entries, vote, truncation) are synced before they
//! are reported done. RocksDB calls block the calling task for an fsync; that is acceptable
//! for the metadata log, which sees a few writes per second at most.

// openraft's storage traits return its 224-byte `StorageError` by value; the helpers here
// share that error type rather than box it only to unbox at the trait boundary.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch};
use rocksdb::{WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{MetadataError, TypeConfig};

pub(crate) type StorageResult<T> = Result<T, StorageError<u64>>;

pub(crate) const CF_LOGS: &str = "logs";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_SNAPSHOT: &str = "snapshot";

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// Opens (creating if needed) the metadata RocksDB at `path`.
pub(crate) fn open_db(path: &Path) -> Result<Arc<DB>, MetadataError> {
    std::fs::create_dir_all(path)
        .map_err(|e| MetadataError::Storage(format!("creating {}: {e}", path.display())))?;
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // RocksDB's info LOG rolls on every open; a few old ones are enough for debugging.
    options.set_keep_log_file_num(4);
    let cfs = [CF_LOGS, CF_META, CF_SNAPSHOT]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    DB::open_cf_descriptors(&options, path, cfs)
        .map(Arc::new)
        .map_err(|e| MetadataError::Storage(format!("opening {}: {e}", path.display())))
}

/// A column family handle; the families are created by [`open_db`], so a missing one means
/// the directory was tampered with, which is reported rather than panicked on.
pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily, StorageIOError<u64>> {
    db.cf_handle(name).ok_or_else(|| {
        StorageIOError::read(AnyError::error(format!("missing column family {name}")))
    })
}

pub(crate) fn sync_write(db: &DB, batch: WriteBatch) -> Result<(), rocksdb::Error> {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    db.write_opt(batch, &options)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AnyError> {
    serde_json::from_slice(bytes).map_err(|e| AnyError::new(&e))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, AnyError> {
    serde_json::to_vec(value).map_err(|e| AnyError::new(&e))
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Result<u64, AnyError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| AnyError::error(format!("log key of {} bytes, expected 8", key.len())))
}

/// The log and its metadata. Cloning is cheap (it shares the DB); clones serve as log
/// readers for openraft's replication tasks.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<DB>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        key: &str,
        err: fn(AnyError) -> StorageIOError<u64>,
    ) -> StorageResult<Option<T>> {
        let cf = cf(&self.db, CF_META)?;
        match self.db.get_cf(cf, key) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => Ok(Some(decode(&bytes).map_err(err)?)),
            Err(e) => Err(err(AnyError::new(&e)).into()),
        }
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        sync: bool,
        err: fn(AnyError) -> StorageIOError<u64>,
    ) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_META)?, key, encode(value).map_err(err)?);
        let written = if sync {
            sync_write(&self.db, batch)
        } else {
            self.db.write(batch)
        };
        written.map_err(|e| err(AnyError::new(&e)).into())
    }

    fn last_entry_log_id(&self) -> StorageResult<Option<LogId<u64>>> {
        let cf = cf(&self.db, CF_LOGS)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
                let entry: Entry<TypeConfig> = decode(&value).map_err(StorageIOError::read_logs)?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = cf(&self.db, CF_LOGS)?;
        let mut entries = Vec::new();
        let key = index_key(start);
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&key, Direction::Forward))
        {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            let index = key_index(&key).map_err(StorageIOError::read_logs)?;
            if !range.contains(&index) {
                break;
            }
            let entry: Entry<TypeConfig> =
                decode(&value).map_err(|e| StorageIOError::read_log_at_index(index, e))?;
            if entry.log_id.index != index {
                return Err(StorageIOError::read_log_at_index(
                    index,
                    AnyError::error(format!("entry has index {}", entry.log_id.index)),
                )
                .into());
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.get_meta(KEY_LAST_PURGED, StorageIOError::read_logs)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.put_meta(KEY_VOTE, vote, true, StorageIOError::write_vote)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.get_meta(KEY_VOTE, StorageIOError::read_vote)
    }

    /// Saved so a restart re-applies committed entries before serving; not synced, since
    /// losing it only means waiting for the leader to commit them again.
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        self.put_meta(KEY_COMMITTED, &committed, false, StorageIOError::write)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        Ok(self
            .get_meta::<Option<LogId<u64>>>(KEY_COMMITTED, StorageIOError::read)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = cf(&self.db, CF_LOGS)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            let value =
                encode(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, e))?;
            batch.put_cf(cf, index_key(entry.log_id.index), value);
        }
        // Synced before the callback: openraft counts the entries as durable (a vote for
        // commitment) once it fires.
        sync_write(&self.db, batch).map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_LOGS)?,
            index_key(log_id.index),
            index_key(u64::MAX),
        );
        sync_write(&self.db, batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        // One batch, so the purge marker and the deletion land together.
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(&self.db, CF_META)?,
            KEY_LAST_PURGED,
            encode(&log_id).map_err(StorageIOError::write_logs)?,
        );
        batch.delete_range_cf(
            cf(&self.db, CF_LOGS)?,
            index_key(0),
            index_key(log_id.index.saturating_add(1)),
        );
        sync_write(&self.db, batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};
    use tempfile::TempDir;

    use super::*;
    use crate::metadata::records::{MetadataRecord, RecordBatch};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(RecordBatch {
                records: vec![MetadataRecord::ClusterInit {
                    cluster_id: format!("c{index}"),
                }],
            }),
        }
    }

    /// Appends without a running Raft: the callback's receiver is openraft-internal, so the
    /// test writes through a batch of the same shape.
    fn put_entries(store: &LogStore, entries: &[Entry<TypeConfig>]) {
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put_cf(
                cf(&store.db, CF_LOGS).unwrap(),
                index_key(e.log_id.index),
                encode(e).unwrap(),
            );
        }
        sync_write(&store.db, batch).unwrap();
    }

    #[tokio::test]
    async fn log_state_read_truncate_purge() {
        let dir = TempDir::new().unwrap();
        let mut store = LogStore::new(open_db(dir.path()).unwrap());
        let state = store.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));

        put_entries(&store, &(0..10).map(|i| entry(1, i)).collect::<Vec<_>>());
        assert_eq!(
            store.get_log_state().await.unwrap().last_log_id,
            Some(entry(1, 9).log_id)
        );
        let got = store.try_get_log_entries(3..6).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );

        store.truncate(entry(1, 7).log_id).await.unwrap();
        assert_eq!(
            store.get_log_state().await.unwrap().last_log_id,
            Some(entry(1, 6).log_id)
        );

        store.purge(entry(1, 6).log_id).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(1, 6).log_id));
        assert_eq!(state.last_log_id, Some(entry(1, 6).log_id));
        assert!(store.try_get_log_entries(0..100).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn vote_and_committed_survive_reopen() {
        let dir = TempDir::new().unwrap();
        {
            let mut store = LogStore::new(open_db(dir.path()).unwrap());
            assert_eq!(store.read_vote().await.unwrap(), None);
            assert_eq!(store.read_committed().await.unwrap(), None);
            store.save_vote(&Vote::new(3, 1)).await.unwrap();
            store
                .save_committed(Some(entry(3, 5).log_id))
                .await
                .unwrap();
        }
        let mut store = LogStore::new(open_db(dir.path()).unwrap());
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
        assert_eq!(
            store.read_committed().await.unwrap(),
            Some(entry(3, 5).log_id)
        );
    }

    #[tokio::test]
    async fn corrupt_bytes_are_errors_not_panics() {
        let dir = TempDir::new().unwrap();
        let db = open_db(dir.path()).unwrap();
        let mut store = LogStore::new(db.clone());
        db.put_cf(cf(&db, CF_LOGS).unwrap(), index_key(0), b"not json")
            .unwrap();
        assert!(store.try_get_log_entries(0..1).await.is_err());
        assert!(store.get_log_state().await.is_err());
        db.put_cf(cf(&db, CF_META).unwrap(), KEY_VOTE, b"{")
            .unwrap();
        assert!(store.read_vote().await.is_err());
        db.put_cf(cf(&db, CF_META).unwrap(), KEY_LAST_PURGED, b"[]")
            .unwrap();
        assert!(store.get_log_state().await.is_err());
    }
}
