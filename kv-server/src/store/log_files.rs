//! The raft log's files: append-only segments of CRC-framed entries, and a
//! small metadata file for the vote and the purged log id.
//!
//! ```text
//! data/raft/
//!   meta.json                   {"vote": …, "purged": …}, replaced atomically
//!   00000000000000000001.log    segments, named by the first index written
//!
//! frame := body_len: u32 LE | crc32c(body): u32 LE | body
//! body  := kind: u8 (1 entry, 2 committed) | term: u64 LE | leader: u64 LE
//!        | index: u64 LE | payload (an entry: its JSON; committed: nothing)
//! ```
//!
//! The header carries the log id, so opening the log indexes it without
//! decoding an entry. One writer at a time appends a group of frames with
//! one `pwrite` and one `fdatasync`: the whole cost of making a group
//! durable. Frames are in index order within and across segments (a
//! truncation cuts the file; a purge only moves the start forward).
//!
//! At open every frame is checked. A torn or damaged frame at the end of
//! the last segment, with no intact frame after it, is the tail of a write
//! a crash cut short: the segment is cut there (as Kafka recovers its log).
//! Anywhere else it is corruption, and the error names the file and the
//! byte.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::{CommittedLeaderId, Vote};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::StoreError;
use crate::store::snapshot::{sync_dir, write_atomic};
use crate::types::{LogId, NodeId};

/// Bytes of the frame header: body length and CRC.
const FRAME_HEADER_BYTES: usize = 8;
/// Bytes of the body before the payload: kind, term, leader, index.
const BODY_HEADER_BYTES: usize = 1 + 8 + 8 + 8;
/// Largest body a frame may declare; anything larger is damage.
const MAX_BODY_BYTES: usize = 64 << 20;
const KIND_ENTRY: u8 = 1;
const KIND_COMMITTED: u8 = 2;
const META_FILE: &str = "meta.json";
const SEGMENT_SUFFIX: &str = ".log";
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
    pub vote: Option<Vote<NodeId>>,
    /// The last purged log id: the log holds nothing at or below it.
    pub purged: Option<LogId>,
}

/// A frame to append.
pub enum Frame {
    /// A log entry: its id and its JSON.
    Entry(LogId, Vec<u8>),
    /// The committed log id, as last saved.
    Committed(LogId),
}

/// Where a written entry sits.
#[derive(Clone, Copy, Debug)]
struct Location {
    /// The segment, by its first index.
    segment: u64,
    offset: u64,
    /// Bytes of the whole frame.
    len: u32,
    log_id: LogId,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// Bytes written (the next frame goes here).
    len: u64,
    /// Bytes of the file: past `len`, zeros written ahead.
    allocated: u64,
    /// The greatest index written to it.
    last: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// By first index.
    segments: BTreeMap<u64, Segment>,
    /// Every entry the log holds (above the purged id), by index.
    index: BTreeMap<u64, Location>,
}

/// Adjacent frames of one segment, read together.
struct Run {
    segment: u64,
    path: PathBuf,
    file: Arc<File>,
    start: u64,
    len: u64,
    ids: Vec<LogId>,
}

/// What opening the log found beside the entries.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The metadata file.
    pub meta: Meta,
    /// The last committed id written that the log still covers.
    pub committed: Option<LogId>,
}

/// The raft log's files. Shared; one writer at a time (appends, truncations
/// and purges take turns), readers never wait for a write's I/O.
#[derive(Debug)]
pub struct LogFiles {
    dir: PathBuf,
    segment_bytes: u64,
    state: Mutex<State>,
    /// Held for a whole append, truncation or purge.
    writer: Mutex<()>,
}

fn corrupt(path: &Path, offset: u64, what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "raft log segment {} is damaged at byte {offset}: {what}",
        path.display()
    ))
}

fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let (kind, log_id, payload): (u8, &LogId, &[u8]) = match frame {
        Frame::Entry(log_id, json) => (KIND_ENTRY, log_id, json),
        Frame::Committed(log_id) => (KIND_COMMITTED, log_id, &[]),
    };
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    out.push(kind);
    out.extend_from_slice(&log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&log_id.index.to_le_bytes());
    out.extend_from_slice(payload);
    let body_len = (out.len() - start - FRAME_HEADER_BYTES) as u32;
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A frame decoded from bytes.
struct Decoded<'a> {
    kind: u8,
    log_id: LogId,
    payload: &'a [u8],
    /// Bytes of the whole frame.
    len: usize,
}

/// Decodes the frame at the start of `bytes`: `Err` names what is wrong.
fn decode(bytes: &[u8]) -> Result<Decoded<'_>, &'static str> {
    if bytes.len() < FRAME_HEADER_BYTES {
        return Err("a frame header is cut short");
    }
    let body_len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if !(BODY_HEADER_BYTES..=MAX_BODY_BYTES).contains(&body_len) {
        return Err("a frame declares an impossible length");
    }
    let Some(body) = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body_len) else {
        return Err("a frame is cut short");
    };
    if crc32c::crc32c(body) != crc {
        return Err("a frame's checksum does not match");
    }
    let kind = body[0];
    if kind != KIND_ENTRY && kind != KIND_COMMITTED {
        return Err("a frame has an unknown kind");
    }
    let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    Ok(Decoded {
        kind,
        log_id: LogId::new(CommittedLeaderId::new(word(1), word(9)), word(17)),
        payload: &body[BODY_HEADER_BYTES..],
        len: FRAME_HEADER_BYTES + body_len,
    })
}

/// Whether an intact entry frame past `last` starts anywhere after the
/// damaged frame at `damaged`: then the damage is not a torn tail.
fn intact_frame_after(bytes: &[u8], damaged: usize, last: Option<u64>) -> bool {
    (damaged + 1..bytes.len()).any(|at| {
        decode(&bytes[at..]).is_ok_and(|frame| {
            frame.kind == KIND_ENTRY && last.is_none_or(|last| frame.log_id.index > last)
        })
    })
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SEGMENT_SUFFIX}"))
}

fn open_segment_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(StoreError::io("open", path))
}

