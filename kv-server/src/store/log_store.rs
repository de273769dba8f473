//! The durable raft log: entries, vote, committed and purged log ids, in a
//! sled database of its own (`data/raft`).
//!
//! Every write is flushed (fsync) before openraft is told it is durable: the
//! raft log is the one durable record of the node; the topic and the view are
//! rebuilt from it. One append call is one sled batch and one flush, so the
//! entries openraft batches together share an fsync.

// openraft's trait methods return its large `StorageError`; the helpers
// here return the same type so errors pass through unchanged.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StoreError;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

const ENTRY_PREFIX: u8 = b'l';
const VOTE_KEY: &[u8] = b"s:vote";
const COMMITTED_KEY: &[u8] = b"s:committed";
const PURGED_KEY: &[u8] = b"s:purged";

/// The raft log store. Cloning shares the database.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: sled::Db,
    /// The last committed index openraft saved, for metrics and status.
    committed: Arc<AtomicU64>,
}

fn entry_key(index: u64) -> [u8; 9] {
    let mut key = [ENTRY_PREFIX; 9];
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

fn read_error(error: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&error).into()
}

fn write_error(error: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&error).into()
}

impl LogStore {
    /// Opens (or creates) the raft log in `dir`.
    pub fn open(dir: &Path) -> Result<LogStore, StoreError> {
        let db = crate::store::open_sled(dir)?;
        let store = LogStore {
            db,
            committed: Arc::new(AtomicU64::new(0)),
        };
        // The committed index survives restarts, so status shows it at once.
        if let Ok(Some(Some(committed))) = store.get_json::<Option<LogId>>(COMMITTED_KEY) {
            store.committed.store(committed.index, Ordering::Release);
        }
        Ok(store)
    }

    /// The committed index as last saved, shared.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.committed)
    }

    fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.db.get(key).map_err(read_error)? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(read_error),
            None => Ok(None),
        }
    }

    async fn put_json_flushed<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(write_error)?;
        self.db.insert(key, bytes).map_err(write_error)?;
        self.db.flush_async().await.map_err(write_error)?;
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let last = self
            .db
            .scan_prefix([ENTRY_PREFIX])
            .next_back()
            .transpose()
            .map_err(read_error)?;
        match last {
            Some((_, bytes)) => {
                let entry: Entry = serde_json::from_slice(&bytes).map_err(read_error)?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }

    /// The entries with indexes in `range` that the log holds.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&index) => entry_key(index),
            Bound::Excluded(&index) => entry_key(index + 1),
            Bound::Unbounded => entry_key(0),
        };
        let end = match range.end_bound() {
            Bound::Included(&index) => Bound::Included(entry_key(index)),
            Bound::Excluded(&index) => Bound::Excluded(entry_key(index)),
            Bound::Unbounded => Bound::Included(entry_key(u64::MAX)),
        };
        self.db
            .range((Bound::Included(start), end))
            .map(|item| {
                let (_, bytes) = item.map_err(read_error)?;
                serde_json::from_slice(&bytes).map_err(read_error)
            })
            .collect()
    }

    /// The log id of the entry at `index`, if the log still holds it.
    pub fn log_id_at(&self, index: u64) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_json::<Entry>(&entry_key(index))?
            .map(|entry| entry.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.entries(range)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_json(PURGED_KEY)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_json_flushed(VOTE_KEY, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_json(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: a lost committed id is recomputed by the leader.
        if let Some(id) = &committed {
            self.committed.store(id.index, Ordering::Release);
        }
        let bytes = serde_json::to_vec(&committed).map_err(write_error)?;
        self.db.insert(COMMITTED_KEY, bytes).map_err(write_error)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_json::<Option<LogId>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(write_error)?;
            batch.insert(&entry_key(entry.log_id.index), bytes);
        }
        self.db.apply_batch(batch).map_err(write_error)?;
        let flushed = self
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other);
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.db.range(entry_key(log_id.index)..=entry_key(u64::MAX)) {
            let (key, _) = item.map_err(read_error)?;
            batch.remove(key);
        }
        self.db.apply_batch(batch).map_err(write_error)?;
        self.db.flush_async().await.map_err(write_error)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_json_flushed(PURGED_KEY, &log_id).await?;
        let mut batch = sled::Batch::default();
        for item in self.db.range(entry_key(0)..=entry_key(log_id.index)) {
            let (key, _) = item.map_err(read_error)?;
            batch.remove(key);
        }
        self.db.apply_batch(batch).map_err(write_error)?;
        Ok(())
    }
}
