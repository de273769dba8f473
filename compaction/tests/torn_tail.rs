//! What `open` cuts off the end of the active segment and what it refuses:
//! only bytes a crash provably left unwritten are cut (a zero tail, a frame
//! running past the end of the file, a frame with a sector of zeros and
//! everything after it); a checksum failure in written bytes is damage.
//! With a durable end, damage past it is cut back to it.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{file_len, frame_position, read_all};
use compaction::torn::SECTOR_BYTES;
use compaction::{Error, Offset, Record, Topic, TopicConfig};

/// One segment large enough for every record of these tests.
fn config() -> TopicConfig {
    TopicConfig {
        segment_bytes: 1 << 20,
        ..TopicConfig::default()
    }
}

/// The record at `offset`, its value long enough that every frame
/// straddles a sector boundary.
fn record(offset: Offset) -> Record {
    Record::put(
        offset,
        1_000 + offset,
        format!("k{offset}"),
        format!("{offset:0>700}"),
    )
}

/// A topic at `dir` holding offsets `1..=last` in its one (active)
/// segment, synced. Returns the records and the segment's path.
fn topic_of(dir: &Path, last: Offset) -> (Vec<Record>, PathBuf) {
    let topic = Topic::open(dir, config()).unwrap();
    let records: Vec<Record> = (1..=last).map(record).collect();
    for record in &records {
        topic.append(std::slice::from_ref(record)).unwrap();
    }
    topic.sync().unwrap();
    let path = topic.segments().pop().unwrap().path;
    (records, path)
}

fn write_at(path: &Path, position: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, position).unwrap();
}

fn flip_byte(path: &Path, position: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).unwrap();
    file.write_all_at(&[byte[0] ^ 0x5a], position).unwrap();
}

/// The first sector boundary strictly after `position`.
fn next_sector(position: u64) -> u64 {
    (position / SECTOR_BYTES + 1) * SECTOR_BYTES
}

/// Panics unless `error` is `Corrupt` at `position` of `path`, with both in
/// its message.
fn assert_corrupt_at(error: &Error, path: &Path, position: u64) {
    assert!(
        matches!(error, Error::Corrupt { path: named, position: at, .. }
            if named == path && *at == position),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(&format!("byte {position}")), "{message}");
}

#[test]
fn a_checksum_failure_in_the_last_record_fails_open_naming_file_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (records, path) = topic_of(dir.path(), 10);
    let last = frame_position(&records, 9);
    flip_byte(&path, last + 30);
    let size = file_len(&path);

    let error = Topic::open(dir.path(), config()).unwrap_err();
    assert_corrupt_at(&error, &path, last);
    assert_eq!(file_len(&path), size, "a damaged record was cut off");
}

#[test]
fn a_checksum_failure_in_the_last_record_with_zeros_after_it_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let (records, path) = topic_of(dir.path(), 10);
    let last = frame_position(&records, 9);
    flip_byte(&path, last + 30);
    let size = file_len(&path);
    write_at(&path, size, &[0; 4096]);

    let error = Topic::open(dir.path(), config()).unwrap_err();
    assert_corrupt_at(&error, &path, last);
}

#[test]
fn zeros_inside_a_written_sector_of_the_last_record_fail_open() {
    // A disk writes a sector whole: zeros after written bytes of the same
    // sector are not a write that never landed.
    let dir = tempfile::tempdir().unwrap();
    let (records, path) = topic_of(dir.path(), 10);
    let last = frame_position(&records, 9);
    let end = file_len(&path);
    let zeros_from = last + 20;
    let zeros_to = next_sector(last + 40) - 4;
    write_at(
        &path,
        zeros_from,
        &vec![0; (zeros_to - zeros_from) as usize],
    );
    assert!(zeros_to < end);

    let error = Topic::open(dir.path(), config()).unwrap_err();
    assert_corrupt_at(&error, &path, last);
}

