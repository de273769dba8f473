//! The durable raft log: entries, vote, committed and purged log ids, in a
//! sled database of its own (`data/raft`).
//!
//! Every write is flushed (fsync) before openraft is told it is durable: the
//! raft log is the one durable record of the node; the topic and the view are
//! rebuilt from it.
//!
//! Appends are group-committed and written behind: `append` only puts its
//! entries in an in-memory table of pending entries (which reads see) and
//! queues openraft's callback. A flusher task takes everything queued,
//! writes it to sled in one batch, flushes once, answers the callbacks in
//! order and drops the entries from the pending table. While one fsync runs,
//! the appends arriving meanwhile queue up and share the next one, and
//! openraft's core never waits on the disk to take the next write.
//! Truncation waits for the flusher to drain first, so it never races a
//! write of the entries it removes.

// openraft's trait methods return its large `StorageError`; the helpers
// here return the same type so errors pass through unchanged.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

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
    /// The last committed log id openraft saved; written with the next
    /// group of entries that covers it.
    committed_id: Arc<Mutex<Option<LogId>>>,
    /// The last log index known to be durable.
    durable_last: Arc<AtomicU64>,
    /// Appended entries not yet written to sled, by index.
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
    /// The group-commit flusher, started by the first append.
    flusher: Arc<OnceLock<mpsc::UnboundedSender<FlushJob>>>,
}

/// Work for the flusher.
enum FlushJob {
    /// Write the pending entries `first..=last`, flush, then call back.
    Append {
        first: u64,
        last: u64,
        callback: LogFlushed<TypeConfig>,
    },
    /// Answer once everything queued before is durable.
    Drain(oneshot::Sender<()>),
    /// The committed id changed: write it (not flushed) once entries cover it.
    Committed,
}

