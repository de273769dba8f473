//! The raft log's writer: a thread of its own that takes every append queued
//! since its last turn, writes the group to the files in one write,
//! `fdatasync`s once, moves [`Durability`] forward and answers the appends
//! in order. While one sync runs, the appends arriving meanwhile queue up
//! and share the next one.
//!
//! The thread owns only what writing needs (a [`LogWriter`]), never a
//! `LogStore`: it holds no sender of its own queue, so once the last
//! `LogStore` is dropped the queue closes, the thread writes what is left
//! and ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::metrics::HotHistogram;
use crate::store::log_durability::Durability;
use crate::store::log_files::LogFiles;
use crate::store::log_frame::Frame;
use crate::types::{Entry, LogId};

/// The flusher thread's name, as `top -H` and panics show it.
const THREAD_NAME: &str = "raft-log-flusher";

/// The flusher's name as a writer waiting for room (`space::DiskFull`).
const WRITER: &str = "raft log";
/// How long the flusher waits, after a group of entries, for the commit
/// that follows them before it writes the committed id alone.
const COMMITTED_LINGER: Duration = Duration::from_millis(5);

/// Seconds per group written and synced.
static FLUSH_SECONDS: HotHistogram = HotHistogram::new(crate::metrics::LOG_FLUSH_SECONDS);
/// Appends per group.
static FLUSH_ENTRIES: HotHistogram = HotHistogram::new(crate::metrics::LOG_FLUSH_ENTRIES);

/// How an append is answered once its entries are durable (or cannot be).
pub(super) type Report = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

/// Work for the flusher.
pub(super) enum FlushJob {
    /// Write the pending entries `first..=last`, sync, then report (unless
    /// openraft was answered at once).
    Append {
        /// The first index appended.
        first: u64,
        /// The last index appended.
        last: u64,
        /// Called once the entries are durable or their write failed.
        report: Option<Report>,
    },
    /// Answer once everything queued before is durable.
    Drain(oneshot::Sender<()>),
    /// Write the committed id (not synced) if entries cover it. Sent only
    /// to an idle flusher (see [`LogWriter::idle`]) and at a graceful stop.
    Committed,
}

/// The committed log id, as openraft saved it and as last written.
#[derive(Debug, Default)]
pub(super) struct CommittedIds {
    /// Set by `save_committed`.
    pub saved: Option<LogId>,
    /// Set by the writer once a frame of it is in the files.
    pub written: Option<LogId>,
}

/// An appended entry not yet in the files, with its JSON. `append` encodes
/// it: the writer then takes the group's frames from the table without
/// encoding anything while it holds the table's lock, which `append` (on
/// openraft's core) waits for.
#[derive(Debug)]
pub(super) struct PendingEntry {
    /// The entry, as readers get it.
    pub entry: Entry,
    /// Its JSON, as the files hold it.
    pub json: bytes::Bytes,
}

impl PendingEntry {
    /// `entry` with its encoding.
    pub fn new(entry: Entry) -> PendingEntry {
        let json =
            serde_json::to_vec(&entry).expect("an entry is plain data and always serializes");
        PendingEntry {
            entry,
            json: json.into(),
        }
    }
}

/// Bytes (of their JSON) of the last written entries kept in memory for
/// readers: well over what replication and apply read behind the newest
/// entry while followers keep up.
pub(super) const MAX_WRITTEN_BYTES: usize = 4 << 20;

/// The last entries written to the files, kept for readers. Replication
/// and apply read an entry soon after it is written; a copy here spares
/// them the file's read and the JSON's decoding. A run of consecutive
/// indexes, the newest written, at most [`MAX_WRITTEN_BYTES`].
#[derive(Debug, Default)]
pub(super) struct WrittenTail {
    /// The entries by index, each with the bytes of its JSON.
    entries: BTreeMap<u64, (Entry, usize)>,
    /// Their bytes together.
    bytes: usize,
}

