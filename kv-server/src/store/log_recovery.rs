//! Opening the raft log: reading its metadata, checking every frame of every
//! segment, and deciding what damage is a crash's torn tail and what is
//! corruption.
//!
//! A torn or damaged frame at the end of the last segment, with no intact
//! entry frame after it, is the tail of a write a crash cut short: the
//! segment is cut there (as Kafka recovers its log). Zeros after the last
//! frame are space written ahead, not damage. Anything else stops the node
//! with an error that names the file and the byte; nothing is cut then.

use std::path::Path;
use std::sync::Arc;

use tracing::warn;

use crate::error::StoreError;
use crate::store::log_files::{
    open_segment_file, segment_first, segment_path, Location, Meta, Segment, Segments, META_FILE,
};
use crate::store::log_frame::{self, FrameKind};
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
    for (position, &first) in firsts.iter().enumerate() {
        let is_last = position + 1 == firsts.len();
        let scanned = scan_segment(dir, first, is_last, purged, &mut segments)?;
        committed = scanned.or(committed);
    }
    let end = segments
        .index
        .last_key_value()
        .map(|(index, _)| *index)
        .max(purged);
    // A committed id past the end of the log was written after entries a
    // truncation removed since: it no longer holds.
    let committed = committed.filter(|id: &LogId| end.is_some_and(|end| id.index <= end));
    Ok(Opened {
        meta,
        segments,
        committed,
    })
}

