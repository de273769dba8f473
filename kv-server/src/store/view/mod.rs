//! The materialized view: the latest entry of every key, in sled.
//!
//! One sled tree holds everything ([`layout`] says how), so one
//! `sled::Batch` updates the keys of an applied batch of log entries
//! together with the applied log id — sled always holds the state after
//! some whole prefix of the log.
//!
//! Only the state machine writes (through [`ViewBatch`]); HTTP handlers read
//! concurrently. Committed batches are written behind ([`layers`]): readers
//! see them at once, and a checkpoint writes many of them to sled in one
//! batch. sled makes every batch atomic by writing its I/O buffer out at
//! once, which costs more than applying one log entry; one batch per many
//! entries keeps that off each write. A sealed layer carries the applied id
//! of the last entry it covers, so sled stays at a whole prefix of the log.
//! While the view is rebuilt, the sealed layers are written on every core
//! instead ([`rebuild`]).
//!
//! A read of several values (a list page, the applied state) reflects one
//! committed state, though sled is written under it: it starts again when a
//! checkpoint wrote to sled meanwhile ([`layers::SledWrites`]).
//!
//! A snapshot install builds a whole new database beside the one in use
//! and swaps it in with [`View::switch_to`]: a reader sees the old state or
//! the new one, never a view half replayed.
//!
//! Each write-out also moves the view's digest, which opening checks
//! against a read of every record ([`digest`]): sled can come back from
//! damage to its files without some records, and says nothing.
//!
//! The view does not order its writers: [`View::flush`] writes whatever is
//! sealed when it is called. The store calls it under its own write-out lock,
//! so a checkpoint and a rebuild never write out at the same time.

mod batch;
mod batch_scan;
mod digest;
mod dirs;
mod layers;
mod layout;
mod rebuild;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tracing::info;

pub use batch::ViewBatch;
pub use dirs::ViewDirs;
pub use layout::{IdempotentWrite, KeyEntry};

use crate::acl::principal::Principal;
use crate::error::StoreError;
use crate::store::queries::PageBounds;
use crate::types::{LogId, Revision, StoredMembership};
use digest::Digest;
pub use layers::Unsealed;
use layers::{Layers, MergedScan, SledWrites, Unwritten};
use layout::{
    decode_applied, decode_membership, decode_revision, entry_key, user_key, APPLIED_KEY,
    DIGEST_KEY, FORMAT_KEY, MEMBERSHIP_KEY, REBUILDING_KEY, REVISION_KEY, VIEW_FORMAT,
};

/// One page of a list, and the store's revision of the state it shows.
#[derive(Debug)]
pub struct ListPage {
    /// The keys and their entries, in key order.
    pub entries: Vec<(String, KeyEntry)>,
    /// Whether more keys follow.
    pub more: bool,
    /// The store's revision when the page was read.
    pub revision: Revision,
}

/// The sled view: the database in use, which a snapshot install replaces
/// with one built beside it, in one step. Clones share it.
///
/// A read pins the database in use for as long as it runs, so a read of
/// several values (a list page, the applied state) sees one database
/// whole, the old one or the new one: never a mix. The lock is held only
/// to clone or swap the pointer.
#[derive(Clone, Debug)]
pub struct View {
    current: Arc<RwLock<Arc<ViewDb>>>,
}

/// One sled database of the view and its unwritten changes.
#[derive(Debug)]
struct ViewDb {
    db: sled::Db,
    /// Held by whatever writes to sled: a write-out reads the digest and
    /// the values it replaces, then writes, and must see no other write
    /// between.
    writer: Mutex<()>,
    /// Unwritten changes. Readers and the state machine hold the lock only
    /// for map operations, never across sled I/O.
    layers: RwLock<Layers>,
    /// A rebuild is under way (its marker is in sled).
    rebuilding: AtomicBool,
    /// Tells reads of several values that sled changed under them.
    sled_writes: SledWrites,
    /// Tokens resolved by the state machine's checks at apply (see
    /// [`ViewBatch::principal`]), by the hash of their secret, as the
    /// committed view holds them: emptied by each commit of a batch that
    /// changed a role or token. A new database (a rebuild, an installed
    /// snapshot) starts empty.
    principals: Mutex<HashMap<String, Arc<Principal>>>,
}

