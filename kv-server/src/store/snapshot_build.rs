//! Which records a snapshot keeps, found in bounded memory.
//!
//! A snapshot keeps the latest record of every key up to its revision (see
//! `snapshot`). Finding them takes a map from each key to the offset of its
//! latest record; holding the records, or even the keys, for millions of
//! keys would take much of a node's memory. The map here holds a 128-bit
//! keyed hash of each key instead (24 bytes a key, as Kafka's log cleaner
//! does with its offset map), and at most [`MAX_KEY_MAP_ENTRIES`] of them:
//! when more keys come, it keeps only the keys whose hash lies in the lower
//! half of its range, and a further pass over the records maps the rest.
//! What the passes leave is the ascending list of kept offsets, 8 bytes a
//! key; the writer then reads the records once more, in offset order, and
//! writes those.
//!
//! Two different keys with the same 128-bit hash would lose one of them.
//! With random keys per build the chance is about n²/2¹²⁹: for a billion
//! keys, below 10⁻²⁰.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use compaction::Record;
use tracing::debug;

use crate::error::StoreError;
use crate::store::apply::IDEMPOTENCY_WINDOW_MS;
use crate::store::record::carries_idempotency_key;
use crate::types::Revision;

/// Keys the map of one pass holds at most: about 40 MiB.
pub const MAX_KEY_MAP_ENTRIES: usize = 1 << 20;

/// What a snapshot keeps of the records up to its revision.
#[derive(Debug)]
pub struct Kept {
    /// Offsets of the latest record of each key, ascending.
    latest: Vec<u64>,
    /// A record that carries an idempotency key and is dated from here on
    /// is kept too, latest or not.
    idempotent_from_ms: u64,
    /// The tombstones below this offset are dropped (the cleaner dropped
    /// them from the topic already).
    tombstone_floor: u64,
    /// Passes over the records it took to find `latest`.
    pub passes: u32,
}

/// A 128-bit hash of a key: two SipHash values under independent random
/// keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct KeyHash(u64, u64);

/// Hashes keys for one build.
struct KeyHasher([RandomState; 2]);

impl KeyHasher {
    fn new() -> KeyHasher {
        KeyHasher([RandomState::new(), RandomState::new()])
    }

    fn hash(&self, key: &[u8]) -> KeyHash {
        KeyHash(self.0[0].hash_one(key), self.0[1].hash_one(key))
    }
}

/// The hasher of the map, whose keys are hashes already: it mixes their
/// two halves and hashes nothing again.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, half: u64) {
        self.0 ^= half;
    }
}

type KeyMap = HashMap<KeyHash, u64, BuildHasherDefault<Prehashed>>;

/// Finds what a snapshot at `revision` keeps of the records `records()`
/// yields (each call a new pass from the first, in offset order), with at
/// most `max_entries` keys mapped at once.
pub fn find<I>(
    records: impl Fn() -> I,
    revision: Revision,
    tombstone_floor: u64,
    max_entries: usize,
) -> Result<Kept, StoreError>
where
    I: Iterator<Item = compaction::Result<Record>>,
{
    let hasher = KeyHasher::new();
    let max_entries = max_entries.max(1);
    let mut latest = Vec::new();
    let mut newest_ms = 0;
    let mut passes = 0;
    // The hashes (first halves) from `low` up are still to be mapped.
    let mut low = 0u64;
    loop {
        let mut high = u64::MAX;
        let mut map = KeyMap::default();
        for record in records() {
            let record = record?;
            if record.offset > revision {
                break;
            }
            if passes == 0 {
                newest_ms = newest_ms.max(record.timestamp_ms);
            }
            let hash = hasher.hash(&record.key);
            if hash.0 < low || hash.0 > high {
                continue;
            }
            if let Some(offset) = map.get_mut(&hash) {
                *offset = record.offset;
                continue;
            }
            // Full: keep the lower half of the range, the next pass maps
            // the upper one. (A range of one hash always takes its keys.)
            while map.len() >= max_entries && high > low {
                high = low + (high - low) / 2;
                map.retain(|hash, _| hash.0 <= high);
            }
            if hash.0 <= high {
                map.insert(hash, record.offset);
            }
        }
        passes += 1;
        latest.extend(map.into_values());
        if high == u64::MAX {
            break;
        }
        low = high + 1;
    }
    latest.sort_unstable();
    debug!(
        keys = latest.len(),
        passes, "found the latest record of each key"
    );
    // A retry is checked against the window before its own timestamp; a
    // second window covers leaders whose clocks are behind.
    Ok(Kept {
        latest,
        idempotent_from_ms: newest_ms.saturating_sub(2 * IDEMPOTENCY_WINDOW_MS),
        tombstone_floor,
        passes,
    })
}

impl Kept {
    /// Keys whose latest record is kept (tombstones below the floor
    /// included).
    pub fn keys(&self) -> usize {
        self.latest.len()
    }

