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
//! concurrently.
//!
//! Committed batches are written behind: they go to an in-memory layer of
//! unwritten changes, which every read consults before sled. A checkpoint
//! seals that layer (new commits start a fresh one) and writes it to sled
//! in one batch. sled makes every batch atomic by writing its I/O buffer
//! out at once, which costs more than applying one log entry; one batch per
//! many entries keeps that off each write. A sealed layer carries the
//! applied id of the last entry it covers, so sled always holds the state
//! after a whole prefix of the log.
//!
//! Reads look at the layer being filled, then the sealed one, then sled: a
//! change leaves a layer only after sled has it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

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

/// Changes committed but not yet written to sled, by raw key: `None` for a
/// removed key.
type Unwritten = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The changes not yet in sled.
#[derive(Debug, Default)]
struct Layers {
    /// Where commits go.
    active: Unwritten,
    /// Sealed by a checkpoint, being written to sled.
    sealed: Arc<Unwritten>,
}

/// The sled view.
#[derive(Clone, Debug)]
pub struct View {
    db: sled::Db,
    layers: Arc<RwLock<Layers>>,
    /// A rebuild is under way (its marker is in sled).
    rebuilding: Arc<AtomicBool>,
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
        let db = crate::store::open_sled(dir)?;
        Ok(View {
            db,
            layers: Arc::new(RwLock::new(Layers::default())),
            rebuilding: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The value under the raw key `raw`: unwritten changes first, then sled.
    fn raw_get(&self, raw: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        {
            let layers = self.layers.read();
            if let Some(value) = layers.active.get(raw).or_else(|| layers.sealed.get(raw)) {
                return Ok(value.clone());
            }
        }
        Ok(self.db.get(raw)?.map(|bytes| bytes.to_vec()))
    }

    /// Raw keys and values from `start` (included) while they start with
    /// `prefix`, in key order: sled merged with the unwritten changes taken
    /// when the scan starts.
    fn raw_scan<'a>(
        &'a self,
        start: Vec<u8>,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a {
        let mut overlay = Unwritten::new();
        {
            let layers = self.layers.read();
            // The sealed layer first: the active one is newer.
            for layer in [&*layers.sealed, &layers.active] {
                let range = layer
                    .range::<[u8], _>((Bound::Included(start.as_slice()), Bound::Unbounded))
                    .take_while(|(raw, _)| raw.starts_with(prefix));
                for (raw, value) in range {
                    overlay.insert(raw.clone(), value.clone());
                }
            }
        }
        MergedScan {
            stored: self
                .db
                .range(start..)
                .take_while(move |item| match item {
                    Ok((raw, _)) => raw.starts_with(prefix),
                    Err(_) => true,
                })
                .peekable(),
            overlay: overlay.into_iter().peekable(),
        }
    }

    /// The entry of `key`, if it exists.
    pub fn get(&self, key: &str) -> Result<Option<KeyEntry>, StoreError> {
        let raw = key_of(key);
        match self.raw_get(&raw)? {
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
        for item in self.raw_scan(start, &raw_prefix) {
            let (raw, bytes) = item?;
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
        self.raw_scan(vec![KEY_PREFIX], &[KEY_PREFIX]).map(|item| {
            let (raw, bytes) = item?;
            let entry = KeyEntry::decode(&raw[1..], &bytes)?;
            Ok((String::from_utf8_lossy(&raw[1..]).into_owned(), entry))
        })
    }

    /// The last applied log id and the membership as of it.
    pub fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let applied = match self.raw_get(APPLIED_KEY)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("view's applied log id is unreadable: {e}"))
            })?,
            None => None,
        };
        let membership = match self.raw_get(MEMBERSHIP_KEY)? {
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
        for item in self.raw_scan(vec![IDEMPOTENCY_PREFIX], &[IDEMPOTENCY_PREFIX]) {
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
            pending: BTreeMap::new(),
        }
    }

