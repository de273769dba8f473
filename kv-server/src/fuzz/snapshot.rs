//! Snapshots: the header, the frames after it and the server's reading of
//! each record (its headers: kind, log index, revisions, lease,
//! idempotency key).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use bytes::Bytes;
use compaction::{BatchPos, Topic, TopicConfig};
use fuzzkit::proptest::prelude::*;
use fuzzkit::{
    apply, mutations, outcome, outcome_of, reseal_frames, within_allocation_limit, LengthField,
};
use openraft::{CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership};
use uuid::Uuid;

use super::SLACK_BYTES;
use crate::error::StoreError;
use crate::store::record::{UnitKind, WriteRecord};
use crate::store::snapshot::{EndMarker, SnapshotFile, SnapshotHeader, CURRENT_FILE, END_BYTES};
use crate::types::Node;

/// Where a snapshot's header length sits: after the 8-byte magic.
const HEADER_LEN_AT: usize = 8;
/// Where a version 2 record frame's header length sits (see
/// `compaction::record`).
const RECORD_HEADERS_LEN_AT: usize = 34;

/// The largest buffer a snapshot's records are read through.
const READ_BUFFER_BYTES: usize = 2 << 20;

/// A three-node membership, as a real snapshot carries.
fn membership() -> StoredMembership<u64, Node> {
    let nodes: BTreeMap<u64, Node> = (1..=3)
        .map(|id| {
            let node = Node {
                addr: format!("http://127.0.0.1:707{id}"),
                peer_addr: format!("http://127.0.0.1:717{id}"),
            };
            (id, node)
        })
        .collect();
    let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
    StoredMembership::new(
        Some(LogId::new(CommittedLeaderId::new(1, 1), 3)),
        membership,
    )
}

/// A snapshot of writes, deletes and idempotent writes.
struct Template {
    /// Its bytes without the end marker: each case seals its own.
    unsealed: Vec<u8>,
    /// Where its frames start.
    frames_at: usize,
    /// Its records.
    records: u64,
}

/// The snapshot every case starts from.
fn template_snapshot() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let topic = Topic::open(dir.path(), TopicConfig::default()).expect("opens");
        let records: Vec<compaction::Record> = (1..=12u64)
            .map(|offset| {
                WriteRecord {
                    offset,
                    batch: BatchPos::SINGLE,
                    log_index: offset + 4,
                    kind: if offset % 4 == 0 {
                        UnitKind::TxnSuccess
                    } else {
                        UnitKind::Write
                    },
                    timestamp_ms: 1_000 + offset,
                    key: format!("app/key-{}", offset % 5),
                    value: (offset % 6 != 0).then(|| Bytes::from(format!("{{\"n\":{offset}}}"))),
                    create_revision: 1,
                    version: offset,
                    lease: offset % 3,
                    idempotency_key: (offset % 2 == 0).then(Uuid::new_v4),
                    request_hash: (offset % 4 == 0).then_some(offset * 7_919),
                    entry: None,
                }
                .to_record()
            })
            .collect();
        topic.append(&records).expect("appends");
        let header = SnapshotHeader::new(
            SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 16)),
                last_membership: membership(),
                snapshot_id: "snap-16".into(),
            },
            12,
            0,
        );
        let snapshot = SnapshotFile::build(header, topic.read_from(0), None).expect("builds");
        snapshot.store(dir.path()).expect("stores");
        let records = snapshot.check_records().expect("the template checks");
        let mut unsealed = std::fs::read(dir.path().join(CURRENT_FILE)).expect("reads");
        let header_len = u32::from_le_bytes(
            unsealed[HEADER_LEN_AT..HEADER_LEN_AT + 4]
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        unsealed.truncate(unsealed.len() - END_BYTES);
        Template {
            unsealed,
            // The header's length, the header and its checksum.
            frames_at: HEADER_LEN_AT + 4 + header_len + 4,
            records,
        }
    })
}

impl Template {
    /// `bytes`, a snapshot without its end marker, ended by a marker that
    /// agrees with their length and counts the template's records.
    fn sealed(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        let marker = EndMarker {
            frames_bytes: bytes.len().saturating_sub(self.frames_at) as u64,
            records: self.records,
        };
        bytes.extend_from_slice(&marker.encode());
        bytes
    }
}

