//! How a write becomes a record of the compacted topic, and back.
//!
//! The record's key is the KV key, its value the JSON text (none for a
//! delete). Its offset is its own place in the topic; the records of one
//! atomic unit (the writes of one command) have consecutive offsets and
//! form one batch of the topic, and the unit's revision, the
//! `mod_revision` of every key it wrote, is the offset of its last record.
//! The record's headers keep what replay needs to rebuild the view exactly
//! — the key's create revision and version, the idempotency key of the
//! write — and where the record came from: the raft log index of its entry
//! and the kind of atomic unit it belongs to.
//!
//! ```text
//! format 3 (written): 3 | kind: u8 | log_index | create_revision | version | lease (u64 LE each) | idempotency key: 16 bytes (if flagged) | request hash: u64 LE (if flagged) | entry sub, entry rest: u32 LE each (if flagged)
//! format 2 (read):    2 | kind: u8 | log_index | create_revision | version (u64 LE each) | idempotency key: 16 bytes (if flagged)
//! ```
//!
//! The kind byte holds the [`UnitKind`] in its low bits and
//! [`IDEMPOTENCY_KEY_FLAG`] when the idempotency key follows, and
//! [`REQUEST_HASH_FLAG`] when the hash of its request follows the key
//! (records written before the hash have none, and read as such), and
//! [`ENTRY_POS_FLAG`] when the record's entry is a batch of commands: then
//! its place among all the records of its entry follows, which recovery
//! needs to tell a whole entry from a cut one (records without it are
//! the only unit of their entry). Format 2 had
//! no lease: its records hold none. (Format 1, without the log index, was
//! written while offsets were log indices; data of that time is refused at
//! open, see `data_format`.)

use bytes::Bytes;
use compaction::{BatchPos, Record};
use uuid::Uuid;

use crate::error::StoreError;
use crate::types::Revision;

/// The headers' format byte written, first of the headers.
const HEADER_FORMAT: u8 = 3;
/// The format byte of headers written before leases.
const HEADER_FORMAT_2: u8 = 2;
/// Where the kind byte sits in format 2 and 3 headers.
const KIND_AT: usize = 1;
/// Where the log index (u64 LE) sits in format 2 and 3 headers.
const LOG_INDEX_AT: usize = KIND_AT + 1;
/// Where the create revision (u64 LE) sits in format 2 and 3 headers.
const CREATE_REVISION_AT: usize = LOG_INDEX_AT + 8;
/// Where the version (u64 LE) sits in format 2 and 3 headers.
const VERSION_AT: usize = CREATE_REVISION_AT + 8;
/// Where the lease (u64 LE) sits in format 3 headers.
const LEASE_AT: usize = VERSION_AT + 8;
/// Format 2 headers without an idempotency key; the key, when flagged,
/// follows.
const HEADER_2_BYTES: usize = LEASE_AT;
/// Format 3 headers without an idempotency key; the key, when flagged,
/// follows.
const HEADER_BYTES: usize = LEASE_AT + 8;
/// An idempotency key: the 16 bytes of a UUID.
const IDEMPOTENCY_KEY_BYTES: usize = 16;
/// The bit of the kind byte saying an idempotency key follows the headers.
pub const IDEMPOTENCY_KEY_FLAG: u8 = 0x80;
/// The bit of the kind byte saying the request hash follows the
/// idempotency key.
pub const REQUEST_HASH_FLAG: u8 = 0x40;
/// A request hash: a u64.
const REQUEST_HASH_BYTES: usize = 8;
/// The bit of the kind byte saying the record's place in its raft entry
/// (records of the entry before and after it) ends the headers. Binaries
/// from before batches read it as an unknown unit kind, and so refuse the
/// record rather than misread it.
pub const ENTRY_POS_FLAG: u8 = 0x20;
/// A place in an entry: two u32.
const ENTRY_POS_BYTES: usize = 8;
/// The flag bits of the kind byte; the rest is the unit kind.
const FLAGS: u8 = IDEMPOTENCY_KEY_FLAG | REQUEST_HASH_FLAG | ENTRY_POS_FLAG;

/// The kind of atomic unit (one command's writes) a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// One put or delete of one key.
    Write,
    /// A transaction whose compares held: its `success` branch.
    TxnSuccess,
    /// A transaction whose compares failed: its `failure` branch.
    TxnFailure,
    /// A lease granted: the lease's own record.
    LeaseGrant,
    /// A lease revoked or expired: its keys' deletes, then its own.
    LeaseEnd,
}

impl UnitKind {
    /// The kind's value in the kind byte.
    fn code(self) -> u8 {
        match self {
            UnitKind::Write => 0,
            UnitKind::TxnSuccess => 1,
            UnitKind::TxnFailure => 2,
            UnitKind::LeaseGrant => 3,
            UnitKind::LeaseEnd => 4,
        }
    }

