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
//!
//! openraft 0.9 waits for each append's callback before it takes the next
//! client write, so a leader that reported its own proposals only once
//! flushed would pay one fsync per write. A leader's own proposals are
//! therefore reported written at once and flushed with the next group;
//! nothing of them can be seen before they are durable here, because the
//! state machine applies an entry only once [`Durability`] covers it and
//! the network tells followers a commit index only once it does (see
//! `docs/decisions.md`). Entries from another leader (a follower's appends)
//! are reported only once flushed, as Raft requires.

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
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::StoreError;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// How far the raft log is durable on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Durable {
    /// One past the last durable index (0: nothing is).
    end: u64,
    /// Writing the log failed: nothing more will become durable.
    failed: bool,
}

/// A shared view of how far the raft log is durable, for those who must not
/// act on an entry before it is: the state machine and the network.
#[derive(Clone, Debug)]
pub struct Durability {
    state: Arc<watch::Sender<Durable>>,
}

impl Durability {
    fn new(end: u64) -> Durability {
        Durability {
            state: Arc::new(watch::Sender::new(Durable { end, failed: false })),
        }
    }

    /// One past the last durable index.
    fn end(&self) -> u64 {
        self.state.borrow().end
    }

    fn advance_to(&self, end: u64) {
        self.state.send_if_modified(|durable| {
            let advanced = end > durable.end;
            durable.end = durable.end.max(end);
            advanced
        });
    }

    fn truncate_to(&self, end: u64) {
        self.state.send_if_modified(|durable| {
            let truncated = end < durable.end;
            durable.end = durable.end.min(end);
            truncated
        });
    }

    fn fail(&self) {
        self.state.send_modify(|durable| durable.failed = true);
    }

    /// Waits until the entry at `index` is durable; an error once writing
    /// the log has failed.
    pub async fn wait_covers(&self, index: u64) -> Result<(), StoreError> {
        let mut state = self.state.subscribe();
        let durable = *state
            .wait_for(|durable| durable.failed || durable.end > index)
            .await
            .map_err(|_| StoreError::Corrupt("the raft log is closed".into()))?;
        if durable.end > index {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "the raft log cannot be written, so entry {index} never became durable"
            )))
        }
    }
}

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
    /// How far the log is durable.
    durable: Durability,
    /// This node's id: appends of entries it proposed as the current leader
    /// are reported written before they are flushed.
    node_id: Option<NodeId>,
    /// The vote as last saved.
    vote: Arc<Mutex<Option<Vote<NodeId>>>>,
    /// Appended entries not yet written to sled, by index.
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
    /// The group-commit flusher, started by the first append.
    flusher: Arc<OnceLock<mpsc::UnboundedSender<FlushJob>>>,
}

