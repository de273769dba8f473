//! The durable raft log: entries, vote, committed and purged log ids, in
//! segment files of its own (`data/raft`, see [`log_files`]).
//!
//! Every write is synced (`fdatasync`) before anyone acts on it: the raft log
//! is the one durable record of the node; the topic and the view are rebuilt
//! from it.
//!
//! Appends are group-committed and written behind: `append` only puts its
//! entries in a table of pending entries (which reads see) and queues the
//! callback; the flusher thread (see `log_flusher`) writes each group with
//! one sync. openraft's core never waits on the disk to take the next
//! write. Truncation waits for the flusher to drain first, so it never
//! races a write of the entries it removes.
//!
//! openraft 0.9 waits for each append's callback before it takes the next
//! client write, so a leader that reported its own proposals only once
//! flushed would pay one fsync per write. A leader's own proposals are
//! therefore reported written at once and flushed with the next group;
//! nothing of them can be seen before they are durable here, because the
//! state machine applies an entry only once [`Durability`] covers it and
//! the network tells followers a commit index only once it does (see
//! `docs/decisions.md`). Entries from another leader (a follower's appends)
//! are reported only once flushed, as Raft requires. Such an early report
//! is safe only while the term's leader keeps its log in memory: a node
//! that restarts never leads its old term again ([`demote_own_leadership`]).
//!
//! Reporting at once lets the pending table grow while the disk is slow, so
//! it is bounded: past [`MAX_PENDING_BYTES`] of unflushed entries, the
//! leader's own appends too are reported only once flushed. openraft takes
//! no new write until then, and the writes waiting for it are bounded by
//! the write budget (see `write_budget`).
//!
//! # Who owns what
//!
//! openraft's core is the only caller of the [`RaftLogStorage`] methods and
//! calls them one at a time; the clones it takes as log readers only read,
//! and `close`, at shutdown, only queues. "The flusher" below is its thread,
//! or `append` itself in the blocking pool if the thread could not start.
//!
//! | shared state | changed by | guarded by |
//! |---|---|---|
//! | `meta`: vote, purged id | `save_vote`, `purge` | a mutex, held to copy or replace, not while the file is written |
//! | `writer.pending` | `append` inserts; the flusher moves what it wrote to `written`; `truncate` removes | a mutex, held to copy or change the table |
//! | `writer.written` | the flusher (moves in, drops the oldest); `truncate`, `purge` remove | a mutex, taken after `pending`'s when both are held |
//! | `writer.committed` | `save_committed` (saved), the flusher (written) | a mutex, held to copy or set |
//! | `writer.idle` | the flusher, around its wait with no deadline; read by `save_committed` | an atomic (`SeqCst`: see `log_flusher::next_job`) |
//! | `committed_index` | `save_committed` | an atomic, read by metrics and status |
//! | `writer.durable` | the flusher; `truncate` | a watch channel, waited on by the state machine and the network |
//! | `writer.files` | the flusher (appends); `truncate`, `purge` | its own `writer` then `segments` lock (see `log_files`) |
//! | `flusher` | the first append starts it | a `OnceLock` |
//!
//! Lock order: the only code paths that hold two of these locks at once
//! take `pending`'s, then `written`'s (the files' pair aside, always taken
//! in its order), so none can deadlock, and none is held across an
//! `.await`. It is safe because:
//!
//! * a reader never misses an entry: it copies from the pending table
//!   first, then from the written tail, and reads the files last; the
//!   flusher puts an entry in the files' index before it moves it from the
//!   table to the tail (under the table's lock), and drops it from the tail
//!   only after that;
//! * `truncate` drains the flusher before it touches the table or the
//!   files: every queued write of a removed entry is done, and openraft
//!   queues no new one until `truncate` returns;
//! * the flusher thread holds the `LogWriter` only, never the sender of its
//!   own queue: dropping the last `LogStore` closes the queue and ends the
//!   thread once it has written what was queued.

// openraft's trait methods return its large `StorageError`; the helpers
// here return the same type so errors pass through unchanged.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use parking_lot::Mutex;
use tokio::sync::oneshot;

pub use crate::store::log_durability::Durability;

use crate::error::StoreError;
use crate::store::blocking;
use crate::store::log_files::{self, LogFiles, Meta};
use crate::store::log_flusher::{
    CommittedIds, FlushJob, Flusher, LogWriter, PendingEntry, Report, WrittenTail,
};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// Bytes of unflushed entries (their JSON) past which the leader's own
/// appends are reported only once flushed.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// How long a save of the vote or the purged id waits for room on a full
/// disk before it fails (and the node stops).
const META_ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The metadata save's name as a writer waiting for room (`space::DiskFull`).
const META_WRITER: &str = "raft log metadata";