#[test]
fn a_last_record_with_a_sector_never_written_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (records, path) = topic_of(dir.path(), 10);
    let last = frame_position(&records, 9);
    let end = file_len(&path);
    let lost = next_sector(last + 8);
    assert!(lost < end, "the last record straddles a sector boundary");
    write_at(&path, lost, &vec![0; (end - lost) as usize]);

    let topic = Topic::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&topic), &records[..9]);
    assert_eq!(file_len(&path), last);
}

#[test]
fn a_gap_of_zero_sectors_before_whole_records_is_cut_where_it_starts() {
    // A power cut can land later writes of the unsynced tail and lose
    // earlier ones: a sector of zeros, then records with good checksums.
    let dir = tempfile::tempdir().unwrap();
    let (records, path) = topic_of(dir.path(), 12);
    let gap = next_sector(frame_position(&records, 6));
    write_at(&path, gap, &[0; SECTOR_BYTES as usize]);
    let damaged = (0..records.len())
        .rfind(|&i| frame_position(&records, i) < gap)
        .unwrap();
    assert!(
        frame_position(&records, damaged + 2) > gap + SECTOR_BYTES,
        "whole records follow the gap"
    );

    let topic = Topic::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&topic), &records[..damaged]);
    assert_eq!(file_len(&path), frame_position(&records, damaged));
}

#[test]
fn damage_past_the_durable_end_is_cut_back_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (records, path) = topic_of(dir.path(), 12);
    flip_byte(&path, frame_position(&records, 10) + 30);

    let topic = Topic::open_with_durable_end(dir.path(), config(), Some(8)).unwrap();
    assert_eq!(read_all(&topic), &records[..8]);
    assert_eq!(topic.last_offset(), Some(8));
    assert_eq!(file_len(&path), frame_position(&records, 8));
    topic.append(&records[8..]).unwrap();
    topic.sync().unwrap();
    drop(topic);
    let topic = Topic::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&topic), records);
}

#[test]
fn a_gap_of_zeros_past_the_durable_end_is_cut_back_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (records, path) = topic_of(dir.path(), 12);
    // Zeros inside one sector, whole records after them: past the durable
    // end no sector rule is needed, the caller writes it all again.
    write_at(&path, frame_position(&records, 10), &[0; 16]);

    let topic = Topic::open_with_durable_end(dir.path(), config(), Some(9)).unwrap();
    assert_eq!(read_all(&topic), &records[..9]);
    assert_eq!(file_len(&path), frame_position(&records, 9));
}

#[test]
fn damage_at_or_before_the_durable_end_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let (records, path) = topic_of(dir.path(), 12);
    let last = frame_position(&records, 11);
    // Even a sector of zeros: the record was made durable, so it is lost.
    let lost = next_sector(last + 8);
    write_at(&path, lost, &vec![0; (file_len(&path) - lost) as usize]);

    let error = Topic::open_with_durable_end(dir.path(), config(), Some(12)).unwrap_err();
    assert_corrupt_at(&error, &path, last);
    assert!(error.to_string().contains("up to offset 12"), "{error}");
}

#[test]
fn a_zero_tail_and_a_record_past_the_end_are_cut_with_or_without_a_durable_end() {
    for durable_end in [None, Some(10)] {
        let dir = tempfile::tempdir().unwrap();
        let (records, path) = topic_of(dir.path(), 12);
        let end = file_len(&path);
        write_at(&path, end, &[0; 3000]);
        let topic = Topic::open_with_durable_end(dir.path(), config(), durable_end).unwrap();
        assert_eq!(read_all(&topic), records, "{durable_end:?}");
        assert_eq!(file_len(&path), end, "{durable_end:?}");
        drop(topic);

        let last = frame_position(&records, 11);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(last + 40)
            .unwrap();
        let topic = Topic::open_with_durable_end(dir.path(), config(), durable_end).unwrap();
        assert_eq!(read_all(&topic), &records[..11], "{durable_end:?}");
        assert_eq!(file_len(&path), last, "{durable_end:?}");
    }
}
