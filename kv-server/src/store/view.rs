//! The materialized view: the latest entry of every key, in sled.
//!
//! One sled tree holds everything, so one `sled::Batch` updates the keys of
//! an applied batch of log entries together with the applied log id — the
//! view is always the state after some whole prefix of the log. Key layout:
//!
//! ```text
//! k<key>                 → create_revision | mod_revision | version (u64 BE) | value
//! m:applied              → JSON Option<LogId>: the last applied log entry
//! m:membership           → JSON StoredMembership
//! i<uuid>                → JSON IdempotentWrite: the result of a write with that key
//! q<timestamp_ms BE><uuid> → (empty) expiry queue of the idempotency entries
//! ```
//!
//! Only the state machine writes (through [`ViewBatch`]); HTTP handlers read
//! concurrently, which sled makes safe without locks of ours.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::types::{CommandResult, LogId, Revision, StoredMembership};

const KEY_PREFIX: u8 = b'k';
const IDEMPOTENCY_PREFIX: u8 = b'i';
const EXPIRY_PREFIX: u8 = b'q';
const APPLIED_KEY: &[u8] = b"m:applied";
const MEMBERSHIP_KEY: &[u8] = b"m:membership";
const REBUILDING_KEY: &[u8] = b"m:rebuilding";
const ENTRY_HEADER_BYTES: usize = 24;

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
}

