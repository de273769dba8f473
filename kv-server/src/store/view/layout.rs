//! How the view lays its state out as sled keys and values.
//!
//! One sled tree holds everything, told apart by a one-byte prefix:
//!
//! ```text
//! k<key>                   → create_revision | mod_revision | version | lease (u64 BE each) | value
//! a<lease id BE><key>      → (empty) the key was put with that lease
//! i<uuid>                  → JSON IdempotentWrite: the result of a write with that key
//! q<timestamp_ms BE><uuid> → (empty) expiry queue of the idempotency entries
//! m:applied                → JSON Option<LogId>: the last applied log entry
//! m:revision               → u64 BE: the store's revision as of m:applied
//! m:membership             → JSON StoredMembership
//! m:leases                 → u64 BE: how many leases exist
//! m:clock                  → u64 BE: the apply clock, the time of the last write applied (ms)
//! m:format                 → the layout's format, [`VIEW_FORMAT`]
//! m:rebuilding             → (empty) present while a rebuild is under way
//! m:digest                 → u64 BE: the sum of every other record's hash ([`super::digest`])
//! ```
//!
//! The expiry queue sorts by timestamp, so expiring is one range scan from
//! its start. An attachment is added whenever a key is put with a lease and
//! never taken away before the lease ends: one whose key has since moved
//! to another lease, or none, is stale, and the lease's end passes it over
//! (so a put need not read what the key's lease was, and a rebuild from the
//! topic gives the same answers). Changing any of this changes the on-disk
//! format: bump [`VIEW_FORMAT`], and a view of another format is rebuilt
//! from the topic at open.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::types::{CommandResult, LogId, Revision, StoredMembership};

/// Prefix of a key's entry.
pub(super) const ENTRY_PREFIX: u8 = b'k';
/// Prefix of an idempotency entry.
const IDEMPOTENCY_PREFIX: u8 = b'i';
/// Prefix of an expiry queue entry.
pub(super) const EXPIRY_PREFIX: u8 = b'q';
/// The last applied log id.
pub(super) const APPLIED_KEY: &[u8] = b"m:applied";
/// The store's revision as of the last applied log id, written with it.
pub(super) const REVISION_KEY: &[u8] = b"m:revision";
/// The membership as of the last applied log id.
pub(super) const MEMBERSHIP_KEY: &[u8] = b"m:membership";
/// Present while a rebuild is under way: a crash then starts it over.
pub(super) const REBUILDING_KEY: &[u8] = b"m:rebuilding";
/// How many leases exist.
pub(super) const LEASE_COUNT_KEY: &[u8] = b"m:leases";
/// The apply clock: when the last write was applied, as every node dates it.
pub(super) const CLOCK_KEY: &[u8] = b"m:clock";
/// The layout's format.
pub(super) const FORMAT_KEY: &[u8] = b"m:format";
/// The digest of every other record.
pub(super) const DIGEST_KEY: &[u8] = b"m:digest";
/// The format of the layout described above.
/// Format 3 added `m:clock` and the request hash of idempotent writes; a
/// view of format 2 is rebuilt, which dates the clock from the topic.
/// Format 4 added `m:digest`; a view of format 3 is rebuilt to have one.
pub(super) const VIEW_FORMAT: &[u8] = b"4";
/// Prefix of a lease attachment.
const ATTACHMENT_PREFIX: u8 = b'a';

/// Every prefix is one byte.
const PREFIX_BYTES: usize = 1;
/// Where an entry's create revision sits in its value.
const CREATE_REVISION_AT: usize = 0;
/// Where an entry's mod revision sits in its value.
const MOD_REVISION_AT: usize = CREATE_REVISION_AT + 8;
/// Where an entry's version sits in its value.
const VERSION_AT: usize = MOD_REVISION_AT + 8;
/// Where an entry's lease sits in its value.
const LEASE_AT: usize = VERSION_AT + 8;
/// An entry's value before the key's own value starts.
const ENTRY_HEADER_BYTES: usize = LEASE_AT + 8;
/// An idempotency key: the 16 bytes of a UUID.
const UUID_BYTES: usize = 16;
/// Where the idempotency key sits in an expiry queue key: after the prefix
/// and the timestamp (u64 BE).
const EXPIRY_ID_AT: usize = PREFIX_BYTES + 8;
/// The length of an expiry queue key.
const EXPIRY_KEY_BYTES: usize = EXPIRY_ID_AT + UUID_BYTES;