/// Longest time a purge waits for a snapshot on disk that covers it (see
/// [`SnapshotCover`]) before it goes ahead anyway.
const PURGE_COVER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How far a snapshot on this node's disk covers the log: the index of
/// `current.snap`, or of `installing.snap` once it is laid down (a restart
/// finishes that install). openraft purges a follower's log when it takes
/// a snapshot from the leader, as the install starts, not once it is done:
/// a purge saved first and a crash after would leave a log that starts
/// past every snapshot the node holds, and a node that cannot start. So a
/// purge waits until a snapshot on disk covers it. Unset (offline tools,
/// unit tests) no purge waits.
#[derive(Clone, Debug, Default)]
pub struct SnapshotCover(Arc<tokio::sync::watch::Sender<Option<u64>>>);

impl SnapshotCover {
    /// A snapshot on disk covers the log up to `index`.
    pub fn reached(&self, index: u64) {
        self.0.send_if_modified(|covered| {
            let higher = covered.is_none_or(|covered| index > covered);
            if higher {
                *covered = Some(index);
            }
            higher
        });
    }

    /// Waits (at most [`PURGE_COVER_WAIT`]) until a snapshot on disk covers
    /// `index`; whether one does.
    async fn covers(&self, index: u64) -> bool {
        let mut covered = self.0.subscribe();
        let wait = covered.wait_for(|covered| (*covered).is_none_or(|covered| covered >= index));
        let covers = matches!(
            tokio::time::timeout(PURGE_COVER_WAIT, wait).await,
            Ok(Ok(_))
        );
        covers
    }
}

/// The raft log store. Cloning shares everything, the flusher included.
#[derive(Clone, Debug)]
pub struct LogStore {
    /// The files, the pending table, the committed ids and the durability:
    /// what the flusher shares.
    writer: Arc<LogWriter>,
    /// The vote and the purged id as last saved.
    meta: Arc<Mutex<Meta>>,
    /// The last committed index openraft saved, for metrics and status.
    committed_index: Arc<AtomicU64>,
    /// This node's id: appends of entries it proposed as the current leader
    /// are reported written before they are flushed.
    node_id: Option<NodeId>,
    /// The group-commit flusher, started by the first write.
    flusher: Arc<OnceLock<Flusher>>,
    /// How far a snapshot on disk covers the log: purges wait for it.
    snapshot_cover: SnapshotCover,
}

fn read_error(error: impl std::error::Error + 'static) -> StorageError {
    if let Some(error) = (&error as &dyn std::error::Error).downcast_ref::<StoreError>() {
        crate::store::note_damage(error);
    }
    StorageIOError::read_logs(&error).into()
}

fn write_error(error: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&error).into()
}

/// A node restarts as a follower, never as the leader of the term it led
/// before (openraft would resume that leadership from a committed vote of
/// its own). A leader reports its own proposals written before they are
/// durable (see the module's comment), so a crash can take some of them
/// from its log while followers hold them: leading the same term again, it
/// would propose other entries under the same log ids, and a follower that
/// holds the lost ones would take the two for one. The vote keeps its term
/// and candidate, so this node still grants no other vote in that term;
/// only a new election, in a higher term, makes it leader again.
fn demote_own_leadership(vote: &mut Vote<NodeId>, node_id: Option<NodeId>) {
    if node_id.is_some_and(|id| vote.committed && vote.leader_id.node_id == id) {
        vote.committed = false;
    }
}

impl LogStore {
    /// Opens (or creates) the raft log of node `node_id` in `dir`; without
    /// a node id (offline tools), every append waits for its flush.
    pub fn open(dir: &Path, node_id: Option<NodeId>) -> Result<LogStore, StoreError> {
        LogStore::open_with(dir, node_id, log_files::SEGMENT_BYTES)
    }

    /// [`LogStore::open`] with segments of `segment_bytes`.
    fn open_with(
        dir: &Path,
        node_id: Option<NodeId>,
        segment_bytes: u64,
    ) -> Result<LogStore, StoreError> {
        let (files, mut recovered) = LogFiles::open(dir, segment_bytes)?;
        if let Some(vote) = recovered.meta.vote.as_mut() {
            demote_own_leadership(vote, node_id);
        }
        let last = files.last_log_id().max(recovered.meta.purged);
        // The committed index survives restarts, so status shows it at once.
        let committed = recovered.committed;
        let writer = LogWriter {
            files,
            pending: Mutex::new(BTreeMap::new()),
            pending_bytes: AtomicUsize::new(0),
            written: Mutex::new(WrittenTail::default()),
            committed: Mutex::new(CommittedIds {
                saved: committed,
                written: committed,
            }),
            durable: Durability::new(last),
            disk_full: Default::default(),
            idle: AtomicBool::new(false),
        };
        Ok(LogStore {
            writer: Arc::new(writer),
            meta: Arc::new(Mutex::new(recovered.meta)),
            committed_index: Arc::new(AtomicU64::new(committed.map_or(0, |id| id.index))),
            node_id,
            flusher: Arc::new(OnceLock::new()),
            snapshot_cover: SnapshotCover::default(),
        })
    }

