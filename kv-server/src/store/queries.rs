//! What the HTTP API asks of the store: keys, pages of keys, long-poll
//! waits, the topic read back as writes, leases, the snapshot. Handlers go
//! through these and never touch the topic, the view, the watch registry
//! or the snapshot directory themselves.

use std::collections::HashMap;

use compaction::TopicStats;

use crate::error::StoreError;
use crate::store::internal::{is_internal_key, AFTER_INTERNAL_KEYS};
use crate::store::leases::{self, LeaseRecord};
use crate::store::record::WriteRecord;
use crate::store::snapshot::SnapshotFile;
use crate::store::view::{KeyEntry, ListPage};
use crate::store::Store;
use crate::types::{LeaseId, Revision};
use crate::watch::{Waiter, WatchTarget};

/// How much one page of an answer may hold: a count of entries and a total
/// of value bytes. A page always takes its first entry, so a single value
/// larger than the byte bound still comes through, alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageBounds {
    /// Entries at most.
    pub entries: usize,
    /// Bytes of values at most, unless the page holds one entry.
    pub value_bytes: usize,
}

impl PageBounds {
    /// At most `entries` entries, of any size.
    pub fn entries(entries: usize) -> PageBounds {
        PageBounds {
            entries,
            value_bytes: usize::MAX,
        }
    }

    /// Whether a page of `taken` entries whose values hold `taken_bytes`
    /// has room for one more of `next_bytes`.
    pub fn admits(&self, taken: usize, taken_bytes: usize, next_bytes: usize) -> bool {
        taken < self.entries
            && (taken == 0 || taken_bytes.saturating_add(next_bytes) <= self.value_bytes)
    }
}

/// One page of the change feed: the latest write of each key changed in
/// the records read, in revision order.
#[derive(Debug)]
pub struct ChangesRead {
    /// The latest write of each key, oldest first.
    pub writes: Vec<WriteRecord>,
    /// The offset a reader asks after next.
    pub next: Revision,
    /// Whether the page stopped at its limit before the end of the topic.
    pub more: bool,
}

impl Store {
    /// A key's entry in the view.
    pub fn get(&self, key: &str) -> Result<Option<KeyEntry>, StoreError> {
        self.view.get(key)
    }

    /// A key's entry and the store's revision of the state it was read
    /// from (read with it, not before or after it).
    pub fn get_at_revision(&self, key: &str) -> Result<(Option<KeyEntry>, Revision), StoreError> {
        self.view.get_at_revision(key)
    }