/// A key's current value and its revisions, as etcd reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// The value, as JSON text.
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since it last was absent).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation: 1 at creation.
    pub version: u64,
    /// The lease the key is attached to; 0 for none.
    pub lease: u64,
}

impl KeyEntry {
    /// The entry as its sled value.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_HEADER_BYTES + self.value.len());
        out.extend_from_slice(&self.create_revision.to_be_bytes());
        out.extend_from_slice(&self.mod_revision.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.lease.to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    /// Reads the sled value stored under the raw key `raw`.
    pub(super) fn decode(raw: &[u8], bytes: &[u8]) -> Result<KeyEntry, StoreError> {
        if bytes.len() < ENTRY_HEADER_BYTES {
            return Err(StoreError::CorruptViewEntry {
                key: describe(raw),
                reason: format!(
                    "{} bytes, shorter than the {ENTRY_HEADER_BYTES}-byte header",
                    bytes.len()
                ),
            });
        }
        let number = |at: usize| {
            u64::from_be_bytes(
                bytes[at..at + 8]
                    .try_into()
                    .expect("the header's length was checked: a u64 is 8 bytes"),
            )
        };
        Ok(KeyEntry {
            create_revision: number(CREATE_REVISION_AT),
            mod_revision: number(MOD_REVISION_AT),
            version: number(VERSION_AT),
            lease: number(LEASE_AT),
            value: bytes[ENTRY_HEADER_BYTES..].to_vec(),
        })
    }
}

/// A remembered result of a write that carried an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentWrite {
    /// When the write was accepted (the command's timestamp).
    pub timestamp_ms: u64,
    /// What it returned.
    pub result: CommandResult,
    /// The hash of its request, when known (see `Command::request_hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<u64>,
}

/// The raw key of `key`'s entry.
pub(super) fn entry_key(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_BYTES + key.len());
    out.push(ENTRY_PREFIX);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The user's key of an entry's raw key.
pub(super) fn user_key(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[PREFIX_BYTES..]).into_owned()
}

/// The raw key of the attachment of `key` to lease `id`.
pub(super) fn attachment_key(id: u64, key: &str) -> Vec<u8> {
    let mut out = attachment_prefix(id);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The raw prefix of every attachment to lease `id`.
pub(super) fn attachment_prefix(id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_BYTES + 8);
    out.push(ATTACHMENT_PREFIX);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// The key of an attachment's raw key, which has `prefix`.
pub(super) fn attached_key(raw: &[u8], prefix: &[u8]) -> String {
    String::from_utf8_lossy(&raw[prefix.len()..]).into_owned()
}

/// The raw key of the idempotency entry `id`.
pub(super) fn idempotency_key(id: &Uuid) -> Vec<u8> {
    let mut out = vec![IDEMPOTENCY_PREFIX];
    out.extend_from_slice(id.as_bytes());
    out
}

/// The raw key of the expiry queue entry of `id`, accepted at `timestamp_ms`.
pub(super) fn expiry_key(timestamp_ms: u64, id: &Uuid) -> Vec<u8> {
    let mut out = vec![EXPIRY_PREFIX];
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

/// The idempotency key an expiry queue key names.
pub(super) fn expiry_id(raw: &[u8]) -> Result<Uuid, StoreError> {
    if raw.len() != EXPIRY_KEY_BYTES {
        return Err(StoreError::CorruptViewEntry {
            key: describe(raw),
            reason: format!(
                "an expiry key is {EXPIRY_KEY_BYTES} bytes, this one {}",
                raw.len()
            ),
        });
    }
    Ok(Uuid::from_slice(&raw[EXPIRY_ID_AT..]).expect("the length leaves 16 bytes for a UUID"))
}

/// JSON for the view's own records; they are plain data and always encode.
fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("view metadata is plain data and always serializes")
}

/// Reads a JSON value stored under the raw key `raw`.
fn from_json<T: for<'de> Deserialize<'de>>(raw: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::CorruptViewEntry {
        key: describe(raw),
        reason: error.to_string(),
    })
}