    /// The id of the last entry the log purged (a snapshot covers it and
    /// everything before), if it purged any.
    pub fn purged(&self) -> Option<LogId> {
        self.meta.lock().purged
    }

    /// The index of the last entry the log holds, or of the last it
    /// purged: how far it reaches.
    pub fn reach(&self) -> u64 {
        let purged = self.meta.lock().purged;
        self.writer
            .files
            .last_log_id()
            .max(purged)
            .map_or(0, |id| id.index)
    }

    /// Refuses a log in `dir` that reaches past its first entry with no
    /// metadata file: a node saves its vote before any such entry (its own
    /// as a candidate, or the leader's it takes entries from), so the file
    /// holding it is gone. Only the entry `initialize` writes comes first.
    pub fn check_vote_kept(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(super::log_files::META_FILE);
        let last = self.reach();
        if last > 0 && !path.exists() {
            return Err(StoreError::LogMetaMissing { path, last });
        }
        Ok(())
    }

    /// How far the log is durable, shared.
    pub fn durability(&self) -> Durability {
        self.writer.durable.clone()
    }

    /// A reader of the bytes of the entries the log holds (see
    /// `LogFiles::held_bytes`), for the space quota.
    pub fn held_bytes(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let writer = Arc::clone(&self.writer);
        move || writer.files.held_bytes()
    }

    /// How far a snapshot on disk covers the log, shared with the store
    /// that keeps the snapshots.
    pub fn snapshot_cover(&self) -> SnapshotCover {
        self.snapshot_cover.clone()
    }

    /// The writers of this node that wait for room on a full disk: the
    /// raft log's, and those of the store opened over this log.
    pub fn disk_full(&self) -> Arc<crate::space::DiskFull> {
        Arc::clone(&self.writer.disk_full)
    }

    /// Whether `entries` are this node's own proposals as the leader of the
    /// saved vote: a committed vote for this node, and every entry made in
    /// that leadership.
    fn proposed_by_this_leader(&self, entries: &[Entry]) -> bool {
        let Some(node_id) = self.node_id else {
            return false;
        };
        let vote = self.meta.lock().vote;
        let Some(vote) = vote.filter(|vote| vote.committed && vote.leader_id.node_id == node_id)
        else {
            return false;
        };
        entries
            .iter()
            .all(|entry| entry.log_id.leader_id == vote.leader_id)
    }

    /// The flusher, started on first use.
    fn flusher(&self) -> &Flusher {
        self.flusher
            .get_or_init(|| Flusher::start(Arc::clone(&self.writer)))
    }

    /// Waits until every append queued so far is durable (or failed).
    async fn drain(&self) {
        let (done, drained) = oneshot::channel();
        if self.flusher().send(FlushJob::Drain(done)).is_ok() {
            // An error means the flusher is gone: nothing is left queued.
            let _ = drained.await;
        }
    }

