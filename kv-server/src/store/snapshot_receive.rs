//! The receiving end of a snapshot sent in chunks: a partial file per
//! snapshot id in `data/snapshot/receiving/`, grown chunk by chunk and
//! checked whole before it is handed over.
//!
//! The partial file's length is what the receiver holds; it survives a cut
//! connection, a restarted sender and a restarted receiver, so a transfer
//! resumes where it stopped. Chunks are not fsynced one by one: a crash may
//! leave a damaged tail, which the whole file's CRC32C catches at the end
//! (the transfer then starts over); the finished file is fsynced once.
//!
//! Every method does blocking file I/O and is called on the blocking pool.
//! One mutex orders the calls, so two requests (a sender's retry beside
//! its timed-out first try) never write the same file at once.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use compaction::fsutil;
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::error::StoreError;
use crate::snapshot_transfer::SnapshotEnd;
use crate::store::snapshot::SnapshotFile;

/// The directory of partial and received snapshots, under the snapshot dir.
const RECEIVING_DIR: &str = "receiving";
/// Suffix of a snapshot still arriving.
const PARTIAL_SUFFIX: &str = ".part";
/// Suffix of a snapshot received whole and checked.
const RECEIVED_SUFFIX: &str = ".snap";
/// The longest snapshot id taken as a file name.
const MAX_ID_BYTES: usize = 128;
/// Bytes read at a time to checksum a received file.
const CHECK_READ_BYTES: usize = 1 << 20;

/// Why a chunk was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The snapshot id cannot name a file.
    #[error("snapshot id {id:?} is not 1-{MAX_ID_BYTES} of [A-Za-z0-9._-]")]
    BadId {
        /// The id.
        id: String,
    },
    /// The chunk does not start where the held bytes end.
    #[error("chunk at byte {offset} of snapshot {id} refused: {held} bytes are held")]
    WrongOffset {
        /// The snapshot.
        id: String,
        /// Where the chunk starts.
        offset: u64,
        /// Bytes held.
        held: u64,
    },
    /// The chunk's bytes do not match its CRC32C.
    #[error(
        "chunk at byte {offset} of snapshot {id} refused: CRC32C {actual:#010x}, \
         the sender's {expected:#010x}"
    )]
    ChunkCrc {
        /// The snapshot.
        id: String,
        /// Where the chunk starts.
        offset: u64,
        /// The CRC the sender computed.
        expected: u32,
        /// The CRC of the bytes that arrived.
        actual: u32,
    },
    /// The snapshot would grow past `--max-snapshot-bytes`.
    #[error("snapshot {id} would grow to {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// The snapshot.
        id: String,
        /// Its length with this chunk.
        len: u64,
        /// `--max-snapshot-bytes`.
        limit: u64,
    },
    /// The whole file does not match what the last chunk announced, or
    /// does not decode: it is dropped and the transfer starts over.
    #[error("snapshot {id} received whole is damaged: {reason}")]
    Damaged {
        /// The snapshot.
        id: String,
        /// What failed, naming the byte.
        reason: String,
    },
    /// The file system failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReceiveError {
    /// Bytes the receiver holds after this refusal, for the sender to go
    /// on from; `None` where no chunk of this snapshot can be taken.
    pub fn held(&self) -> Option<u64> {
        match self {
            ReceiveError::WrongOffset { held, .. } => Some(*held),
            ReceiveError::ChunkCrc { offset, .. } => Some(*offset),
            ReceiveError::Damaged { .. } => Some(0),
            ReceiveError::BadId { .. } | ReceiveError::TooLarge { .. } | ReceiveError::Store(_) => {
                None
            }
        }
    }
}

/// The partial snapshots of one node.
pub struct SnapshotReceiver {
    dir: PathBuf,
    max_bytes: u64,
    /// Orders the calls: held only on the blocking pool, across file I/O.
    turn: Mutex<()>,
}

