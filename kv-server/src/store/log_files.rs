//! The raft log's files: append-only segments of CRC-framed entries (see
//! `log_frame`), and a small metadata file for the vote
//! and the purged log id.
//!
//! ```text
//! data/raft/
//!   meta.json                   {"vote": …, "purged": …}, replaced atomically
//!   00000000000000000001.log    segments, named by the first index written
//! ```
//!
//! One writer at a time appends a group of frames with one `pwrite` and one
//! `fdatasync`: the whole cost of making a group durable. Frames are in
//! index order within and across segments (a truncation cuts the file; a
//! purge only moves the start forward). Opening the log checks every frame
//! (see `log_recovery`).
//!
//! Two locks, always taken in this order: `writer`, held for a whole
//! append, truncation or purge, makes writers take turns; `segments`, the
//! in-memory map of segments and entry locations, is held only to look up
//! or change that map, never across a file operation. So readers never wait
//! for a write's I/O: they copy the locations they need, let go, and read
//! with `pread` on their own handle of the file. An entry enters the map
//! only once its bytes are written, and leaves it before its bytes are cut.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use compaction::fsutil;

use crate::error::StoreError;
use crate::store::log_frame::{self, Frame, FrameKind};
use crate::store::log_recovery::{self, TornTail};
use crate::types::{LogId, NodeId};

/// The metadata file's name in the log's directory.
pub(super) const META_FILE: &str = "meta.json";
/// The ending of a segment file's name.
const SEGMENT_SUFFIX: &str = ".log";
/// Digits of a segment file's name, zero-padded so names sort as numbers.
const SEGMENT_NAME_DIGITS: usize = 20;
/// A new segment is started once the active one would grow past this.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// The active segment is extended with zeros this much at a time, ahead of
/// the frames: an append then changes no file size, and its `fdatasync`
/// writes no metadata (half the cost on ext4 here).
const PREALLOCATE_BYTES: u64 = 1 << 20;

/// What the log keeps beside its entries, replaced whole when it changes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    /// The vote as last saved.
    pub vote: Option<openraft::Vote<NodeId>>,
    /// The last purged log id: the log holds nothing at or below it.
    pub purged: Option<LogId>,
}

/// Where a written entry sits.
#[derive(Clone, Copy, Debug)]
pub(super) struct Location {
    /// The segment, by its first index.
    pub segment: u64,
    /// Where the entry's frame starts in the segment.
    pub offset: u64,
    /// Bytes of the whole frame.
    pub len: u32,
    /// The entry's id.
    pub log_id: LogId,
}

/// One segment file.
#[derive(Debug)]
pub(super) struct Segment {
    /// The file's path, for errors.
    pub path: PathBuf,
    /// The open file, shared with readers in the middle of a `pread`.
    pub file: Arc<File>,
    /// Bytes written (the next frame goes here).
    pub len: u64,
    /// Bytes of the file: past `len`, zeros written ahead.
    pub allocated: u64,
    /// The greatest index written to it.
    pub last: Option<u64>,
}

/// The log's segments and where each entry sits in them.
#[derive(Debug, Default)]
pub(super) struct Segments {
    /// By first index; the last one is the active segment.
    pub by_first: BTreeMap<u64, Segment>,
    /// Every entry the log holds (above the purged id), by index. Changed
    /// only through the methods below, which keep `entry_bytes`.
    index: BTreeMap<u64, Location>,
    /// Bytes of the frames in `index`: what `held_bytes` answers without
    /// walking the index under the lock the writer needs.
    entry_bytes: u64,
}

impl Segments {
    /// Where the entry at `index` sits.
    pub fn location(&self, index: u64) -> Option<&Location> {
        self.index.get(&index)
    }