impl View {
    /// Opens (or creates) the view in `dir`. A view of another layout
    /// format is refused (the store then rebuilds it from the topic).
    pub fn open(dir: &Path) -> Result<View, StoreError> {
        Ok(View {
            current: Arc::new(RwLock::new(Arc::new(ViewDb::open(dir)?))),
        })
    }

    /// The database in use, pinned for one read.
    fn pinned(&self) -> Arc<ViewDb> {
        Arc::clone(&self.current.read())
    }

    /// Makes `next`'s database the one in use, in one step, and gives back
    /// the one it replaces. Readers already running finish on the old one;
    /// every read that starts after sees the new one. The caller stops
    /// writing to the old one first.
    pub fn switch_to(&self, next: &View) -> RetiredView {
        let next = next.pinned();
        let old = std::mem::replace(&mut *self.current.write(), next);
        RetiredView { db: old }
    }

    /// The value under the raw key `raw`: unwritten changes first, then sled.
    fn raw_get(&self, raw: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.pinned().raw_get(raw)
    }

    /// [`ViewDb::raw_scan`] of the database in use.
    fn raw_scan<'a>(
        &self,
        start: Vec<u8>,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a {
        self.pinned().raw_scan(start, prefix)
    }

    /// The entry of `key`, if it exists.
    pub fn get(&self, key: &str) -> Result<Option<KeyEntry>, StoreError> {
        self.pinned().get(key)
    }

    /// [`View::get`], with the store's revision of the state the entry
    /// was read from: never below its `mod_revision`, and never below a
    /// delete it does not show.
    pub fn get_at_revision(&self, key: &str) -> Result<(Option<KeyEntry>, Revision), StoreError> {
        self.pinned().get_at_revision(key)
    }

    /// Entries whose keys start with `prefix`, in key order, after
    /// `start_after` if given, as many as `bounds` allow; and whether more
    /// follow. The page reflects one committed state.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        bounds: PageBounds,
    ) -> Result<(Vec<(String, KeyEntry)>, bool), StoreError> {
        let page = self.list_at_revision(prefix, start_after, bounds)?;
        Ok((page.entries, page.more))
    }

    /// [`View::list`], with the store's revision of the state the page
    /// shows: a client that lists and then watches from that revision
    /// misses nothing and sees nothing twice.
    pub fn list_at_revision(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        bounds: PageBounds,
    ) -> Result<ListPage, StoreError> {
        self.pinned().list_at_revision(prefix, start_after, bounds)
    }

    /// The last applied log id and the membership as of it.
    pub fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let (applied, _, membership) = self.applied_state_and_revision()?;
        Ok((applied, membership))
    }

    /// The last applied log id, the store's revision and the membership,
    /// all as of the same applied entry.
    pub fn applied_state_and_revision(
        &self,
    ) -> Result<(Option<LogId>, Revision, StoredMembership), StoreError> {
        self.pinned().applied_state_and_revision()
    }

    /// The store's revision as of the last applied log id (0 before the
    /// first record).
    pub fn revision(&self) -> Result<Revision, StoreError> {
        match self.raw_get(REVISION_KEY)? {
            Some(bytes) => decode_revision(&bytes),
            None => Ok(0),
        }
    }

    /// Starts a batch of changes, applied by [`View::commit`].
    pub fn batch(&self) -> ViewBatch<'_> {
        ViewBatch {
            view: self,
            pending: Unwritten::new(),
            nospace: None,
            acl_changed: false,
        }
    }

    /// Commits a batch: readers see all of it from now on, and it reaches
    /// sled whole, with the batches committed after it up to the next seal.
    /// Returns how many changes are not sealed yet.
    pub fn commit(&self, batch: ViewBatch<'_>) -> usize {
        let db = self.pinned();
        let unsealed = db.layers.write().commit(batch.pending);
        if batch.acl_changed {
            db.principals.lock().clear();
        }
        unsealed
    }

    /// How much was committed since the last seal.
    pub fn unsealed(&self) -> Unsealed {
        self.pinned().layers.read().unsealed()
    }

    /// Seals what was committed so far: the next [`View::flush`] writes it
    /// and nothing committed after.
    pub fn seal(&self) {
        self.pinned().layers.write().seal();
    }

    /// Writes the sealed changes to sled and makes them durable: in one
    /// atomic batch, or on every core while a rebuild is under way.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.pinned().flush()
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
        self.pinned().set_rebuilding(rebuilding)
    }

    /// Removes everything before a rebuild, and marks the view as being
    /// rebuilt first: a crash part-way leaves the marker, so the next start
    /// rebuilds again rather than find a view that fails its digest.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.pinned().clear()
    }
}