/// The metadata file, or the default if there is none yet.
fn read_meta(dir: &Path) -> Result<Meta, StoreError> {
    let path = dir.join(META_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|source| StoreError::LogMetaUnreadable { path, source }),
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

/// Checks the segment starting at `first`, adds it and its entries above
/// `purged` to `segments`, and returns the last committed id it holds.
fn scan_segment(
    dir: &Path,
    first: u64,
    is_last: bool,
    purged: Option<u64>,
    segments: &mut Segments,
) -> Result<Option<LogId>, StoreError> {
    let path = segment_path(dir, first);
    let bytes = std::fs::read(&path).map_err(StoreError::io("read", &path))?;
    let mut offset = 0usize;
    let mut last = None;
    let mut committed = None;
    while offset < bytes.len() {
        let frame = match log_frame::decode(&bytes[offset..]) {
            Ok(frame) => frame,
            // Zeros written ahead of the frames: the end.
            Err(_) if bytes[offset..].iter().all(|byte| *byte == 0) => break,
            Err(damage) if is_last && !intact_entry_after(&bytes, offset, last) => {
                warn!(
                    segment = %path.display(),
                    offset,
                    %damage,
                    "cutting off the torn tail of the raft log"
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
            FrameKind::Entry => {
                last = Some(index);
                if purged.is_none_or(|purged| index > purged) {
                    let location = Location {
                        segment: first,
                        offset: offset as u64,
                        len: frame.len as u32,
                        log_id: frame.log_id,
                    };
                    segments.index.insert(index, location);
                }
            }
        }
        offset += frame.len;
    }
    let file = open_segment_file(&path)?;
    let mut allocated = bytes.len() as u64;
    if bytes[offset..].iter().any(|byte| *byte != 0) {
        // A torn tail: cut it, so the next append starts on clean space.
        allocated = offset as u64;
        file.set_len(offset as u64)
            .map_err(StoreError::io("truncate", &path))?;
        file.sync_data().map_err(StoreError::io("fsync", &path))?;
    }
    let segment = Segment {
        path,
        file: Arc::new(file),
        len: offset as u64,
        allocated,
        last,
    };
    segments.by_first.insert(first, segment);
    Ok(committed)
}

/// Whether an intact entry frame past `last` starts anywhere after the
/// damaged frame at `damaged`: then the damage is not a torn tail.
fn intact_entry_after(bytes: &[u8], damaged: usize, last: Option<u64>) -> bool {
    (damaged + 1..bytes.len()).any(|at| {
        log_frame::decode(&bytes[at..]).is_ok_and(|frame| {
            frame.kind == FrameKind::Entry && last.is_none_or(|last| frame.log_id.index > last)
        })
    })
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::store::log_files::tests::{entry, id, indexes};
    use crate::store::log_files::{LogFiles, SEGMENT_BYTES};
    use crate::store::log_frame::{Frame, FrameDamage};

    /// Bytes of the frame `entry(1, index)` makes, for an index of one digit.
    fn frame_bytes() -> u64 {
        let mut bytes = Vec::new();
        log_frame::encode(&entry(1, 1), &mut bytes);
        bytes.len() as u64
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
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|file| file.write_all_at(&[0; 20], 3 * frame_bytes() - 20))
            .expect("tears the tail");
        let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
        assert_eq!(indexes(&files), vec![1, 2]);
        files.append(&[entry(2, 3)], true).expect("appends");
        drop(files);
        let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
        assert_eq!(indexes(&files), vec![1, 2, 3]);
        assert_eq!(files.log_id_at(3), Some(id(2, 3)));
    }

    /// What opening a log with one flipped byte must do.
    #[derive(Debug, PartialEq)]
    enum Expect {
        /// Cut the torn tail and keep these entries.
        Kept(Vec<u64>),
        /// Refuse, naming the first segment, this byte and this damage.
        Damaged { offset: u64, damage: FrameDamage },
    }

    /// Writes `entries` one group each in segments of `segment_bytes`,
    /// flips the byte at `at` of the first segment, and opens the log again.
    fn open_with_a_flipped_byte(entries: u64, segment_bytes: u64, at: u64) -> Expect {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), segment_bytes).expect("opens");
        for index in 1..=entries {
            files.append(&[entry(1, index)], true).expect("appends");
        }
        drop(files);
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).expect("reads");
        bytes[at as usize] ^= 0xff;
        std::fs::write(&path, &bytes).expect("writes");
        match LogFiles::open(dir.path(), segment_bytes) {
            Ok((files, _)) => Expect::Kept(indexes(&files)),
            Err(StoreError::LogFrameDamaged {
                path: named,
                offset,
                damage,
            }) => {
                assert_eq!(named, path, "the error names the segment");
                let kept = std::fs::read(&path).expect("reads");
                assert_eq!(kept, bytes, "nothing is cut off a damaged segment");
                Expect::Damaged { offset, damage }
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }

    #[test]
    fn damage_is_cut_only_when_it_can_be_a_torn_tail() {
        let frame = frame_bytes();
        // (case, entries, segment bytes, flipped byte, expected)
        let cases = [
            (
                "in the last frame of the last segment",
                3,
                SEGMENT_BYTES,
                2 * frame + 20,
                Expect::Kept(vec![1, 2]),
            ),
            (
                "in the length of the last frame",
                3,
                SEGMENT_BYTES,
                2 * frame,
                Expect::Kept(vec![1, 2]),
            ),
            (
                "with intact entries after it",
                5,
                SEGMENT_BYTES,
                frame + 20,
                Expect::Damaged {
                    offset: frame,
                    damage: FrameDamage::ChecksumMismatch,
                },
            ),
            (
                "before the last segment",
                6,
                100,
                20,
                Expect::Damaged {
                    offset: 0,
                    damage: FrameDamage::ChecksumMismatch,
                },
            ),
        ];
        for (case, entries, segment_bytes, at, expected) in cases {
            let found = open_with_a_flipped_byte(entries, segment_bytes, at);
            assert_eq!(found, expected, "{case}");
        }
    }

    #[test]
    fn a_damaged_frame_is_named_by_file_and_byte() {
        let Expect::Damaged { offset, damage } = open_with_a_flipped_byte(5, SEGMENT_BYTES, 60)
        else {
            panic!("damage with intact entries after it is not cut");
        };
        let error = StoreError::LogFrameDamaged {
            path: "seg.log".into(),
            offset,
            damage,
        };
        assert!(
            error.to_string().contains("seg.log is damaged at byte 40"),
            "{error}"
        );
    }

    #[test]
    fn a_committed_id_past_the_end_of_the_log_is_forgotten() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("opens");
        files
            .append(&[entry(1, 1), Frame::Committed(id(1, 2))], true)
            .expect("appends");
        drop(files);
        let (_, recovered) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
        assert_eq!(recovered.committed, None);
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
    fn unreadable_metadata_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join(META_FILE), b"{not json").expect("writes");
        let error = LogFiles::open(dir.path(), SEGMENT_BYTES).expect_err("refused");
        assert!(
            matches!(&error, StoreError::LogMetaUnreadable { path, .. }
                if path.ends_with(META_FILE)),
            "{error}"
        );
    }
}