impl KeyEntry {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_HEADER_BYTES + self.value.len());
        out.extend_from_slice(&self.create_revision.to_be_bytes());
        out.extend_from_slice(&self.mod_revision.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(key: &[u8], bytes: &[u8]) -> Result<KeyEntry, StoreError> {
        if bytes.len() < ENTRY_HEADER_BYTES {
            return Err(StoreError::Corrupt(format!(
                "view entry of key {:?} is {} bytes, shorter than its header",
                String::from_utf8_lossy(key),
                bytes.len()
            )));
        }
        let number = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(KeyEntry {
            create_revision: number(0),
            mod_revision: number(8),
            version: number(16),
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
}

/// The sled view.
#[derive(Clone, Debug)]
pub struct View {
    db: sled::Db,
}

fn key_of(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(KEY_PREFIX);
    out.extend_from_slice(key.as_bytes());
    out
}

fn idempotency_key_of(id: &Uuid) -> Vec<u8> {
    let mut out = vec![IDEMPOTENCY_PREFIX];
    out.extend_from_slice(id.as_bytes());
    out
}

fn expiry_key_of(timestamp_ms: u64, id: &Uuid) -> Vec<u8> {
    let mut out = vec![EXPIRY_PREFIX];
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("view metadata always serializes")
}

impl View {
    /// Opens (or creates) the view in `dir`.
    pub fn open(dir: &Path) -> Result<View, StoreError> {
        let db = crate::store::open_sled(dir, false)?;
        Ok(View { db })
    }

    /// The entry of `key`, if it exists.
    pub fn get(&self, key: &str) -> Result<Option<KeyEntry>, StoreError> {
        let raw = key_of(key);
        match self.db.get(&raw)? {
            Some(bytes) => Ok(Some(KeyEntry::decode(&raw[1..], &bytes)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` entries whose keys start with `prefix`, in key order,
    /// after `start_after` if given; and whether more follow.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(String, KeyEntry)>, bool), StoreError> {
        let raw_prefix = key_of(prefix);
        let mut out = Vec::new();
        let start = match start_after {
            Some(after) if after.as_bytes() >= prefix.as_bytes() => {
                let mut start = key_of(after);
                start.push(0);
                start
            }
            _ => raw_prefix.clone(),
        };
        for item in self.db.range(start..) {
            let (raw, bytes) = item?;
            if !raw.starts_with(&raw_prefix) {
                break;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            let key = String::from_utf8_lossy(&raw[1..]).into_owned();
            out.push((key, KeyEntry::decode(&raw[1..], &bytes)?));
        }
        Ok((out, false))
    }

    /// Every key and entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = Result<(String, KeyEntry), StoreError>> + '_ {
        self.db.scan_prefix([KEY_PREFIX]).map(|item| {
            let (raw, bytes) = item?;
            let entry = KeyEntry::decode(&raw[1..], &bytes)?;
            Ok((String::from_utf8_lossy(&raw[1..]).into_owned(), entry))
        })
    }

    /// The last applied log id and the membership as of it.
    pub fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let applied = match self.db.get(APPLIED_KEY)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("view's applied log id is unreadable: {e}"))
            })?,
            None => None,
        };
        let membership = match self.db.get(MEMBERSHIP_KEY)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("view's membership is unreadable: {e}"))
            })?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Every remembered idempotent write.
    pub fn idempotent_writes(&self) -> Result<BTreeMap<Uuid, IdempotentWrite>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.db.scan_prefix([IDEMPOTENCY_PREFIX]) {
            let (raw, bytes) = item?;
            let id = Uuid::from_slice(&raw[1..])
                .map_err(|e| StoreError::Corrupt(format!("bad idempotency key in view: {e}")))?;
            let write = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("bad idempotency entry {id}: {e}")))?;
            out.insert(id, write);
        }
        Ok(out)
    }

    /// Starts a batch of changes, applied by [`View::commit`].
    pub fn batch(&self) -> ViewBatch<'_> {
        ViewBatch {
            view: self,
            batch: sled::Batch::default(),
            pending: BTreeMap::new(),
        }
    }

    /// Applies a batch atomically.
    pub fn commit(&self, batch: ViewBatch<'_>) -> Result<(), StoreError> {
        self.db.apply_batch(batch.batch)?;
        Ok(())
    }

    /// Makes everything committed durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Whether a rebuild was started and not finished.
    pub fn is_rebuilding(&self) -> Result<bool, StoreError> {
        Ok(self.db.contains_key(REBUILDING_KEY)?)
    }

    /// Marks a rebuild as started (`true`) or finished (`false`), durably.
    pub fn set_rebuilding(&self, rebuilding: bool) -> Result<(), StoreError> {
        if rebuilding {
            self.db.insert(REBUILDING_KEY, &[])?;
        } else {
            self.db.remove(REBUILDING_KEY)?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// Removes everything (before a rebuild or a snapshot install).
    pub fn clear(&self) -> Result<(), StoreError> {
        self.db.clear()?;
        Ok(())
    }
}

/// Changes to the view being prepared; reads through it see them.
pub struct ViewBatch<'a> {
    view: &'a View,
    batch: sled::Batch,
    /// Raw keys written in this batch: `None` for removed.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl ViewBatch<'_> {
    fn raw_get(&self, raw: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.get(raw) {
            Some(value) => Ok(value.clone()),
            None => Ok(self.view.db.get(raw)?.map(|bytes| bytes.to_vec())),
        }
    }

    fn raw_put(&mut self, raw: Vec<u8>, value: Vec<u8>) {
        self.batch.insert(raw.clone(), value.clone());
        self.pending.insert(raw, Some(value));
    }

    fn raw_remove(&mut self, raw: Vec<u8>) {
        self.batch.remove(raw.clone());
        self.pending.insert(raw, None);
    }

    /// The entry of `key` as of this batch.
    pub fn get(&self, key: &str) -> Result<Option<KeyEntry>, StoreError> {
        let raw = key_of(key);
        match self.raw_get(&raw)? {
            Some(bytes) => Ok(Some(KeyEntry::decode(&raw[1..], &bytes)?)),
            None => Ok(None),
        }
    }

    /// Sets the entry of `key`.
    pub fn put(&mut self, key: &str, entry: &KeyEntry) {
        self.raw_put(key_of(key), entry.encode());
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.raw_remove(key_of(key));
    }

    /// The remembered result of the write with idempotency key `id`.
    pub fn idempotent_write(&self, id: &Uuid) -> Result<Option<IdempotentWrite>, StoreError> {
        match self.raw_get(&idempotency_key_of(id))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("bad idempotency entry {id}: {e}"))),
            None => Ok(None),
        }
    }

    /// Remembers the result of the write with idempotency key `id`.
    pub fn remember(&mut self, id: &Uuid, write: &IdempotentWrite) {
        self.raw_put(idempotency_key_of(id), json(write));
        self.raw_put(expiry_key_of(write.timestamp_ms, id), Vec::new());
    }

    /// Forgets idempotent writes accepted before `before_ms`.
    pub fn expire_idempotent_writes(&mut self, before_ms: u64) -> Result<usize, StoreError> {
        let end = expiry_key_of(before_ms, &Uuid::nil());
        let mut expired = Vec::new();
        for item in self.view.db.range(vec![EXPIRY_PREFIX]..end) {
            let (raw, _) = item?;
            expired.push(raw.to_vec());
        }
        for raw in &expired {
            let id = Uuid::from_slice(&raw[9..])
                .map_err(|e| StoreError::Corrupt(format!("bad expiry entry in view: {e}")))?;
            self.raw_remove(raw.clone());
            self.raw_remove(idempotency_key_of(&id));
        }
        Ok(expired.len())
    }

    /// Records the last applied log id.
    pub fn set_applied(&mut self, applied: &LogId) {
        self.raw_put(APPLIED_KEY.to_vec(), json(&Some(applied)));
    }

    /// Records the membership.
    pub fn set_membership(&mut self, membership: &StoredMembership) {
        self.raw_put(MEMBERSHIP_KEY.to_vec(), json(membership));
    }
}
