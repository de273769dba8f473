//! Model-based property test: random puts, deletes (single or in batches),
//! rolls, cleaner passes and reopenings, checked after every step against a
//! plain in-memory history for the eight guarantees of the compacted topic.

use std::collections::{BTreeMap, HashMap};

use compaction::{BatchPos, Offset, Record, Topic, TopicConfig};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Appends puts and deletes in one call, as one batch when `batched`
    /// and as single records otherwise; `gap` skips offsets first.
    Append {
        gap: u64,
        writes: Vec<(u8, Option<u8>)>,
        batched: bool,
    },
    Tick {
        ms: u64,
    },
    Sync,
    Roll,
    Clean,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let write = (0u8..8, prop::option::weighted(0.8, 0u8..40));
    prop_oneof![
        6 => (0u64..3, prop::collection::vec(write, 1..7), any::<bool>())
            .prop_map(|(gap, writes, batched)| Op::Append { gap, writes, batched }),
        2 => (0u64..1500).prop_map(|ms| Op::Tick { ms }),
        1 => Just(Op::Sync),
        1 => Just(Op::Roll),
        3 => Just(Op::Clean),
        1 => Just(Op::Reopen),
    ]
}

fn config() -> impl Strategy<Value = TopicConfig> {
    (
        150u64..1200,
        500u64..4000,
        32u64..300,
        prop_oneof![Just(0.0), 0.0f64..0.9],
        prop_oneof![Just(0u64), 0u64..3000],
        prop_oneof![Just(0u64), 0u64..4000],
        70usize..700,
    )
        .prop_map(
            |(
                segment_bytes,
                segment_ms,
                index_interval_bytes,
                ratio,
                lag_ms,
                retention_ms,
                map_bytes,
            )| {
                TopicConfig {
                    segment_bytes,
                    segment_ms,
                    index_interval_bytes,
                    min_cleanable_dirty_ratio: ratio,
                    min_compaction_lag_ms: lag_ms,
                    delete_retention_ms: retention_ms,
                    cleaner_key_map_bytes: map_bytes,
                    max_record_bytes: 1 << 20,
                }
            },
        )
}

/// Everything ever appended, in order: what the topic must be consistent with.
#[derive(Default)]
struct Model {
    history: Vec<Record>,
    clock_ms: u64,
    next_offset: Offset,
}

impl Model {
    fn by_offset(&self) -> HashMap<Offset, &Record> {
        self.history
            .iter()
            .map(|record| (record.offset, record))
            .collect()
    }

    /// The latest record of every key changed at or after `from`.
    fn latest_since(&self, from: Offset) -> BTreeMap<Vec<u8>, &Record> {
        let mut latest = BTreeMap::new();
        for record in &self.history {
            latest.insert(record.key.to_vec(), record);
        }
        latest.retain(|_, record| record.offset >= from);
        latest
    }

    fn last_offset(&self) -> Option<Offset> {
        self.history.last().map(|record| record.offset)
    }
}

fn read_all(topic: &Topic, from: Offset) -> Vec<Record> {
    topic
        .read_from(from)
        .collect::<Result<_, _>>()
        .expect("a healthy topic reads without error")
}

/// Checks guarantees 1–4 and the offsets against the model.
fn check(topic: &Topic, model: &Model) -> Result<(), TestCaseError> {
    let everything = read_all(topic, 0);
    let known = model.by_offset();
    // 1. Offsets never change: every record is one that was appended there.
    for record in &everything {
        prop_assert_eq!(
            Some(&record),
            known.get(&record.offset),
            "record changed or invented"
        );
    }
    // 2. Order is kept (global offset order implies per-key order).
    prop_assert!(everything
        .windows(2)
        .all(|pair| pair[0].offset < pair[1].offset));
    // 3. Replay from 0 yields exactly the live state.
    let mut replayed = BTreeMap::new();
    for record in &everything {
        replayed.insert(record.key.to_vec(), record.value.clone());
    }
    replayed.retain(|_, value| value.is_some());
    let live: BTreeMap<_, _> = model
        .latest_since(0)
        .into_iter()
        .filter(|(_, record)| !record.is_tombstone())
        .map(|(key, record)| (key, record.value.clone()))
        .collect();
    prop_assert_eq!(&replayed, &live, "replay from 0 is not the live state");
    // 4. From any offset at or above the tombstone floor, the latest state of
    //    every key changed since, deletes included.
    let floor = topic.tombstone_floor();
    let mut starts: Vec<Offset> = model.history.iter().map(|record| record.offset).collect();
    starts.push(floor);
    for from in starts.into_iter().filter(|&from| from >= floor) {
        let mut seen: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
        for record in read_all(topic, from) {
            prop_assert!(record.offset >= from);
            seen.insert(record.key.to_vec(), record);
        }
        for (key, latest) in model.latest_since(from) {
            prop_assert_eq!(
                seen.get(&key),
                Some(latest),
                "reader from {} (floor {}) misses the latest record of {:?}",
                from,
                floor,
                key
            );
        }
    }
    prop_assert_eq!(topic.last_offset(), model.last_offset());
    check_batches(topic, model, &everything)
}

