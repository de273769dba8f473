//! How a write becomes a record of the compacted topic, and back.
//!
//! The record's key is the KV key, its value the JSON text (none for a
//! delete), its offset the raft log index. The record's headers keep what
//! replay needs to rebuild the view exactly — the key's create revision and
//! version, and the idempotency key of the write:
//!
//! ```text
//! headers := format: u8 (1) | create_revision: u64 LE | version: u64 LE | idempotency key: 16 bytes (optional)
//! ```

use bytes::Bytes;
use compaction::Record;
use uuid::Uuid;

use crate::error::StoreError;
use crate::types::Revision;

/// The headers' format byte, first of the headers.
const HEADER_FORMAT: u8 = 1;
/// Where the create revision (u64 LE) sits in the headers.
const CREATE_REVISION_AT: usize = 1;
/// Where the version (u64 LE) sits in the headers.
const VERSION_AT: usize = CREATE_REVISION_AT + 8;
/// The headers without an idempotency key; the key, when present, follows.
const HEADER_BYTES: usize = VERSION_AT + 8;
/// An idempotency key: the 16 bytes of a UUID.
const IDEMPOTENCY_KEY_BYTES: usize = 16;

/// The server's reading of one topic record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    /// The raft log index of the write: the key's `mod_revision`.
    pub revision: Revision,
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
    /// The idempotency key the write carried.
    pub idempotency_key: Option<Uuid>,
}

impl WriteRecord {
    /// The topic record.
    pub fn to_record(&self) -> Record {
        let mut headers = Vec::with_capacity(HEADER_BYTES + IDEMPOTENCY_KEY_BYTES);
        headers.push(HEADER_FORMAT);
        headers.extend_from_slice(&self.create_revision.to_le_bytes());
        headers.extend_from_slice(&self.version.to_le_bytes());
        if let Some(id) = self.idempotency_key {
            headers.extend_from_slice(id.as_bytes());
        }
        Record {
            offset: self.revision,
            timestamp_ms: self.timestamp_ms,
            key: Bytes::copy_from_slice(self.key.as_bytes()),
            value: self.value.clone(),
            batch: compaction::BatchPos::SINGLE,
            headers: Bytes::from(headers),
        }
    }

    /// Reads a topic record written by [`WriteRecord::to_record`].
    pub fn from_record(record: Record) -> Result<WriteRecord, StoreError> {
        let bad = |reason: &'static str| StoreError::CorruptRecord {
            offset: record.offset,
            reason,
        };
        let headers = &record.headers[..];
        if headers.first() != Some(&HEADER_FORMAT)
            || !(headers.len() == HEADER_BYTES
                || headers.len() == HEADER_BYTES + IDEMPOTENCY_KEY_BYTES)
        {
            return Err(bad("unknown header format"));
        }
        // The length was checked above: both numbers and the key are there.
        let number = |at: usize| {
            u64::from_le_bytes(headers[at..at + 8].try_into().expect("a u64 is 8 bytes"))
        };
        let idempotency_key = (headers.len() > HEADER_BYTES).then(|| {
            Uuid::from_slice(&headers[HEADER_BYTES..])
                .expect("the headers' length leaves exactly 16 bytes for the key")
        });
        let key = String::from_utf8(record.key.to_vec()).map_err(|_| bad("key is not UTF-8"))?;
        Ok(WriteRecord {
            revision: record.offset,
            timestamp_ms: record.timestamp_ms,
            key,
            value: record.value,
            create_revision: number(CREATE_REVISION_AT),
            version: number(VERSION_AT),
            idempotency_key,
        })
    }
}

/// Whether `record` carries a client's idempotency key (without decoding
/// the rest of it).
pub fn carries_idempotency_key(record: &Record) -> bool {
    record.headers.len() > HEADER_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_and_deletes_round_trip_with_and_without_idempotency_keys() {
        for write in [
            WriteRecord {
                revision: 7,
                timestamp_ms: 1,
                key: "topics/a".into(),
                value: Some(Bytes::from_static(b"{}")),
                create_revision: 3,
                version: 2,
                idempotency_key: Some(Uuid::new_v4()),
            },
            WriteRecord {
                revision: 9,
                timestamp_ms: 2,
                key: "topics/a".into(),
                value: None,
                create_revision: 3,
                version: 0,
                idempotency_key: None,
            },
        ] {
            assert_eq!(WriteRecord::from_record(write.to_record()).unwrap(), write);
        }
    }
}