    /// The keys under `prefix` after `start_after`, in key order, as many
    /// as `bounds` allow, whether more follow, and the store's revision of
    /// the state the page shows (read with it, not before or after it).
    /// Internal keys (roles, tokens, leases: see `store::internal`) are
    /// never among them.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        bounds: PageBounds,
    ) -> Result<ListPage, StoreError> {
        if is_internal_key(prefix) {
            return Ok(ListPage {
                entries: Vec::new(),
                more: false,
                revision: self.revision(),
            });
        }
        // The internal keys sort before every other key: a scan that could
        // meet them starts after them.
        let start_after = match start_after {
            Some(after) if after >= AFTER_INTERNAL_KEYS => Some(after),
            _ if AFTER_INTERNAL_KEYS.starts_with(prefix) => Some(AFTER_INTERNAL_KEYS),
            other => other,
        };
        self.view.list_at_revision(prefix, start_after, bounds)
    }

    /// The entries under an internal prefix (roles, tokens: see
    /// `store::internal`), which [`Store::list`] never shows: for the
    /// node's own readers, such as the token check.
    pub fn list_internal(
        &self,
        prefix: &str,
        bounds: PageBounds,
    ) -> Result<(Vec<(String, KeyEntry)>, bool), StoreError> {
        debug_assert!(is_internal_key(prefix), "{prefix:?} is a client's prefix");
        self.view.list(prefix, None, bounds)
    }

    /// Every lease, in id order.
    pub fn all_leases(&self) -> Result<Vec<(LeaseId, LeaseRecord)>, StoreError> {
        leases::all(&self.view)
    }

    /// Lease `id`'s entry and the keys attached to it, read from one
    /// state; `None` when there is no such lease.
    pub fn lease_with_keys(
        &self,
        id: LeaseId,
    ) -> Result<Option<(KeyEntry, Vec<String>)>, StoreError> {
        let batch = self.view.batch();
        let Some(entry) = batch.get(&leases::lease_key(id))? else {
            return Ok(None);
        };
        let keys = leases::attached_keys(&batch, id)?;
        Ok(Some((
            entry,
            keys.into_iter().map(|(key, _)| key).collect(),
        )))
    }

    /// The keys attached to lease `id` (none when there is no such lease).
    pub fn lease_keys(&self, id: LeaseId) -> Result<Vec<String>, StoreError> {
        let attached = leases::attached_keys(&self.view.batch(), id)?;
        Ok(attached.into_iter().map(|(key, _)| key).collect())
    }

    /// Has the cleaner drop what deletes free at once, whatever share of
    /// the topic it is (while the node is short of space), or not.
    pub fn set_compaction_eager(&self, eager: bool) {
        self.topic.set_eager(eager);
    }

    /// The node's current snapshot, if it has made or installed one.
    pub fn current_snapshot(&self) -> Result<Option<SnapshotFile>, StoreError> {
        SnapshotFile::load(&self.snapshot_dir)
    }

    /// [`Store::current_snapshot`], its records read whole and checked
    /// (once per snapshot and process) before it is handed out to a
    /// follower or a backup: damage is named here, not by whoever
    /// receives it.
    pub fn current_snapshot_checked(&self) -> Result<Option<SnapshotFile>, StoreError> {
        let Some(snapshot) = self.current_snapshot()? else {
            return Ok(None);
        };
        let id = &snapshot.header.meta.snapshot_id;
        if self.checked_snapshot.lock().as_ref() != Some(id) {
            snapshot.check_records()?;
            self.snapshot_checked(&snapshot);
        }
        Ok(Some(snapshot))
    }

    /// Remembers `snapshot` as sound: read whole, or just written.
    pub(crate) fn snapshot_checked(&self, snapshot: &SnapshotFile) {
        *self.checked_snapshot.lock() = Some(snapshot.header.meta.snapshot_id.clone());
    }

    /// A waiter woken when `target` changes after revision `after`.
    pub fn watch(&self, target: WatchTarget, after: Revision) -> Waiter {
        self.watches.watch(target, after)
    }

    /// How many long-polls wait now.
    pub fn watchers(&self) -> usize {
        self.watches.waiting()
    }

    /// The lowest offset above which every delete is still in the topic.
    pub fn tombstone_floor(&self) -> Revision {
        self.topic.tombstone_floor()
    }

    /// How many times the topic's segments were replaced by others (see
    /// `compaction::Topic::rewrites`).
    pub fn topic_rewrites(&self) -> u64 {
        self.topic.rewrites()
    }

    /// The topic's segment and byte counts.
    pub fn topic_stats(&self) -> TopicStats {
        self.topic.stats()
    }

    /// Every write in the topic from offset `from` on, in offset order,
    /// read `read_bytes` at a time; with `whole_units`, from the start of
    /// the unit holding `from` when it holds it in its middle. The reader
    /// owns what it reads (the segments as they are now), so it may be kept
    /// and moved between threads while a replay goes on.
    pub fn writes_from(
        &self,
        from: Revision,
        read_bytes: usize,
        whole_units: bool,
    ) -> impl Iterator<Item = Result<WriteRecord, StoreError>> + Send + 'static {
        let reader = if whole_units {
            self.topic.read_from_batch_start(from)
        } else {
            self.topic.read_from(from)
        };
        reader
            .with_chunk_bytes(read_bytes)
            .map(|record| WriteRecord::from_record(record?))
    }

    /// The change feed after `from`: reads whole units (the records of one
    /// write) up to the store's revision, at least one and then as long as
    /// `bounds.entries` records are not reached, and keeps the latest write
    /// of each key under `prefix`; a unit whose kept values would take the
    /// page past `bounds.value_bytes` starts the next page instead.
    /// Blocking: it reads the topic's files. Only keys `readable` admits are
    /// kept, and never an internal key; the others are read past, so `next`
    /// moves on over them.
    ///
    /// A `from` inside a unit (no revision of this store is) is taken from
    /// the unit's start, so a page never begins with part of a unit.
    pub fn changes_after(
        &self,
        prefix: &str,
        from: Revision,
        bounds: PageBounds,
        readable: impl Fn(&str) -> bool,
    ) -> Result<ChangesRead, StoreError> {
        let revision = self.revision();
        let mut latest: Vec<WriteRecord> = Vec::new();
        let mut position_of: HashMap<String, usize> = HashMap::new();
        let mut read = 0;
        // Values of every record kept, replaced ones included: an upper
        // bound of the page's values that needs no bookkeeping on replace.
        let mut value_bytes: usize = 0;
        let mut next = from.max(revision);
        let mut more = false;
        let mut last_unit_end = from;
        // The unit being read: its kept records and their values' bytes.
        let mut unit: Vec<WriteRecord> = Vec::new();
        let mut unit_bytes = 0;
        let mut unit_read = 0;
        for record in self.topic.read_from_batch_start(from + 1) {
            let record = record?;
            if record.offset > revision {
                break;
            }
            let offset = record.offset;
            let unit_ends = record.batch.is_last();
            let shown = record.key.starts_with(prefix.as_bytes())
                && std::str::from_utf8(&record.key)
                    .is_ok_and(|key| !is_internal_key(key) && readable(key));
            if shown {
                unit_bytes += record.value.as_ref().map_or(0, |value| value.len());
                unit.push(WriteRecord::from_record(record)?);
            }
            unit_read += 1;
            if !unit_ends {
                continue;
            }
            let fits = unit.is_empty()
                || latest.is_empty()
                || value_bytes.saturating_add(unit_bytes) <= bounds.value_bytes;
            if !fits {
                // This unit starts the next page.
                next = last_unit_end;
                more = true;
                break;
            }
            value_bytes += unit_bytes;
            for write in unit.drain(..) {
                match position_of.get(&write.key) {
                    Some(&at) => latest[at] = write,
                    None => {
                        position_of.insert(write.key.clone(), latest.len());
                        latest.push(write);
                    }
                }
            }
            read += unit_read;
            (unit_bytes, unit_read) = (0, 0);
            last_unit_end = offset;
            if read >= bounds.entries {
                next = offset;
                more = offset < revision;
                break;
            }
        }
        latest.sort_by_key(|write| write.offset);
        Ok(ChangesRead {
            writes: latest,
            next,
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PageBounds;

    #[test]
    fn a_page_takes_its_first_entry_then_stops_at_either_bound() {
        let bounds = PageBounds {
            entries: 3,
            value_bytes: 100,
        };
        // (entries taken, their bytes, the next entry's bytes, admitted)
        let cases = [
            (0, 0, 500, true),
            (1, 500, 1, false),
            (1, 40, 60, true),
            (2, 100, 1, false),
            (2, 90, 0, true),
            (3, 0, 0, false),
            (1, usize::MAX, 1, false),
        ];
        for (taken, taken_bytes, next_bytes, admitted) in cases {
            assert_eq!(
                bounds.admits(taken, taken_bytes, next_bytes),
                admitted,
                "{taken} entries of {taken_bytes} bytes, next {next_bytes}"
            );
        }
    }
}