impl WrittenTail {
    /// Keeps `entry` (written as `bytes` of JSON), dropping the oldest
    /// entries past the bound. An entry that does not follow the last one
    /// kept (after a truncation, a purge or a snapshot) starts the run anew.
    fn push(&mut self, entry: Entry, bytes: usize) {
        let index = entry.log_id.index;
        if self
            .entries
            .last_key_value()
            .is_some_and(|(last, _)| last + 1 != index)
        {
            self.clear_from(0);
        }
        self.entries.insert(index, (entry, bytes));
        self.bytes += bytes;
        while self.bytes > MAX_WRITTEN_BYTES {
            let Some((_, (_, dropped))) = self.entries.pop_first() else {
                break;
            };
            self.bytes -= dropped;
        }
    }

    /// Copies of the entries with indexes in `range`.
    pub fn copies(&self, range: impl std::ops::RangeBounds<u64>) -> Vec<Entry> {
        self.entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect()
    }

    /// Drops the entries at or after `from`.
    pub fn clear_from(&mut self, from: u64) {
        for (_, (_, bytes)) in self.entries.split_off(&from) {
            self.bytes -= bytes;
        }
    }

    /// Drops the entries at or before `index`.
    pub fn clear_through(&mut self, index: u64) {
        let kept = match index.checked_add(1) {
            Some(next) => self.entries.split_off(&next),
            None => BTreeMap::new(),
        };
        let dropped = std::mem::replace(&mut self.entries, kept);
        for (_, (_, bytes)) in dropped {
            self.bytes -= bytes;
        }
    }
}

/// What the appending side and the writer share.
#[derive(Debug)]
pub(super) struct LogWriter {
    /// The segment files.
    pub files: LogFiles,
    /// Appended entries not yet written to the files, by index. `append`
    /// inserts; the writer removes an entry only after the files' index
    /// holds it, so a reader who looks here first, then in the files,
    /// never misses one.
    pub pending: Mutex<BTreeMap<u64, PendingEntry>>,
    /// Bytes of the pending entries' JSON: what bounds the leader's own
    /// appends reported before they are flushed.
    pub pending_bytes: AtomicUsize,
    /// The last entries written. The writer moves an entry here from
    /// `pending` while it holds `pending`'s lock, and drops one only once
    /// the files hold it: a reader who looks in `pending`, then here, then
    /// in the files, never misses one. Lock order: `pending`, then this.
    pub written: Mutex<WrittenTail>,
    /// The committed log id, saved and written.
    pub committed: Mutex<CommittedIds>,
    /// Set while the flusher waits for jobs with no deadline: a committed
    /// id saved meanwhile must be sent to it as a job. Otherwise the
    /// flusher writes the id with its next group, or alone within
    /// [`COMMITTED_LINGER`] of its last one, and nothing need wake it.
    pub idle: AtomicBool,
    /// How far the files are synced.
    pub durable: Durability,
    /// Marked while a write waits for room on a full disk.
    pub disk_full: Arc<crate::space::DiskFull>,
}

impl LogWriter {
    /// Whether a committed id is saved that the files lack while entries
    /// they hold cover it (and the files still take writes).
    fn committed_unwritten(&self) -> bool {
        let ids = self.committed.lock();
        ids.saved != ids.written
            && ids.saved.is_some_and(|id| id.index < self.durable.end())
            && !self.durable.has_failed()
    }

