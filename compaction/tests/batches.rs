//! Batches, one behaviour per test: how appends keep them whole, what they
//! refuse, how a batch torn by a crash is finished, and how readers find
//! the start of a batch.

mod common;

use std::fs::OpenOptions;
use std::path::Path;

use common::{dir_contents, read_all};
use compaction::{BatchPos, Error, Offset, Record, Topic, TopicConfig};

/// Small segments, so batches meet segment boundaries.
fn config() -> TopicConfig {
    TopicConfig {
        segment_bytes: 512,
        index_interval_bytes: 64,
        ..TopicConfig::default()
    }
}

/// A batch of `len` puts at offsets from `first`, all at time `timestamp_ms`.
fn batch_at(first: Offset, len: u32, timestamp_ms: u64) -> Vec<Record> {
    (0..len)
        .map(|sub| {
            let offset = first + u64::from(sub);
            Record::put(
                offset,
                timestamp_ms,
                format!("k{offset}"),
                "a value of some bytes",
            )
            .with_batch(BatchPos::new(sub, len - 1 - sub))
        })
        .collect()
}

fn batch(first: Offset, len: u32) -> Vec<Record> {
    batch_at(first, len, 0)
}

/// The base offset of the segment holding each of `offsets`.
fn segments_of(topic: &Topic, offsets: impl IntoIterator<Item = Offset>) -> Vec<Offset> {
    let segments = topic.segments();
    offsets
        .into_iter()
        .map(|offset| {
            segments
                .iter()
                .find(|s| s.first_offset <= Some(offset) && s.last_offset >= Some(offset))
                .unwrap_or_else(|| panic!("no segment holds offset {offset}: {segments:?}"))
                .base_offset
        })
        .collect()
}

fn assert_invalid_batch_at(error: &Error, offset: Offset) {
    match error {
        Error::InvalidBatch { offset: at, .. } => assert_eq!(*at, offset, "{error}"),
        other => panic!("expected an invalid batch error, got {other}"),
    }
    assert!(
        error.to_string().contains(&format!("offset {offset}")),
        "{error}"
    );
}

#[test]
fn a_batch_larger_than_a_segment_is_written_whole_to_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    topic.append(&batch(1, 2)).unwrap();
    let big = batch(3, 12);
    let big_bytes: usize = big.iter().map(Record::frame_len).sum();
    assert!(big_bytes as u64 > config().segment_bytes, "{big_bytes}");
    topic.append(&big).unwrap();
    topic.append(&batch(15, 1)).unwrap();

    let holders = segments_of(&topic, 3..=14);
    assert!(
        holders.iter().all(|&base| base == holders[0]),
        "{holders:?}"
    );
    assert_ne!(
        segments_of(&topic, [1]),
        holders[..1],
        "the batch starts a segment"
    );
    assert_ne!(
        segments_of(&topic, [15]),
        holders[..1],
        "the next batch starts another"
    );
    let mut expected = batch(1, 2);
    expected.extend(big);
    expected.extend(batch(15, 1));
    assert_eq!(read_all(&topic), expected);
}

#[test]
fn a_segment_rolls_by_age_only_between_batches() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        segment_bytes: 1 << 20,
        segment_ms: 1_000,
        ..config()
    };
    let topic = Topic::open(dir.path(), config).unwrap();
    let mut slow = batch_at(1, 4, 0);
    slow[2].timestamp_ms = 5_000;
    slow[3].timestamp_ms = 5_000;
    topic.append(&slow).unwrap();
    topic.append(&batch_at(5, 2, 5_000)).unwrap();

    assert_eq!(segments_of(&topic, 1..=4), [0, 0, 0, 0]);
    assert_eq!(segments_of(&topic, 5..=6), [5, 5]);
}

#[test]
fn a_batch_with_a_gap_or_miscounted_positions_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    topic.append(&batch(1, 3)).unwrap();
    topic.sync().unwrap();
    let files = dir_contents(dir.path());

    let mut gap = batch(4, 3);
    gap[2].offset += 1;
    assert_invalid_batch_at(&topic.append(&gap).unwrap_err(), 7);
    let mut miscounted = batch(4, 3);
    miscounted[1].batch = BatchPos::new(1, 0);
    assert_invalid_batch_at(&topic.append(&miscounted).unwrap_err(), 5);
    let mut starts_inside = batch(4, 3);
    starts_inside.remove(0);
    assert_invalid_batch_at(&topic.append(&starts_inside).unwrap_err(), 5);

    assert_eq!(topic.last_offset(), Some(3));
    assert_eq!(read_all(&topic), batch(1, 3));
    assert!(dir_contents(dir.path()) == files, "a refused append wrote");
}

