//! The durable raft log: entries, vote, committed and purged log ids, in
//! segment files of its own (`data/raft`, see [`log_files`]).
//!
//! Every write is flushed (fsync) before openraft is told it is durable: the
//! raft log is the one durable record of the node; the topic and the view are
//! rebuilt from it.
//!
//! Appends are group-committed and written behind: `append` only puts its
//! entries in an in-memory table of pending entries (which reads see) and
//! queues openraft's callback. A flusher thread takes everything queued,
//! appends it to the active segment in one write, `fdatasync`s once,
//! answers the callbacks in order and drops the entries from the pending
//! table. While one fsync runs,
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
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::StoreError;
use crate::store::blocking;
use crate::store::log_files::{self, Frame, LogFiles, Meta};
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

/// The raft log store. Cloning shares the files.
#[derive(Clone, Debug)]
pub struct LogStore {
    files: Arc<LogFiles>,
    /// The vote and the purged id as last saved.
    meta: Arc<Mutex<Meta>>,
    /// The last committed index openraft saved, for metrics and status.
    committed: Arc<AtomicU64>,
    /// The last committed log id openraft saved; written with the next
    /// group of entries that covers it.
    committed_id: Arc<Mutex<Option<LogId>>>,
    /// The committed log id last written to the files.
    written_committed: Arc<Mutex<Option<LogId>>>,
    /// How far the log is durable.
    durable: Durability,
    /// This node's id: appends of entries it proposed as the current leader
    /// are reported written before they are flushed.
    node_id: Option<NodeId>,
    /// Appended entries not yet written to the files, by index.
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

/// Writes queued appends to the files, syncing once per group, until every
/// sender is gone. Runs on a thread of its own: the sync blocks it, and a
/// blocking-pool task per group cost a thread wake-up each.
fn run_flusher(store: LogStore, mut jobs: mpsc::UnboundedReceiver<FlushJob>) {
    let mut group = Vec::new();
    while let Some(job) = jobs.blocking_recv() {
        group.push(job);
        while let Ok(job) = jobs.try_recv() {
            group.push(job);
        }
        let started = std::time::Instant::now();
        let written = store.write_pending(&group);
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
        let (files, recovered) = LogFiles::open(dir, log_files::SEGMENT_BYTES)?;
        let last = files.last_log_id().max(recovered.meta.purged);
        // The committed index survives restarts, so status shows it at once.
        let committed = recovered.committed;
        Ok(LogStore {
            files: Arc::new(files),
            meta: Arc::new(Mutex::new(recovered.meta)),
            committed: Arc::new(AtomicU64::new(committed.map_or(0, |id| id.index))),
            committed_id: Arc::new(Mutex::new(committed)),
            written_committed: Arc::new(Mutex::new(committed)),
            durable: Durability::new(last.map_or(0, |id| id.index + 1)),
            node_id,
            pending: Arc::new(Mutex::new(BTreeMap::new())),
            flusher: Arc::new(OnceLock::new()),
        })
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
        let vote = self.meta.lock().expect("not poisoned").vote;
        let Some(vote) = vote.filter(|vote| vote.committed && vote.leader_id.node_id == node_id)
        else {
            return false;
        };
        entries
            .iter()
            .all(|entry| entry.log_id.leader_id == vote.leader_id)
    }

    /// Appends the pending entries the append jobs of `group` name (and the
    /// committed id) to the files in one write, syncs, and drops them from
    /// the pending table.
    fn write_pending(&self, group: &[FlushJob]) -> Result<(), StoreError> {
        let ranges: Vec<(u64, u64)> = group
            .iter()
            .filter_map(|job| match job {
                FlushJob::Append { first, last, .. } => Some((*first, *last)),
                FlushJob::Drain(_) | FlushJob::Committed => None,
            })
            .collect();
        let must_sync = group.iter().any(|job| !matches!(job, FlushJob::Committed));
        let mut frames = Vec::new();
        let mut batch_end = self.durable.end();
        {
            let pending = self.pending.lock().expect("not poisoned");
            for (first, last) in &ranges {
                for (index, entry) in pending.range(first..=last) {
                    let json = serde_json::to_vec(entry).expect("an entry serializes");
                    frames.push(Frame::Entry(entry.log_id, json));
                    batch_end = batch_end.max(*index + 1);
                }
            }
        }
        // The committed id goes with the entries it covers, never ahead.
        let committed = *self.committed_id.lock().expect("not poisoned");
        let written_committed = *self.written_committed.lock().expect("not poisoned");
        let committed =
            committed.filter(|id| id.index < batch_end && committed != written_committed);
        if let Some(committed) = committed {
            frames.push(Frame::Committed(committed));
        }
        let written = self.files.append(&frames, must_sync);
        if let Err(error) = &written {
            tracing::error!(%error, "writing the raft log failed; this node stops applying");
            self.durable.fail();
            return written;
        }
        if committed.is_some() {
            *self.written_committed.lock().expect("not poisoned") = committed;
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
            let store = self.clone();
            let spawned = std::thread::Builder::new()
                .name("raft-log-flusher".into())
                .spawn(move || run_flusher(store, jobs));
            if let Err(error) = spawned {
                // The receiver is gone with the closure: appends write
                // themselves (see `append`).
                tracing::error!(%error, "cannot start the raft log flusher thread");
            }
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

    /// Writes what is pending and the committed id, and syncs: for a
    /// graceful stop.
    pub async fn close(&self) -> Result<(), StoreError> {
        let _ = self.flusher().send(FlushJob::Committed);
        self.drain().await;
        Ok(())
    }

    /// The committed index as last saved, shared.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.committed)
    }

    /// Replaces the metadata with `change` applied, durably.
    async fn save_meta(&self, change: impl FnOnce(&mut Meta)) -> Result<(), StoreError> {
        let mut meta = self.meta.lock().expect("not poisoned").clone();
        change(&mut meta);
        let files = Arc::clone(&self.files);
        let saved = meta.clone();
        blocking(move || files.save_meta(&saved)).await?;
        *self.meta.lock().expect("not poisoned") = meta;
        Ok(())
    }

    fn last_entry_id(&self) -> Option<LogId> {
        let pending_last = self
            .pending
            .lock()
            .expect("not poisoned")
            .last_key_value()
            .map(|(_, entry)| entry.log_id);
        pending_last.or_else(|| self.files.last_log_id())
    }

    /// The entries with indexes in `range` that the log holds.
    pub fn entries(
        &self,
        range: impl RangeBounds<u64> + Clone,
    ) -> Result<Vec<Entry>, StorageError> {
        // Pending entries first: the flusher drops an entry from the table
        // only after writing it to the files, so one not found there is in
        // the files.
        let pending: Vec<Entry> = self
            .pending
            .lock()
            .expect("not poisoned")
            .range(range.clone())
            .map(|(_, entry)| entry.clone())
            .collect();
        let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
        for (log_id, json) in self.files.read(range).map_err(read_error)? {
            let entry: Entry = serde_json::from_slice(&json).map_err(|e| {
                read_error(StoreError::Corrupt(format!(
                    "raft log entry {log_id} does not decode: {e}"
                )))
            })?;
            entries.insert(log_id.index, entry);
        }
        for entry in pending {
            entries.insert(entry.log_id.index, entry);
        }
        Ok(entries.into_values().collect())
    }

    /// The log id of the entry at `index`, if the log still holds it.
    pub fn log_id_at(&self, index: u64) -> Result<Option<LogId>, StorageError> {
        let pending = self
            .pending
            .lock()
            .expect("not poisoned")
            .get(&index)
            .map(|entry| entry.log_id);
        Ok(pending.or_else(|| self.files.log_id_at(index)))
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
        let last_purged_log_id = self.meta.lock().expect("not poisoned").purged;
        let last_log_id = self.last_entry_id().max(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.save_meta(|meta| meta.vote = Some(*vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.meta.lock().expect("not poisoned").vote)
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
            // The flusher is gone: write here instead, off the workers.
            let store = self.clone();
            blocking(move || {
                let written = store.write_pending(std::slice::from_ref(&job));
                if let FlushJob::Append {
                    callback: Some(callback),
                    ..
                } = job
                {
                    callback.log_io_completed(written.map_err(std::io::Error::other));
                }
                Ok(())
            })
            .await
            .map_err(write_error)?;
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
        let files = Arc::clone(&self.files);
        blocking(move || files.truncate(log_id.index))
            .await
            .map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purged id bounds the log from the next open on; the files of
        // the purged entries are deleted after it is saved.
        self.save_meta(|meta| meta.purged = Some(log_id))
            .await
            .map_err(write_error)?;
        let files = Arc::clone(&self.files);
        blocking(move || files.purge(log_id.index))
            .await
            .map_err(write_error)
    }
}