/// The sled value of a remembered idempotent write.
pub(super) fn encode_idempotent_write(write: &IdempotentWrite) -> Vec<u8> {
    json(write)
}

/// Reads a remembered idempotent write stored under `raw`.
pub(super) fn decode_idempotent_write(
    raw: &[u8],
    bytes: &[u8],
) -> Result<IdempotentWrite, StoreError> {
    from_json(raw, bytes)
}

/// The sled value of the applied log id.
pub(super) fn encode_applied(applied: &LogId) -> Vec<u8> {
    json(&Some(applied))
}

/// Reads the applied log id.
pub(super) fn decode_applied(bytes: &[u8]) -> Result<Option<LogId>, StoreError> {
    from_json(APPLIED_KEY, bytes)
}

/// The sled value of the store's revision.
pub(super) fn encode_revision(revision: Revision) -> Vec<u8> {
    revision.to_be_bytes().to_vec()
}

/// Reads the store's revision.
pub(super) fn decode_revision(bytes: &[u8]) -> Result<Revision, StoreError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| StoreError::CorruptViewEntry {
        key: describe(REVISION_KEY),
        reason: format!("{} bytes where a u64 takes 8", bytes.len()),
    })?;
    Ok(Revision::from_be_bytes(bytes))
}

/// Reads the u64 stored under the raw key `raw`.
pub(super) fn decode_u64(raw: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| StoreError::CorruptViewEntry {
        key: describe(raw),
        reason: format!("{} bytes where a u64 takes 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// The sled value of the membership.
pub(super) fn encode_membership(membership: &StoredMembership) -> Vec<u8> {
    json(membership)
}

/// Reads the membership.
pub(super) fn decode_membership(bytes: &[u8]) -> Result<StoredMembership, StoreError> {
    from_json(MEMBERSHIP_KEY, bytes)
}

/// A raw key as an error message shows it: `k<key>`, `i<uuid>`,
/// `q<timestamp_ms>/<uuid>`, or the bytes escaped.
pub(super) fn describe(raw: &[u8]) -> String {
    match raw.first() {
        Some(&ENTRY_PREFIX) => format!("k{}", user_key(raw)),
        Some(&IDEMPOTENCY_PREFIX) if raw.len() == PREFIX_BYTES + UUID_BYTES => {
            let id = Uuid::from_slice(&raw[PREFIX_BYTES..]).expect("16 bytes are a UUID");
            format!("i{id}")
        }
        Some(&EXPIRY_PREFIX) if raw.len() == EXPIRY_KEY_BYTES => {
            let timestamp_ms = u64::from_be_bytes(
                raw[PREFIX_BYTES..EXPIRY_ID_AT]
                    .try_into()
                    .expect("the timestamp is the 8 bytes of a u64"),
            );
            let id = Uuid::from_slice(&raw[EXPIRY_ID_AT..]).expect("16 bytes are a UUID");
            format!("q{timestamp_ms}/{id}")
        }
        _ => raw.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_short_one_names_its_key() {
        let entry = KeyEntry {
            value: b"{\"a\":1}".to_vec(),
            create_revision: 3,
            mod_revision: 9,
            version: 4,
            lease: 0,
        };
        let raw = entry_key("topics/a");
        assert_eq!(KeyEntry::decode(&raw, &entry.encode()).unwrap(), entry);
        let error = KeyEntry::decode(&raw, &[0; ENTRY_HEADER_BYTES - 1]).unwrap_err();
        assert!(matches!(
            &error,
            StoreError::CorruptViewEntry { key, .. } if key == "ktopics/a"
        ));
    }

    #[test]
    fn keys_are_described_readably() {
        let id = Uuid::from_u128(0x1234);
        for (raw, described) in [
            (entry_key("a/b"), "ka/b".to_string()),
            (idempotency_key(&id), format!("i{id}")),
            (expiry_key(42, &id), format!("q42/{id}")),
            (APPLIED_KEY.to_vec(), "m:applied".to_string()),
        ] {
            assert_eq!(describe(&raw), described);
        }
        assert_eq!(expiry_id(&expiry_key(42, &id)).unwrap(), id);
    }
}