    /// The kind a kind byte's low bits name, if any.
    fn from_code(code: u8) -> Option<UnitKind> {
        match code {
            0 => Some(UnitKind::Write),
            1 => Some(UnitKind::TxnSuccess),
            2 => Some(UnitKind::TxnFailure),
            3 => Some(UnitKind::LeaseGrant),
            4 => Some(UnitKind::LeaseEnd),
            _ => None,
        }
    }
}

/// The server's reading of one topic record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    /// The record's offset in the topic.
    pub offset: u64,
    /// Its place in its unit: records before and after it.
    pub batch: BatchPos,
    /// The raft log index of the entry that made the record.
    pub log_index: u64,
    /// The kind of unit the record belongs to.
    pub kind: UnitKind,
    /// When the leader accepted the write.
    pub timestamp_ms: u64,
    /// The key.
    pub key: String,
    /// The JSON text, or `None` for a delete.
    pub value: Option<Bytes>,
    /// The key's create revision (of the deleted key, for a delete).
    pub create_revision: Revision,
    /// The key's version after the write; 0 for a delete.
    pub version: u64,
    /// The lease the key was put with; 0 for none (and for a delete).
    pub lease: u64,
    /// The idempotency key the write carried.
    pub idempotency_key: Option<Uuid>,
    /// The hash of the request the idempotency key came with, if known.
    pub request_hash: Option<u64>,
    /// Its place among the records of its raft entry when that entry is a
    /// batch of commands; `None`: the entry's records are the unit's.
    pub entry: Option<BatchPos>,
}

impl WriteRecord {
    /// The revision of the record's unit: the offset of its last record,
    /// and the `mod_revision` the write gave its key.
    pub fn revision(&self) -> Revision {
        self.offset + Revision::from(self.batch.rest)
    }

    /// Its place among the records of its raft entry.
    pub fn entry_pos(&self) -> BatchPos {
        self.entry.unwrap_or(self.batch)
    }

    /// The offset of the first record of the record's raft entry.
    pub fn entry_start(&self) -> u64 {
        self.offset - u64::from(self.entry_pos().sub)
    }

    /// The topic record, with format 3 headers.
    pub fn to_record(&self) -> Record {
        let mut headers = Vec::with_capacity(
            HEADER_BYTES + IDEMPOTENCY_KEY_BYTES + REQUEST_HASH_BYTES + ENTRY_POS_BYTES,
        );
        headers.push(HEADER_FORMAT);
        // A hash is only written after a key.
        let hash = self.request_hash.filter(|_| self.idempotency_key.is_some());
        let mut flags = 0;
        if self.idempotency_key.is_some() {
            flags |= IDEMPOTENCY_KEY_FLAG;
        }
        if hash.is_some() {
            flags |= REQUEST_HASH_FLAG;
        }
        if self.entry.is_some() {
            flags |= ENTRY_POS_FLAG;
        }
        headers.push(self.kind.code() | flags);
        headers.extend_from_slice(&self.log_index.to_le_bytes());
        headers.extend_from_slice(&self.create_revision.to_le_bytes());
        headers.extend_from_slice(&self.version.to_le_bytes());
        headers.extend_from_slice(&self.lease.to_le_bytes());
        if let Some(id) = self.idempotency_key {
            headers.extend_from_slice(id.as_bytes());
        }
        if let Some(hash) = hash {
            headers.extend_from_slice(&hash.to_le_bytes());
        }
        if let Some(entry) = self.entry {
            headers.extend_from_slice(&entry.sub.to_le_bytes());
            headers.extend_from_slice(&entry.rest.to_le_bytes());
        }
        Record {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: Bytes::copy_from_slice(self.key.as_bytes()),
            value: self.value.clone(),
            batch: self.batch,
            headers: Bytes::from(headers),
        }
    }

    /// Reads a topic record written by [`WriteRecord::to_record`].
    pub fn from_record(record: Record) -> Result<WriteRecord, StoreError> {
        let bad = |reason: &'static str| StoreError::CorruptRecord {
            offset: record.offset,
            reason,
        };
        let headers = Headers::read(&record).map_err(bad)?;
        let key = String::from_utf8(record.key.to_vec()).map_err(|_| bad("key is not UTF-8"))?;
        Ok(WriteRecord {
            offset: record.offset,
            batch: record.batch,
            log_index: headers.log_index,
            kind: headers.kind,
            timestamp_ms: record.timestamp_ms,
            key,
            value: record.value,
            create_revision: headers.create_revision,
            version: headers.version,
            lease: headers.lease,
            idempotency_key: headers.idempotency_key,
            request_hash: headers.request_hash,
            entry: headers.entry,
        })
    }
}