/// Sums every record of the view database in `dir` and compares the sum
/// with the digest written with them.
fn check_digest(db: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    let named = |source| StoreError::Sled {
        path: dir.to_path_buf(),
        source,
    };
    let started = std::time::Instant::now();
    let stored = Digest::stored(db).map_err(named)?;
    let (found, records) = Digest::of_every_record(db).map_err(named)?;
    if stored == Some(found) {
        info!(
            dir = %dir.display(),
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checked the view against its digest"
        );
        return Ok(());
    }
    Err(StoreError::ViewDigest {
        dir: dir.to_path_buf(),
        records,
        found: found.to_string(),
        stored: stored.map_or_else(|| "a damaged digest".to_string(), |d| d.to_string()),
    })
}

/// A view database replaced by [`View::switch_to`], kept until its last
/// reader is done with it.
pub struct RetiredView {
    db: Arc<ViewDb>,
}

impl RetiredView {
    /// Waits, at most `limit`, for the reads still running on the old
    /// database to end, then closes it; gives whether it was closed (else
    /// a read still holds it, and it closes when that read ends).
    pub fn close(self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while Arc::strong_count(&self.db) > 1 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }
}

impl ViewDb {
    /// Opens (or creates) the view database in `dir`.
    fn open(dir: &Path) -> Result<ViewDb, StoreError> {
        let db = crate::store::open_sled(dir)?;
        match db.get(FORMAT_KEY)? {
            Some(format) if format.as_ref() == VIEW_FORMAT => {}
            // A view that holds nothing yet takes today's format.
            None if db.is_empty() => {
                db.insert(FORMAT_KEY, VIEW_FORMAT)?;
                db.flush()?;
            }
            found => {
                return Err(StoreError::ViewFormat {
                    dir: dir.to_path_buf(),
                    found: found.map_or_else(
                        || "none".to_string(),
                        |format| String::from_utf8_lossy(&format).into_owned(),
                    ),
                })
            }
        }
        // A rebuild under way starts over, so its records need no check.
        // sled panics on some damaged pages rather than answering an error,
        // which would stop every start at the same page.
        if db.get(REBUILDING_KEY)?.is_none() {
            crate::store::unless_panicked(dir, || check_digest(&db, dir))??;
        }
        Ok(ViewDb {
            db,
            writer: Mutex::new(()),
            layers: RwLock::new(Layers::default()),
            rebuilding: AtomicBool::new(false),
            sled_writes: SledWrites::default(),
            principals: Mutex::new(HashMap::new()),
        })
    }

    /// The value under the raw key `raw`: unwritten changes first, then sled.
    fn raw_get(&self, raw: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.layers.read().get(raw) {
            return Ok(value.clone());
        }
        Ok(self.db.get(raw)?.map(|bytes| bytes.to_vec()))
    }

    /// The values of the raw keys `raws` as of one committed state.
    fn raw_get_together<const N: usize>(
        &self,
        raws: [&[u8]; N],
    ) -> Result<[Option<Vec<u8>>; N], StoreError> {
        self.sled_writes.consistent(|| {
            // One look at the layers for every key: no commit falls between.
            let unwritten = {
                let layers = self.layers.read();
                raws.map(|raw| layers.get(raw).cloned())
            };
            let mut values: [Option<Vec<u8>>; N] = std::array::from_fn(|_| None);
            for ((raw, unwritten), value) in raws.iter().zip(unwritten).zip(&mut values) {
                *value = match unwritten {
                    Some(unwritten) => unwritten,
                    None => self.db.get(raw)?.map(|bytes| bytes.to_vec()),
                };
            }
            Ok(values)
        })
    }

    /// Raw keys and values from `start` (included) while they start with
    /// `prefix`, in key order: sled merged with the unwritten changes taken
    /// when the scan starts.
    ///
    /// sled is read live: a checkpoint that writes changes committed after
    /// the scan started shows them in the keys the scan has yet to reach.
    /// A scan that must see one state runs under
    /// [`SledWrites::consistent`].
    fn raw_scan<'a>(
        &self,
        start: Vec<u8>,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a {
        let overlay = self.layers.read().overlay(&start, prefix);
        self.raw_scan_over(overlay, start, prefix)
    }