    /// The entries with indexes in `range`.
    pub fn locations(
        &self,
        range: impl RangeBounds<u64>,
    ) -> std::collections::btree_map::Range<'_, u64, Location> {
        self.index.range(range)
    }

    /// The last entry the log holds.
    pub fn last_location(&self) -> Option<&Location> {
        self.index.last_key_value().map(|(_, location)| location)
    }

    /// Records that the entry at `index` sits at `location`.
    pub fn insert(&mut self, index: u64, location: Location) {
        if let Some(replaced) = self.index.insert(index, location) {
            self.entry_bytes -= u64::from(replaced.len);
        }
        self.entry_bytes += u64::from(location.len);
    }

    /// Forgets every entry at or after `from`.
    pub fn forget_from(&mut self, from: u64) {
        let gone = self.index.split_off(&from);
        self.entry_bytes -= frame_bytes(&gone);
    }

    /// Forgets every entry at or below `upto`.
    pub fn forget_upto(&mut self, upto: u64) {
        let kept = self.index.split_off(&(upto + 1));
        let gone = std::mem::replace(&mut self.index, kept);
        self.entry_bytes -= frame_bytes(&gone);
    }
}

/// Bytes of the frames at `locations`.
fn frame_bytes(locations: &BTreeMap<u64, Location>) -> u64 {
    locations.values().map(|at| u64::from(at.len)).sum()
}

/// Adjacent frames of one segment, read together.
struct Run {
    path: PathBuf,
    file: Arc<File>,
    segment: u64,
    start: u64,
    len: u64,
    ids: Vec<LogId>,
}

/// The active segment as the writer found it, to write outside the lock.
struct Active {
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    allocated: u64,
}

/// What opening the log found beside the entries.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The metadata file.
    pub meta: Meta,
    /// The last committed id written that the log still covers.
    pub committed: Option<LogId>,
}

/// The raft log's files, shared by the writer and readers.
#[derive(Debug)]
pub struct LogFiles {
    dir: PathBuf,
    segment_bytes: u64,
    /// Held for a whole append, truncation or purge; taken before `segments`.
    /// Holds the tail a crash left unwritten until the first write cuts it.
    writer: Mutex<Option<TornTail>>,
    /// The in-memory map; held for no file operation.
    segments: Mutex<Segments>,
}

/// Cuts the tail a crash left unwritten off its segment, durably, if it is
/// still there: before the log's first write, never at open, so a node
/// that its checks stop after opening leaves the file as it was.
pub(super) fn cut_torn_tail(torn: &mut Option<TornTail>) -> Result<(), StoreError> {
    let Some(tail) = torn.as_ref() else {
        return Ok(());
    };
    let file = OpenOptions::new()
        .write(true)
        .open(&tail.path)
        .map_err(StoreError::io("open", &tail.path))?;
    file.set_len(tail.offset)
        .map_err(StoreError::io("truncate", &tail.path))?;
    file.sync_data()
        .map_err(StoreError::io("fsync", &tail.path))?;
    *torn = None;
    Ok(())
}

/// The path of the segment whose first index is `first`.
pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:0SEGMENT_NAME_DIGITS$}{SEGMENT_SUFFIX}"))
}

/// The first index a segment file's name stands for, if it names one.
pub(super) fn segment_first(file_name: &str) -> Option<u64> {
    file_name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
}

/// Opens a segment file for reading and writing, creating it if missing.
pub(super) fn open_segment_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(StoreError::io("open", path))
}

/// Makes durable what the files of `dir` hold: a process killed between
/// a write and its fsync left the write in the page cache, where recovery
/// reads it and the node goes on to count it as held (toward a quorum,
/// say); a power cut after that would still lose it. An fsync of a file
/// with nothing to write costs next to nothing.
fn sync_all(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(StoreError::io("read dir", dir))? {
        let path = entry.map_err(StoreError::io("read dir", dir))?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if segment_first(name).is_some() || name == META_FILE {
            File::open(&path)
                .and_then(|file| file.sync_all())
                .map_err(StoreError::io("fsync", &path))?;
        }
    }
    Ok(fsutil::fsync_dir(dir)?)
}