/// A record's headers, decoded, whatever their format.
struct Headers {
    /// The kind of unit the record belongs to.
    kind: UnitKind,
    /// The raft log index of the entry that made the record.
    log_index: u64,
    /// The key's create revision.
    create_revision: Revision,
    /// The key's version after the write.
    version: u64,
    /// The lease the key was put with.
    lease: u64,
    /// The write's idempotency key, if it had one.
    idempotency_key: Option<Uuid>,
    /// The hash of the write's request, if recorded.
    request_hash: Option<u64>,
    /// The record's place in its batch entry, if flagged.
    entry: Option<BatchPos>,
}

impl Headers {
    /// Decodes `record`'s headers, or says what is wrong with them.
    fn read(record: &Record) -> Result<Headers, &'static str> {
        let headers = &record.headers[..];
        // The length is checked before a number is read.
        let number = |at: usize| {
            u64::from_le_bytes(headers[at..at + 8].try_into().expect("a u64 is 8 bytes"))
        };
        let format = match headers.first() {
            Some(&HEADER_FORMAT) => HEADER_FORMAT,
            Some(&HEADER_FORMAT_2) => HEADER_FORMAT_2,
            _ => return Err("unknown header format"),
        };
        let Some(&kind_byte) = headers.get(KIND_AT) else {
            return Err("headers are cut short");
        };
        let kind = UnitKind::from_code(kind_byte & !FLAGS).ok_or("unknown unit kind")?;
        let flagged = kind_byte & IDEMPOTENCY_KEY_FLAG != 0;
        let hashed = kind_byte & REQUEST_HASH_FLAG != 0;
        let placed = kind_byte & ENTRY_POS_FLAG != 0;
        if hashed && !flagged {
            return Err("a request hash without an idempotency key");
        }
        let fixed = if format == HEADER_FORMAT {
            HEADER_BYTES
        } else {
            HEADER_2_BYTES
        };
        let expected = fixed
            + if flagged { IDEMPOTENCY_KEY_BYTES } else { 0 }
            + if hashed { REQUEST_HASH_BYTES } else { 0 };
        let entry_at = expected;
        let expected = expected + if placed { ENTRY_POS_BYTES } else { 0 };
        if headers.len() != expected {
            return Err("headers have the wrong length");
        }
        let half = |at: usize| {
            u32::from_le_bytes(headers[at..at + 4].try_into().expect("a u32 is 4 bytes"))
        };
        Ok(Headers {
            kind,
            log_index: number(LOG_INDEX_AT),
            create_revision: number(CREATE_REVISION_AT),
            version: number(VERSION_AT),
            lease: if format == HEADER_FORMAT {
                number(LEASE_AT)
            } else {
                0
            },
            idempotency_key: flagged.then(|| uuid_at(headers, fixed)),
            request_hash: hashed.then(|| number(fixed + IDEMPOTENCY_KEY_BYTES)),
            entry: placed.then(|| BatchPos::new(half(entry_at), half(entry_at + 4))),
        })
    }
}

/// The UUID in the 16 bytes of `headers` from `at`, which the caller
/// checked are there.
fn uuid_at(headers: &[u8], at: usize) -> Uuid {
    Uuid::from_slice(&headers[at..at + IDEMPOTENCY_KEY_BYTES])
        .expect("the headers' length was checked to hold 16 bytes of key")
}

