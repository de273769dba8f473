//! Raft snapshots in the topic's own segment format.
//!
//! A snapshot at log index `i`, where the store's revision is `r`, is what
//! a fully compacted topic would hold at `r`: the latest record of every
//! key with an offset up to `r` (tombstones included), plus every
//! record that carries a client's idempotency key and is recent enough for
//! a retry to be checked against it (so a node installing the snapshot
//! deduplicates like the others). The records are framed exactly as in a
//! segment file, in offset order, after a small header:
//!
//! ```text
//! "OMKVSNP1" | header_len: u32 LE | header (JSON: meta, tombstone floor, revision, format) | frames…
//! ```
//!
//! The header's `format` is 2. Snapshots of format 1 (no `format`, no
//! `revision`) were written while offsets were log indices; like the data
//! dirs of that time they are refused, as is a later format.
//!
//! Installing one lays the frames down as the topic's base segment and
//! rebuilds the view by replay: one format, one replay path. The current
//! snapshot is kept in `data/snapshot/current.snap` so it can be sent again
//! after a restart.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use compaction::{decode_frames_from, fsutil, Record, TopicReader};
use openraft::SnapshotMeta;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::apply::IDEMPOTENCY_WINDOW_MS;
use crate::store::record::carries_idempotency_key;
use crate::types::{Node, NodeId, Revision};

/// The first bytes of every snapshot.
const MAGIC: &[u8; 8] = b"OMKVSNP1";
/// Where the header's length (u32 LE) sits: right after the magic.
const HEADER_LEN_AT: usize = MAGIC.len();
/// Where the header's JSON starts: after the magic and its length.
const HEADER_AT: usize = HEADER_LEN_AT + std::mem::size_of::<u32>();
/// Room reserved up front for a snapshot being built; it grows as needed.
const BUILD_CAPACITY_BYTES: usize = 1 << 20;
/// File name of the current snapshot.
pub const CURRENT_FILE: &str = "current.snap";
/// The snapshot being installed, present from the moment it is durable
/// until the install is done; at start-up it means the install must be
/// done again (from this file: the current one is not it).
pub const INSTALLING_FILE: &str = "installing.snap";

/// The header format written today.
pub const HEADER_FORMAT: u32 = 2;

/// What the snapshot header records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// openraft's description of the snapshot.
    pub meta: SnapshotMeta<NodeId, Node>,
    /// The topic's tombstone floor when the snapshot was built.
    pub tombstone_floor: u64,
    /// The store's revision at `meta.last_log_id`: the snapshot holds the
    /// topic's records up to this offset.
    #[serde(default)]
    pub revision: Revision,
    /// The header's format; format 1 headers did not say.
    #[serde(default = "format_1")]
    pub format: u32,
}

/// The format of a header that names none.
fn format_1() -> u32 {
    1
}

impl SnapshotHeader {
    /// A header of today's format.
    pub fn new(
        meta: SnapshotMeta<NodeId, Node>,
        revision: Revision,
        tombstone_floor: u64,
    ) -> SnapshotHeader {
        SnapshotHeader {
            meta,
            tombstone_floor,
            revision,
            format: HEADER_FORMAT,
        }
    }
}

/// A snapshot read from bytes.
pub struct SnapshotFile {
    /// The header.
    pub header: SnapshotHeader,
    /// The whole snapshot, header included (what is sent to followers).
    pub bytes: Bytes,
    /// Where the frames start.
    frames_at: usize,
}

