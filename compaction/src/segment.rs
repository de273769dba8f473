//! One segment: a log file of record frames named by its base offset, and
//! its sparse index.
//!
//! Only the topic's writer appends, and only to the active segment; readers
//! and the cleaner read with positional reads through the same descriptor.
//! `state` is the one piece of shared mutable state: the writer updates it
//! after each write has landed in the file, so a reader that copies it never
//! sees a size that covers bytes not yet written.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tracing::warn;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_synced;
use crate::index::{IndexEntry, SparseIndex};
use crate::record::{Record, FRAME_HEADER_BYTES, MAX_BODY_BYTES};
use crate::scan::{Frame, FrameScanner};
use crate::{torn, Offset};

/// Suffix of a segment's log file.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of a segment's index file.
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix the cleaner gives files it is still writing.
pub const CLEANED_SUFFIX: &str = ".cleaned";

/// File name of the log of the segment starting at `base_offset`.
pub fn log_file_name(base_offset: Offset) -> String {
    format!("{base_offset:020}{LOG_SUFFIX}")
}

/// File name of the index of the segment starting at `base_offset`.
pub fn index_file_name(base_offset: Offset) -> String {
    format!("{base_offset:020}{INDEX_SUFFIX}")
}

/// Parses a segment log file name back into its base offset.
pub fn parse_log_file_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(LOG_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How a segment is opened after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The last segment: scanned whole, an unwritten tail is cut off.
    Active {
        /// The last offset known durable, after which damage is cut back
        /// to it rather than refused (see `Topic::open_with_durable_end`).
        durable_end: Option<Offset>,
    },
    /// Any other segment: must be whole; only its tail is checked at open.
    Closed,
}

/// What the segment holds, as of the last completed append.
#[derive(Clone, Debug, Default)]
pub(crate) struct SegmentState {
    /// Bytes of whole records in the log file.
    pub size: u64,
    /// Offset of the last record, if any.
    pub last_offset: Option<Offset>,
    /// Timestamp of the first record, if any (drives time-based rolling).
    pub first_timestamp_ms: Option<u64>,
    /// Largest record timestamp (drives the minimum compaction lag).
    pub max_timestamp_ms: u64,
    /// The sparse index.
    pub index: SparseIndex,
    /// Log bytes written since the last index entry.
    bytes_since_index: u64,
}

impl SegmentState {
    /// Offset of the first record, if any.
    pub fn first_offset(&self) -> Option<Offset> {
        self.index.first().map(|entry| entry.offset)
    }

    /// Accounts for a record written at `position`.
    fn record_written(
        &mut self,
        record: &Record,
        position: u64,
        frame_len: u64,
        index_interval_bytes: u64,
    ) {
        self.max_timestamp_ms = self.max_timestamp_ms.max(record.timestamp_ms);
        self.first_timestamp_ms.get_or_insert(record.timestamp_ms);
        if self.index.last().is_none() || self.bytes_since_index >= index_interval_bytes {
            self.index.push(IndexEntry {
                offset: record.offset,
                position: position as u32,
                max_timestamp_ms: self.max_timestamp_ms,
            });
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += frame_len;
        self.last_offset = Some(record.offset);
        self.size = position + frame_len;
    }
}

/// One segment of the topic.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: Offset,
    log_path: PathBuf,
    index_path: PathBuf,
    file: Arc<File>,
    index_interval_bytes: u64,
    state: RwLock<SegmentState>,
    /// Set by a failed fsync. The kernel reports a lost write once, to
    /// whichever fsync of the file comes first, and may have dropped the
    /// pages: a later fsync that succeeds proves nothing, so every later
    /// one fails too.
    sync_failed: std::sync::atomic::AtomicBool,
    /// The next fsync fails, as a failing disk's would (tests only).
    #[cfg(test)]
    fail_next_sync: std::sync::atomic::AtomicBool,
}