    /// Writes what is pending and the committed id, and syncs: for a
    /// graceful stop.
    ///
    /// While the disk is full the writer waits for room; the stop does
    /// not: what it has not written was never reported durable, so nothing
    /// acknowledged is left behind.
    pub async fn close(&self) -> Result<(), StoreError> {
        // A closed queue has nothing left to write; the drain then returns.
        let _ = self.flusher().send(FlushJob::Committed);
        let drain = self.drain();
        tokio::pin!(drain);
        loop {
            tokio::select! {
                () = &mut drain => return Ok(()),
                () = tokio::time::sleep(crate::space::RETRY_INTERVAL) => {
                    if let Some(full) = self.writer.disk_full.describe() {
                        tracing::warn!("{full}: the raft log's unwritten appends are dropped at the stop");
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The committed index as last saved, shared.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.committed_index)
    }

    /// Replaces the metadata with `change` applied, durably; waits for room
    /// on a full disk.
    async fn save_meta(&self, change: impl FnOnce(&mut Meta)) -> Result<(), StoreError> {
        let mut meta = self.meta.lock().clone();
        change(&mut meta);
        // A file refused for want of space is written again, whole, once
        // there is room: the one in place stays until the new one is. Not
        // for ever: openraft waits here and heeds no shutdown meanwhile, so
        // after META_ROOM_WAIT the error goes up, openraft stops, and the
        // node exits saying the disk is full.
        let deadline = tokio::time::Instant::now() + META_ROOM_WAIT;
        loop {
            let writer = Arc::clone(&self.writer);
            let saved = meta.clone();
            match blocking(move || writer.files.save_meta(&saved)).await {
                Err(error) if error.is_no_space() && tokio::time::Instant::now() < deadline => {
                    let path = error
                        .path()
                        .unwrap_or(self.writer.files.dir())
                        .to_path_buf();
                    self.writer.disk_full.set(META_WRITER, &path);
                    tokio::time::sleep(crate::space::RETRY_INTERVAL).await;
                }
                saved => {
                    saved?;
                    self.writer.disk_full.clear(META_WRITER);
                    break;
                }
            }
        }
        *self.meta.lock() = meta;
        Ok(())
    }

    fn last_entry_id(&self) -> Option<LogId> {
        let pending_last = self
            .writer
            .pending
            .lock()
            .last_key_value()
            .map(|(_, pending)| pending.entry.log_id);
        pending_last.or_else(|| self.writer.files.last_log_id())
    }

    /// The entries with indexes in `range` that the log holds.
    pub fn entries(
        &self,
        range: impl RangeBounds<u64> + Clone,
    ) -> Result<Vec<Entry>, StorageError> {
        // Pending entries first, then the written tail, then the files:
        // see the module's comment.
        let pending: Vec<Entry> = self
            .writer
            .pending
            .lock()
            .range(range.clone())
            .map(|(_, pending)| pending.entry.clone())
            .collect();
        let written = self.writer.written.lock().copies(range.clone());
        let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
        for entry in written.into_iter().chain(pending) {
            entries.insert(entry.log_id.index, entry);
        }
        // What memory holds is the log's newest entries, without a gap:
        // only the part of `range` before them is in the files alone.
        let held = match (entries.first_key_value(), entries.last_key_value()) {
            (Some((&first, _)), Some((&last, _))) if last - first + 1 == entries.len() as u64 => {
                Some(first)
            }
            _ => None,
        };
        let from_files = match held {
            Some(first) => self
                .writer
                .files
                .read((range.start_bound().cloned(), Bound::Excluded(first))),
            None => self.writer.files.read(range),
        };
        for (log_id, json) in from_files.map_err(read_error)? {
            let entry: Entry = serde_json::from_slice(&json)
                .map_err(|source| read_error(StoreError::LogEntryUndecodable { log_id, source }))?;
            entries.entry(log_id.index).or_insert(entry);
        }
        Ok(entries.into_values().collect())
    }

    /// The log id of the entry at `index`, if the log still holds it.
    pub fn log_id_at(&self, index: u64) -> Result<Option<LogId>, StorageError> {
        let pending = self
            .writer
            .pending
            .lock()
            .get(&index)
            .map(|pending| pending.entry.log_id);
        Ok(pending.or_else(|| self.writer.files.log_id_at(index)))
    }

    /// Puts `entries` in the pending table and queues their write. `report`
    /// is called once they are durable, or at once if this node proposed
    /// them as the current leader (see the module's comment).
    async fn append_entries(&self, entries: Vec<Entry>, report: Report) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            report(Ok(()));
            return Ok(());
        };
        let (first, last) = (first.log_id.index, last.log_id.index);
        let own = self.proposed_by_this_leader(&entries);
        // Encoded here, outside the table's lock, once for the files.
        let entries: Vec<PendingEntry> = entries.into_iter().map(PendingEntry::new).collect();
        let bytes: usize = entries.iter().map(|pending| pending.json.len()).sum();
        {
            let mut pending = self.writer.pending.lock();
            for entry in entries {
                pending.insert(entry.entry.log_id.index, entry);
            }
        }
        let pending_bytes = self.writer.pending_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        let report = if own && pending_bytes <= MAX_PENDING_BYTES {
            // Seen by nobody until durable: see the module's comment.
            report(Ok(()));
            None
        } else {
            Some(report)
        };
        let job = FlushJob::Append {
            first,
            last,
            report,
        };
        if let Err(job) = self.flusher().send(job) {
            // The flusher is gone: write here instead, off the workers.
            let writer = Arc::clone(&self.writer);
            blocking(move || {
                let written = writer.write_pending(std::slice::from_ref(&job));
                if let FlushJob::Append {
                    report: Some(report),
                    ..
                } = job
                {
                    report(written.map_err(std::io::Error::other));
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Removes every entry at or after `from`, once the flusher has written
    /// everything queued before.
    async fn truncate_from(&self, from: u64) -> Result<(), StoreError> {
        self.drain().await;
        {
            let mut pending = self.writer.pending.lock();
            pending.retain(|index, _| *index < from);
            let bytes = pending.values().map(|pending| pending.json.len()).sum();
            self.writer.pending_bytes.store(bytes, Ordering::Release);
            self.writer.written.lock().clear_from(from);
        }
        self.writer.durable.truncate_to(from);
        let writer = Arc::clone(&self.writer);
        blocking(move || writer.files.truncate(from)).await
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
        let last_purged_log_id = self.meta.lock().purged;
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
        Ok(self.meta.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Written with the next group of entries: a committed id lost in a
        // crash is recomputed by the leader.
        if let Some(id) = &committed {
            self.committed_index.store(id.index, Ordering::Release);
        }
        self.writer.committed.lock().saved = committed;
        // A busy flusher writes the id with its next group, or alone soon
        // after its last one; only an idle one needs a job (see
        // `LogWriter::idle`). A closed queue means nothing more is written:
        // the id then waits for the next append's own write.
        if self.writer.idle.load(Ordering::SeqCst) {
            let _ = self.flusher().send(FlushJob::Committed);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.writer.committed.lock().saved)
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
        let report: Report = Box::new(move |outcome| callback.log_io_completed(outcome));
        self.append_entries(entries.into_iter().collect(), report)
            .await
            .map_err(write_error)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.truncate_from(log_id.index).await.map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if !self.snapshot_cover.covers(log_id.index).await {
            tracing::warn!(
                upto = log_id.index,
                "no snapshot on disk covers the purge yet; purging all the same"
            );
        }
        // The purged id bounds the log from the next open on; the files of
        // the purged entries are deleted after it is saved.
        self.save_meta(|meta| meta.purged = Some(log_id))
            .await
            .map_err(write_error)?;
        self.writer.written.lock().clear_through(log_id.index);
        let writer = Arc::clone(&self.writer);
        blocking(move || writer.files.purge(log_id.index))
            .await
            .map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::RangeInclusive;
    use std::time::{Duration, Instant};

    use openraft::{CommittedLeaderId, EntryPayload};
    use tokio::sync::oneshot::error::TryRecvError;

    use super::*;

    /// This node.
    const NODE: NodeId = 1;
    /// Another node of the cluster.
    const OTHER: NodeId = 2;
    /// How long a test waits for the flusher before it fails.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn blank(term: u64, leader: NodeId, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, leader), index),
            payload: EntryPayload::Blank,
        }
    }

    fn blanks(term: u64, leader: NodeId, indexes: RangeInclusive<u64>) -> Vec<Entry> {
        indexes.map(|index| blank(term, leader, index)).collect()
    }

    /// Appends `entries` and waits for their report (see [`reported`]).
    async fn appended(store: &LogStore, entries: Vec<Entry>) -> Result<(), String> {
        let (report, outcome) = reporter();
        store
            .append_entries(entries, report)
            .await
            .expect("appends");
        reported(outcome).await
    }

    /// This node's log in `dir`, with a vote for `leader`'s term `term`
    /// saved: appends of that leader are its own proposals when `leader`
    /// is [`NODE`].
    async fn voted_log(dir: &std::path::Path, term: u64, leader: NodeId) -> LogStore {
        let mut store = LogStore::open(dir, Some(NODE)).expect("opens");
        store
            .save_vote(&Vote::new_committed(term, leader))
            .await
            .expect("saves the vote");
        store
    }

    /// A report, and what it was called with.
    fn reporter() -> (Report, oneshot::Receiver<Result<(), String>>) {
        let (sender, outcome) = oneshot::channel();
        let report: Report = Box::new(move |result: Result<(), std::io::Error>| {
            let _ = sender.send(result.map_err(|error| error.to_string()));
        });
        (report, outcome)
    }

    /// What a report was called with, waiting for it at most [`DEADLINE`].
    async fn reported(outcome: oneshot::Receiver<Result<(), String>>) -> Result<(), String> {
        tokio::time::timeout(DEADLINE, outcome)
            .await
            .expect("the append is reported in time")
            .expect("the report is called, not dropped")
    }

    /// Whether the entry at `index` became durable, waiting at most [`DEADLINE`].
    async fn durable(store: &LogStore, index: u64) -> Result<(), StoreError> {
        tokio::time::timeout(DEADLINE, store.durability().wait_covers(index))
            .await
            .expect("durability is decided in time")
    }

    /// Every entry's (index, term).
    fn held(store: &LogStore) -> Vec<(u64, u64)> {
        store
            .entries(..)
            .expect("the log reads")
            .iter()
            .map(|entry| (entry.log_id.index, entry.log_id.leader_id.term))
            .collect()
    }

    // The tests below hold the files' writer lock across an append to catch
    // the flusher before it writes: the flusher thread waits for it, never
    // this task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn only_the_leaders_own_proposals_are_reported_before_the_flush() {
        // (case, this node, saved vote, entries' term and leader, early)
        let cases = [
            (
                "the leader's own proposals",
                Some(NODE),
                Some(Vote::new_committed(2, NODE)),
                (2, NODE),
                true,
            ),
            (
                "a follower's appends",
                Some(NODE),
                Some(Vote::new_committed(2, OTHER)),
                (2, OTHER),
                false,
            ),
            (
                "a candidate's, whose vote is not yet granted",
                Some(NODE),
                Some(Vote::new(2, NODE)),
                (2, NODE),
                false,
            ),
            (
                "entries of this node's earlier leadership",
                Some(NODE),
                Some(Vote::new_committed(3, NODE)),
                (2, NODE),
                false,
            ),
            (
                "an offline tool's",
                None,
                Some(Vote::new_committed(2, NODE)),
                (2, NODE),
                false,
            ),
            ("any, before a vote", Some(NODE), None, (2, NODE), false),
        ];
        for (case, node_id, vote, (term, leader), early) in cases {
            let dir = tempfile::tempdir().expect("a temp dir");
            let mut store = LogStore::open(dir.path(), node_id).expect("opens");
            if let Some(vote) = vote {
                store.save_vote(&vote).await.expect("saves the vote");
            }
            let writes = store.writer.files.hold_writes();
            let (report, mut outcome) = reporter();
            store
                .append_entries(blanks(term, leader, 1..=3), report)
                .await
                .expect("appends");
            match outcome.try_recv() {
                Ok(result) => {
                    assert!(early, "{case}: reported before the flush");
                    result.expect("reported written");
                }
                Err(TryRecvError::Empty) => assert!(!early, "{case}: not reported at once"),
                Err(TryRecvError::Closed) => panic!("{case}: the report was dropped"),
            }
            assert_eq!(
                store.writer.durable.end(),
                0,
                "{case}: durable before the flush"
            );
            assert_eq!(held(&store).len(), 3, "{case}: pending entries are read");
            drop(writes);
            if !early {
                reported(outcome).await.expect("written once flushed");
            }
            durable(&store, 3).await.expect("durable once flushed");
        }
    }

    /// An entry of this node's term 2 at `index` whose value is `bytes` long.
    fn large(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, NODE), index),
            payload: EntryPayload::Normal(crate::types::Command {
                timestamp_ms: 1_000,
                idempotency_key: None,
                request_hash: None,
                op: crate::types::Op::Put {
                    key: format!("big/{index}"),
                    value: format!("\"{}\"", "v".repeat(bytes)),
                    condition: crate::types::Condition::Always,
                    lease: None,
                },
            }),
        }
    }

    /// Reopened, a leader's log gives openraft its vote as a candidate's:
    /// same term and node, so no other vote is granted in that term, but
    /// not leadership, which only a new election gives back; and entries
    /// of that term (replicated back by the next leader) wait for the flush.
    #[tokio::test]
    async fn a_reopened_leaders_log_holds_its_vote_but_not_its_leadership() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let cases = [
            (Vote::new_committed(2, NODE), Vote::new(2, NODE)),
            (Vote::new(3, NODE), Vote::new(3, NODE)),
            (Vote::new_committed(4, OTHER), Vote::new_committed(4, OTHER)),
        ];
        for (saved, read) in cases {
            let mut store = LogStore::open(dir.path(), Some(NODE)).expect("opens");
            store.save_vote(&saved).await.expect("saves the vote");
            assert_eq!(store.read_vote().await.expect("reads"), Some(saved));
            store.close().await.expect("closes");
            drop(store);
            let mut store = LogStore::open(dir.path(), Some(NODE)).expect("reopens");
            assert_eq!(
                store.read_vote().await.expect("reads"),
                Some(read),
                "saved {saved}"
            );
            let leader = saved.leader_id;
            let entries = blanks(leader.term, leader.node_id, 1..=1);
            assert!(!store.proposed_by_this_leader(&entries), "saved {saved}");
        }
    }

    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn past_the_pending_bound_the_leaders_own_appends_wait_for_the_flush() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = voted_log(dir.path(), 2, NODE).await;
        // The disk is stalled: nothing is flushed until the guard goes.
        let writes = store.writer.files.hold_writes();
        let third = MAX_PENDING_BYTES / 3 + 1;
        let mut outcomes = Vec::new();
        for index in 1..=3 {
            let (report, outcome) = reporter();
            store
                .append_entries(vec![large(index, third)], report)
                .await
                .expect("appends");
            outcomes.push(outcome);
        }
        let early: Vec<bool> = outcomes
            .iter_mut()
            .map(|outcome| !matches!(outcome.try_recv(), Err(TryRecvError::Empty)))
            .collect();
        assert_eq!(
            early,
            [true, true, false],
            "the append that passes {MAX_PENDING_BYTES} pending bytes waits for the flush"
        );
        drop(writes);
        let last = outcomes.pop().expect("three appends");
        reported(last).await.expect("written once flushed");
        assert_eq!(store.writer.pending_bytes.load(Ordering::Acquire), 0);
    }