impl LogFiles {
    /// Opens (or creates) the log in `dir`, checking every frame, and
    /// makes what it holds durable.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(LogFiles, Recovered), StoreError> {
        let opened = log_recovery::recover(dir)?;
        sync_all(dir)?;
        let files = LogFiles {
            dir: dir.to_path_buf(),
            segment_bytes,
            writer: Mutex::new(opened.torn),
            segments: Mutex::new(opened.segments),
        };
        let recovered = Recovered {
            meta: opened.meta,
            committed: opened.committed,
        };
        Ok((files, recovered))
    }

    /// Replaces the metadata file, durably.
    pub fn save_meta(&self, meta: &Meta) -> Result<(), StoreError> {
        let path = self.dir.join(META_FILE);
        let started = std::time::Instant::now();
        let saved = fsutil::write_atomic(&path, &fsutil::to_checked_json(meta));
        // The raft core waits for a vote to be saved before it answers or
        // reports the leader it learned.
        crate::slow_sync::note("saving the raft vote", &path, started.elapsed());
        Ok(saved?)
    }

    /// The id of the last entry written.
    pub fn last_log_id(&self) -> Option<LogId> {
        let segments = self.segments.lock();
        segments.last_location().map(|at| at.log_id)
    }

    /// Bytes of the entries the log holds (its frames, not the zeros
    /// allocated after them): what a purge gives back.
    pub fn held_bytes(&self) -> u64 {
        self.segments.lock().entry_bytes
    }

    /// The directory of the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id of the written entry at `index`.
    pub fn log_id_at(&self, index: u64) -> Option<LogId> {
        self.segments.lock().location(index).map(|at| at.log_id)
    }

    /// Appends `frames` in one write, then `fdatasync`s if `sync`. Entries
    /// must follow the last one written (or a purge, or a truncation).
    pub fn append(&self, frames: &[Frame], sync: bool) -> Result<(), StoreError> {
        for frame in frames {
            if let Frame::Entry(log_id, json) = frame {
                if json.len() > log_frame::MAX_ENTRY_JSON_BYTES {
                    return Err(StoreError::LogEntryTooLarge {
                        index: log_id.index,
                        bytes: json.len(),
                        limit: log_frame::MAX_ENTRY_JSON_BYTES,
                    });
                }
            }
        }
        let mut writer = self.writer.lock();
        cut_torn_tail(&mut writer)?;
        let mut bytes = Vec::new();
        // Each entry's id, frame start within `bytes` and frame length.
        let mut written = Vec::new();
        for frame in frames {
            let at = bytes.len() as u64;
            log_frame::encode(frame, &mut bytes);
            if let Frame::Entry(log_id, _) = frame {
                written.push((*log_id, at, bytes.len() as u64 - at));
            }
        }
        // A synced write ends with a mark: a later write after it shows
        // that all before it was durable (see `log_recovery`).
        if let (true, Some(Frame::Entry(last, _) | Frame::Committed(last) | Frame::Synced(last))) =
            (sync, frames.last())
        {
            log_frame::encode(&Frame::Synced(*last), &mut bytes);
        }
        let first_entry = written.first().map(|(log_id, _, _)| log_id.index);
        let active = self.active();
        let roll = match (&active, first_entry) {
            (None, None) => return Ok(()),
            (None, Some(_)) => true,
            (Some(active), Some(_)) => {
                active.len > 0 && active.len + bytes.len() as u64 > self.segment_bytes
            }
            (Some(_), None) => false,
        };
        let active = match active {
            Some(active) if !roll => active,
            _ => {
                self.start_segment(first_entry.expect("a roll has an entry to name its segment"))?
            }
        };
        let base = active.len;
        let end = base + bytes.len() as u64;
        let allocated = if end > active.allocated {
            let grown = end.next_multiple_of(PREALLOCATE_BYTES);
            let zeros = vec![0; (grown - active.allocated) as usize];
            active
                .file
                .write_all_at(&zeros, active.allocated)
                .map_err(StoreError::io("extend", &active.path))?;
            grown
        } else {
            active.allocated
        };
        active
            .file
            .write_all_at(&bytes, base)
            .map_err(StoreError::io("write", &active.path))?;
        if sync {
            crate::crash::fsync_delay();
            active
                .file
                .sync_data()
                .map_err(StoreError::io("fsync", &active.path))?;
        }
        let mut segments = self.segments.lock();
        let segment = segments
            .by_first
            .get_mut(&active.first)
            .expect("only the writer, which is here, removes segments");
        segment.len = end;
        segment.allocated = allocated;
        if let Some((log_id, _, _)) = written.last() {
            segment.last = Some(log_id.index);
        }
        for (log_id, at, len) in written {
            let location = Location {
                segment: active.first,
                offset: base + at,
                len: len as u32,
                log_id,
            };
            segments.insert(log_id.index, location);
        }
        Ok(())
    }

    /// The active segment, if there is one.
    fn active(&self) -> Option<Active> {
        let segments = self.segments.lock();
        let (first, segment) = segments.by_first.last_key_value()?;
        Some(Active {
            first: *first,
            path: segment.path.clone(),
            file: Arc::clone(&segment.file),
            len: segment.len,
            allocated: segment.allocated,
        })
    }

    /// Creates an empty segment whose first entry is `first`, durably, and
    /// makes it the active one.
    fn start_segment(&self, first: u64) -> Result<Active, StoreError> {
        let path = segment_path(&self.dir, first);
        let file = open_segment_file(&path)?;
        file.set_len(0).map_err(StoreError::io("truncate", &path))?;
        fsutil::fsync_dir(&self.dir)?;
        let file = Arc::new(file);
        let segment = Segment {
            path: path.clone(),
            file: Arc::clone(&file),
            len: 0,
            allocated: 0,
            last: None,
        };
        self.segments.lock().by_first.insert(first, segment);
        Ok(Active {
            first,
            path,
            file,
            len: 0,
            allocated: 0,
        })
    }

    /// The JSON of the written entries with indexes in `range`, in order,
    /// each checked against its checksum.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<(LogId, Vec<u8>)>, StoreError> {
        // Runs of adjacent frames in one segment, each read with one pread.
        let mut runs: Vec<Run> = Vec::new();
        {
            let segments = self.segments.lock();
            for (_, at) in segments.locations(range) {
                match runs.last_mut() {
                    Some(run) if run.segment == at.segment && run.start + run.len == at.offset => {
                        run.len += u64::from(at.len);
                        run.ids.push(at.log_id);
                    }
                    _ => {
                        let segment = &segments.by_first[&at.segment];
                        runs.push(Run {
                            path: segment.path.clone(),
                            file: Arc::clone(&segment.file),
                            segment: at.segment,
                            start: at.offset,
                            len: u64::from(at.len),
                            ids: vec![at.log_id],
                        });
                    }
                }
            }
        }
        let mut entries = Vec::new();
        for run in runs {
            let mut bytes = vec![0; run.len as usize];
            run.file
                .read_exact_at(&mut bytes, run.start)
                .map_err(StoreError::io("read", &run.path))?;
            let mut at = 0usize;
            for expected in run.ids {
                let offset = run.start + at as u64;
                let frame = log_frame::decode(&bytes[at..]).map_err(|damage| {
                    StoreError::LogFrameDamaged {
                        path: run.path.clone(),
                        offset,
                        damage,
                    }
                })?;
                if frame.kind != FrameKind::Entry || frame.log_id != expected {
                    return Err(StoreError::LogFrameMisplaced {
                        path: run.path.clone(),
                        offset,
                        expected,
                        found_kind: frame.kind,
                        found: frame.log_id,
                    });
                }
                entries.push((expected, frame.payload.to_vec()));
                at += frame.len;
            }
        }
        Ok(entries)
    }

    /// Removes every entry at or after `from`, durably: later segments are
    /// deleted (newest first), then the segment holding `from` is cut.
    pub fn truncate(&self, from: u64) -> Result<(), StoreError> {
        let mut writer = self.writer.lock();
        cut_torn_tail(&mut writer)?;
        // Forget the entries first, so no reader looks for them while the
        // files change.
        let (doomed, cut) = {
            let mut segments = self.segments.lock();
            let cut = segments.location(from).copied();
            segments.forget_from(from);
            let doomed = segments.by_first.split_off(&from);
            let cut = cut.filter(|cut| cut.segment < from).map(|cut| {
                let segment = segments
                    .by_first
                    .get_mut(&cut.segment)
                    .expect("an indexed entry's segment is in the map");
                segment.len = cut.offset;
                segment.allocated = cut.offset;
                segment.last = from.checked_sub(1);
                (segment.path.clone(), Arc::clone(&segment.file), cut.offset)
            });
            (doomed, cut)
        };
        for segment in doomed.values().rev() {
            std::fs::remove_file(&segment.path).map_err(StoreError::io("remove", &segment.path))?;
        }
        if !doomed.is_empty() {
            fsutil::fsync_dir(&self.dir)?;
        }
        if let Some((path, file, offset)) = cut {
            file.set_len(offset)
                .map_err(StoreError::io("truncate", &path))?;
            file.sync_data().map_err(StoreError::io("fsync", &path))?;
        }
        Ok(())
    }

    /// Forgets every entry at or below `upto` and deletes the segments that
    /// hold nothing else (never the active one). Save the purged id in the
    /// metadata first: it, not the files, bounds the log at the next open.
    pub fn purge(&self, upto: u64) -> Result<(), StoreError> {
        let _writer = self.writer.lock();
        let doomed: Vec<Segment> = {
            let mut segments = self.segments.lock();
            segments.forget_upto(upto);
            let active = segments.by_first.last_key_value().map(|(first, _)| *first);
            let firsts: Vec<u64> = segments
                .by_first
                .iter()
                .filter(|(first, segment)| {
                    Some(**first) != active && segment.last.is_none_or(|last| last <= upto)
                })
                .map(|(first, _)| *first)
                .collect();
            firsts
                .iter()
                .filter_map(|first| segments.by_first.remove(first))
                .collect()
        };
        for segment in doomed {
            std::fs::remove_file(&segment.path).map_err(StoreError::io("remove", &segment.path))?;
        }
        Ok(())
    }

    /// How many segment files the log has.
    #[cfg(test)]
    pub(super) fn segment_count(&self) -> usize {
        self.segments.lock().by_first.len()
    }

    /// Holds the writer's turn, so nothing is written until the guard is
    /// dropped: lets a test catch a write before it reaches the files.
    #[cfg(test)]
    pub(super) fn hold_writes(&self) -> parking_lot::MutexGuard<'_, Option<TornTail>> {
        self.writer.lock()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    pub(crate) fn id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    pub(crate) fn entry(term: u64, index: u64) -> Frame {
        Frame::Entry(
            id(term, index),
            format!("{{\"i\":{index}}}").into_bytes().into(),
        )
    }

    pub(crate) fn indexes(files: &LogFiles) -> Vec<u64> {
        files
            .read(..)
            .expect("readable")
            .into_iter()
            .map(|(id, _)| id.index)
            .collect()
    }

    #[test]
    fn entries_survive_a_reopen_across_segments() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), 200).expect("opens");
        for index in 1..=20 {
            files.append(&[entry(1, index)], true).expect("appends");
        }
        files
            .append(&[Frame::Committed(id(1, 15))], false)
            .expect("appends");
        assert!(files.segment_count() > 3, "small segments roll");
        drop(files);
        let (files, recovered) = LogFiles::open(dir.path(), 200).expect("reopens");
        assert_eq!(indexes(&files), (1..=20).collect::<Vec<_>>());
        assert_eq!(recovered.committed, Some(id(1, 15)));
        let (_, json) = &files.read(7..=7).expect("readable")[0];
        assert_eq!(json, b"{\"i\":7}");
    }

    /// The largest entry a frame holds is written and read back; one byte
    /// more is refused, and the log is as it was: a frame no read takes
    /// back is never written.
    #[test]
    fn an_entry_larger_than_a_frame_holds_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("opens");
        let largest = vec![b'7'; log_frame::MAX_ENTRY_JSON_BYTES];
        files
            .append(&[Frame::Entry(id(1, 1), largest.into())], true)
            .expect("the largest entry is written");
        let over = vec![b'7'; log_frame::MAX_ENTRY_JSON_BYTES + 1];
        let error = files
            .append(&[entry(1, 2), Frame::Entry(id(1, 3), over.into())], true)
            .expect_err("a larger one is refused");
        assert!(
            matches!(error, StoreError::LogEntryTooLarge { index: 3, .. }),
            "{error}"
        );
        drop(files);
        let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
        assert_eq!(indexes(&files), vec![1]);
        let (_, json) = &files.read(1..=1).expect("readable")[0];
        assert_eq!(json.len(), log_frame::MAX_ENTRY_JSON_BYTES);
    }

    #[test]
    fn damage_found_by_a_read_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("opens");
        files
            .append(&[entry(1, 1), entry(1, 2)], true)
            .expect("appends");
        let path = segment_path(dir.path(), 1);
        let file = OpenOptions::new().write(true).open(&path).expect("opens");
        file.write_all_at(b"X", 30).expect("flips a byte");
        let error = files.read(..).expect_err("damage is found");
        assert!(
            matches!(
                &error,
                StoreError::LogFrameDamaged { path: named, offset: 0, .. } if *named == path
            ),
            "{error}"
        );
        assert!(error.to_string().contains("checksum"), "{error}");
    }

    /// Bytes of the frames `frames` encode to.
    fn encoded_bytes(frames: &[Frame]) -> u64 {
        let mut bytes = Vec::new();
        for frame in frames {
            log_frame::encode(frame, &mut bytes);
        }
        bytes.len() as u64
    }

    #[test]
    fn truncation_and_purge_last_across_a_reopen() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), 150).expect("opens");
        for index in 1..=12 {
            files.append(&[entry(1, index)], true).expect("appends");
        }
        files.truncate(9).expect("truncates");
        files
            .append(&[entry(2, 9), entry(2, 10)], true)
            .expect("appends");
        let mut held: Vec<Frame> = (1..=8).map(|index| entry(1, index)).collect();
        held.extend([entry(2, 9), entry(2, 10)]);
        assert_eq!(
            files.held_bytes(),
            encoded_bytes(&held),
            "after the truncation"
        );
        let meta = Meta {
            vote: None,
            purged: Some(id(1, 4)),
        };
        files.save_meta(&meta).expect("saves");
        let before = files.segment_count();
        files.purge(4).expect("purges");
        assert!(
            files.segment_count() < before,
            "purged segments are deleted"
        );
        let held = &held[4..];
        assert_eq!(files.held_bytes(), encoded_bytes(held), "after the purge");
        drop(files);
        let (files, recovered) = LogFiles::open(dir.path(), 150).expect("reopens");
        assert_eq!(recovered.meta.purged, Some(id(1, 4)));
        assert_eq!(indexes(&files), (5..=10).collect::<Vec<_>>());
        assert_eq!(files.held_bytes(), encoded_bytes(held), "after a reopen");
        assert_eq!(files.last_log_id(), Some(id(2, 10)));
        assert_eq!(files.log_id_at(8), Some(id(1, 8)));
    }

    #[test]
    fn a_truncation_keeps_exactly_the_entries_before_it() {
        // (entries written one per group, segment bytes, truncate from)
        let cases: [(u64, u64, u64); 5] = [
            (6, SEGMENT_BYTES, 4),
            (6, SEGMENT_BYTES, 1),
            (12, 150, 9),
            (12, 150, 5),
            (12, 150, 13),
        ];
        for (written, segment_bytes, from) in cases {
            let dir = tempfile::tempdir().expect("a temp dir");
            let (files, _) = LogFiles::open(dir.path(), segment_bytes).expect("opens");
            for index in 1..=written {
                files.append(&[entry(1, index)], true).expect("appends");
            }
            files.truncate(from).expect("truncates");
            let expected: Vec<u64> = (1..from.min(written + 1)).collect();
            assert_eq!(indexes(&files), expected, "truncate({from}) of {written}");
            drop(files);
            let (files, _) = LogFiles::open(dir.path(), segment_bytes).expect("reopens");
            assert_eq!(
                indexes(&files),
                expected,
                "after a reopen, truncate({from})"
            );
        }
    }

    /// A roll and a truncation do their file work (create, cut, remove,
    /// fsync) holding the writers' turn only; readers take the segment
    /// map's lock alone, so they go on while a writer is in the middle of
    /// one.
    #[test]
    fn readers_never_wait_for_a_writers_turn() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), 150).expect("opens");
        for index in 1..=6 {
            files.append(&[entry(1, index)], true).expect("appends");
        }
        let (read, reads) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let turn = files.hold_writes();
            scope.spawn(|| {
                let found = (indexes(&files), files.last_log_id(), files.log_id_at(3));
                let _ = read.send(found);
            });
            let found = reads
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("a read does not wait for the writers' turn");
            assert_eq!(found, ((1..=6).collect(), Some(id(1, 6)), Some(id(1, 3))));
            drop(turn);
        });
    }
}
