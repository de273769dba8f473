//! The cleaner's policies, one behaviour per test: what it cleans, when,
//! and what it keeps.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compaction::{
    BatchPos, Checkpoint, CleanTime, CleanerHandle, Offset, Record, Topic, TopicConfig,
};

/// A config that cleans whenever asked: no ratio threshold, no lag.
fn eager() -> TopicConfig {
    TopicConfig {
        segment_bytes: 1024,
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        delete_retention_ms: 1_000,
        ..TopicConfig::default()
    }
}

/// Appends `rounds` puts to each of `keys` keys, offsets from 1, timestamp 0.
fn fill(topic: &Topic, keys: usize, rounds: usize) {
    let mut offset = topic.last_offset().map_or(1, |last| last + 1);
    for round in 0..rounds {
        let batch: Vec<Record> = (0..keys)
            .map(|key| {
                let record = Record::put(offset, 0, format!("k{key}"), format!("v{round}-{key}"));
                offset += 1;
                record
            })
            .collect();
        topic.append(&batch).unwrap();
    }
}

fn offsets(topic: &Topic) -> Vec<Offset> {
    topic
        .read_from(0)
        .map(|record| record.unwrap().offset)
        .collect()
}

fn keys_in_closed_segments(topic: &Topic) -> Vec<String> {
    let active_base = topic.stats().active_base_offset;
    topic
        .read_from(0)
        .map(Result::unwrap)
        .take_while(|record| record.offset < active_base)
        .map(|record| String::from_utf8(record.key.to_vec()).unwrap())
        .collect()
}

#[test]
fn a_full_pass_leaves_one_record_per_key_in_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), eager()).unwrap();
    fill(&topic, 20, 30);
    topic.roll().unwrap();
    let report = topic.clean_once_at(10).unwrap();
    assert!(report.cleaned);
    assert!(!report.key_map_full);
    let keys = keys_in_closed_segments(&topic);
    assert_eq!(keys.len(), 20, "{keys:?}");
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 20);
    let last_round: Vec<Record> = topic.read_from(0).map(Result::unwrap).collect();
    assert!(last_round
        .iter()
        .all(|record| record.value.as_deref().unwrap().starts_with(b"v29-")));
    assert_eq!(topic.stats().clean_offset, 601);
}

#[test]
fn the_active_segment_keeps_its_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        segment_bytes: 1 << 20,
        ..eager()
    };
    let topic = Topic::open(dir.path(), config).unwrap();
    fill(&topic, 5, 10);
    let report = topic.clean_once_at(10).unwrap();
    assert!(
        !report.cleaned,
        "only an active segment: nothing is cleanable"
    );
    assert_eq!(offsets(&topic).len(), 50);
}

#[test]
fn a_pass_waits_for_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        min_cleanable_dirty_ratio: 0.5,
        ..eager()
    };
    let topic = Topic::open(dir.path(), config).unwrap();
    fill(&topic, 50, 4);
    topic.roll().unwrap();
    assert!(
        topic.clean_once_at(10).unwrap().cleaned,
        "all dirty: ratio 1.0"
    );
    let clean_bytes = topic.stats().clean_bytes;
    // A little new dirt, well under half of the clean bytes.
    fill(&topic, 3, 1);
    topic.roll().unwrap();
    let stats = topic.stats();
    assert!(
        stats.dirty_ratio > 0.0 && stats.dirty_ratio < 0.5,
        "{stats:?}"
    );
    assert_eq!(stats.clean_bytes, clean_bytes);
    let report = topic.clean_once_at(20).unwrap();
    assert!(!report.cleaned, "{report:?}");
    assert_eq!(topic.stats().clean_offset, stats.clean_offset);
}

#[test]
fn records_younger_than_the_compaction_lag_stay_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        min_compaction_lag_ms: 1_000,
        ..eager()
    };
    let topic = Topic::open(dir.path(), config).unwrap();
    topic
        .append(&[
            Record::put(1, 100, "k", "old"),
            Record::put(2, 100, "k", "new"),
        ])
        .unwrap();
    topic.roll().unwrap();
    assert!(!topic.clean_once_at(1_099).unwrap().cleaned);
    assert_eq!(offsets(&topic), vec![1, 2]);
    assert!(topic.clean_once_at(1_100).unwrap().cleaned);
    assert_eq!(offsets(&topic), vec![2]);
}