/// Work for the flusher.
enum FlushJob {
    /// Write the pending entries `first..=last`, flush, then call back
    /// (unless openraft was answered at once).
    Append {
        first: u64,
        last: u64,
        callback: Option<LogFlushed<TypeConfig>>,
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
        let started = std::time::Instant::now();
        let written = store.write_pending(&group).await;
        ::metrics::histogram!(crate::metrics::LOG_FLUSH_SECONDS)
            .record(started.elapsed().as_secs_f64());
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
                    if let Some(callback) = callback {
                        callback.log_io_completed(outcome);
                    }
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
    /// Opens (or creates) the raft log of node `node_id` in `dir`; without
    /// a node id (offline tools), every append waits for its flush.
    pub fn open(dir: &Path, node_id: Option<NodeId>) -> Result<LogStore, StoreError> {
        let db = crate::store::open_sled(dir, true)?;
        let mut store = LogStore {
            db,
            committed: Arc::new(AtomicU64::new(0)),
            committed_id: Arc::new(Mutex::new(None)),
            durable: Durability::new(0),
            node_id,
            vote: Arc::new(Mutex::new(None)),
            pending: Arc::new(Mutex::new(BTreeMap::new())),
            flusher: Arc::new(OnceLock::new()),
        };
        // The committed index survives restarts, so status shows it at once.
        if let Ok(Some(Some(committed))) = store.get_json::<Option<LogId>>(COMMITTED_KEY) {
            store.committed.store(committed.index, Ordering::Release);
            *store.committed_id.lock().expect("not poisoned") = Some(committed);
        }
        let vote = store
            .get_json::<Vote<NodeId>>(VOTE_KEY)
            .map_err(|e| StoreError::Corrupt(format!("the saved vote is unreadable: {e}")))?;
        *store.vote.lock().expect("not poisoned") = vote;
        let purged = store
            .get_json::<LogId>(PURGED_KEY)
            .map_err(|e| StoreError::Corrupt(format!("the purged log id is unreadable: {e}")))?;
        let last = store
            .last_entry_id()
            .map_err(|e| StoreError::Corrupt(format!("the last log entry is unreadable: {e}")))?
            .max(purged);
        store.durable = Durability::new(last.map_or(0, |id| id.index + 1));
        Ok(store)
    }

    /// How far the log is durable, shared.
    pub fn durability(&self) -> Durability {
        self.durable.clone()
    }

    /// Whether `entries` are this node's own proposals as the leader of the
    /// saved vote: a committed vote for this node, and every entry made in
    /// that leadership.
    fn proposed_by_this_leader(&self, entries: &[Entry]) -> bool {
        let Some(node_id) = self.node_id else {
            return false;
        };
        let vote = *self.vote.lock().expect("not poisoned");
        let Some(vote) = vote.filter(|vote| vote.committed && vote.leader_id.node_id == node_id)
        else {
            return false;
        };
        entries
            .iter()
            .all(|entry| entry.log_id.leader_id == vote.leader_id)
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
        let mut batch_end = self.durable.end();
        {
            let pending = self.pending.lock().expect("not poisoned");
            for (first, last) in &ranges {
                for (index, entry) in pending.range(first..=last) {
                    let bytes = serde_json::to_vec(entry).expect("an entry serializes");
                    batch.insert(&entry_key(*index), bytes);
                    batch_end = batch_end.max(*index + 1);
                }
            }
        }
        // The committed id goes with the entries it covers, never ahead.
        let committed = *self.committed_id.lock().expect("not poisoned");
        if let Some(committed) = committed.filter(|id| id.index < batch_end) {
            let bytes = serde_json::to_vec(&Some(committed)).expect("a log id serializes");
            batch.insert(COMMITTED_KEY, bytes);
        }
        // sled may block a write while it flushes: keep that off the
        // async workers, which serve requests and run openraft's core.
        let db = self.db.clone();
        let written = tokio::task::spawn_blocking(move || {
            db.apply_batch(batch)?;
            if must_flush {
                db.flush()?;
            }
            Ok::<_, sled::Error>(())
        })
        .await
        .map_err(|join| sled::Error::ReportableBug(format!("raft log flush task failed: {join}")))
        .and_then(|written| written);
        if let Err(error) = &written {
            tracing::error!(%error, "writing the raft log failed; this node stops applying");
            self.durable.fail();
            return written;
        }
        self.durable.advance_to(batch_end);
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
        let durable_end = self.durable.end();
        if let Some(committed) = committed.filter(|id| id.index < durable_end) {
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
        // Pending entries first: the flusher drops an entry from the table
        // only after writing it to sled, so one not found there is in sled.
        let pending: Vec<Entry> = self
            .pending
            .lock()
            .expect("not poisoned")
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect();
        let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
        for item in self.db.range((Bound::Included(start), end)) {
            let (_, bytes) = item.map_err(read_error)?;
            let entry: Entry = serde_json::from_slice(&bytes).map_err(read_error)?;
            entries.insert(entry.log_id.index, entry);
        }
        for entry in pending {
            entries.insert(entry.log_id.index, entry);
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
        // Entries at or below the purged id may outlive a crash in the
        // middle of their removal: the purged id still bounds the log.
        let last_log_id = self.last_entry_id()?.max(last_purged_log_id);
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
            .map_err(|e| StorageIOError::write_vote(&e))?;
        *self.vote.lock().expect("not poisoned") = Some(*vote);
        Ok(())
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let (first, last) = (first.log_id.index, last.log_id.index);
        let own = self.proposed_by_this_leader(&entries);
        {
            let mut pending = self.pending.lock().expect("not poisoned");
            for entry in entries {
                pending.insert(entry.log_id.index, entry);
            }
        }
        let callback = if own {
            // Seen by nobody until durable: see the module's comment.
            callback.log_io_completed(Ok(()));
            None
        } else {
            Some(callback)
        };
        let job = FlushJob::Append {
            first,
            last,
            callback,
        };
        if let Err(mpsc::error::SendError(job)) = self.flusher().send(job) {
            // The flusher is gone (shutting down): write here instead.
            let written = self.write_pending(std::slice::from_ref(&job)).await;
            if let FlushJob::Append {
                callback: Some(callback),
                ..
            } = job
            {
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
        self.durable.truncate_to(log_id.index);
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
        // Once the purged id is saved, nothing reads at or below it: the
        // entries are removed in the background, so that removing tens of
        // thousands of them does not hold up openraft's core.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = sled::Batch::default();
            for item in db.range(entry_key(0)..=entry_key(log_id.index)) {
                match item {
                    Ok((key, _)) => batch.remove(key),
                    Err(error) => {
                        tracing::warn!(%error, "reading the raft log to purge it failed");
                        return;
                    }
                }
            }
            if let Err(error) = db.apply_batch(batch) {
                tracing::warn!(%error, upto = log_id.index, "purging the raft log failed");
            }
        });
        Ok(())
    }
}