    /// [`View::raw_scan`] with the unwritten changes already taken.
    fn raw_scan_over<'a>(
        &self,
        overlay: Unwritten,
        start: Vec<u8>,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a {
        let stored = self.db.range(start..).take_while(move |item| match item {
            Ok((raw, _)) => raw.starts_with(prefix),
            Err(_) => true,
        });
        MergedScan::new(stored, overlay.into_iter())
    }

    /// The entry of `key`, if it exists.
    fn get(&self, key: &str) -> Result<Option<KeyEntry>, StoreError> {
        let raw = entry_key(key);
        match self.raw_get(&raw)? {
            Some(bytes) => Ok(Some(KeyEntry::decode(&raw, &bytes)?)),
            None => Ok(None),
        }
    }

    /// [`View::get_at_revision`] of this database.
    fn get_at_revision(&self, key: &str) -> Result<(Option<KeyEntry>, Revision), StoreError> {
        let raw = entry_key(key);
        let [entry, revision] = self.raw_get_together([&raw, REVISION_KEY])?;
        let entry = match entry {
            Some(bytes) => Some(KeyEntry::decode(&raw, &bytes)?),
            None => None,
        };
        let revision = match revision {
            Some(bytes) => decode_revision(&bytes)?,
            None => 0,
        };
        Ok((entry, revision))
    }

    /// [`View::list_at_revision`] of this database. A checkpoint during
    /// the scan makes it start again.
    fn list_at_revision(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        bounds: PageBounds,
    ) -> Result<ListPage, StoreError> {
        self.sled_writes
            .consistent(|| self.list_once(prefix, start_after, bounds, || {}))
    }

    /// One scan of [`View::list`], calling `after_entry` after each entry
    /// it reads: tests write to sled there, mid-scan.
    fn list_once(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        bounds: PageBounds,
        mut after_entry: impl FnMut(),
    ) -> Result<ListPage, StoreError> {
        let raw_prefix = entry_key(prefix);
        let mut out = Vec::new();
        let start = match start_after {
            Some(after) if after.as_bytes() >= prefix.as_bytes() => {
                // The first raw key above `after`'s own.
                let mut start = entry_key(after);
                start.push(0);
                start
            }
            _ => raw_prefix.clone(),
        };
        // The unwritten changes and the revision they end at, taken
        // together; sled's part stays put while `consistent` holds.
        let (overlay, unwritten_revision) = {
            let layers = self.layers.read();
            (
                layers.overlay(&start, &raw_prefix),
                layers.get(REVISION_KEY).cloned(),
            )
        };
        let revision = match unwritten_revision {
            Some(Some(bytes)) => decode_revision(&bytes)?,
            Some(None) => 0,
            None => match self.db.get(REVISION_KEY)? {
                Some(bytes) => decode_revision(&bytes)?,
                None => 0,
            },
        };
        let mut value_bytes = 0;
        let mut more = false;
        for item in self.raw_scan_over(overlay, start, &raw_prefix) {
            let (raw, bytes) = item?;
            let entry = KeyEntry::decode(&raw, &bytes)?;
            if !bounds.admits(out.len(), value_bytes, entry.value.len()) {
                more = true;
                break;
            }
            value_bytes += entry.value.len();
            out.push((user_key(&raw), entry));
            after_entry();
        }
        Ok(ListPage {
            entries: out,
            more,
            revision,
        })
    }

    /// The last applied log id, the store's revision and the membership,
    /// all as of the same applied entry.
    fn applied_state_and_revision(
        &self,
    ) -> Result<(Option<LogId>, Revision, StoredMembership), StoreError> {
        let [applied, revision, membership] =
            self.raw_get_together([APPLIED_KEY, REVISION_KEY, MEMBERSHIP_KEY])?;
        let applied = match applied {
            Some(bytes) => decode_applied(&bytes)?,
            None => None,
        };
        let revision = match revision {
            Some(bytes) => decode_revision(&bytes)?,
            None => 0,
        };
        let membership = match membership {
            Some(bytes) => decode_membership(&bytes)?,
            None => StoredMembership::default(),
        };
        Ok((applied, revision, membership))
    }