    /// Commits a batch: readers see all of it from now on, and it reaches
    /// sled whole, with the batches committed after it up to the next seal.
    /// Returns how many changes are not sealed yet.
    pub fn commit(&self, batch: ViewBatch<'_>) -> usize {
        let mut layers = self.layers.write();
        layers.active.extend(batch.pending);
        layers.active.len()
    }

    /// Seals what was committed so far: the next [`View::flush`] writes it
    /// and nothing committed after.
    pub fn seal(&self) {
        let mut layers = self.layers.write();
        let active = std::mem::take(&mut layers.active);
        if layers.sealed.is_empty() {
            layers.sealed = Arc::new(active);
        } else {
            // The last write failed: seal the newer changes over it.
            Arc::make_mut(&mut layers.sealed).extend(active);
        }
    }

    /// Writes the sealed changes to sled in one batch and makes them durable.
    /// Those who write the view out (checkpoint, rebuild) take turns.
    pub fn flush(&self) -> Result<(), StoreError> {
        let sealed = Arc::clone(&self.layers.read().sealed);
        if !sealed.is_empty() && self.rebuilding.load(Ordering::Acquire) {
            // A rebuild needs no atomic batch (the marker makes a crash
            // start it over): the keys go in on every core.
            let changes: Vec<_> = sealed.iter().collect();
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let chunk = changes.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let writers: Vec<_> = changes
                    .chunks(chunk)
                    .map(|changes| {
                        scope.spawn(move || {
                            for (raw, value) in changes {
                                match value {
                                    Some(value) => {
                                        self.db.insert(raw.as_slice(), value.as_slice())?
                                    }
                                    None => self.db.remove(raw.as_slice())?,
                                };
                            }
                            Ok::<_, sled::Error>(())
                        })
                    })
                    .collect();
                writers
                    .into_iter()
                    .try_for_each(|writer| writer.join().expect("a view writer does not panic"))
            })?;
            self.layers.write().sealed = Arc::default();
        } else if !sealed.is_empty() {
            let mut batch = sled::Batch::default();
            for (raw, value) in sealed.iter() {
                match value {
                    Some(value) => batch.insert(raw.as_slice(), value.as_slice()),
                    None => batch.remove(raw.as_slice()),
                }
            }
            self.db.apply_batch(batch)?;
            self.layers.write().sealed = Arc::default();
        }
        self.db.flush()?;
        Ok(())
    }

    /// Seals and flushes everything committed.
    pub fn write_out(&self) -> Result<(), StoreError> {
        self.seal();
        self.flush()
    }

    /// Whether a rebuild was started and not finished.
    pub fn is_rebuilding(&self) -> Result<bool, StoreError> {
        Ok(self.raw_get(REBUILDING_KEY)?.is_some())
    }

    /// Marks a rebuild as started (`true`) or finished (`false`), durably,
    /// after everything committed before.
    pub fn set_rebuilding(&self, rebuilding: bool) -> Result<(), StoreError> {
        self.write_out()?;
        if rebuilding {
            self.db.insert(REBUILDING_KEY, &[])?;
        } else {
            self.db.remove(REBUILDING_KEY)?;
        }
        self.db.flush()?;
        self.rebuilding.store(rebuilding, Ordering::Release);
        Ok(())
    }

    /// Removes everything (before a rebuild or a snapshot install).
    pub fn clear(&self) -> Result<(), StoreError> {
        *self.layers.write() = Layers::default();
        self.db.clear()?;
        Ok(())
    }
}

/// sled's scan merged with unwritten changes, which win on equal keys.
struct MergedScan<S, O>
where
    S: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    O: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
{
    stored: std::iter::Peekable<S>,
    overlay: std::iter::Peekable<O>,
}