#[test]
fn a_tombstone_stays_for_the_retention_then_goes_and_raises_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), eager()).unwrap();
    topic
        .append(&[
            Record::put(1, 0, "gone", "v"),
            Record::put(2, 0, "kept", "v"),
            Record::tombstone(3, 0, "gone"),
        ])
        .unwrap();
    topic.roll().unwrap();
    // First pass: the put is superseded, the tombstone becomes clean at 100.
    topic.clean_once_at(100).unwrap();
    assert_eq!(offsets(&topic), vec![2, 3]);
    assert_eq!(topic.tombstone_floor(), 0);
    // New dirt so later passes have something to do.
    topic.append(&[Record::put(4, 0, "kept", "v2")]).unwrap();
    topic.roll().unwrap();
    topic.clean_once_at(1_099).unwrap();
    assert_eq!(offsets(&topic), vec![3, 4], "retention not over yet");
    topic.append(&[Record::put(5, 0, "kept", "v3")]).unwrap();
    topic.roll().unwrap();
    let report = topic.clean_once_at(1_100).unwrap();
    assert_eq!(report.tombstones_dropped, 1);
    assert_eq!(offsets(&topic), vec![5]);
    assert_eq!(topic.tombstone_floor(), 4);
    // The floor and the clean times survive a restart.
    drop(topic);
    let topic = Topic::open(dir.path(), eager()).unwrap();
    assert_eq!(topic.tombstone_floor(), 4);
    assert_eq!(topic.last_offset(), Some(5));
}

/// A topic is given its checkpoint when it is created. One that holds
/// records and has lost it knows no longer which tombstones were dropped:
/// its floor is its end, so a reader from before it lists again rather
/// than misses a delete. (The floor used to read 0 again, silently.)
#[test]
fn a_lost_checkpoint_puts_the_floor_at_the_topics_end() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), eager()).unwrap();
    let file = dir.path().join(compaction::CHECKPOINT_FILE);
    assert!(file.exists(), "a new topic has its checkpoint");
    assert_eq!(topic.tombstone_floor(), 0);
    topic
        .append(&[
            Record::put(1, 0, "gone", "v"),
            Record::tombstone(2, 0, "gone"),
            Record::put(3, 0, "kept", "v"),
        ])
        .unwrap();
    drop(topic);
    let topic = Topic::open(dir.path(), eager()).unwrap();
    assert_eq!(topic.tombstone_floor(), 0, "the checkpoint was there");
    drop(topic);

    std::fs::remove_file(&file).unwrap();
    let topic = Topic::open(dir.path(), eager()).unwrap();
    assert_eq!(topic.tombstone_floor(), 4);
    assert_eq!(offsets(&topic), vec![1, 2, 3], "no record is dropped");
    drop(topic);
    let topic = Topic::open(dir.path(), eager()).unwrap();
    assert_eq!(
        topic.tombstone_floor(),
        4,
        "written in place of the lost one"
    );
}

/// Records at consecutive offsets from `first`, marked as one batch.
fn as_batch(first: Offset, records: Vec<Record>) -> Vec<Record> {
    let len = records.len() as u32;
    (0..len)
        .zip(records)
        .map(|(sub, mut record)| {
            record.offset = first + u64::from(sub);
            record.with_batch(BatchPos::new(sub, len - 1 - sub))
        })
        .collect()
}

#[test]
fn dropping_a_tombstone_inside_a_batch_raises_the_floor_past_the_batch_end() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), eager()).unwrap();
    let unit = as_batch(
        1,
        vec![
            Record::put(0, 0, "kept", "v"),
            Record::tombstone(0, 0, "gone"),
            Record::put(0, 0, "other", "v"),
        ],
    );
    topic.append(&unit).unwrap();
    topic.roll().unwrap();
    topic.clean_once_at(100).unwrap();
    topic.append(&[Record::put(4, 0, "kept", "v2")]).unwrap();
    topic.roll().unwrap();
    let report = topic.clean_once_at(1_100).unwrap();

    assert_eq!(report.tombstones_dropped, 1);
    assert_eq!(
        topic.tombstone_floor(),
        4,
        "one past the batch's last offset 3, not past the tombstone's 2"
    );
    let survivors: Vec<Record> = topic.read_from(0).map(Result::unwrap).collect();
    assert_eq!(
        survivors,
        [unit[2].clone(), Record::put(4, 0, "kept", "v2")]
    );
    assert_eq!(
        survivors[0].batch,
        BatchPos::new(2, 0),
        "positions survive cleaning"
    );
}