impl LogFiles {
    /// Opens (or creates) the log in `dir`, checking every frame.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(LogFiles, Recovered), StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
        if dir.join("conf").exists() && dir.join("db").exists() {
            return Err(StoreError::Corrupt(format!(
                "{} holds a raft log in the sled format of earlier versions, which this \
                 version does not read; start this node with an empty data directory",
                dir.display()
            )));
        }
        let meta_path = dir.join(META_FILE);
        let meta: Meta = match std::fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("{} is unreadable: {e}", meta_path.display()))
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Meta::default(),
            Err(error) => return Err(StoreError::io("read", &meta_path)(error)),
        };
        let mut firsts = Vec::new();
        for dirent in std::fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
            let dirent = dirent.map_err(StoreError::io("list", dir))?;
            let name = dirent.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|stem| stem.parse::<u64>().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let purged = meta.purged.map(|id| id.index);
        let mut state = State::default();
        let mut committed = None;
        for (position, &first) in firsts.iter().enumerate() {
            let is_last = position + 1 == firsts.len();
            let path = segment_path(dir, first);
            let bytes = std::fs::read(&path).map_err(StoreError::io("read", &path))?;
            let mut offset = 0usize;
            let mut last = None;
            while offset < bytes.len() {
                let frame = match decode(&bytes[offset..]) {
                    Ok(frame) => frame,
                    // Zeros written ahead of the frames: the end.
                    Err(_) if bytes[offset..].iter().all(|byte| *byte == 0) => break,
                    Err(what) if is_last && !intact_frame_after(&bytes, offset, last) => {
                        warn!(
                            segment = %path.display(),
                            offset,
                            what,
                            "cutting off the torn tail of the raft log"
                        );
                        break;
                    }
                    Err(what) => return Err(corrupt(&path, offset as u64, what)),
                };
                let index = frame.log_id.index;
                if frame.kind == KIND_COMMITTED {
                    committed = Some(frame.log_id);
                } else {
                    last = Some(index);
                    if purged.is_none_or(|purged| index > purged) {
                        let at = Location {
                            segment: first,
                            offset: offset as u64,
                            len: frame.len as u32,
                            log_id: frame.log_id,
                        };
                        state.index.insert(index, at);
                    }
                }
                offset += frame.len;
            }
            let file = open_segment_file(&path)?;
            let mut allocated = bytes.len() as u64;
            if offset < bytes.len() && bytes[offset..].iter().any(|byte| *byte != 0) {
                allocated = offset as u64;
                file.set_len(offset as u64)
                    .map_err(StoreError::io("truncate", &path))?;
                file.sync_data().map_err(StoreError::io("fsync", &path))?;
            }
            state.segments.insert(
                first,
                Segment {
                    path,
                    file: Arc::new(file),
                    len: offset as u64,
                    allocated,
                    last,
                },
            );
        }
        let end = state
            .index
            .last_key_value()
            .map(|(index, _)| *index)
            .max(purged);
        let committed = committed.filter(|id| end.is_some_and(|end| id.index <= end));
        let files = LogFiles {
            dir: dir.to_path_buf(),
            segment_bytes,
            state: Mutex::new(state),
            writer: Mutex::new(()),
        };
        Ok((files, Recovered { meta, committed }))
    }

    /// Replaces the metadata file, durably.
    pub fn save_meta(&self, meta: &Meta) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(meta).expect("the metadata serializes");
        write_atomic(&self.dir, META_FILE, &bytes)
    }

    /// The id of the last entry written.
    pub fn last_log_id(&self) -> Option<LogId> {
        let state = self.state.lock().expect("not poisoned");
        state.index.last_key_value().map(|(_, at)| at.log_id)
    }

    /// The id of the written entry at `index`.
    pub fn log_id_at(&self, index: u64) -> Option<LogId> {
        let state = self.state.lock().expect("not poisoned");
        state.index.get(&index).map(|at| at.log_id)
    }

    /// Appends `frames` in one write, then `fdatasync`s if `sync`. Entries
    /// must follow the last one written (or a purge, or a truncation).
    pub fn append(&self, frames: &[Frame], sync: bool) -> Result<(), StoreError> {
        let _writer = self.writer.lock().expect("not poisoned");
        let mut bytes = Vec::new();
        let mut written = Vec::new();
        for frame in frames {
            let at = bytes.len() as u64;
            encode(frame, &mut bytes);
            if let Frame::Entry(log_id, _) = frame {
                written.push((*log_id, at, bytes.len() as u64 - at));
            }
        }
        let first_entry = written.first().map(|(log_id, _, _)| log_id.index);
        let (first, path, file, base, allocated) = {
            let mut state = self.state.lock().expect("not poisoned");
            let active_len = state.segments.last_key_value().map(|(_, s)| s.len);
            let roll = match (active_len, first_entry) {
                (None, None) => return Ok(()),
                (None, Some(_)) => true,
                (Some(len), Some(_)) => len > 0 && len + bytes.len() as u64 > self.segment_bytes,
                (Some(_), None) => false,
            };
            if roll {
                let first = first_entry.expect("a roll needs an entry");
                let path = segment_path(&self.dir, first);
                let file = open_segment_file(&path)?;
                file.set_len(0).map_err(StoreError::io("truncate", &path))?;
                sync_dir(&self.dir)?;
                state.segments.insert(
                    first,
                    Segment {
                        path,
                        file: Arc::new(file),
                        len: 0,
                        allocated: 0,
                        last: None,
                    },
                );
            }
            let (first, active) = state.segments.last_key_value().expect("an active segment");
            (
                *first,
                active.path.clone(),
                Arc::clone(&active.file),
                active.len,
                active.allocated,
            )
        };
        let end = base + bytes.len() as u64;
        let allocated = if end > allocated {
            let grown = end.next_multiple_of(PREALLOCATE_BYTES);
            let zeros = vec![0; (grown - allocated) as usize];
            file.write_all_at(&zeros, allocated)
                .map_err(StoreError::io("extend", &path))?;
            grown
        } else {
            allocated
        };
        file.write_all_at(&bytes, base)
            .map_err(StoreError::io("write", &path))?;
        if sync {
            file.sync_data().map_err(StoreError::io("fsync", &path))?;
        }
        let mut state = self.state.lock().expect("not poisoned");
        let active = state.segments.get_mut(&first).expect("the active segment");
        active.len = end;
        active.allocated = allocated;
        if let Some((log_id, _, _)) = written.last() {
            active.last = Some(log_id.index);
        }
        for (log_id, at, len) in written {
            state.index.insert(
                log_id.index,
                Location {
                    segment: first,
                    offset: base + at,
                    len: len as u32,
                    log_id,
                },
            );
        }
        Ok(())
    }

    /// The JSON of the written entries with indexes in `range`, in order,
    /// each checked against its checksum.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<(LogId, Vec<u8>)>, StoreError> {
        // Runs of adjacent frames in one segment, each read with one pread.
        let mut runs: Vec<Run> = Vec::new();
        {
            let state = self.state.lock().expect("not poisoned");
            for (_, at) in state.index.range(range) {
                match runs.last_mut() {
                    Some(run) if run.segment == at.segment && run.start + run.len == at.offset => {
                        run.len += u64::from(at.len);
                        run.ids.push(at.log_id);
                    }
                    _ => {
                        let segment = &state.segments[&at.segment];
                        runs.push(Run {
                            segment: at.segment,
                            path: segment.path.clone(),
                            file: Arc::clone(&segment.file),
                            start: at.offset,
                            len: u64::from(at.len),
                            ids: vec![at.log_id],
                        });
                    }
                }
            }
        }
        let mut entries = Vec::new();
        for Run {
            path,
            file,
            start,
            len,
            ids,
            ..
        } in runs
        {
            let mut bytes = vec![0; len as usize];
            file.read_exact_at(&mut bytes, start)
                .map_err(StoreError::io("read", &path))?;
            let mut offset = 0usize;
            for id in ids {
                let frame = decode(&bytes[offset..])
                    .map_err(|what| corrupt(&path, start + offset as u64, what))?;
                if frame.kind != KIND_ENTRY || frame.log_id != id {
                    return Err(corrupt(
                        &path,
                        start + offset as u64,
                        "the frame is not the entry the index expects",
                    ));
                }
                entries.push((id, frame.payload.to_vec()));
                offset += frame.len;
            }
        }
        Ok(entries)
    }

    /// Removes every entry at or after `from`, durably: later segments are
    /// deleted (newest first), then the segment holding `from` is cut.
    pub fn truncate(&self, from: u64) -> Result<(), StoreError> {
        let _writer = self.writer.lock().expect("not poisoned");
        let mut state = self.state.lock().expect("not poisoned");
        let cut = state.index.get(&from).copied();
        state.index.split_off(&from);
        let doomed: Vec<u64> = state
            .segments
            .range(from..)
            .map(|(first, _)| *first)
            .collect();
        for first in doomed.iter().rev() {
            let segment = state.segments.remove(first).expect("listed");
            std::fs::remove_file(&segment.path).map_err(StoreError::io("remove", &segment.path))?;
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        if let Some(cut) = cut.filter(|cut| cut.segment < from) {
            let segment = state.segments.get_mut(&cut.segment).expect("indexed");
            segment
                .file
                .set_len(cut.offset)
                .map_err(StoreError::io("truncate", &segment.path))?;
            segment
                .file
                .sync_data()
                .map_err(StoreError::io("fsync", &segment.path))?;
            segment.len = cut.offset;
            segment.allocated = cut.offset;
            segment.last = from.checked_sub(1);
        }
        Ok(())
    }

    /// Forgets every entry at or below `upto` and deletes the segments that
    /// hold nothing else (never the active one). Save the purged id in the
    /// metadata first: it, not the files, bounds the log at the next open.
    pub fn purge(&self, upto: u64) -> Result<(), StoreError> {
        let _writer = self.writer.lock().expect("not poisoned");
        let mut state = self.state.lock().expect("not poisoned");
        state.index = state.index.split_off(&(upto + 1));
        let active = state.segments.last_key_value().map(|(first, _)| *first);
        let doomed: Vec<u64> = state
            .segments
            .iter()
            .filter(|(first, segment)| {
                Some(**first) != active && segment.last.is_none_or(|last| last <= upto)
            })
            .map(|(first, _)| *first)
            .collect();
        for first in doomed {
            let segment = state.segments.remove(&first).expect("listed");
            std::fs::remove_file(&segment.path).map_err(StoreError::io("remove", &segment.path))?;
        }
        Ok(())
    }

    /// How many segment files the log has.
    #[cfg(test)]
    fn segment_count(&self) -> usize {
        self.state.lock().expect("not poisoned").segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Frame {
        Frame::Entry(id(term, index), format!("{{\"i\":{index}}}").into_bytes())
    }

    fn indexes(files: &LogFiles) -> Vec<u64> {
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

    #[test]
    fn a_torn_tail_is_cut_off_and_the_log_goes_on() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("opens");
        files
            .append(&[entry(1, 1), entry(1, 2), entry(1, 3)], true)
            .expect("appends");
        drop(files);
        // The last frame's second half never reached the disk.
        let path = segment_path(dir.path(), 1);
        let frame_bytes = {
            let mut bytes = Vec::new();
            encode(&entry(1, 3), &mut bytes);
            bytes.len() as u64
        };
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|file| file.write_all_at(&[0; 20], 3 * frame_bytes - 20))
            .expect("tears the tail");
        let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
        assert_eq!(indexes(&files), vec![1, 2]);
        files.append(&[entry(2, 3)], true).expect("appends");
        drop(files);
        let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
        assert_eq!(indexes(&files), vec![1, 2, 3]);
        assert_eq!(files.log_id_at(3), Some(id(2, 3)));
    }

    /// Writes `entries` one group each in segments of `segment_bytes`,
    /// flips the byte at `at` of the first segment, and opens the log again:
    /// the error, after checking that it names the segment and that nothing
    /// was cut off it.
    fn open_with_a_flipped_byte(entries: u64, segment_bytes: u64, at: usize) -> String {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), segment_bytes).expect("opens");
        for index in 1..=entries {
            files.append(&[entry(1, index)], true).expect("appends");
        }
        drop(files);
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).expect("reads");
        bytes[at] ^= 0xff;
        std::fs::write(&path, &bytes).expect("writes");
        let error = LogFiles::open(dir.path(), segment_bytes).expect_err("damage is found");
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        let kept = std::fs::read(&path).expect("reads");
        assert_eq!(kept, bytes, "nothing is cut off a damaged segment");
        message
    }

    #[test]
    fn damage_before_the_last_segment_is_named() {
        let message = open_with_a_flipped_byte(6, 100, 20);
        assert!(message.contains("checksum"), "{message}");
    }

    #[test]
    fn damage_with_intact_entries_after_it_is_named_not_cut() {
        let message = open_with_a_flipped_byte(5, SEGMENT_BYTES, 60);
        assert!(message.contains("damaged at byte 40"), "{message}");
    }

    #[test]
    fn a_raft_log_of_the_earlier_sled_format_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("conf"), b"segment_size: 524288").expect("writes");
        std::fs::write(dir.path().join("db"), b"sled").expect("writes");
        let error = LogFiles::open(dir.path(), SEGMENT_BYTES).expect_err("refused");
        let message = error.to_string();
        assert!(message.contains("sled format"), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
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
        assert!(error.to_string().contains("checksum"), "{error}");
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
        drop(files);
        let (files, recovered) = LogFiles::open(dir.path(), 150).expect("reopens");
        assert_eq!(recovered.meta.purged, Some(id(1, 4)));
        assert_eq!(indexes(&files), (5..=10).collect::<Vec<_>>());
        assert_eq!(files.last_log_id(), Some(id(2, 10)));
        assert_eq!(files.log_id_at(8), Some(id(1, 8)));
    }
}