#[test]
fn an_append_ending_inside_a_batch_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    let files = dir_contents(dir.path());
    let mut cut = batch(1, 1);
    cut.extend(batch(2, 4));
    cut.truncate(3);

    let error = topic.append(&cut).unwrap_err();
    assert_invalid_batch_at(&error, 3);
    assert!(error.to_string().contains("2 record(s)"), "{error}");
    assert_eq!(topic.last_offset(), None);
    assert!(dir_contents(dir.path()) == files, "a refused append wrote");
}

/// Cuts the active segment in the middle of the frame of the record at
/// `offset`, as a crash during its write would.
fn tear_at(dir: &Path, offset: Offset) {
    let topic = Topic::open(dir, config()).unwrap();
    let active = topic.segments().pop().unwrap();
    let position: usize = read_all(&topic)
        .iter()
        .filter(|record| record.offset >= active.base_offset && record.offset < offset)
        .map(Record::frame_len)
        .sum();
    drop(topic);
    let file = OpenOptions::new().write(true).open(&active.path).unwrap();
    file.set_len(position as u64 + 5).unwrap();
}

#[test]
fn a_batch_torn_by_a_crash_must_be_completed_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let whole = batch(10, 4);
    {
        let topic = Topic::open(dir.path(), config()).unwrap();
        topic.append(&batch(1, 2)).unwrap();
        topic.append(&whole).unwrap();
        topic.sync().unwrap();
    }
    tear_at(dir.path(), 12);

    let topic = Topic::open(dir.path(), config()).unwrap();
    assert_eq!(topic.last_offset(), Some(11));
    let tail = topic.tail().unwrap().unwrap();
    assert_eq!((tail.offset, tail.batch), (11, BatchPos::new(1, 2)));
    assert_invalid_batch_at(&topic.roll().unwrap_err(), 11);
    assert_invalid_batch_at(&topic.append(&batch(12, 1)).unwrap_err(), 12);
    assert_invalid_batch_at(&topic.append(&whole[2..3]).unwrap_err(), 12);

    topic.append(&whole[2..]).unwrap();
    topic.roll().unwrap();
    topic.append(&batch(14, 1)).unwrap();
    topic.sync().unwrap();
    drop(topic);
    let topic = Topic::open(dir.path(), config()).unwrap();
    let mut expected = batch(1, 2);
    expected.extend(whole);
    expected.extend(batch(14, 1));
    assert_eq!(read_all(&topic), expected);
    assert_eq!(
        segments_of(&topic, 10..=13),
        [0, 0, 0, 0],
        "the batch stayed together"
    );
}

#[test]
fn the_tail_is_the_last_record_wherever_it_lies() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    assert_eq!(topic.tail().unwrap(), None);
    topic.append(&batch(1, 3)).unwrap();
    assert_eq!(topic.tail().unwrap(), batch(1, 3).pop());
    topic.roll().unwrap();
    assert_eq!(topic.tail().unwrap(), batch(1, 3).pop(), "after a roll");
    drop(topic);
    let topic = Topic::open(dir.path(), config()).unwrap();
    assert_eq!(topic.tail().unwrap(), batch(1, 3).pop(), "after a reopen");
}

#[test]
fn reading_from_inside_a_batch_starts_at_its_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    topic.append(&batch(1, 1)).unwrap();
    topic.append(&batch(5, 4)).unwrap();
    topic.append(&batch(9, 1)).unwrap();
    let offsets_from = |from| -> Vec<Offset> {
        topic
            .read_from_batch_start(from)
            .map(|record| record.unwrap().offset)
            .collect()
    };
    assert_eq!(offsets_from(7), [5, 6, 7, 8, 9]);
    assert_eq!(offsets_from(5), [5, 6, 7, 8, 9]);
    assert_eq!(
        offsets_from(3),
        [5, 6, 7, 8, 9],
        "from a gap: the next batch"
    );
    assert_eq!(offsets_from(9), [9]);
    assert_eq!(offsets_from(10), Vec::<Offset>::new());
}