#[test]
fn the_record_at_the_last_offset_is_never_cleaned_away() {
    // A pass only runs on dirty records, which normally lie above every
    // clean tombstone. A checkpoint claiming the whole topic dirty yet
    // cleaned long ago gives a pass that finds the last record an expired
    // tombstone: it must stay, so the topic's end can be read back.
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), eager()).unwrap();
    let unit = as_batch(
        1,
        vec![Record::put(0, 0, "a", "v"), Record::tombstone(0, 0, "a")],
    );
    topic.append(&unit).unwrap();
    topic.roll().unwrap();
    drop(topic);
    let checkpoint = Checkpoint {
        clean_times: vec![CleanTime { upto: 3, at_ms: 0 }],
        ..Checkpoint::default()
    };
    checkpoint.store(dir.path()).unwrap();

    let topic = Topic::open(dir.path(), eager()).unwrap();
    assert_eq!(topic.rewrites(), 0);
    let report = topic.clean_once_at(1_000_000).unwrap();
    assert!(report.cleaned, "{report:?}");
    assert_eq!(report.tombstones_dropped, 0, "{report:?}");
    assert_eq!(offsets(&topic), vec![2]);
    assert_eq!(topic.rewrites(), 1, "a pass that replaced segments counts");
    assert_eq!(topic.tail().unwrap().as_ref(), Some(&unit[1]));
    assert_eq!(topic.tombstone_floor(), 0);
}

#[test]
fn a_small_key_map_cleans_in_parts_and_ends_where_a_big_one_does() {
    let small = tempfile::tempdir().unwrap();
    let big = tempfile::tempdir().unwrap();
    let small_map = TopicConfig {
        // Room for about ten keys per pass.
        cleaner_key_map_bytes: 10 * (64 + 3),
        ..eager()
    };
    let small_topic = Topic::open(small.path(), small_map).unwrap();
    let big_topic = Topic::open(big.path(), eager()).unwrap();
    for topic in [&small_topic, &big_topic] {
        fill(topic, 40, 5);
        topic.roll().unwrap();
    }
    let first = small_topic.clean_once_at(10).unwrap();
    assert!(first.key_map_full, "{first:?}");
    assert!(first.keys <= 10, "{first:?}");
    assert!(
        first.clean_offset > 1 && first.clean_offset < 201,
        "{first:?}"
    );
    let mut passes = 1;
    while small_topic.stats().clean_offset < 201 {
        small_topic.clean_once_at(10).unwrap();
        passes += 1;
        assert!(passes < 100, "the cleaner makes no progress");
    }
    big_topic.clean_once_at(10).unwrap();
    assert_eq!(offsets(&small_topic), offsets(&big_topic));
    assert!(passes > 1);
}

#[test]
fn small_segments_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        segment_bytes: 300,
        ..eager()
    };
    let topic = Topic::open(dir.path(), config).unwrap();
    fill(&topic, 4, 40);
    topic.roll().unwrap();
    let before = topic.stats().segments;
    assert!(before > 20, "{before}");
    topic.clean_once_at(10).unwrap();
    let after = topic.segments();
    assert!(after.len() <= 3, "{after:?}");
    assert!(after.iter().all(|segment| segment.bytes <= 300));
}

#[test]
fn segments_roll_by_size_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        segment_bytes: 500,
        segment_ms: 1_000,
        ..eager()
    };
    let topic = Topic::open(dir.path(), config).unwrap();
    topic.append(&[Record::put(1, 0, "k", "v")]).unwrap();
    topic.append(&[Record::put(2, 999, "k", "v")]).unwrap();
    assert_eq!(topic.stats().segments, 1);
    topic.append(&[Record::put(3, 1_000, "k", "v")]).unwrap();
    assert_eq!(topic.stats().segments, 2, "rolled by age");
    topic
        .append(&[Record::put(4, 1_000, "k", vec![0u8; 400])])
        .unwrap();
    topic
        .append(&[Record::put(5, 1_000, "k", vec![0u8; 400])])
        .unwrap();
    let segments = topic.segments();
    assert_eq!(segments.len(), 3, "rolled by size: {segments:?}");
    assert!(segments.iter().all(|segment| segment.bytes <= 500));
    assert_eq!(segments[2].base_offset, 5);
}