    /// Appends the pending entries the append jobs of `group` name (and the
    /// committed id) to the files in one write, syncs, and moves them from
    /// the pending table to the written tail. After a failed write it
    /// writes nothing more.
    pub fn write_pending(&self, group: &[FlushJob]) -> Result<(), StoreError> {
        if self.durable.has_failed() {
            return Err(StoreError::LogNotWritable {
                index: self.durable.end(),
            });
        }
        let ranges: Vec<(u64, u64)> = group
            .iter()
            .filter_map(|job| match job {
                FlushJob::Append { first, last, .. } => Some((*first, *last)),
                FlushJob::Drain(_) | FlushJob::Committed => None,
            })
            .collect();
        // A group of committed ids alone needs no sync: a committed id lost
        // in a crash is recomputed by the leader.
        let must_sync = group.iter().any(|job| !matches!(job, FlushJob::Committed));
        let mut frames = Vec::new();
        let mut batch_end = self.durable.end();
        // The greatest entry of the group.
        let mut batch_last: Option<LogId> = None;
        let mut batch_bytes = 0;
        {
            let pending = self.pending.lock();
            for (first, last) in &ranges {
                for (index, pending) in pending.range(first..=last) {
                    let log_id = pending.entry.log_id;
                    batch_bytes += pending.json.len();
                    frames.push(Frame::Entry(log_id, pending.json.clone()));
                    batch_end = batch_end.max(*index + 1);
                    if batch_last.is_none_or(|last| last.index < *index) {
                        batch_last = Some(log_id);
                    }
                }
            }
        }
        // The committed id goes with the entries it covers, never ahead.
        let committed = {
            let ids = self.committed.lock();
            ids.saved
                .filter(|id| id.index < batch_end && ids.saved != ids.written)
        };
        if let Some(committed) = committed {
            frames.push(Frame::Committed(committed));
        }
        if let Err(error) = self.files.append(&frames, must_sync) {
            // Nothing of a write refused for space became durable, and the
            // files' index still ends before it: the same frames are
            // written again at the same place once there is room.
            if !error.is_no_space() {
                tracing::error!(%error, "writing the raft log failed; this node stops applying");
                self.durable.fail();
            }
            return Err(error);
        }
        if committed.is_some() {
            self.committed.lock().written = committed;
        }
        if let Some(last) = batch_last {
            self.durable.advance_to(last);
        }
        let mut pending = self.pending.lock();
        let mut tail = self.written.lock();
        for (first, last) in &ranges {
            let written: Vec<u64> = pending
                .range(first..=last)
                .map(|(index, _)| *index)
                .collect();
            for index in written {
                if let Some(entry) = pending.remove(&index) {
                    tail.push(entry.entry, entry.json.len());
                }
            }
        }
        self.pending_bytes.fetch_sub(batch_bytes, Ordering::AcqRel);
        Ok(())
    }
}

/// The queue of the flusher thread.
#[derive(Debug)]
pub(super) struct Flusher {
    jobs: mpsc::Sender<FlushJob>,
}

impl Flusher {
    /// Starts the flusher thread over `writer`. If the thread cannot start,
    /// every send fails and the caller writes itself.
    pub fn start(writer: Arc<LogWriter>) -> Flusher {
        let (sender, jobs) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || run(&writer, jobs));
        if let Err(error) = spawned {
            // The receiver went with the closure: sends fail from here on.
            tracing::error!(%error, "cannot start the raft log flusher thread");
        }
        Flusher { jobs: sender }
    }

    /// Queues `job`; gives it back if the thread is gone.
    pub fn send(&self, job: FlushJob) -> Result<(), FlushJob> {
        self.jobs.send(job).map_err(|mpsc::SendError(job)| job)
    }
}