    /// A filter over the same records, in the same order, that says which
    /// to write.
    pub fn filter(&self) -> KeptFilter<'_> {
        KeptFilter {
            kept: self,
            next: 0,
        }
    }
}

/// Walks the kept offsets along with the records.
pub struct KeptFilter<'a> {
    kept: &'a Kept,
    /// Index in `kept.latest` of the first offset not yet passed.
    next: usize,
}

impl KeptFilter<'_> {
    /// Whether `record`, the next in offset order, is written.
    pub fn keeps(&mut self, record: &Record) -> bool {
        let latest = &self.kept.latest;
        while latest
            .get(self.next)
            .is_some_and(|offset| *offset < record.offset)
        {
            self.next += 1;
        }
        let is_latest = latest.get(self.next) == Some(&record.offset);
        let idempotent =
            carries_idempotency_key(record) && record.timestamp_ms >= self.kept.idempotent_from_ms;
        (is_latest || idempotent)
            && (record.value.is_some() || record.offset >= self.kept.tombstone_floor)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::store::record::{UnitKind, WriteRecord};

    fn record(
        offset: u64,
        key: u8,
        timestamp_ms: u64,
        tombstone: bool,
        idempotent: bool,
    ) -> Record {
        WriteRecord {
            offset,
            batch: compaction::BatchPos::SINGLE,
            log_index: offset,
            kind: UnitKind::Write,
            timestamp_ms,
            key: format!("key/{key}"),
            value: (!tombstone).then(|| Bytes::from(format!("{offset}"))),
            create_revision: 1,
            version: 1,
            lease: 0,
            idempotency_key: idempotent.then(uuid::Uuid::new_v4),
            request_hash: None,
            entry: None,
        }
        .to_record()
    }

    /// What a snapshot keeps, the obvious way: every latest record in a
    /// map of the keys themselves.
    fn kept_by_a_map_of_keys(records: &[Record], revision: u64, floor: u64) -> Vec<u64> {
        let upto: Vec<&Record> = records.iter().filter(|r| r.offset <= revision).collect();
        let newest_ms = upto.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
        let keep_from = newest_ms.saturating_sub(2 * IDEMPOTENCY_WINDOW_MS);
        let mut latest = HashMap::new();
        for record in &upto {
            latest.insert(record.key.clone(), record.offset);
        }
        upto.iter()
            .filter(|r| {
                latest[&r.key] == r.offset
                    || (carries_idempotency_key(r) && r.timestamp_ms >= keep_from)
            })
            .filter(|r| r.value.is_some() || r.offset >= floor)
            .map(|r| r.offset)
            .collect()
    }

    fn kept(records: &[Record], revision: u64, floor: u64, max_entries: usize) -> (Vec<u64>, u32) {
        let kept = find(
            || records.iter().cloned().map(Ok),
            revision,
            floor,
            max_entries,
        )
        .expect("finds");
        let mut filter = kept.filter();
        let offsets = records
            .iter()
            .filter(|r| r.offset <= revision && filter.keeps(r))
            .map(|r| r.offset)
            .collect();
        (offsets, kept.passes)
    }

    #[test]
    fn more_keys_than_the_map_holds_take_more_passes_and_keep_the_same_records() {
        let window = IDEMPOTENCY_WINDOW_MS;
        let records: Vec<Record> = (1..=2_000u64)
            .map(|offset| {
                let key = (offset * 7 % 251) as u8;
                let at = offset * window / 500;
                record(offset, key, at, offset % 13 == 0, offset % 5 == 0)
            })
            .collect();
        let expected = kept_by_a_map_of_keys(&records, 1_900, 300);
        let (one_pass, passes) = kept(&records, 1_900, 300, MAX_KEY_MAP_ENTRIES);
        assert_eq!(passes, 1);
        assert_eq!(one_pass, expected);
        let (many_passes, passes) = kept(&records, 1_900, 300, 16);
        assert!(
            passes >= 251 / 16,
            "251 keys in maps of 16 took {passes} passes"
        );
        assert_eq!(many_passes, expected);
    }

    proptest! {
        #[test]
        fn any_map_size_keeps_what_a_map_of_the_keys_keeps(
            writes in prop::collection::vec((0u8..40, any::<bool>(), any::<bool>(), 0u64..4), 0..300),
            revision_back in 0u64..20,
            floor in 0u64..300,
            max_entries in 1usize..50,
        ) {
            let mut at = 0;
            let records: Vec<Record> = writes
                .iter()
                .enumerate()
                .map(|(i, (key, tombstone, idempotent, step))| {
                    at += step * IDEMPOTENCY_WINDOW_MS;
                    record(i as u64 + 1, *key, at, *tombstone, *idempotent)
                })
                .collect();
            let revision = (records.len() as u64).saturating_sub(revision_back);
            let expected = kept_by_a_map_of_keys(&records, revision, floor);
            prop_assert_eq!(kept(&records, revision, floor, max_entries).0, expected);
        }
    }
}