impl SnapshotReceiver {
    /// The receiver keeping its files under `snapshot_dir`, refusing
    /// snapshots over `max_bytes`.
    pub fn new(snapshot_dir: &Path, max_bytes: u64) -> SnapshotReceiver {
        SnapshotReceiver {
            dir: snapshot_dir.join(RECEIVING_DIR),
            max_bytes,
            turn: Mutex::new(()),
        }
    }

    /// Writes the chunk `data` at `offset` of snapshot `id`, if it starts
    /// where the held bytes end and matches `crc32c`; returns the bytes
    /// held after it. An empty chunk writes nothing: it asks what is held.
    pub fn accept(
        &self,
        id: &str,
        offset: u64,
        data: &[u8],
        crc32c: u32,
    ) -> Result<u64, ReceiveError> {
        check_id(id)?;
        let _turn = self.turn.lock();
        let partial = self.partial_path(id);
        let held = std::fs::metadata(&partial).map_or(0, |meta| meta.len());
        if offset != held {
            return Err(ReceiveError::WrongOffset {
                id: id.to_string(),
                offset,
                held,
            });
        }
        let actual = crc32c::crc32c(data);
        if actual != crc32c {
            return Err(ReceiveError::ChunkCrc {
                id: id.to_string(),
                offset,
                expected: crc32c,
                actual,
            });
        }
        let len = offset + data.len() as u64;
        if len > self.max_bytes {
            return Err(ReceiveError::TooLarge {
                id: id.to_string(),
                len,
                limit: self.max_bytes,
            });
        }
        if offset == 0 {
            // A new transfer: whatever else was arriving is superseded.
            self.remove_all_but(id)?;
        }
        if data.is_empty() {
            return Ok(held);
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&partial)
            .map_err(StoreError::io("open", &partial))?;
        file.write_all_at(data, offset)
            .map_err(StoreError::io("write", &partial))?;
        Ok(len)
    }

    /// Checks the whole of snapshot `id` against `end` (length, CRC32C,
    /// header and every record), fsyncs it and returns it under its
    /// received name. A damaged file is removed, so the sender starts over.
    pub fn finish(&self, id: &str, end: SnapshotEnd) -> Result<PathBuf, ReceiveError> {
        check_id(id)?;
        let _turn = self.turn.lock();
        let partial = self.partial_path(id);
        let held = std::fs::metadata(&partial).map_or(0, |meta| meta.len());
        if held != end.len {
            return Err(ReceiveError::WrongOffset {
                id: id.to_string(),
                offset: end.len,
                held,
            });
        }
        if let Err(reason) = check_whole(&partial, end) {
            warn!(snapshot = id, %reason, "dropped a damaged snapshot; the transfer starts over");
            fsutil::remove_if_exists(&partial).map_err(StoreError::from)?;
            return Err(ReceiveError::Damaged {
                id: id.to_string(),
                reason,
            });
        }
        let received = received_path_in(&self.dir, id);
        std::fs::rename(&partial, &received).map_err(StoreError::io("rename", &received))?;
        fsutil::fsync_dir(&self.dir).map_err(StoreError::from)?;
        info!(snapshot = id, bytes = end.len, "received a snapshot whole");
        Ok(received)
    }

    /// Removes snapshot `id` received whole, once it is installed (or
    /// refused by Raft).
    pub fn remove_received(&self, id: &str) -> Result<(), StoreError> {
        let _turn = self.turn.lock();
        Ok(fsutil::remove_if_exists(&received_path_in(&self.dir, id))?)
    }

    fn partial_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{PARTIAL_SUFFIX}"))
    }

    /// Makes the directory exist holding no file but `id`'s.
    fn remove_all_but(&self, id: &str) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(StoreError::io("create directory", &self.dir))?;
        let entries = std::fs::read_dir(&self.dir).map_err(StoreError::io("list", &self.dir))?;
        for entry in entries {
            let path = entry.map_err(StoreError::io("list", &self.dir))?.path();
            if path != self.partial_path(id) {
                fsutil::remove_if_exists(&path)?;
            }
        }
        Ok(())
    }
}