impl SnapshotFile {
    /// Builds a snapshot from the topic records `reader` yields, up to and
    /// including the header's revision. With the `previous` snapshot of the
    /// same topic, only the records after it are read: its records stand
    /// for those at or below its revision.
    pub fn build(
        header: SnapshotHeader,
        reader: TopicReader,
        previous: Option<&SnapshotFile>,
    ) -> Result<SnapshotFile, StoreError> {
        let revision = header.revision;
        let header_json = serde_json::to_vec(&header).expect("a snapshot header serializes");
        let mut latest: HashMap<Bytes, Record> = HashMap::new();
        let mut idempotent = Vec::new();
        let mut newest_ms = 0;
        let previous = previous.filter(|previous| {
            previous.header.meta.last_log_id.is_some() && previous.header.revision <= revision
        });
        let reader = match previous {
            Some(previous) => reader.skip_to(previous.header.revision + 1),
            None => reader,
        };
        let earlier = previous.into_iter().flat_map(|previous| previous.records());
        for record in earlier.chain(reader) {
            let record = record?;
            if record.offset > revision {
                break;
            }
            // Owned copies: the reader's buffers are not kept alive.
            let record = Record {
                key: Bytes::copy_from_slice(&record.key),
                value: record.value.as_deref().map(Bytes::copy_from_slice),
                headers: Bytes::copy_from_slice(&record.headers),
                ..record
            };
            newest_ms = newest_ms.max(record.timestamp_ms);
            if carries_idempotency_key(&record) {
                idempotent.push(record.clone());
            }
            latest.insert(record.key.clone(), record);
        }
        // A retry is checked against the window before its own timestamp; a
        // second window covers leaders whose clocks are behind.
        let keep_from = newest_ms.saturating_sub(2 * IDEMPOTENCY_WINDOW_MS);
        let mut kept: Vec<Record> = latest.into_values().collect();
        kept.extend(
            idempotent
                .into_iter()
                .filter(|record| record.timestamp_ms >= keep_from),
        );
        // The cleaner has dropped the tombstones below the floor from the
        // topic; a snapshot carried over from an earlier one drops them too.
        kept.retain(|record| record.value.is_some() || record.offset >= header.tombstone_floor);
        kept.sort_unstable_by_key(|record| record.offset);
        kept.dedup_by_key(|record| record.offset);
        let mut bytes = Vec::with_capacity(BUILD_CAPACITY_BYTES);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header_json);
        let frames_at = bytes.len();
        for record in &kept {
            record.encode_into(&mut bytes);
        }
        Ok(SnapshotFile {
            header,
            bytes: Bytes::from(bytes),
            frames_at,
        })
    }

    /// Reads a snapshot's bytes, checking its header.
    pub fn parse(name: &str, bytes: Bytes) -> Result<SnapshotFile, StoreError> {
        let bad = |reason: String| StoreError::CorruptSnapshot {
            name: name.to_string(),
            reason,
        };
        if bytes.len() < HEADER_AT || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad("not a snapshot (bad magic)".to_string()));
        }
        let header_len = u32::from_le_bytes(
            bytes[HEADER_LEN_AT..HEADER_AT]
                .try_into()
                .expect("HEADER_AT - HEADER_LEN_AT is the 4 bytes of a u32"),
        ) as usize;
        let frames_at = HEADER_AT + header_len;
        if bytes.len() < frames_at {
            return Err(bad(format!(
                "header of {header_len} bytes at byte {HEADER_AT} runs past the end ({} bytes)",
                bytes.len()
            )));
        }
        let header: SnapshotHeader = serde_json::from_slice(&bytes[HEADER_AT..frames_at])
            .map_err(|e| bad(format!("unreadable header at byte {HEADER_AT}: {e}")))?;
        if header.format > HEADER_FORMAT {
            return Err(bad(format!(
                "header format {} is newer than this server's ({HEADER_FORMAT})",
                header.format
            )));
        }
        if header.format < HEADER_FORMAT {
            return Err(bad(format!(
                "header format {} was written while topic offsets were raft log indices; \
                 this server reads format {HEADER_FORMAT} only",
                header.format
            )));
        }
        Ok(SnapshotFile {
            header,
            bytes,
            frames_at,
        })
    }

    /// The snapshot's records; an error names its byte in the snapshot.
    pub fn records(&self) -> impl Iterator<Item = compaction::Result<Record>> + '_ {
        decode_frames_from(
            &self.header.meta.snapshot_id,
            self.bytes.clone(),
            self.frames_at,
        )
    }

    /// The bytes as openraft's snapshot data.
    pub fn data(&self) -> Box<Cursor<Vec<u8>>> {
        Box::new(Cursor::new(self.bytes.to_vec()))
    }

    /// Writes the snapshot as the current one of `dir`, atomically.
    ///
    /// A snapshot built while an install ran (openraft builds beside the
    /// state machine's other work) can end after the install made a newer
    /// one current: it is not stored then, so the current snapshot never
    /// goes back behind the topic.
    pub fn store(&self, dir: &Path) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
        let _turn = CURRENT_WRITES.lock();
        let path = dir.join(CURRENT_FILE);
        if let Some(current) = read_header(&path)? {
            if current.meta.last_log_id > self.header.meta.last_log_id {
                tracing::info!(
                    built = %self.header.meta.snapshot_id,
                    current = %current.meta.snapshot_id,
                    "a newer snapshot was installed meanwhile; the one built is not kept"
                );
                return Ok(());
            }
        }
        Ok(fsutil::write_atomic(&path, &self.bytes)?)
    }

    /// Writes the snapshot as the one being installed in `dir`, atomically
    /// and durably: from then on a restart finishes the install.
    pub fn store_installing(&self, dir: &Path) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
        fsutil::fsync_dir(dir)?;
        Ok(fsutil::write_atomic(&installing_marker(dir), &self.bytes)?)
    }

    /// Reads the current snapshot of `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<SnapshotFile>, StoreError> {
        SnapshotFile::load_file(&dir.join(CURRENT_FILE))
    }

    /// Reads the snapshot an interrupted install left in `dir`, if any.
    pub fn load_installing(dir: &Path) -> Result<Option<SnapshotFile>, StoreError> {
        SnapshotFile::load_file(&installing_marker(dir))
    }

    /// Reads the snapshot at `path`, if there is one.
    fn load_file(path: &Path) -> Result<Option<SnapshotFile>, StoreError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                SnapshotFile::parse(&path.display().to_string(), Bytes::from(bytes)).map(Some)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StoreError::io("read", path)(error)),
        }
    }
}