/// Whether `record` carries a client's idempotency key (without decoding
/// the rest of it).
pub fn carries_idempotency_key(record: &Record) -> bool {
    matches!(
        record.headers.first(),
        Some(&(HEADER_FORMAT | HEADER_FORMAT_2))
    ) && record
        .headers
        .get(KIND_AT)
        .is_some_and(|kind| kind & IDEMPOTENCY_KEY_FLAG != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(offset: u64, batch: BatchPos, value: Option<&'static str>) -> WriteRecord {
        WriteRecord {
            offset,
            batch,
            log_index: 4,
            kind: UnitKind::Write,
            timestamp_ms: 1,
            key: "topics/a".into(),
            value: value.map(|value| Bytes::from_static(value.as_bytes())),
            create_revision: 3,
            version: if value.is_some() { 2 } else { 0 },
            lease: if value.is_some() { 12 } else { 0 },
            idempotency_key: None,
            request_hash: None,
            entry: None,
        }
    }

    #[test]
    fn puts_and_deletes_round_trip_with_and_without_idempotency_keys() {
        let keyed = WriteRecord {
            idempotency_key: Some(Uuid::new_v4()),
            ..write(7, BatchPos::SINGLE, Some("{}"))
        };
        let hashed = WriteRecord {
            idempotency_key: Some(Uuid::new_v4()),
            request_hash: Some(0x0123_4567_89ab_cdef),
            ..write(8, BatchPos::SINGLE, Some("{}"))
        };
        let in_batch_entry = WriteRecord {
            idempotency_key: Some(Uuid::new_v4()),
            request_hash: Some(7),
            entry: Some(BatchPos::new(5, 9)),
            ..write(10, BatchPos::new(1, 0), Some("{}"))
        };
        let placed_without_key = WriteRecord {
            entry: Some(BatchPos::new(0, 3)),
            ..write(11, BatchPos::SINGLE, None)
        };
        for write in [
            keyed,
            hashed,
            write(9, BatchPos::new(1, 2), None),
            in_batch_entry,
            placed_without_key,
        ] {
            let record = write.to_record();
            assert_eq!(record.headers[0], 3, "records are written with format 3");
            assert_eq!(record.batch, write.batch);
            assert_eq!(
                carries_idempotency_key(&record),
                write.idempotency_key.is_some()
            );
            assert_eq!(WriteRecord::from_record(record).unwrap(), write);
        }
    }

    /// Format 2 headers, as written before leases: they read as records
    /// with no lease.
    #[test]
    fn format_2_records_read_with_no_lease() {
        let write = write(7, BatchPos::SINGLE, Some("{}"));
        let mut record = write.to_record();
        let mut headers = record.headers.to_vec();
        headers[0] = 2;
        headers.drain(LEASE_AT..LEASE_AT + 8);
        record.headers = Bytes::from(headers);
        let read = WriteRecord::from_record(record).unwrap();
        assert_eq!(read, WriteRecord { lease: 0, ..write });
    }

    #[test]
    fn a_record_knows_its_units_revision_and_start_from_its_place_in_the_batch() {
        let middle = write(11, BatchPos::new(1, 2), Some("1"));
        assert_eq!((middle.entry_start(), middle.revision()), (10, 13));
        let single = write(11, BatchPos::SINGLE, Some("1"));
        assert_eq!((single.entry_start(), single.revision()), (11, 11));
    }

    /// A record of a batch entry knows where its entry starts and whether
    /// it ends it; any other record's entry is its unit.
    #[test]
    fn a_record_knows_its_entrys_start_and_end() {
        let in_batch = WriteRecord {
            entry: Some(BatchPos::new(4, 2)),
            ..write(11, BatchPos::new(1, 0), Some("1"))
        };
        assert_eq!(in_batch.entry_start(), 7);
        assert!(in_batch.batch.is_last() && !in_batch.entry_pos().is_last());
        let alone = write(11, BatchPos::new(1, 2), Some("1"));
        assert_eq!((alone.entry_start(), alone.entry_pos()), (10, alone.batch));
    }

    #[test]
    fn damaged_headers_are_refused_naming_the_offset() {
        let good = write(7, BatchPos::SINGLE, Some("{}")).to_record();
        let mut unknown_kind = good.headers.to_vec();
        unknown_kind[1] = 0x0f;
        let mut cut = good.headers.to_vec();
        cut.pop();
        let mut flagged_without_key = good.headers.to_vec();
        flagged_without_key[1] |= IDEMPOTENCY_KEY_FLAG;
        let mut placed_without_place = good.headers.to_vec();
        placed_without_place[1] |= ENTRY_POS_FLAG;
        let mut hash_without_key = good.headers.to_vec();
        hash_without_key[1] |= REQUEST_HASH_FLAG;
        hash_without_key.extend_from_slice(&[0; REQUEST_HASH_BYTES]);
        let mut format_1 = vec![1u8];
        format_1.extend_from_slice(&[0; 16]);
        for (headers, reason) in [
            (vec![4u8], "unknown header format"),
            (vec![], "unknown header format"),
            (format_1, "unknown header format"),
            (vec![3u8], "headers are cut short"),
            (vec![2u8], "headers are cut short"),
            (unknown_kind, "unknown unit kind"),
            (cut, "headers have the wrong length"),
            (flagged_without_key, "headers have the wrong length"),
            (placed_without_place, "headers have the wrong length"),
            (
                hash_without_key,
                "a request hash without an idempotency key",
            ),
        ] {
            let record = Record {
                headers: Bytes::from(headers),
                ..good.clone()
            };
            match WriteRecord::from_record(record) {
                Err(StoreError::CorruptRecord {
                    offset: 7,
                    reason: got,
                }) => {
                    assert_eq!(got, reason)
                }
                other => panic!("expected {reason:?}, got {other:?}"),
            }
        }
    }
}
