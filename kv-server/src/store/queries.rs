//! What the HTTP API asks of the store: keys, pages of keys, long-poll
//! waits, and the topic read back as writes. Handlers go through these and
//! never touch the topic, the view or the watch registry themselves.

use std::collections::HashMap;

use compaction::TopicStats;

use crate::error::StoreError;
use crate::store::record::WriteRecord;
use crate::store::view::KeyEntry;
use crate::store::Store;
use crate::types::Revision;
use crate::watch::{Waiter, WatchTarget};

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

    /// Up to `limit` keys under `prefix` after `start_after`, in key order,
    /// and whether more follow.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(String, KeyEntry)>, bool), StoreError> {
        self.view.list(prefix, start_after, limit)
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

    /// The topic's segment and byte counts.
    pub fn topic_stats(&self) -> TopicStats {
        self.topic.stats()
    }

    /// Every write in the topic from offset `from` on, in offset order.
    pub fn writes_from(
        &self,
        from: Revision,
    ) -> impl Iterator<Item = Result<WriteRecord, StoreError>> + '_ {
        self.topic
            .read_from(from)
            .map(|record| WriteRecord::from_record(record?))
    }

    /// The change feed after `from`: reads at most `limit` records up to the
    /// store's revision and keeps the latest write of each key under
    /// `prefix`. Blocking: it reads the topic's files.
    pub fn changes_after(
        &self,
        prefix: &str,
        from: Revision,
        limit: u64,
    ) -> Result<ChangesRead, StoreError> {
        let revision = self.revision();
        let mut latest: Vec<WriteRecord> = Vec::new();
        let mut position_of: HashMap<String, usize> = HashMap::new();
        let mut read = 0;
        let mut next = from.max(revision);
        let mut more = false;
        for record in self.topic.read_from(from + 1) {
            let record = record?;
            if record.offset > revision {
                break;
            }
            read += 1;
            let offset = record.offset;
            if record.key.starts_with(prefix.as_bytes()) {
                let write = WriteRecord::from_record(record)?;
                match position_of.get(&write.key) {
                    Some(&at) => latest[at] = write,
                    None => {
                        position_of.insert(write.key.clone(), latest.len());
                        latest.push(write);
                    }
                }
            }
            if read == limit {
                next = offset;
                more = offset < revision;
                break;
            }
        }
        latest.sort_by_key(|write| write.revision);
        Ok(ChangesRead {
            writes: latest,
            next,
            more,
        })
    }
}
