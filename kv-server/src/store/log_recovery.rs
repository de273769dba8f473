//! Opening the raft log: reading its metadata, checking every frame of every
//! segment, and deciding what a crash left unwritten and what is damage.
//!
//! Zeros after the last frame are space written ahead, not damage. In the
//! last segment, a frame running past the end of the file (with no intact
//! entry after it), or a frame with a whole sector of zeros, is a write
//! that never landed: the segment ends there, frames after it included
//! (see `compaction::torn`, and docs/decisions.md for why nothing cut can
//! have been acknowledged) — unless a later write follows it: each synced
//! write ends with a `synced` frame, and a write goes out only once the
//! one before it was synced, so a sector of zeros before such a mark and a
//! write after it is damage. Those bytes are cut from the file only before
//! the log's first write ([`TornTail`]), so a node that the checks after
//! opening stop (a log that ends before what the view applied) leaves the
//! file as it found it. Anything else stops the node with an error that
//! names the file and the byte; nothing is cut then.

use std::path::Path;
use std::sync::Arc;

use compaction::{fsutil, torn};
use tracing::warn;

use crate::error::StoreError;
use crate::store::log_files::{
    open_segment_file, segment_first, segment_path, Location, Meta, Segment, Segments, META_FILE,
};
use crate::store::log_frame::{self, FrameDamage, FrameKind};
use crate::types::LogId;

/// Files whose presence together marks the sled database earlier versions
/// kept the raft log in.
const SLED_FILES: [&str; 2] = ["conf", "db"];

/// What the log's directory holds, checked.
#[derive(Debug)]
pub(super) struct Opened {
    /// The metadata file, or the default if there is none yet.
    pub meta: Meta,
    /// Every segment and every entry above the purged id.
    pub segments: Segments,
    /// The last committed id written that the log still covers.
    pub committed: Option<LogId>,
    /// The unwritten tail of the last segment, still in the file.
    pub torn: Option<TornTail>,
}

/// The bytes a crash left unwritten at the end of the last segment: left
/// out of the log's entries at once, cut from the file before the log's
/// first write (`LogFiles::cut_torn_tail`).
#[derive(Debug)]
pub(super) struct TornTail {
    /// The segment file.
    pub path: std::path::PathBuf,
    /// Where the last intact frame ends: the file's new length.
    pub offset: u64,
}

/// Opens (or creates) the log's directory `dir` and checks every frame,
/// cutting off a torn tail.
pub(super) fn recover(dir: &Path) -> Result<Opened, StoreError> {
    std::fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
    if SLED_FILES.iter().all(|name| dir.join(name).exists()) {
        return Err(StoreError::LogInSledFormat {
            dir: dir.to_path_buf(),
        });
    }
    let meta = read_meta(dir)?;
    let firsts = list_segments(dir)?;
    let purged = meta.purged.map(|id| id.index);
    let mut segments = Segments::default();
    let mut committed = None;
    let mut torn = None;
    for (position, &first) in firsts.iter().enumerate() {
        let is_last = position + 1 == firsts.len();
        let scanned = scan_segment(dir, first, is_last, purged, &mut segments)?;
        committed = scanned.committed.or(committed);
        torn = scanned.torn;
    }
    let end = segments
        .last_location()
        .map(|at| at.log_id.index)
        .max(purged);
    // A committed id past the end of the log was written after entries a
    // truncation removed since: it no longer holds.
    let committed = committed.filter(|id: &LogId| end.is_some_and(|end| id.index <= end));
    Ok(Opened {
        meta,
        segments,
        committed,
        torn,
    })
}

/// The metadata file, or the default if there is none yet.
fn read_meta(dir: &Path) -> Result<Meta, StoreError> {
    let path = dir.join(META_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => fsutil::from_checked_json(&bytes)
            .map_err(|reason| StoreError::LogMetaUnreadable { path, reason }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Meta::default()),
        Err(error) => Err(StoreError::io("read", &path)(error)),
    }
}

/// The first indexes of the segment files in `dir`, in order.
fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut firsts = Vec::new();
    for dirent in std::fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        let dirent = dirent.map_err(StoreError::io("list", dir))?;
        if let Some(first) = segment_first(&dirent.file_name().to_string_lossy()) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// What a segment's scan found beside its entries.
struct Scanned {
    /// The last committed id the segment holds.
    committed: Option<LogId>,
    /// Its unwritten tail, if it has one.
    torn: Option<TornTail>,
}