#[test]
fn the_background_cleaner_cleans_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Arc::new(Topic::open(dir.path(), eager()).unwrap());
    fill(&topic, 10, 10);
    topic.roll().unwrap();
    let handle = CleanerHandle::spawn(Arc::clone(&topic), Duration::from_millis(10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The status is updated just after the pass that cleaned: wait for both.
    while offsets(&topic).len() > 10 || handle.status().runs == 0 {
        assert!(
            Instant::now() < deadline,
            "the background cleaner did not clean"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = handle.status();
    assert!(status.runs >= 1 && status.failures == 0, "{status:?}");
    assert!(status.last_success_ms.is_some());
    handle.stop();
    assert_eq!(
        Arc::strong_count(&topic),
        1,
        "the thread let go of the topic"
    );
}

#[test]
fn a_failing_background_pass_is_counted_not_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Arc::new(Topic::open(dir.path(), eager()).unwrap());
    fill(&topic, 10, 10);
    topic.roll().unwrap();
    // Damage a closed segment so every pass fails reading it.
    let closed = &topic.segments()[0];
    let mut bytes = std::fs::read(&closed.path).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&closed.path, bytes).unwrap();
    let handle = CleanerHandle::spawn(Arc::clone(&topic), Duration::from_millis(10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.status().failures < 2 {
        assert!(Instant::now() < deadline, "failures were not reported");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = handle.status();
    assert!(status.last_error.unwrap().contains("corrupt record"));
    assert_eq!(status.last_success_ms, None);
}

/// A topic of `config` in `dir` holding a put of `k` at 10 s in a closed
/// segment, and its delete at 20 s in the active one.
fn put_then_delete_in_the_active_segment(dir: &std::path::Path, config: TopicConfig) -> Topic {
    let topic = Topic::open(dir, config).unwrap();
    topic.append(&[Record::put(1, 10_000, "k", "v")]).unwrap();
    topic.roll().unwrap();
    topic.append(&[Record::tombstone(2, 20_000, "k")]).unwrap();
    topic
}

#[test]
fn an_idle_active_segment_rolls_once_it_is_segment_ms_old_so_what_it_deletes_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        segment_ms: 1_000,
        delete_retention_ms: 0,
        ..eager()
    };
    let topic = put_then_delete_in_the_active_segment(dir.path(), config);
    assert!(
        !topic.roll_if_old(20_999).unwrap(),
        "younger than segment_ms"
    );
    topic.clean_once_at(30_000).unwrap();
    assert_eq!(
        offsets(&topic),
        vec![1, 2],
        "the delete sits in the active segment"
    );

    assert!(topic.roll_if_old(21_000).unwrap());
    assert_eq!(topic.stats().active_base_offset, 3);
    assert!(
        !topic.roll_if_old(50_000).unwrap(),
        "an empty segment stays"
    );
    topic.clean_once_at(30_000).unwrap();
    assert_eq!(
        offsets(&topic),
        vec![2],
        "the put is cleaned; the delete stays, as the topic's last record"
    );
}

/// While space is short (the topic eager), the active segment rolls once
/// its first record is `min_compaction_lag_ms` old rather than
/// `segment_ms`: a delete gives its space back after the lag, where it
/// waited for the segment to roll (an hour by default).
#[test]
fn an_eager_topic_rolls_its_active_segment_once_it_is_min_compaction_lag_old() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        segment_ms: 3_600_000,
        min_compaction_lag_ms: 1_000,
        delete_retention_ms: 0,
        ..eager()
    };
    let topic = put_then_delete_in_the_active_segment(dir.path(), config);
    assert!(!topic.roll_if_old(25_000).unwrap(), "not eager: segment_ms");
    topic.set_eager(true);
    assert!(!topic.roll_if_old(20_999).unwrap(), "younger than the lag");
    assert!(topic.roll_if_old(21_000).unwrap());
    topic.clean_once_at(30_000).unwrap();
    assert_eq!(offsets(&topic), vec![2], "the put is cleaned");
}

#[test]
fn an_eager_topic_cleans_below_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        min_cleanable_dirty_ratio: 0.9,
        ..eager()
    };
    let topic = Topic::open(dir.path(), config).unwrap();
    fill(&topic, 10, 1);
    topic.roll().unwrap();
    topic.clean_once_at(0).unwrap();
    topic.append(&[Record::tombstone(11, 0, "k0")]).unwrap();
    topic.roll().unwrap();
    assert!(
        !topic.clean_once_at(0).unwrap().cleaned,
        "too little is dirty"
    );
    topic.set_eager(true);
    assert!(topic.clean_once_at(0).unwrap().cleaned);
    assert!(
        !offsets(&topic).contains(&1),
        "k0's put is gone: {:?}",
        offsets(&topic)
    );
}