impl Segment {
    /// Creates an empty segment at the given paths; fails if the log exists.
    pub fn create(
        base_offset: Offset,
        log_path: PathBuf,
        index_path: PathBuf,
        index_interval_bytes: u64,
    ) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)
            .io_context("create", &log_path)?;
        let file = Arc::new(file);
        Ok(Segment {
            base_offset,
            log_path,
            index_path,
            file,
            index_interval_bytes,
            state: RwLock::new(SegmentState::default()),
            sync_failed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Opens the segment of `dir` starting at `base_offset`, recovering it
    /// as `recovery` says.
    pub fn open(
        dir: &Path,
        base_offset: Offset,
        recovery: Recovery,
        index_interval_bytes: u64,
    ) -> Result<Segment> {
        let log_path = dir.join(log_file_name(base_offset));
        let index_path = dir.join(index_file_name(base_offset));
        let file = OpenOptions::new()
            .read(true)
            .write(matches!(recovery, Recovery::Active { .. }))
            .open(&log_path)
            .io_context("open", &log_path)?;
        let file = Arc::new(file);
        let file_bytes = file.metadata().io_context("stat", &log_path)?.len();
        let segment = Segment {
            base_offset,
            log_path,
            index_path,
            file,
            index_interval_bytes,
            state: RwLock::new(SegmentState::default()),
            sync_failed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
        };
        match recovery {
            Recovery::Active { durable_end } => segment.recover_active(file_bytes, durable_end)?,
            Recovery::Closed => segment.load_closed(file_bytes)?,
        }
        Ok(segment)
    }

    /// First offset this segment may hold (its file name).
    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A copy of the segment's state.
    pub fn state(&self) -> SegmentState {
        self.read_state().clone()
    }

    /// Bytes of whole records and the first record's timestamp: what
    /// rolling looks at, without copying the index.
    pub fn fill(&self) -> (u64, Option<u64>) {
        let state = self.read_state();
        (state.size, state.first_timestamp_ms)
    }

    /// Offset of the first record, if any.
    pub fn first_offset(&self) -> Option<Offset> {
        self.read_state().first_offset()
    }

    /// Bytes of whole records.
    pub fn size(&self) -> u64 {
        self.read_state().size
    }

    /// Offset of the last record, if any.
    pub fn last_offset(&self) -> Option<Offset> {
        self.read_state().last_offset
    }

    /// Byte position to start scanning at to find `offset`.
    pub fn seek(&self, offset: Offset) -> u64 {
        self.read_state().index.seek(offset)
    }

    /// A scanner over the records from byte `start` to the current end,
    /// reading `chunk_bytes` at a time.
    pub fn scanner(&self, start: u64, chunk_bytes: usize) -> FrameScanner<Arc<File>> {
        let end = self.size();
        FrameScanner::new(Arc::clone(&self.file), self.log_path.clone(), start, end)
            .with_chunk_bytes(chunk_bytes)
    }

    /// Appends records (already checked for order by the caller), encoding
    /// them into `buf`, in one write.
    pub fn append(&self, records: &[Record], buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        for record in records {
            record.encode_into(buf);
        }
        let start = self.size();
        self.file
            .write_all_at(buf, start)
            .io_context("write", &self.log_path)?;
        let mut state = self.write_state();
        let mut position = start;
        for record in records {
            let frame_len = record.frame_len() as u64;
            state.record_written(record, position, frame_len, self.index_interval_bytes);
            position += frame_len;
        }
        Ok(())
    }

    /// Makes every appended byte durable. Once an fsync of the file has
    /// failed, every later call fails as well (see `sync_failed`).
    pub fn sync(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.sync_failed.load(Ordering::Acquire) {
            return Err(Error::Io {
                op: "fsync",
                path: self.log_path.clone(),
                source: std::io::Error::other(
                    "an earlier fsync of this file failed: its writes may be lost",
                ),
            });
        }
        #[cfg(test)]
        let synced = if self.fail_next_sync.swap(false, Ordering::AcqRel) {
            Err(std::io::Error::other("injected")).io_context("fsync", &self.log_path)
        } else {
            self.file.sync_data().io_context("fsync", &self.log_path)
        };
        #[cfg(not(test))]
        let synced = self.file.sync_data().io_context("fsync", &self.log_path);
        if synced.is_err() {
            self.sync_failed.store(true, Ordering::Release);
        }
        synced
    }

    /// Makes the log durable and writes the index file: the segment will take
    /// no more appends.
    pub fn seal(&self) -> Result<()> {
        self.sync()?;
        let bytes = self.read_state().index.to_bytes();
        Ok(write_synced(&self.index_path, &bytes)?)
    }

    /// Scans the whole log and cuts what a crash left unwritten at its end
    /// (see [`crate::torn`]). Past `durable_end`, the last offset the caller
    /// knows durable and can write again after, any damage is cut back to
    /// that offset's record; before it, damage is an error.
    fn recover_active(&self, file_bytes: u64, durable_end: Option<Offset>) -> Result<()> {
        let mut state = SegmentState::default();
        // Where the records up to `durable_end` end in the file.
        let mut durable_bytes = 0;
        let mut scanner = FrameScanner::new(&*self.file, self.log_path.clone(), 0, file_bytes);
        while let Some(frame) = scanner.next_frame()? {
            let (position, reason, runs_past_end) = match frame {
                Frame::Record {
                    record,
                    position,
                    next,
                } => {
                    self.check_order(&state, &record, position)?;
                    state.record_written(
                        &record,
                        position,
                        next - position,
                        self.index_interval_bytes,
                    );
                    if durable_end.is_some_and(|end| record.offset <= end) {
                        durable_bytes = next;
                    }
                    continue;
                }
                Frame::Unreadable { position, reason } => {
                    return Err(self.corrupt(position, reason));
                }
                Frame::Torn { position } => (
                    position,
                    "a record runs past the end of the file".to_string(),
                    true,
                ),
                Frame::Invalid { position, reason } => (position, reason, false),
            };
            let last = state.last_offset.or(self.base_offset.checked_sub(1));
            if let Some(end) = durable_end.filter(|end| last.is_none_or(|last| last < *end)) {
                return Err(self.corrupt(
                    position,
                    format!("{reason}, where records up to offset {end} were made durable"),
                ));
            }
            let rest = self.read_from(position, file_bytes)?;
            if torn::all_zero(&rest) {
                self.cut(position, file_bytes, "zeros never written")?;
            } else if runs_past_end {
                self.cut(position, file_bytes, &reason)?;
            } else if durable_end.is_some() {
                // Written after the last durable record: the caller writes
                // it again, so cut all of it rather than trust part of it.
                self.cut(durable_bytes, file_bytes, &reason)?;
                return self.recover_active(durable_bytes, durable_end);
            } else if torn::has_unwritten_sector(position, &rest[..declared_frame_len(&rest)]) {
                self.cut(
                    position,
                    file_bytes,
                    &format!("{reason}; a sector of it never written"),
                )?;
            } else {
                return Err(self.corrupt(
                    position,
                    format!("{reason}, with written data in every sector of it"),
                ));
            }
        }
        *self.write_state() = state;
        Ok(())
    }

    /// The bytes from `position` to `file_bytes`.
    fn read_from(&self, position: u64, file_bytes: u64) -> Result<Vec<u8>> {
        let mut rest = vec![0u8; (file_bytes - position) as usize];
        self.file
            .read_exact_at(&mut rest, position)
            .io_context("read", &self.log_path)?;
        Ok(rest)
    }

    /// Truncates the log at `position`, durably.
    fn cut(&self, position: u64, file_bytes: u64, reason: &str) -> Result<()> {
        warn!(
            file = %self.log_path.display(),
            position,
            truncated_bytes = file_bytes - position,
            reason,
            "truncating the unwritten tail of the active segment"
        );
        self.file
            .set_len(position)
            .io_context("truncate", &self.log_path)?;
        self.sync()
    }

    /// The error naming this log, `position` and `reason`.
    fn corrupt(&self, position: u64, reason: String) -> Error {
        Error::Corrupt {
            path: self.log_path.clone(),
            position,
            reason,
        }
    }

    /// Loads a closed segment: its index (rebuilt when missing or damaged)
    /// and the records after the last index entry, which give the last
    /// offset and largest timestamp and check that the tail is whole.
    fn load_closed(&self, file_bytes: u64) -> Result<()> {
        let Some(index) = SparseIndex::load(&self.index_path, file_bytes)? else {
            return self.rebuild_index(file_bytes);
        };
        if !self.describes_the_log(&index, file_bytes) {
            // Whole, but not this log's (another segment's, copied here):
            // derived data, rebuilt as a damaged one is.
            return self.rebuild_index(file_bytes);
        }
        let mut state = SegmentState::default();
        let tail_start = match index.last() {
            Some(entry) => {
                state.max_timestamp_ms = entry.max_timestamp_ms;
                u64::from(entry.position)
            }
            None => 0,
        };
        let mut scanner =
            FrameScanner::new(&*self.file, self.log_path.clone(), tail_start, file_bytes);
        while let Some(record) = scanner.next_record()? {
            state.max_timestamp_ms = state.max_timestamp_ms.max(record.timestamp_ms);
            state.last_offset = Some(record.offset);
        }
        state.size = file_bytes;
        state.index = index;
        *self.write_state() = state;
        Ok(())
    }

    /// Whether the first and last entries of `index` find, at their
    /// positions, a record of their offset. A record that does not decode
    /// there says the index is wrong, not the log: the rebuild that follows
    /// reads the log from its start and names any damage in it.
    fn describes_the_log(&self, index: &SparseIndex, file_bytes: u64) -> bool {
        [index.first(), index.last()]
            .into_iter()
            .flatten()
            .all(|entry| {
                let position = u64::from(entry.position);
                let mut scanner =
                    FrameScanner::new(&*self.file, self.log_path.clone(), position, file_bytes);
                matches!(scanner.next_record(), Ok(Some(record)) if record.offset == entry.offset)
            })
    }

    /// Rebuilds a closed segment's index by scanning its log, and writes it.
    fn rebuild_index(&self, file_bytes: u64) -> Result<()> {
        warn!(file = %self.index_path.display(), "index missing or damaged; rebuilding it from the log");
        let mut state = SegmentState::default();
        let mut scanner = FrameScanner::new(&*self.file, self.log_path.clone(), 0, file_bytes);
        loop {
            let position = scanner.position();
            let Some(record) = scanner.next_record()? else {
                break;
            };
            self.check_order(&state, &record, position)?;
            let frame_len = scanner.position() - position;
            state.record_written(&record, position, frame_len, self.index_interval_bytes);
        }
        write_synced(&self.index_path, &state.index.to_bytes())?;
        *self.write_state() = state;
        Ok(())
    }

    fn check_order(&self, state: &SegmentState, record: &Record, position: u64) -> Result<()> {
        let out_of_order = record.offset < self.base_offset
            || state.last_offset.is_some_and(|last| record.offset <= last);
        if out_of_order {
            return Err(Error::Corrupt {
                path: self.log_path.clone(),
                position,
                reason: format!(
                    "offset {} out of order (segment base {}, previous {:?})",
                    record.offset, self.base_offset, state.last_offset
                ),
            });
        }
        Ok(())
    }

    fn read_state(&self) -> RwLockReadGuard<'_, SegmentState> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, SegmentState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Bytes of the frame at the start of `rest` as far as the file holds it:
/// its declared length, or its header alone when that length is garbage.
fn declared_frame_len(rest: &[u8]) -> usize {
    let declared = rest
        .get(..4)
        .map(|len| u32::from_le_bytes(len.try_into().expect("a 4-byte slice")) as usize)
        .filter(|body| *body <= MAX_BODY_BYTES)
        .map_or(FRAME_HEADER_BYTES, |body| FRAME_HEADER_BYTES + body);
    declared.min(rest.len())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    /// An fsync that failed makes every later one fail: the kernel tells
    /// a lost write to the first fsync only, so a later one that succeeds
    /// (the checkpoint's, after the cleaner's seal failed) would report as
    /// durable pages it may have dropped.
    #[test]
    fn after_a_failed_fsync_every_later_one_fails() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let segment = Segment::create(
            0,
            dir.path().join(log_file_name(0)),
            dir.path().join(index_file_name(0)),
            4096,
        )
        .expect("creates");
        segment.sync().expect("a healthy disk syncs");
        segment.fail_next_sync.store(true, Ordering::Release);
        assert!(segment.sync().is_err());
        let again = segment.sync().expect_err("a later fsync fails too");
        assert!(again.to_string().contains("an earlier fsync"), "{again}");
        assert!(segment.seal().is_err(), "a seal syncs first");
    }
}