/// Checks the segment starting at `first` and adds it and its entries
/// above `purged` to `segments`.
fn scan_segment(
    dir: &Path,
    first: u64,
    is_last: bool,
    purged: Option<u64>,
    segments: &mut Segments,
) -> Result<Scanned, StoreError> {
    let path = segment_path(dir, first);
    let bytes = std::fs::read(&path).map_err(StoreError::io("read", &path))?;
    let mut offset = 0usize;
    let mut last = None;
    let mut committed = None;
    while offset < bytes.len() {
        let frame = match log_frame::decode(&bytes[offset..]) {
            Ok(frame) => frame,
            // Zeros written ahead of the frames: the end.
            Err(_) if torn::all_zero(&bytes[offset..]) => break,
            Err(damage) if is_last && never_written(&bytes, offset, damage, last) => {
                warn!(
                    segment = %path.display(),
                    offset,
                    cut_bytes = bytes.len() - offset,
                    %damage,
                    "a crash left the raft log's tail unwritten: the log ends before it, and the next write cuts it off"
                );
                break;
            }
            Err(damage) => {
                return Err(StoreError::LogFrameDamaged {
                    path,
                    offset: offset as u64,
                    damage,
                })
            }
        };
        let index = frame.log_id.index;
        match frame.kind {
            FrameKind::Committed => committed = Some(frame.log_id),
            FrameKind::Synced => {}
            FrameKind::Entry => {
                last = Some(index);
                if purged.is_none_or(|purged| index > purged) {
                    let location = Location {
                        segment: first,
                        offset: offset as u64,
                        len: frame.len as u32,
                        log_id: frame.log_id,
                    };
                    segments.insert(index, location);
                }
            }
        }
        offset += frame.len;
    }
    let file = open_segment_file(&path)?;
    let mut allocated = bytes.len() as u64;
    let mut torn = None;
    if bytes[offset..].iter().any(|byte| *byte != 0) {
        // A torn tail: cut before the next append, which then starts on
        // clean space.
        allocated = offset as u64;
        torn = Some(TornTail {
            path: path.clone(),
            offset: offset as u64,
        });
    }
    let segment = Segment {
        path,
        file: Arc::new(file),
        len: offset as u64,
        allocated,
        last,
    };
    segments.by_first.insert(first, segment);
    Ok(Scanned { committed, torn })
}

/// Whether the frame of the last segment at `at`, which fails to decode
/// with `damage`, is a write that never landed rather than damage: it runs
/// past the end of the file (and no intact entry past `last` follows), or
/// a sector of it reads as zeros.
fn never_written(bytes: &[u8], at: usize, damage: FrameDamage, last: Option<u64>) -> bool {
    // The frame, and the rest of the sector it ends in: a frame ending in
    // zeros by content (an index's high bytes) with written bytes after
    // it in the same sector was written, as a disk writes a sector whole.
    let end = at + log_frame::declared_len(&bytes[at..]);
    let sector_end = (end as u64).next_multiple_of(torn::SECTOR_BYTES) as usize;
    let frame = &bytes[at..sector_end.min(bytes.len())];
    match damage {
        FrameDamage::HeaderCutShort | FrameDamage::BodyCutShort => {
            !intact_entry_after(bytes, at, last)
        }
        FrameDamage::ImpossibleLength { .. } | FrameDamage::ChecksumMismatch => {
            torn::has_unwritten_sector(at as u64, frame) && !later_write_after(bytes, at)
        }
        // The checksum holds: every byte is as written.
        FrameDamage::UnknownKind { .. } => false,
    }
}

/// Whether a write that followed a synced one starts after the damaged
/// frame at `damaged`: an intact `synced` frame with an intact frame right
/// after it. A write goes out only once the synced write before it
/// returned, so everything before that mark was durable, and a sector of
/// zeros in it is damage, not a write that never landed. (Within the last
/// write a power cut may land later sectors and lose earlier ones, so
/// intact frames alone prove nothing.) Only offsets declaring a mark's
/// length are checksummed, 33 bytes each, so the search is linear in the
/// segment whatever the damage.
fn later_write_after(bytes: &[u8], damaged: usize) -> bool {
    (damaged + 1..bytes.len()).any(|at| {
        log_frame::declares_no_payload(&bytes[at..])
            && log_frame::decode(&bytes[at..]).is_ok_and(|mark| {
                mark.kind == FrameKind::Synced && log_frame::decode(&bytes[at + mark.len..]).is_ok()
            })
    })
}

/// Bytes the search for an intact entry after a cut-short frame may
/// checksum in all. Every byte after the damage is a candidate start, each
/// declaring up to 64 MiB, so an unbounded search over a damaged segment
/// could run for days; past this budget an entry is taken to follow, and
/// open refuses the file rather than cut it.
const INTACT_SEARCH_BYTES: usize = 256 << 20;

/// Whether an intact entry frame past `last` starts anywhere after the
/// damaged frame at `damaged`: then the damage is not a torn tail. Also
/// true when the search exceeds [`INTACT_SEARCH_BYTES`], as refusing is
/// the safe answer.
fn intact_entry_after(bytes: &[u8], damaged: usize, last: Option<u64>) -> bool {
    let mut budget = INTACT_SEARCH_BYTES;
    for at in damaged + 1..bytes.len() {
        let candidate = log_frame::declared_len(&bytes[at..]);
        let Some(left) = budget.checked_sub(candidate) else {
            return true;
        };
        budget = left;
        let intact = log_frame::decode(&bytes[at..]).is_ok_and(|frame| {
            frame.kind == FrameKind::Entry && last.is_none_or(|last| frame.log_id.index > last)
        });
        if intact {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests;