/// Taken while `current.snap` is replaced, so that a check of what it holds
/// and the write after it are one step.
static CURRENT_WRITES: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// The header of the snapshot at `path`, read alone, if there is one.
fn read_header(path: &Path) -> Result<Option<SnapshotHeader>, StoreError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StoreError::io("open", path)(error)),
    };
    let mut bytes = vec![0; HEADER_AT];
    let mut read = |bytes: &mut [u8]| {
        file.read_exact(bytes)
            .map_err(StoreError::io("read the header of", path))
    };
    read(&mut bytes)?;
    let header_len = u32::from_le_bytes(
        bytes[HEADER_LEN_AT..HEADER_AT]
            .try_into()
            .expect("HEADER_AT - HEADER_LEN_AT is the 4 bytes of a u32"),
    ) as usize;
    // A length past the file's end fails the read rather than allocating.
    let file_len = std::fs::metadata(path)
        .map_err(StoreError::io("stat", path))?
        .len();
    if (HEADER_AT + header_len) as u64 > file_len {
        return Err(StoreError::CorruptSnapshot {
            name: path.display().to_string(),
            reason: format!(
                "header of {header_len} bytes at byte {HEADER_AT} runs past the end ({file_len} bytes)"
            ),
        });
    }
    bytes.resize(HEADER_AT + header_len, 0);
    read(&mut bytes[HEADER_AT..])?;
    let parsed = SnapshotFile::parse(&path.display().to_string(), Bytes::from(bytes))?;
    Ok(Some(parsed.header))
}

/// The snapshot an install in progress is installing: its presence marks
/// the install.
pub fn installing_marker(dir: &Path) -> PathBuf {
    dir.join(INSTALLING_FILE)
}

/// Ends an install: the snapshot being installed becomes the current one,
/// in one durable rename.
pub fn finish_installing(dir: &Path) -> Result<(), StoreError> {
    let _turn = CURRENT_WRITES.lock();
    let installing = installing_marker(dir);
    let current = dir.join(CURRENT_FILE);
    std::fs::rename(&installing, &current).map_err(StoreError::io("rename", &installing))?;
    Ok(fsutil::fsync_dir(dir)?)
}

#[cfg(test)]
mod tests {
    use compaction::{Topic, TopicConfig};
    use openraft::{CommittedLeaderId, LogId, StoredMembership};
    use uuid::Uuid;

    use super::*;
    use crate::store::record::{UnitKind, WriteRecord};

    fn write(offset: u64, timestamp_ms: u64, key: &str, idempotent: bool) -> Record {
        WriteRecord {
            offset,
            batch: compaction::BatchPos::SINGLE,
            log_index: offset + 10,
            kind: UnitKind::Write,
            timestamp_ms,
            key: key.into(),
            value: Some(Bytes::from(format!("{offset}"))),
            create_revision: 1,
            version: offset,
            lease: 0,
            idempotency_key: idempotent.then(Uuid::new_v4),
            request_hash: None,
        }
        .to_record()
    }