    /// [`View::flush`] of this database.
    fn flush(&self) -> Result<(), StoreError> {
        let _writer = self.writer.lock();
        // The layers' lock is not held while sled writes: readers keep
        // reading the sealed layer until it is dropped, after sled has it.
        let sealed = self.layers.read().sealed();
        if !sealed.is_empty() {
            self.sled_writes.writing(|| self.write_sealed(&sealed))?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// Writes `sealed` to sled, then drops it from the layers.
    fn write_sealed(&self, sealed: &Unwritten) -> Result<(), StoreError> {
        let mut digest = Digest::stored(&self.db)?.unwrap_or_default();
        if self.rebuilding.load(Ordering::Acquire) {
            digest.merge(rebuild::write_in_parallel(&self.db, sealed)?);
            self.db.insert(DIGEST_KEY, &digest.encode())?;
        } else {
            let mut batch = sled::Batch::default();
            for (raw, value) in sealed.iter() {
                // Only this writer writes to sled: what it reads now is
                // what the batch replaces.
                let old = self.db.get(raw)?;
                digest.replace(raw, old.as_deref(), value.as_deref());
                match value {
                    Some(value) => batch.insert(raw.as_slice(), value.as_slice()),
                    None => batch.remove(raw.as_slice()),
                }
            }
            batch.insert(DIGEST_KEY, &digest.encode());
            self.db.apply_batch(batch)?;
        }
        self.layers.write().written();
        Ok(())
    }

    /// Marks a rebuild as started (`true`) or finished (`false`), durably;
    /// [`View::set_rebuilding`] writes out what was committed before.
    fn set_rebuilding(&self, rebuilding: bool) -> Result<(), StoreError> {
        let _writer = self.writer.lock();
        if rebuilding {
            self.db.insert(REBUILDING_KEY, &[])?;
        } else {
            self.db.remove(REBUILDING_KEY)?;
        }
        self.db.flush()?;
        self.rebuilding.store(rebuilding, Ordering::Release);
        Ok(())
    }

    /// [`View::clear`] of this database.
    fn clear(&self) -> Result<(), StoreError> {
        let _writer = self.writer.lock();
        self.sled_writes.writing(|| {
            *self.layers.write() = Layers::default();
            self.db.insert(REBUILDING_KEY, &[])?;
            self.db.flush()?;
            self.rebuilding.store(true, Ordering::Release);
            for raw in self.db.iter().keys() {
                let raw = raw?;
                if raw != REBUILDING_KEY && raw != FORMAT_KEY {
                    self.db.remove(raw)?;
                }
            }
            self.db.insert(FORMAT_KEY, VIEW_FORMAT).map(|_| ())
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::types::Revision;

    fn entry(value: &str, revision: Revision) -> KeyEntry {
        KeyEntry {
            value: value.as_bytes().to_vec(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: 0,
        }
    }

    fn listed(view: &View, prefix: &str) -> Vec<(String, String)> {
        let (entries, more) = view.list(prefix, None, PageBounds::entries(100)).unwrap();
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
        let view = View::open(dir.path()).expect("the view opens again");
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
        let view = View::open(dir.path()).expect("the view opens again");
        assert!(view.get("sealed").unwrap().is_some());
        assert_eq!(view.get("later").unwrap(), None);
    }

    /// A checkpoint that writes a later batch to sled while a list scans
    /// does not show part of it: the page has both keys of the batch as
    /// they were before it, or both as after; never one of each.
    #[test]
    fn a_list_shows_a_batch_written_out_mid_scan_whole_or_not_at_all() {
        // Enough keys between the two that sled keeps them in more than one
        // node: its iterator reads the node it is in once, the next ones live.
        const KEYS: usize = 2000;
        let key = |n: usize| format!("a/{n:04}");
        let (first, last) = (key(0), key(KEYS - 1));
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path()).unwrap();
        let mut batch = view.batch();
        for n in 0..KEYS {
            batch.put(&key(n), &entry("old", 1));
        }
        batch.set_applied(&LogId::new(openraft::CommittedLeaderId::new(1, 1), 1), 1);
        view.commit(batch);
        view.write_out().unwrap();

        let mut written_out = false;
        let db = view.pinned();
        let ListPage {
            entries,
            more,
            revision,
        } = db
            .sled_writes
            .consistent(|| {
                db.list_once("a/", None, PageBounds::entries(KEYS), || {
                    // After the scan read the first key, a batch changing
                    // the first and the last is committed and written out.
                    if !std::mem::replace(&mut written_out, true) {
                        let mut batch = view.batch();
                        batch.put(&first, &entry("new", 2));
                        batch.put(&last, &entry("new", 2));
                        batch
                            .set_applied(&LogId::new(openraft::CommittedLeaderId::new(1, 1), 2), 2);
                        view.commit(batch);
                        view.write_out().expect("the view writes out");
                    }
                })
            })
            .unwrap();
        assert!(written_out, "the batch was written out mid-scan");
        assert!(!more);
        assert_eq!(entries.len(), KEYS);
        let value = |index: usize| String::from_utf8(entries[index].1.value.clone()).unwrap();
        let (first_value, last_value) = (value(0), value(KEYS - 1));
        assert!(
            first_value == last_value,
            "the page mixes two states: {first} is {first_value}, {last} is {last_value}"
        );
        let expected_revision = if first_value.contains("new") { 2 } else { 1 };
        assert_eq!(
            revision, expected_revision,
            "the revision is the page's state's"
        );
    }

    /// A key and the revision are read from one state while batches are
    /// committed and written out: the revision is never below the entry's
    /// `mod_revision`, nor above the revision of a later write it does not
    /// show. Read apart (`GET /v1/kv/{key}` did), a write between the two
    /// gave an `X-Kv-Revision` below the entry's own revision.
    #[test]
    fn a_key_and_the_revision_are_read_from_one_state() {
        const WRITES: u64 = 2000;
        let log_id = |index| LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path()).unwrap();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                for revision in 1..=WRITES {
                    let mut batch = view.batch();
                    batch.put("k", &entry("v", revision));
                    batch.set_applied(&log_id(revision), revision);
                    view.commit(batch);
                    if revision % 100 == 0 {
                        view.seal();
                        view.flush().unwrap();
                    }
                }
            });
            let mut reads = 0u64;
            while !writer.is_finished() || reads == 0 {
                let (entry, revision) = view.get_at_revision("k").unwrap();
                let shown = entry.map_or(0, |entry| entry.mod_revision);
                assert_eq!(
                    shown, revision,
                    "the key shows {shown} at revision {revision}"
                );
                reads += 1;
            }
            writer.join().unwrap();
        });
        let (entry, revision) = view.get_at_revision("k").unwrap();
        assert_eq!(
            (entry.map(|entry| entry.mod_revision), revision),
            (Some(WRITES), WRITES)
        );
    }