/// Writes queued appends to sled, flushing once per group, until every
/// sender is gone.
async fn run_flusher(store: LogStore, mut jobs: mpsc::UnboundedReceiver<FlushJob>) {
    let mut group = Vec::new();
    while jobs.recv_many(&mut group, usize::MAX).await > 0 {
        let written = store.write_pending(&group).await;
        let appends = group
            .iter()
            .filter(|job| matches!(job, FlushJob::Append { .. }))
            .count();
        ::metrics::histogram!(crate::metrics::LOG_FLUSH_ENTRIES).record(appends as f64);
        for job in group.drain(..) {
            match job {
                FlushJob::Append { callback, .. } => {
                    let outcome = match &written {
                        Ok(()) => Ok(()),
                        Err(error) => Err(std::io::Error::other(format!(
                            "writing the raft log failed: {error}"
                        ))),
                    };
                    callback.log_io_completed(outcome);
                }
                FlushJob::Drain(done) => {
                    let _ = done.send(());
                }
                FlushJob::Committed => {}
            }
        }
    }
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
        let db = crate::store::open_sled(dir, true)?;
        let store = LogStore {
            db,
            committed: Arc::new(AtomicU64::new(0)),
            committed_id: Arc::new(Mutex::new(None)),
            durable_last: Arc::new(AtomicU64::new(0)),
            pending: Arc::new(Mutex::new(BTreeMap::new())),
            flusher: Arc::new(OnceLock::new()),
        };
        // The committed index survives restarts, so status shows it at once.
        if let Ok(Some(Some(committed))) = store.get_json::<Option<LogId>>(COMMITTED_KEY) {
            store.committed.store(committed.index, Ordering::Release);
            *store.committed_id.lock().expect("not poisoned") = Some(committed);
        }
        if let Ok(Some(last)) = store.last_entry_id() {
            store.durable_last.store(last.index, Ordering::Release);
        }
        Ok(store)
    }

    /// Writes the pending entries the append jobs of `group` name (and the
    /// committed index) in one sled batch, flushes, and drops them from the
    /// pending table.
    async fn write_pending(&self, group: &[FlushJob]) -> Result<(), sled::Error> {
        let ranges: Vec<(u64, u64)> = group
            .iter()
            .filter_map(|job| match job {
                FlushJob::Append { first, last, .. } => Some((*first, *last)),
                FlushJob::Drain(_) | FlushJob::Committed => None,
            })
            .collect();
        let must_flush = group.iter().any(|job| !matches!(job, FlushJob::Committed));
        let mut batch = sled::Batch::default();
        let mut batch_last = self.durable_last.load(Ordering::Acquire);
        {
            let pending = self.pending.lock().expect("not poisoned");
            for (first, last) in &ranges {
                for (index, entry) in pending.range(first..=last) {
                    let bytes = serde_json::to_vec(entry).expect("an entry serializes");
                    batch.insert(&entry_key(*index), bytes);
                    batch_last = batch_last.max(*index);
                }
            }
        }
        // The committed id goes with the entries it covers, never ahead.
        let committed = *self.committed_id.lock().expect("not poisoned");
        if let Some(committed) = committed.filter(|id| id.index <= batch_last) {
            let bytes = serde_json::to_vec(&Some(committed)).expect("a log id serializes");
            batch.insert(COMMITTED_KEY, bytes);
        }
        // sled may block a write while it flushes: keep that off the
        // async workers, which serve requests and run openraft's core.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            db.apply_batch(batch)?;
            if must_flush {
                db.flush()?;
            }
            Ok::<_, sled::Error>(())
        })
        .await
        .map_err(|join| {
            sled::Error::ReportableBug(format!("raft log flush task failed: {join}"))
        })??;
        self.durable_last.fetch_max(batch_last, Ordering::AcqRel);
        let mut pending = self.pending.lock().expect("not poisoned");
        for (first, last) in &ranges {
            let written: Vec<u64> = pending
                .range(first..=last)
                .map(|(index, _)| *index)
                .collect();
            for index in written {
                pending.remove(&index);
            }
        }
        Ok(())
    }

    /// The flusher's queue, starting the flusher on first use.
    fn flusher(&self) -> &mpsc::UnboundedSender<FlushJob> {
        self.flusher.get_or_init(|| {
            let (sender, jobs) = mpsc::unbounded_channel();
            tokio::spawn(run_flusher(self.clone(), jobs));
            sender
        })
    }

    /// Waits until every append queued so far is durable.
    async fn drain(&self) {
        let (done, drained) = oneshot::channel();
        if self.flusher().send(FlushJob::Drain(done)).is_ok() {
            let _ = drained.await;
        }
    }

    /// Writes what is pending and the committed id, and flushes: for a
    /// graceful stop.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.drain().await;
        let committed = *self.committed_id.lock().expect("not poisoned");
        let durable = self.durable_last.load(Ordering::Acquire);
        if let Some(committed) = committed.filter(|id| id.index <= durable) {
            let bytes = serde_json::to_vec(&Some(committed)).expect("a log id serializes");
            self.db.insert(COMMITTED_KEY, bytes)?;
        }
        self.db.flush_async().await?;
        Ok(())
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
        let pending_last = self
            .pending
            .lock()
            .expect("not poisoned")
            .last_key_value()
            .map(|(_, entry)| entry.log_id);
        if pending_last.is_some() {
            return Ok(pending_last);
        }
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
    pub fn entries(
        &self,
        range: impl RangeBounds<u64> + Clone,
    ) -> Result<Vec<Entry>, StorageError> {
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
        let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
        for item in self.db.range((Bound::Included(start), end)) {
            let (_, bytes) = item.map_err(read_error)?;
            let entry: Entry = serde_json::from_slice(&bytes).map_err(read_error)?;
            entries.insert(entry.log_id.index, entry);
        }
        let pending = self.pending.lock().expect("not poisoned");
        for (index, entry) in pending.range(range) {
            entries.insert(*index, entry.clone());
        }
        Ok(entries.into_values().collect())
    }

    /// The log id of the entry at `index`, if the log still holds it.
    pub fn log_id_at(&self, index: u64) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .entries(index..=index)?
            .into_iter()
            .next()
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
        // Written with the next group of entries: a committed id lost in a
        // crash is recomputed by the leader.
        if let Some(id) = &committed {
            self.committed.store(id.index, Ordering::Release);
        }
        *self.committed_id.lock().expect("not poisoned") = committed;
        let _ = self.flusher().send(FlushJob::Committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(*self.committed_id.lock().expect("not poisoned"))
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
        let (mut first, mut last) = (None, 0);
        {
            let mut pending = self.pending.lock().expect("not poisoned");
            for entry in entries {
                let index = entry.log_id.index;
                first.get_or_insert(index);
                last = index;
                pending.insert(index, entry);
            }
        }
        let Some(first) = first else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let job = FlushJob::Append {
            first,
            last,
            callback,
        };
        if let Err(mpsc::error::SendError(job)) = self.flusher().send(job) {
            // The flusher is gone (shutting down): write here instead.
            let written = self.write_pending(std::slice::from_ref(&job)).await;
            if let FlushJob::Append { callback, .. } = job {
                callback.log_io_completed(written.map_err(std::io::Error::other));
            }
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.drain().await;
        self.pending
            .lock()
            .expect("not poisoned")
            .retain(|index, _| *index < log_id.index);
        self.durable_last
            .fetch_min(log_id.index.saturating_sub(1), Ordering::AcqRel);
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