/// Writes queued jobs to the files, one group per turn, until the queue
/// is closed and empty. Runs on a thread of its own: the sync blocks it,
/// and a blocking-pool task per group cost a thread wake-up each.
fn run(writer: &LogWriter, jobs: mpsc::Receiver<FlushJob>) {
    let mut group = Vec::new();
    // Whether the last group wrote entries, whose commit is to follow.
    let mut after_entries = false;
    while let Some(job) = next_job(writer, &jobs, after_entries) {
        group.push(job);
        while let Ok(job) = jobs.try_recv() {
            group.push(job);
        }
        let started = Instant::now();
        let mut written = writer.write_pending(&group);
        crate::slow_sync::note(
            "a raft log write and sync",
            writer.files.dir(),
            started.elapsed(),
        );
        // A full disk: the group (and whatever joins it meanwhile) waits
        // for room, its appends unanswered, as long as the log is open.
        while let Err(error) = &written {
            if !error.is_no_space() {
                break;
            }
            let path = error.path().unwrap_or(writer.files.dir()).to_path_buf();
            writer.disk_full.set(WRITER, &path);
            std::thread::sleep(crate::space::RETRY_INTERVAL);
            loop {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        tracing::warn!(
                            path = %path.display(),
                            "the raft log closed while waiting for room; its last appends fail"
                        );
                        writer.durable.fail();
                        break;
                    }
                }
            }
            written = writer.write_pending(&group);
        }
        if written.is_ok() {
            writer.disk_full.clear(WRITER);
        }
        FLUSH_SECONDS.record(started.elapsed().as_secs_f64());
        let appends = group
            .iter()
            .filter(|job| matches!(job, FlushJob::Append { .. }))
            .count();
        FLUSH_ENTRIES.record(appends as f64);
        after_entries = appends > 0 && written.is_ok();
        for job in group.drain(..) {
            match job {
                FlushJob::Append {
                    report: Some(report),
                    ..
                } => report(match &written {
                    Ok(()) => Ok(()),
                    Err(error) => Err(std::io::Error::other(format!(
                        "writing the raft log failed: {error}"
                    ))),
                }),
                FlushJob::Drain(done) => {
                    // The drainer may have stopped waiting; nothing to tell.
                    let _ = done.send(());
                }
                FlushJob::Append { report: None, .. } | FlushJob::Committed => {}
            }
        }
    }
    tracing::debug!("the raft log is closed; its flusher ends");
}

/// The flusher's next job, or `None` once the queue is closed and empty.
///
/// After a group of entries the commit of them is to follow: the flusher
/// waits up to [`COMMITTED_LINGER`] for the next job, which then carries
/// the committed id, and writes the id alone if none comes. Otherwise it
/// waits with no deadline, marked idle, so that a commit sends it a job.
/// Under load this saves a wake-up and a write per commit.
fn next_job(
    writer: &LogWriter,
    jobs: &mpsc::Receiver<FlushJob>,
    after_entries: bool,
) -> Option<FlushJob> {
    if after_entries {
        match jobs.recv_timeout(COMMITTED_LINGER) {
            Ok(job) => return Some(job),
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    // Marked idle before the check: a commit saved after the check sees
    // the mark and sends a job, and one saved before it is found by it.
    writer.idle.store(true, Ordering::SeqCst);
    let job = if writer.committed_unwritten() {
        Some(FlushJob::Committed)
    } else {
        jobs.recv().ok()
    };
    writer.idle.store(false, Ordering::SeqCst);
    job
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(tail: &WrittenTail) -> Vec<u64> {
        tail.copies(..)
            .iter()
            .map(|entry| entry.log_id.index)
            .collect()
    }

    #[test]
    fn the_written_tail_keeps_the_newest_run_within_its_bound() {
        let mut tail = WrittenTail::default();
        let third = MAX_WRITTEN_BYTES / 3;
        for index in 1..=5 {
            tail.push(blank(index), third);
        }
        assert_eq!(indexes(&tail), [3, 4, 5], "the oldest go past the bound");
        assert_eq!(tail.bytes, 3 * third);
        tail.push(blank(9), 10);
        assert_eq!(indexes(&tail), [9], "an entry after a gap starts a new run");
        for index in 10..=12 {
            tail.push(blank(index), 10);
        }
        tail.clear_from(11);
        assert_eq!(indexes(&tail), [9, 10]);
        tail.clear_through(9);
        assert_eq!(indexes(&tail), [10]);
        assert_eq!(tail.bytes, 10);
        tail.push(blank(11), MAX_WRITTEN_BYTES + 1);
        assert_eq!(
            indexes(&tail),
            [] as [u64; 0],
            "an entry over the bound is not kept"
        );
        assert_eq!(tail.bytes, 0);
    }
}