    /// The applied id, the revision and the membership are read together,
    /// each from the newest layer or sled that holds it.
    #[test]
    fn the_applied_state_is_read_together_from_layers_and_sled() {
        let log_id = |index| LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path()).unwrap();
        let mut batch = view.batch();
        batch.set_applied(&log_id(3), 2);
        batch.set_membership(&StoredMembership::default());
        view.commit(batch);
        view.write_out().unwrap();
        let mut batch = view.batch();
        batch.set_applied(&log_id(4), 3);
        view.commit(batch);
        let (applied, revision, _) = view.applied_state_and_revision().unwrap();
        assert_eq!((applied, revision), (Some(log_id(4)), 3));
    }

    /// The revision is written with the applied log id and survives a
    /// reopen; a view written before it was kept reads its applied index
    /// as its revision.
    #[test]
    fn a_view_of_another_layout_is_refused_and_a_new_one_takes_todays() {
        let dir = tempfile::tempdir().unwrap();
        drop(View::open(dir.path()).expect("a new view opens"));
        let view = View::open(dir.path()).expect("and opens again");
        let db = view.pinned();
        db.db.insert(FORMAT_KEY, b"1".as_slice()).unwrap();
        db.db.flush().unwrap();
        drop(db);
        drop(view);
        match View::open(dir.path()) {
            Err(StoreError::ViewFormat { found, .. }) => assert_eq!(found, "1"),
            other => panic!("expected ViewFormat, got {other:?}"),
        }
    }

    /// A view whose sled holds a key older than written, or has lost one,
    /// is refused as damaged when it opens; one written out whole, by a
    /// batch or by a rebuild, opens.
    #[test]
    fn a_view_that_does_not_match_its_digest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path()).unwrap();
        view.set_rebuilding(true).unwrap();
        let mut batch = view.batch();
        for n in 0..50 {
            batch.put(&format!("k{n}"), &entry("rebuilt", 1));
        }
        view.commit(batch);
        view.set_rebuilding(false).unwrap();
        for revision in 2..5 {
            let mut batch = view.batch();
            batch.put("k1", &entry("newer", revision));
            batch.remove(&format!("k{revision}"));
            view.commit(batch);
            view.write_out().unwrap();
        }
        drop(view);
        let view = View::open(dir.path()).expect("a view written out whole opens");

        let older = view.pinned().db.get(entry_key("k1")).unwrap().unwrap();
        let mut batch = view.batch();
        batch.put("k1", &entry("newest", 5));
        view.commit(batch);
        view.write_out().unwrap();
        // What sled gives back when it drops a damaged record of its log.
        let db = view.pinned();
        db.db.insert(entry_key("k1"), older).unwrap();
        db.db.flush().unwrap();
        drop(db);
        drop(view);
        match View::open(dir.path()) {
            // 47 keys, the format and the digest.
            Err(StoreError::ViewDigest { records, .. }) => assert_eq!(records, 49),
            other => panic!("expected ViewDigest, got {other:?}"),
        }
    }

    /// A cleared view is marked as being rebuilt before anything goes, so a
    /// crash part-way through the clear leaves a view the next start
    /// rebuilds again, not one that fails its digest.
    #[test]
    fn a_cleared_view_is_marked_as_rebuilt_and_opens() {
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path()).unwrap();
        let mut batch = view.batch();
        for n in 0..20 {
            batch.put(&format!("k{n}"), &entry("x", 1));
        }
        view.commit(batch);
        view.write_out().unwrap();
        view.clear().unwrap();
        assert!(view.is_rebuilding().unwrap());
        assert_eq!(view.pinned().db.len(), 2, "the format and the marker");
        // A record left by a clear cut short does not stop the open.
        view.pinned()
            .db
            .insert(entry_key("k3"), entry("x", 1).encode())
            .unwrap();
        view.pinned().db.flush().unwrap();
        drop(view);
        let view = View::open(dir.path()).expect("a view being rebuilt opens unchecked");
        assert!(view.is_rebuilding().unwrap());
    }

    /// A switch shows the new database whole, at its revision, to every
    /// read that starts after it; the old one closes once the reads still
    /// holding it end.
    #[test]
    fn a_switch_shows_the_new_view_whole_and_closes_the_old_after_its_reads() {
        let log_id = |index| LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        let open_with = |dir: &Path, key: &str, revision: Revision| {
            let view = View::open(dir).unwrap();
            let mut batch = view.batch();
            batch.put(key, &entry("v", revision));
            batch.set_applied(&log_id(revision), revision);
            view.commit(batch);
            view
        };
        let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let view = open_with(old_dir.path(), "a/old", 1);
        let next = open_with(new_dir.path(), "a/new", 5);
        let reading = view.pinned();

        let retired = view.switch_to(&next);
        let page = view
            .list_at_revision("a/", None, PageBounds::entries(10))
            .unwrap();
        let keys: Vec<&str> = page.entries.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!((keys, page.revision), (vec!["a/new"], 5));
        assert_eq!(view.applied_state().unwrap().0, Some(log_id(5)));

        assert!(
            !RetiredView {
                db: Arc::clone(&retired.db)
            }
            .close(std::time::Duration::from_millis(20)),
            "a read still holds the old view"
        );
        drop(reading);
        assert!(retired.close(std::time::Duration::from_secs(1)));
    }

    #[test]
    fn the_revision_is_kept_with_the_applied_id() {
        let log_id = |index| LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path()).unwrap();
        assert_eq!(view.revision().unwrap(), 0, "an empty view");

        let mut batch = view.batch();
        batch.set_applied(&log_id(9), 5);
        view.commit(batch);
        assert_eq!(view.revision().unwrap(), 5);
        assert_eq!(view.applied_state().unwrap().0, Some(log_id(9)));
        view.write_out().unwrap();
        drop(view);
        let view = View::open(dir.path()).expect("the view opens again");
        assert_eq!(view.revision().unwrap(), 5);
        assert_eq!(view.applied_state().unwrap().0, Some(log_id(9)));
    }
}