/// Where snapshot `id` lies once received whole, under `snapshot_dir`.
pub fn received_path(snapshot_dir: &Path, id: &str) -> PathBuf {
    received_path_in(&snapshot_dir.join(RECEIVING_DIR), id)
}

fn received_path_in(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}{RECEIVED_SUFFIX}"))
}

/// Refuses an id that could name a file outside the directory.
fn check_id(id: &str) -> Result<(), ReceiveError> {
    let fits = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
    if fits {
        Ok(())
    } else {
        Err(ReceiveError::BadId { id: id.to_string() })
    }
}

/// Checks the file at `path` against `end`, then its header and records;
/// fsyncs it. Reads a chunk at a time.
fn check_whole(path: &Path, end: SnapshotEnd) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut crc = 0u32;
    let mut buf = vec![0u8; CHECK_READ_BYTES];
    let mut position = 0u64;
    while position < end.len {
        let want = CHECK_READ_BYTES.min((end.len - position) as usize);
        file.read_exact_at(&mut buf[..want], position)
            .map_err(|e| format!("read {} at byte {position}: {e}", path.display()))?;
        crc = crc32c::crc32c_append(crc, &buf[..want]);
        position += want as u64;
    }
    if crc != end.crc32c {
        return Err(format!(
            "CRC32C {crc:#010x} of its {} bytes, the sender's {:#010x}",
            end.len, end.crc32c
        ));
    }
    file.sync_all()
        .map_err(|e| format!("fsync {}: {e}", path.display()))?;
    let snapshot = SnapshotFile::from_file(file, path).map_err(|e| e.to_string())?;
    snapshot.check_records().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use compaction::{Record, Topic, TopicConfig};
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership};

    use super::*;
    use crate::store::snapshot::SnapshotHeader;

    const ID: &str = "2-900-1700000000000";

    /// The bytes of a real snapshot of `keys` keys.
    fn snapshot_bytes(keys: u64) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let topic = Topic::open(dir.path().join("topic"), TopicConfig::default()).expect("opens");
        let records: Vec<Record> = (1..=keys)
            .map(|offset| Record::put(offset, 1_000, format!("k{offset}"), "\"v\""))
            .collect();
        topic.append(&records).expect("appends");
        let header = SnapshotHeader::new(
            SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 900)),
                last_membership: StoredMembership::default(),
                snapshot_id: ID.into(),
            },
            keys,
            0,
        );
        let built =
            SnapshotFile::build_in(dir.path(), header, topic.read_from(0), None).expect("builds");
        built.store(dir.path()).expect("stores");
        std::fs::read(dir.path().join(crate::store::snapshot::CURRENT_FILE)).expect("reads")
    }

    fn end_of(bytes: &[u8]) -> SnapshotEnd {
        SnapshotEnd {
            len: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        }
    }

    /// Sends `bytes[from..to]` in chunks of `chunk` bytes, as a sender does.
    fn send(receiver: &SnapshotReceiver, bytes: &[u8], from: usize, to: usize, chunk: usize) {
        let mut at = from;
        while at < to {
            let piece = &bytes[at..(at + chunk).min(to)];
            let held = receiver
                .accept(ID, at as u64, piece, crc32c::crc32c(piece))
                .expect("a chunk at the held offset is taken");
            at += piece.len();
            assert_eq!(held, at as u64);
        }
    }

    #[test]
    fn a_chunk_with_a_bad_crc_is_refused_naming_its_offset_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let receiver = SnapshotReceiver::new(dir.path(), u64::MAX);
        let bytes = snapshot_bytes(50);
        send(&receiver, &bytes, 0, 100, 100);
        let damaged = crc32c::crc32c(&bytes[100..200]) ^ 1;
        let error = receiver
            .accept(ID, 100, &bytes[100..200], damaged)
            .expect_err("a bad CRC is refused");
        assert!(
            matches!(error, ReceiveError::ChunkCrc { offset: 100, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("chunk at byte 100"), "{error}");
        assert_eq!(
            error.held(),
            Some(100),
            "the sender resends from the held bytes"
        );
        let held = receiver.accept(ID, 0, &[], 0);
        assert!(
            matches!(held, Err(ReceiveError::WrongOffset { held: 100, .. })),
            "{held:?}"
        );
    }

    #[test]
    fn a_chunk_at_another_offset_than_the_held_bytes_is_refused_with_the_held_offset() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let receiver = SnapshotReceiver::new(dir.path(), u64::MAX);
        let bytes = snapshot_bytes(50);
        send(&receiver, &bytes, 0, 300, 100);
        for offset in [200, 400] {
            let piece = &bytes[offset..offset + 50];
            let error = receiver
                .accept(ID, offset as u64, piece, crc32c::crc32c(piece))
                .expect_err("a chunk elsewhere than the end is refused");
            assert_eq!(error.held(), Some(300), "{error}");
            assert!(
                error
                    .to_string()
                    .contains(&format!("chunk at byte {offset}")),
                "{error}"
            );
        }
    }

    #[test]
    fn a_transfer_resumed_by_a_new_receiver_yields_the_identical_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let bytes = snapshot_bytes(2_000);
        let cut = bytes.len() / 2 + 17;
        send(
            &SnapshotReceiver::new(dir.path(), u64::MAX),
            &bytes,
            0,
            cut,
            1000,
        );
        // A restarted node: it knows what it holds from the partial file.
        let receiver = SnapshotReceiver::new(dir.path(), u64::MAX);
        let held = receiver
            .accept(ID, 0, &[], 0)
            .expect_err("an empty chunk asks");
        assert_eq!(held.held(), Some(cut as u64));
        send(&receiver, &bytes, cut, bytes.len(), 777);
        let received = receiver.finish(ID, end_of(&bytes)).expect("checks whole");
        assert_eq!(std::fs::read(&received).expect("reads"), bytes);
        let snapshot = SnapshotFile::open(&received).expect("opens");
        assert_eq!(snapshot.check_records().expect("decodes"), 2_000);
    }

    #[test]
    fn a_whole_file_that_does_not_match_its_checksum_is_dropped_and_starts_over() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let receiver = SnapshotReceiver::new(dir.path(), u64::MAX);
        let bytes = snapshot_bytes(100);
        // A byte changed in a chunk whose own CRC was computed on it (as a
        // receiver's torn write after a crash would look).
        let mut damaged = bytes.clone();
        damaged[bytes.len() - 5] ^= 0x40;
        send(&receiver, &damaged, 0, damaged.len(), 512);
        let error = receiver.finish(ID, end_of(&bytes)).expect_err("refused");
        assert!(matches!(error, ReceiveError::Damaged { .. }), "{error:?}");
        assert_eq!(error.held(), Some(0));
        let held = receiver.accept(ID, 0, &[], 0).expect("nothing is held");
        assert_eq!(held, 0);
    }

    #[test]
    fn a_snapshot_over_the_limit_or_with_an_unsafe_id_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let receiver = SnapshotReceiver::new(dir.path(), 1_000);
        let piece = [7u8; 600];
        let crc = crc32c::crc32c(&piece);
        receiver
            .accept(ID, 0, &piece, crc)
            .expect("under the limit");
        let error = receiver.accept(ID, 600, &piece, crc).expect_err("over");
        assert!(
            matches!(error, ReceiveError::TooLarge { len: 1200, .. }),
            "{error:?}"
        );
        for id in ["../current", "", ".hidden", "a/b"] {
            let error = receiver.accept(id, 0, &[], 0).expect_err("refused");
            assert!(
                matches!(error, ReceiveError::BadId { .. }),
                "{id}: {error:?}"
            );
        }
    }
}