/// The length fields of a snapshot: the header's, and in each record
/// frame the body, headers, key and value lengths.
fn length_fields(bytes: &[u8], frames_at: usize) -> Vec<LengthField> {
    let mut fields = vec![LengthField::u32_le(HEADER_LEN_AT)];
    let read = |at: usize| -> usize {
        let word = bytes[at..at + 4].try_into().expect("4 bytes");
        u32::from_le_bytes(word) as usize
    };
    let mut position = frames_at;
    while position < bytes.len() {
        let headers_len_at = position + RECORD_HEADERS_LEN_AT;
        let key_len_at = headers_len_at + 4 + read(headers_len_at);
        let value_len_at = key_len_at + 4 + read(key_len_at);
        for at in [position, headers_len_at, key_len_at, value_len_at] {
            fields.push(LengthField::u32_le(at));
        }
        position += 8 + read(position);
    }
    fields
}

/// Writes `bytes` as a snapshot file in a new temporary directory.
fn snapshot_file(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("fuzz.snap");
    std::fs::write(&path, bytes).expect("writes");
    (dir, path)
}

/// Reads a snapshot and every record in it as a restart or an install
/// does; the number of records read.
fn read_snapshot(bytes: Bytes) -> Result<usize, String> {
    let len = bytes.len() as u64;
    let frames_at = bytes
        .get(HEADER_LEN_AT..HEADER_LEN_AT + 4)
        .map_or(0, |word| {
            HEADER_LEN_AT as u64
                + 4
                + u64::from(u32::from_le_bytes(word.try_into().expect("4 bytes")))
        });
    let (_dir, path) = snapshot_file(&bytes);
    let snapshot = match SnapshotFile::open(&path) {
        Ok(snapshot) => snapshot,
        Err(StoreError::CorruptSnapshot { name, reason }) if name.ends_with("fuzz.snap") => {
            outcome(&format!("header: {}", outcome_of(&reason)));
            return Ok(0);
        }
        Err(other) => return Err(format!("a parse error naming no snapshot: {other}")),
    };
    let mut read = 0;
    let mut ended = "all records".to_string();
    for record in snapshot.records() {
        match record {
            Ok(record) => match WriteRecord::from_record(record) {
                Ok(_) => read += 1,
                Err(StoreError::CorruptRecord { reason, .. }) => {
                    ended = format!("record headers: {reason}");
                    read += 1;
                }
                Err(other) => return Err(format!("an unexpected record error: {other}")),
            },
            Err(compaction::Error::Corrupt {
                position, reason, ..
            }) if (frames_at..=len).contains(&position) => {
                ended = format!("frames: {}", outcome_of(&reason));
                break;
            }
            Err(other) => {
                return Err(format!(
                    "a frame error naming no byte among the frames (from {frames_at}): {other}"
                ))
            }
        }
    }
    outcome(&ended);
    Ok(read)
}

#[test]
fn fuzz_snapshots() {
    let template = template_snapshot();
    let (valid, frames_at) = (&template.unsealed, template.frames_at);
    let fields = length_fields(valid, frames_at);
    let sealed_valid = template.sealed(valid.clone());
    let records = read_snapshot(Bytes::from(sealed_valid.clone())).expect("the template reads");
    assert!(records >= 5, "the template holds {records} records");
    let strategy = (mutations(), any::<bool>());
    fuzzkit::fuzz("snapshots", strategy, |(mutations, reseal)| {
        // Resealed, the frames' checksums and the end marker agree with
        // the damage, so it reaches the frames' decoding; else the damage
        // may fall on the marker too.
        let bytes = if *reseal {
            let mut bytes = apply(valid, &fields, mutations);
            if bytes.len() > frames_at {
                reseal_frames(&mut bytes, frames_at);
            }
            template.sealed(bytes)
        } else {
            apply(&sealed_valid, &fields, mutations)
        };
        // Records are read from the file through a buffer of their own.
        let limit = bytes.len() + SLACK_BYTES + READ_BUFFER_BYTES;
        within_allocation_limit(limit, || read_snapshot(Bytes::from(bytes)))??;
        Ok(())
    });
}

#[test]
fn a_damaged_record_is_named_by_its_byte_in_the_snapshot() {
    let template = template_snapshot();
    let frames_at = template.frames_at;
    let mut bytes = template.sealed(template.unsealed.clone());
    // A byte of the first record's body: its checksum no longer holds.
    bytes[frames_at + 20] ^= 0x01;
    let (_dir, path) = snapshot_file(&bytes);
    let snapshot = SnapshotFile::open(&path).expect("the header reads");
    match snapshot.records().next() {
        Some(Err(compaction::Error::Corrupt { position, .. })) => {
            assert_eq!(
                position, frames_at as u64,
                "the byte where the record starts"
            )
        }
        other => panic!("expected the damaged record, got {other:?}"),
    };
}