    /// Indexes of the entries in the written tail.
    fn tail(store: &LogStore) -> Vec<u64> {
        let tail = store.writer.written.lock().copies(..);
        tail.iter().map(|entry| entry.log_id.index).collect()
    }

    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn reads_join_the_files_the_written_tail_and_the_pending_table() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = LogStore::open(dir.path(), None).expect("opens");
        // Each entry a little over a quarter of the tail's bound: the tail
        // keeps the newest three written.
        let quarter = crate::store::log_flusher::MAX_WRITTEN_BYTES / 4;
        let expected: Vec<Entry> = (1..=10).map(|index| large(index, quarter)).collect();
        for entry in &expected[..8] {
            appended(&store, vec![entry.clone()])
                .await
                .expect("written");
        }
        assert_eq!(tail(&store), [6, 7, 8], "the tail keeps the newest");
        // The disk is stalled: 9 and 10 stay pending.
        let writes = store.writer.files.hold_writes();
        let (report, outcome) = reporter();
        store
            .append_entries(expected[8..].to_vec(), report)
            .await
            .expect("appends");
        let ranges: [(u64, u64); 5] = [(1, 10), (2, 9), (6, 10), (7, 8), (9, 10)];
        for (first, last) in ranges {
            let read = store.entries(first..=last).expect("the log reads");
            let wanted = &expected[first as usize - 1..last as usize];
            assert!(read == wanted, "{first}..={last}, with 9 and 10 pending");
        }
        drop(writes);
        // Reported once the flusher is done with them, the tail included.
        reported(outcome).await.expect("written once flushed");
        assert_eq!(tail(&store), [8, 9, 10], "written, 9 and 10 join the tail");
        assert!(store.entries(..).expect("the log reads") == expected);
        // Truncated, the tail keeps nothing of what was cut.
        store.truncate_from(9).await.expect("truncates");
        assert_eq!(tail(&store), [8]);
        assert!(store.entries(..).expect("the log reads") == expected[..8]);
        // Purged, nothing at or before the purged id.
        let mut store = store;
        store.purge(expected[7].log_id).await.expect("purges");
        assert_eq!(tail(&store), [] as [u64; 0]);
        store.close().await.expect("closes");
        drop(store);
        let store = LogStore::open(dir.path(), None).expect("reopens");
        assert_eq!(
            tail(&store),
            [] as [u64; 0],
            "a reopened log reads the files"
        );
        assert!(store.entries(..=8).expect("the log reads").is_empty());
    }

    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn durability_never_passes_what_was_synced() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = LogStore::open(dir.path(), None).expect("opens");
        appended(&store, blanks(1, OTHER, 0..=1))
            .await
            .expect("written");
        assert_eq!(store.writer.durable.end(), 2);

        let writes = store.writer.files.hold_writes();
        let (report, second) = reporter();
        store
            .append_entries(blanks(1, OTHER, 2..=4), report)
            .await
            .expect("appends");
        assert_eq!(
            store.writer.durable.end(),
            2,
            "entries still on their way to the files are not durable"
        );
        drop(writes);
        reported(second).await.expect("written");
        assert_eq!(store.writer.durable.end(), 5);
    }

    #[tokio::test]
    async fn after_a_failed_write_nothing_more_becomes_durable() {
        // (case, this node and vote make the appends own proposals)
        for (case, own) in [("a leader", true), ("a follower", false)] {
            let base = tempfile::tempdir().expect("a temp dir");
            let dir = base.path().join("raft");
            let leader = if own { NODE } else { OTHER };
            let store = voted_log(&dir, 1, leader).await;
            // The first append creates a segment; without the directory,
            // that fails.
            std::fs::remove_dir_all(&dir).expect("removes the log's directory");
            let (report, outcome) = reporter();
            store
                .append_entries(blanks(1, leader, 0..=1), report)
                .await
                .expect("appends");
            let outcome = reported(outcome).await;
            assert_eq!(outcome.is_ok(), own, "{case}: {outcome:?}");
            let error = durable(&store, 0).await.expect_err("never durable");
            assert!(
                matches!(error, StoreError::LogNotWritable { index: 0 }),
                "{case}: {error}"
            );

            // The directory is back, but a write that failed once may have
            // lost pages a later sync cannot bring back.
            std::fs::create_dir_all(&dir).expect("recreates the directory");
            let (report, outcome) = reporter();
            store
                .append_entries(blanks(1, leader, 2..=2), report)
                .await
                .expect("appends");
            let outcome = reported(outcome).await;
            assert_eq!(outcome.is_ok(), own, "{case}: {outcome:?}");
            assert!(durable(&store, 2).await.is_err(), "{case}");
            assert_eq!(store.writer.durable.end(), 0, "{case}");
            drop(store);
            let store = LogStore::open(&dir, Some(NODE)).expect("reopens");
            assert_eq!(held(&store), vec![], "{case}: nothing was written");
        }
    }

    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn a_truncation_drains_the_flusher_so_removed_entries_never_return() {
        // (written of term 1, then queued of term 1, truncate from, then
        // appended in term 2, the log after as (index, term))
        type Case<'a> = (
            RangeInclusive<u64>,
            &'a [RangeInclusive<u64>],
            u64,
            RangeInclusive<u64>,
            &'a [(u64, u64)],
        );
        let cases: [Case; 4] = [
            (
                1..=2,
                &[3..=6],
                4,
                4..=5,
                &[(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)],
            ),
            (1..=1, &[2..=3, 4..=6], 1, 1..=2, &[(1, 2), (2, 2)]),
            (1..=2, &[3..=3, 4..=5], 3, 3..=3, &[(1, 1), (2, 1), (3, 2)]),
            (1..=4, &[5..=9], 2, 2..=2, &[(1, 1), (2, 2)]),
        ];
        for (written, queued, from, after, expected) in cases {
            let dir = tempfile::tempdir().expect("a temp dir");
            // Small segments: truncations delete whole files, too.
            let store = LogStore::open_with(dir.path(), None, 120).expect("opens");
            appended(&store, blanks(1, OTHER, written.clone()))
                .await
                .expect("written");
            let writes = store.writer.files.hold_writes();
            for range in queued {
                let (report, _outcome) = reporter();
                store
                    .append_entries(blanks(1, OTHER, range.clone()), report)
                    .await
                    .expect("appends");
            }
            let before = held(&store);
            let truncation = tokio::spawn({
                let store = store.clone();
                async move { store.truncate_from(from).await }
            });
            tokio::task::yield_now().await;
            assert!(!truncation.is_finished(), "truncate({from}) waits");
            assert_eq!(held(&store), before, "truncate({from}) removes nothing yet");
            assert_eq!(
                store.writer.durable.end(),
                written.end() + 1,
                "truncate({from}) moves durability back only once the queue is written"
            );
            drop(writes);
            tokio::time::timeout(DEADLINE, truncation)
                .await
                .expect("the truncation ends in time")
                .expect("the truncation does not panic")
                .expect("truncates");
            assert_eq!(store.writer.durable.end(), from);
            appended(&store, blanks(2, OTHER, after.clone()))
                .await
                .expect("written");
            assert_eq!(held(&store), expected, "truncate({from}), before a reopen");
            store.close().await.expect("closes");
            drop(store);
            let store = LogStore::open_with(dir.path(), None, 120).expect("reopens");
            assert_eq!(held(&store), expected, "truncate({from}), after a reopen");
        }
    }

    /// Polls `done` until it holds; fails with `what` after [`DEADLINE`].
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until the files hold `committed` as the committed id.
    fn wait_written(store: &LogStore, committed: LogId, case: &str) {
        wait_until(&format!("{case}: the id is written"), || {
            store.writer.committed.lock().written == Some(committed)
        });
    }

    #[tokio::test]
    async fn a_committed_id_is_written_with_no_append_to_carry_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut store = voted_log(dir.path(), 1, OTHER).await;
        appended(&store, blanks(1, OTHER, 1..=3))
            .await
            .expect("written");

        // Right after a group of entries the flusher waits for their
        // commit, and writes it alone when no append follows.
        let second = blank(1, OTHER, 2).log_id;
        store.save_committed(Some(second)).await.expect("saves");
        wait_written(&store, second, "after entries");

        // Idle, the flusher is sent the id.
        wait_until("the flusher idles", || {
            store.writer.idle.load(Ordering::SeqCst)
        });
        let third = blank(1, OTHER, 3).log_id;
        store.save_committed(Some(third)).await.expect("saves");
        wait_written(&store, third, "idle");

        // An id past the entries written waits for them.
        let fifth = blank(1, OTHER, 5).log_id;
        store.save_committed(Some(fifth)).await.expect("saves");
        appended(&store, blanks(1, OTHER, 4..=5))
            .await
            .expect("written");
        wait_written(&store, fifth, "with the entries that cover it");

        let flusher_alive = Arc::downgrade(&store.writer);
        drop(store);
        wait_until("the flusher ends with the store", || {
            flusher_alive.strong_count() == 0
        });
        let mut reopened = LogStore::open(dir.path(), Some(NODE)).expect("reopens");
        assert_eq!(reopened.read_committed().await.expect("reads"), Some(fifth));
    }

    #[tokio::test]
    async fn dropping_the_last_store_ends_the_flusher_after_its_queue() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut store = voted_log(dir.path(), 1, NODE).await;
        // Own proposals: reported at once, still queued when the store goes.
        appended(&store, blanks(1, NODE, 0..=3))
            .await
            .expect("reported at once");
        let flusher_alive = Arc::downgrade(&store.writer);
        let reader = store.get_log_reader().await;
        drop(store);
        assert!(
            flusher_alive.upgrade().is_some(),
            "a reader keeps the log open"
        );
        drop(reader);
        // The writer's last owner is the flusher thread; it lets go when the
        // thread ends.
        wait_until("the flusher thread ends with the last store", || {
            flusher_alive.strong_count() == 0
        });
        let store = LogStore::open(dir.path(), Some(NODE)).expect("reopens");
        assert_eq!(held(&store), vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
    }
}