/// Checks guarantees 6–8 (guarantee 1 above already compares batch
/// positions) and the batch-aware reads.
fn check_batches(topic: &Topic, model: &Model, everything: &[Record]) -> Result<(), TestCaseError> {
    // 6. No batch has records in two segments.
    let mut segment_of_batch: HashMap<Offset, Offset> = HashMap::new();
    for segment in topic.segments() {
        let (Some(first), Some(last)) = (segment.first_offset, segment.last_offset) else {
            continue;
        };
        for record in everything
            .iter()
            .filter(|r| (first..=last).contains(&r.offset))
        {
            let holder = *segment_of_batch
                .entry(record.batch_start())
                .or_insert(segment.base_offset);
            prop_assert_eq!(
                holder,
                segment.base_offset,
                "the batch of offset {} is split across segments",
                record.offset
            );
        }
    }
    // 7. The tombstone floor is one past the end of a batch.
    let floor = topic.tombstone_floor();
    if floor > 0 {
        let end = model.by_offset().get(&(floor - 1)).map(|r| r.batch);
        prop_assert!(
            end.is_some_and(|batch| batch.is_last()),
            "tombstone floor {} is not a batch end + 1 ({:?})",
            floor,
            end
        );
    }
    // 8. The record at the topic's last offset survives every pass.
    let tail = topic.tail().expect("a healthy topic reads its tail");
    prop_assert_eq!(tail.as_ref(), model.history.last());
    // A batch-start read begins at the batch of the first record at or
    // after `from`, wherever inside it `from` falls.
    let inside: Vec<Offset> = model
        .history
        .iter()
        .filter(|record| !record.batch.is_first())
        .map(|record| record.offset)
        .collect();
    for from in inside {
        let start = everything
            .iter()
            .find(|record| record.offset >= from)
            .map_or(from, |first| first.batch_start().min(from));
        let expected: Vec<&Record> = everything.iter().filter(|r| r.offset >= start).collect();
        let read: Vec<Record> = topic
            .read_from_batch_start(from)
            .collect::<Result<_, _>>()
            .expect("a healthy topic reads without error");
        prop_assert_eq!(read.iter().collect::<Vec<_>>(), expected, "from {}", from);
    }
    Ok(())
}

fn run(config: TopicConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut topic = Topic::open(dir.path(), config.clone()).unwrap();
    let mut model = Model::default();
    let mut floor = 0;
    for op in ops {
        match op {
            Op::Append {
                gap,
                writes,
                batched,
            } => {
                model.next_offset += gap;
                let len = writes.len() as u32;
                let batch: Vec<Record> = (0..)
                    .zip(writes)
                    .map(|(sub, (key, value))| {
                        let offset = model.next_offset;
                        model.next_offset += 1;
                        let key = format!("key-{key}");
                        let position = if batched {
                            BatchPos::new(sub, len - 1 - sub)
                        } else {
                            BatchPos::SINGLE
                        };
                        let record = match value {
                            Some(len) => Record::put(
                                offset,
                                model.clock_ms,
                                key,
                                vec![b'v'; usize::from(len)],
                            ),
                            None => Record::tombstone(offset, model.clock_ms, key),
                        };
                        record.with_batch(position)
                    })
                    .collect();
                topic.append(&batch).unwrap();
                model.history.extend(batch);
            }
            Op::Tick { ms } => model.clock_ms += ms,
            Op::Sync => topic.sync().unwrap(),
            Op::Roll => topic.roll().unwrap(),
            Op::Clean => {
                // 5. The active segment is never cleaned.
                let active = topic.segments().into_iter().find(|s| s.active).unwrap();
                let before = std::fs::read(&active.path).unwrap();
                topic.clean_once_at(model.clock_ms).unwrap();
                let after = std::fs::read(&active.path).unwrap();
                prop_assert!(before == after, "the cleaner touched the active segment");
                let still_active = topic.segments().into_iter().find(|s| s.active).unwrap();
                prop_assert_eq!(still_active.base_offset, active.base_offset);
            }
            Op::Reopen => {
                drop(topic);
                topic = Topic::open(dir.path(), config.clone()).unwrap();
            }
        }
        prop_assert!(
            topic.tombstone_floor() >= floor,
            "tombstone floor went down"
        );
        floor = topic.tombstone_floor();
        check(&topic, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn topic_matches_the_model_through_appends_cleans_and_reopens(
        config in config(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(config, ops)?;
    }
}