impl<S, O> Iterator for MergedScan<S, O>
where
    S: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    O: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
{
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let from_overlay = match (self.stored.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => {
                    let error = self.stored.next()?.err()?;
                    return Some(Err(error.into()));
                }
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((stored, _))), Some((unwritten, _))) => {
                    if stored.as_ref() == unwritten.as_slice() {
                        // The unwritten change replaces the stored value.
                        self.stored.next();
                        true
                    } else {
                        unwritten.as_slice() < stored.as_ref()
                    }
                }
            };
            if from_overlay {
                let (raw, value) = self.overlay.next()?;
                match value {
                    Some(value) => return Some(Ok((raw, value))),
                    None => continue,
                }
            }
            let (raw, value) = self.stored.next()?.ok()?;
            return Some(Ok((raw.to_vec(), value.to_vec())));
        }
    }
}

/// Changes to the view being prepared; reads through it see them.
pub struct ViewBatch<'a> {
    view: &'a View,
    /// Raw keys written in this batch: `None` for removed.
    pending: Unwritten,
}

impl ViewBatch<'_> {
    fn raw_get(&self, raw: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.get(raw) {
            Some(value) => Ok(value.clone()),
            None => self.view.raw_get(raw),
        }
    }

    fn raw_put(&mut self, raw: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(raw, Some(value));
    }

    fn raw_remove(&mut self, raw: Vec<u8>) {
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
        for item in self.view.raw_scan(vec![EXPIRY_PREFIX], &[EXPIRY_PREFIX]) {
            let (raw, _) = item?;
            if raw >= end {
                break;
            }
            if self.pending.get(&raw) == Some(&None) {
                continue;
            }
            expired.push(raw);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, revision: Revision) -> KeyEntry {
        KeyEntry {
            value: value.as_bytes().to_vec(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
        }
    }

    fn listed(view: &View, prefix: &str) -> Vec<(String, String)> {
        let (entries, more) = view.list(prefix, None, 100).unwrap();
        assert!(!more);
        entries
            .into_iter()
            .map(|(key, entry)| (key, String::from_utf8(entry.value).unwrap()))
            .collect()
    }

    /// Reads merge the layer being filled, the sealed layer and sled, the
    /// newest winning, and a key removed in a layer stays hidden.
    #[test]
    fn reads_see_every_layer_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path()).unwrap();
        let mut batch = view.batch();
        batch.put("a/1", &entry("sled", 1));
        batch.put("a/2", &entry("sled", 1));
        batch.put("a/3", &entry("sled", 1));
        view.commit(batch);
        view.write_out().unwrap();

        let mut batch = view.batch();
        batch.put("a/2", &entry("sealed", 2));
        batch.remove("a/3");
        batch.put("a/4", &entry("sealed", 2));
        view.commit(batch);
        view.seal();

        let mut batch = view.batch();
        batch.put("a/4", &entry("active", 3));
        batch.put("a/0", &entry("active", 3));
        batch.put("b/1", &entry("active", 3));
        view.commit(batch);

        let expected = vec![
            ("a/0".to_string(), "active".to_string()),
            ("a/1".to_string(), "sled".to_string()),
            ("a/2".to_string(), "sealed".to_string()),
            ("a/4".to_string(), "active".to_string()),
        ];
        assert_eq!(listed(&view, "a/"), expected);
        assert_eq!(view.get("a/3").unwrap(), None);
        assert_eq!(view.get("a/4").unwrap().unwrap().mod_revision, 3);

        // Written out and reopened, sled alone holds the same.
        view.write_out().unwrap();
        drop(view);
        let view = View::open(dir.path()).unwrap();
        assert_eq!(listed(&view, "a/"), expected);
        assert_eq!(listed(&view, "b/").len(), 1);
    }

    /// A flush writes what was sealed and nothing committed after: the
    /// checkpoint relies on it to keep the view behind the durable topic.
    #[test]
    fn flush_writes_only_what_was_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path()).unwrap();
        let mut batch = view.batch();
        batch.put("sealed", &entry("x", 1));
        view.commit(batch);
        view.seal();
        let mut batch = view.batch();
        batch.put("later", &entry("y", 2));
        view.commit(batch);
        view.flush().unwrap();
        drop(view);
        let view = View::open(dir.path()).unwrap();
        assert!(view.get("sealed").unwrap().is_some());
        assert_eq!(view.get("later").unwrap(), None);
    }
}