    #[test]
    fn a_snapshot_keeps_the_latest_record_of_each_key_and_recent_idempotent_writes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let topic = Topic::open(dir.path(), TopicConfig::default()).expect("opens");
        let minute = 60_000;
        let old = 0;
        let now = 3 * IDEMPOTENCY_WINDOW_MS;
        let deleted = WriteRecord {
            value: None,
            ..WriteRecord::from_record(write(6, now, "b", false)).expect("decodes")
        };
        topic
            .append(&[
                write(1, old, "a", true),           // superseded, too old to retry
                write(2, now - minute, "a", true),  // superseded, a retry may come
                write(3, now - minute, "a", false), // superseded
                write(4, now, "a", false),          // the latest of a
                write(5, now, "b", false),          // superseded by a delete
                deleted.to_record(),                // the latest of b: a tombstone
                write(7, now, "c", false),          // past the snapshot
            ])
            .expect("appends");
        // The log index is not the revision: the snapshot is bounded by
        // the revision.
        let header = SnapshotHeader::new(
            SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 16)),
                last_membership: StoredMembership::default(),
                snapshot_id: "test".into(),
            },
            6,
            0,
        );
        let snapshot = SnapshotFile::build(header, topic.read_from(0), None).expect("builds");
        let offsets: Vec<u64> = snapshot
            .records()
            .map(|record| record.expect("decodes").offset)
            .collect();
        assert_eq!(offsets, vec![2, 4, 6]);

        // The next snapshot, built on this one, reads only the records after
        // it and holds what a build from the whole topic holds.
        topic
            .append(&[write(8, now, "b", false), write(9, now, "d", true)])
            .expect("appends");
        let next_header = |revision| {
            SnapshotHeader::new(
                SnapshotMeta {
                    last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), revision + 10)),
                    last_membership: StoredMembership::default(),
                    snapshot_id: format!("test-{revision}"),
                },
                revision,
                0,
            )
        };
        let offsets = |snapshot: &SnapshotFile| -> Vec<u64> {
            snapshot
                .records()
                .map(|record| record.expect("decodes").offset)
                .collect()
        };
        let built_on = SnapshotFile::build(next_header(9), topic.read_from(0), Some(&snapshot))
            .expect("builds");
        let whole = SnapshotFile::build(next_header(9), topic.read_from(0), None).expect("builds");
        assert_eq!(offsets(&built_on), vec![2, 4, 7, 8, 9]);
        assert_eq!(offsets(&built_on), offsets(&whole));
    }

    /// A snapshot of an empty topic at log index `index`.
    fn empty_at(index: u64) -> SnapshotFile {
        let dir = tempfile::tempdir().expect("a temp dir");
        let topic = Topic::open(dir.path(), TopicConfig::default()).expect("opens");
        let header = SnapshotHeader::new(
            SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
                last_membership: StoredMembership::default(),
                snapshot_id: format!("at-{index}"),
            },
            0,
            0,
        );
        SnapshotFile::build(header, topic.read_from(0), None).expect("builds")
    }

    /// A build that ends after an install made a newer snapshot current
    /// leaves the newer one in place; a newer build replaces it.
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_current_one() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let current_id = |dir: &Path| {
            SnapshotFile::load(dir)
                .expect("loads")
                .expect("a current snapshot")
                .header
                .meta
                .snapshot_id
        };
        empty_at(20).store_installing(dir.path()).expect("stores");
        finish_installing(dir.path()).expect("installs");
        empty_at(10)
            .store(dir.path())
            .expect("an older one is skipped");
        assert_eq!(current_id(dir.path()), "at-20");
        empty_at(30).store(dir.path()).expect("stores");
        assert_eq!(current_id(dir.path()), "at-30");
    }

    /// A snapshot's bytes with `header_json` as its header and no records.
    fn with_header(header_json: &str) -> Bytes {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header_json.as_bytes());
        Bytes::from(bytes)
    }

    #[test]
    fn headers_carry_the_revision_and_other_formats_are_refused() {
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 6)),
            last_membership: StoredMembership::default(),
            snapshot_id: "test".into(),
        };
        let header = SnapshotHeader::new(meta.clone(), 5, 0);
        let json = serde_json::to_string(&header).expect("serializes");
        let read = SnapshotFile::parse("new", with_header(&json)).expect("parses");
        assert_eq!((read.header.format, read.header.revision), (2, 5));

        let old = serde_json::json!({ "meta": meta, "tombstone_floor": 0 });
        let later = serde_json::json!({ "meta": meta, "tombstone_floor": 0, "format": 3 });
        for (name, header, says) in [
            (
                "old",
                old,
                "header format 1 was written while topic offsets",
            ),
            ("later", later, "header format 3 is newer"),
        ] {
            match SnapshotFile::parse(name, with_header(&header.to_string())) {
                Err(StoreError::CorruptSnapshot { name: got, reason }) => {
                    assert_eq!(got, name);
                    assert!(reason.contains(says), "{reason}");
                }
                Err(other) => panic!("expected a refused header, got {other:?}"),
                Ok(_) => panic!("expected a refused header, got a snapshot"),
            }
        }
    }
}
