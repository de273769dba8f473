//! Replacing a topic's records wholesale, as a snapshot install does.

use compaction::{BatchPos, Error, Record, Topic, TopicConfig};

fn config() -> TopicConfig {
    TopicConfig {
        segment_bytes: 512,
        ..TopicConfig::default()
    }
}

fn read_all(topic: &Topic) -> Vec<Record> {
    topic.read_from(0).collect::<Result<_, _>>().unwrap()
}

#[test]
fn replaced_records_are_all_there_is_and_appends_continue_above_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    for offset in 1..=40 {
        topic
            .append(&[Record::put(offset, 0, format!("old{}", offset % 7), "x")])
            .unwrap();
    }
    let snapshot = vec![
        Record::put(3, 5, "a", "1"),
        Record::tombstone(9, 6, "b"),
        Record::put(12, 7, "c", "3"),
    ];
    let rewrites = topic.rewrites();
    topic
        .replace_with(snapshot.clone().into_iter().map(Ok), 20, 4)
        .unwrap();
    assert_eq!(topic.rewrites(), rewrites + 1);
    assert_eq!(read_all(&topic), snapshot);
    assert_eq!(topic.last_offset(), Some(20));
    assert_eq!(topic.tombstone_floor(), 4);
    assert!(topic.append(&[Record::put(20, 8, "d", "4")]).is_err());
    topic.append(&[Record::put(21, 8, "d", "4")]).unwrap();

    drop(topic);
    let topic = Topic::open(dir.path(), config()).unwrap();
    let mut expected = snapshot;
    expected.push(Record::put(21, 8, "d", "4"));
    assert_eq!(read_all(&topic), expected);
    assert_eq!(topic.tombstone_floor(), 4);
    assert_eq!(
        topic.stats().clean_offset,
        0,
        "installed records count as dirty"
    );
}

#[test]
fn an_empty_replacement_keeps_the_end_offset() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    topic.append(&[Record::put(1, 0, "k", "v")]).unwrap();
    topic.replace_with(std::iter::empty(), 100, 0).unwrap();
    assert!(read_all(&topic).is_empty());
    drop(topic);
    let topic = Topic::open(dir.path(), config()).unwrap();
    assert_eq!(topic.last_offset(), Some(100));
}

#[test]
fn records_out_of_order_or_past_the_end_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    topic.append(&[Record::put(1, 0, "k", "v")]).unwrap();
    let unordered = vec![Record::put(5, 0, "a", "1"), Record::put(4, 0, "b", "2")];
    assert!(topic
        .replace_with(unordered.into_iter().map(Ok), 10, 0)
        .is_err());
    let past_end = vec![Record::put(11, 0, "a", "1")];
    assert!(topic
        .replace_with(past_end.into_iter().map(Ok), 10, 0)
        .is_err());
    assert_eq!(read_all(&topic), vec![Record::put(1, 0, "k", "v")]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(compaction::CLEANED_SUFFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(topic);
    let topic = Topic::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&topic), vec![Record::put(1, 0, "k", "v")]);
}

#[test]
fn batch_positions_survive_a_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    // What a snapshot keeps of two batches: some of their records.
    let snapshot = vec![
        Record::put(4, 5, "a", "1").with_batch(BatchPos::new(1, 1)),
        Record::tombstone(8, 6, "b").with_batch(BatchPos::new(0, 2)),
        Record::put(10, 7, "c", "3").with_batch(BatchPos::new(2, 0)),
    ];
    topic
        .replace_with(snapshot.clone().into_iter().map(Ok), 10, 0)
        .unwrap();
    assert_eq!(read_all(&topic), snapshot);
    assert_eq!(topic.tail().unwrap().as_ref(), snapshot.last());
    drop(topic);
    let topic = Topic::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&topic), snapshot);
    topic.append(&[Record::put(11, 8, "d", "4")]).unwrap();
}

#[test]
fn a_batch_running_past_the_end_offset_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topic = Topic::open(dir.path(), config()).unwrap();
    topic.append(&[Record::put(1, 0, "k", "v")]).unwrap();
    let unfinished = vec![Record::put(9, 0, "a", "1").with_batch(BatchPos::new(0, 2))];
    let error = topic
        .replace_with(unfinished.into_iter().map(Ok), 10, 0)
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidBatch { offset: 9, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("ends at offset 11"), "{error}");
    assert_eq!(read_all(&topic), vec![Record::put(1, 0, "k", "v")]);
    assert_eq!(topic.last_offset(), Some(1));
}
