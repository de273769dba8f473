//! Opening raft logs a crash or damage left behind.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::*;
use crate::store::log_files::tests::{entry, id, indexes};
use crate::store::log_files::{cut_torn_tail, LogFiles, SEGMENT_BYTES};
use crate::store::log_frame::Frame;

/// Bytes of the frame `entry(1, index)` makes, for an index of one digit.
fn frame_bytes() -> u64 {
    let mut bytes = Vec::new();
    log_frame::encode(&entry(1, 1), &mut bytes);
    bytes.len() as u64
}

/// An entry whose JSON is long enough that its frame straddles a sector
/// boundary.
fn long_entry(term: u64, index: u64) -> Frame {
    Frame::Entry(
        id(term, index),
        format!("{{\"i\":{index},\"pad\":\"{:x<700}\"}}", "")
            .into_bytes()
            .into(),
    )
}

/// Bytes of the frame `long_entry(_, index)` makes, for an index of one
/// digit.
fn long_frame_bytes() -> u64 {
    let mut bytes = Vec::new();
    log_frame::encode(&long_entry(1, 1), &mut bytes);
    bytes.len() as u64
}

/// Bytes of the mark that ends each synced write.
fn mark_bytes() -> u64 {
    let mut bytes = Vec::new();
    log_frame::encode(&Frame::Synced(id(1, 1)), &mut bytes);
    bytes.len() as u64
}

/// Bytes of a synced write of one `entry(_, index)`, its mark included.
fn group_bytes() -> u64 {
    frame_bytes() + mark_bytes()
}

/// Bytes of a synced write of one `long_entry(_, index)`, its mark
/// included: where the next such write starts.
fn long_group_bytes() -> u64 {
    long_frame_bytes() + mark_bytes()
}

/// The first sector boundary strictly after `position`.
fn next_sector(position: u64) -> u64 {
    (position / torn::SECTOR_BYTES + 1) * torn::SECTOR_BYTES
}

/// A log in `dir` of `long_entry(1, 1..=entries)`, one synced group each.
fn long_log(dir: &Path, entries: u64) -> PathBuf {
    let (files, _) = LogFiles::open(dir, SEGMENT_BYTES).expect("opens");
    for index in 1..=entries {
        files
            .append(&[long_entry(1, index)], true)
            .expect("appends");
    }
    segment_path(dir, 1)
}

/// Flips the bits `mask` of the byte at `position` of `path`.
fn flip_bits(path: &Path, position: u64, mask: u8) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("opens");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).expect("reads");
    file.write_all_at(&[byte[0] ^ mask], position)
        .expect("flips a bit");
}

/// Writes `bytes` at `position` of `path`.
fn write_at(path: &Path, position: u64, bytes: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.write_all_at(bytes, position))
        .expect("writes");
}

/// Opens the log in `dir`, expecting it to refuse with damage at `offset`
/// of `path`, and checks that nothing was cut.
fn assert_refused_at(dir: &Path, path: &Path, offset: u64) {
    let before = std::fs::read(path).expect("reads");
    match LogFiles::open(dir, SEGMENT_BYTES) {
        Err(StoreError::LogFrameDamaged {
            path: named,
            offset: at,
            ..
        }) => assert_eq!((named.as_path(), at), (path, offset)),
        Err(other) => panic!("unexpected error: {other}"),
        Ok((files, _)) => panic!("opened, keeping {:?}", indexes(&files)),
    }
    assert_eq!(
        std::fs::read(path).expect("reads"),
        before,
        "bytes were cut"
    );
}

/// Checks that opening left the torn tail of `path` in the file (a node
/// whose checks then stop it must leave the file as it found it), and that
/// the log's first write cuts it at `end` before writing past it.
fn assert_cut_at_the_first_write(files: &LogFiles, path: &Path, end: u64) {
    let opened = std::fs::read(path).expect("reads");
    assert!(opened.len() as u64 > end, "the tail is still in the file");
    cut_torn_tail(&mut files.hold_writes()).expect("cuts");
    let cut = std::fs::read(path).expect("reads");
    assert_eq!(cut.len() as u64, end, "the first write cuts the tail");
    assert_eq!(cut, opened[..end as usize], "and only the tail");
}

#[test]
fn a_last_frame_with_a_sector_never_written_is_cut_off_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = long_log(dir.path(), 3);
    let last = 2 * long_group_bytes();
    let end = last + long_frame_bytes();
    let lost = next_sector(last + 8);
    assert!(lost + 8 < end, "the frame straddles sectors");
    // The sectors from `lost` on never landed: the rest of the frame and
    // the write's mark after it read as zeros.
    write_at(&path, lost, &vec![0; (end + mark_bytes() - lost) as usize]);
    let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
    assert_eq!(indexes(&files), vec![1, 2]);
    assert_cut_at_the_first_write(&files, &path, last);
    files.append(&[entry(2, 3)], true).expect("appends");
    drop(files);
    let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
    assert_eq!(indexes(&files), vec![1, 2, 3]);
    assert_eq!(files.log_id_at(3), Some(id(2, 3)));
}

/// Entry 5 of the gap tests: long enough for a whole sector inside it.
fn fifth_entry() -> Frame {
    Frame::Entry(
        id(1, 5),
        format!("{{\"i\":5,\"pad\":\"{:x<1500}\"}}", "")
            .into_bytes()
            .into(),
    )
}

/// `long_log(_, 4)`, then `later` (writes from [`fifth_entry`] on), with
/// a sector of zeros inside the fifth entry's frame; gives the segment and
/// where that frame starts.
fn gap_in_the_fifth_frame(dir: &Path, later: &[&[Frame]]) -> (PathBuf, u64) {
    let path = long_log(dir, 4);
    let (files, _) = LogFiles::open(dir, SEGMENT_BYTES).expect("reopens");
    for write in later {
        files.append(write, true).expect("appends");
    }
    drop(files);
    let mut fifth_frame = Vec::new();
    log_frame::encode(&fifth_entry(), &mut fifth_frame);
    let fifth = 4 * long_group_bytes();
    let gap = next_sector(fifth + 8);
    assert!(
        gap + torn::SECTOR_BYTES < fifth + fifth_frame.len() as u64,
        "the gap is inside frame 5"
    );
    write_at(&path, gap, &[0; torn::SECTOR_BYTES as usize]);
    (path, fifth)
}

#[test]
fn a_gap_of_zero_sectors_before_whole_frames_of_the_same_write_is_cut_where_it_starts() {
    // A power cut can land the later sectors of the last write and lose
    // earlier ones: nothing from the gap on was ever synced.
    let dir = tempfile::tempdir().expect("a temp dir");
    let last_write = [fifth_entry(), long_entry(1, 6), long_entry(1, 7)];
    let (path, fifth) = gap_in_the_fifth_frame(dir.path(), &[&last_write]);
    assert_opens_cut_before_the_fifth(dir.path(), &path, fifth);
}

/// Opens the log of [`gap_in_the_fifth_frame`], expecting the first four
/// entries, and its tail cut from `fifth` at the first write.
fn assert_opens_cut_before_the_fifth(dir: &Path, path: &Path, fifth: u64) {
    let (files, _) = LogFiles::open(dir, SEGMENT_BYTES).expect("reopens");
    assert_eq!(indexes(&files), vec![1, 2, 3, 4]);
    assert_cut_at_the_first_write(&files, path, fifth);
}

/// A long last write torn early: the search for a later write after the
/// gap checksums only what could be a mark, so however many frames follow
/// (and whatever their bytes read as lengths), it finds none and the tail
/// is cut, as a power cut leaves it.
#[test]
fn a_gap_early_in_a_long_last_write_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut last_write = vec![fifth_entry()];
    last_write.extend((6..400).map(|index| entry(1, index)));
    let (path, fifth) = gap_in_the_fifth_frame(dir.path(), &[&last_write]);
    assert_opens_cut_before_the_fifth(dir.path(), &path, fifth);
}

#[test]
fn a_gap_of_zero_sectors_before_a_later_write_is_damage() {
    // A write goes out only once the synced one before it returned: with a
    // later write on disk, the gap was durable data, and acknowledged.
    let dir = tempfile::tempdir().expect("a temp dir");
    let writes = [[fifth_entry()], [long_entry(1, 6)], [long_entry(1, 7)]];
    let later: Vec<&[Frame]> = writes.iter().map(|write| write.as_slice()).collect();
    let (path, fifth) = gap_in_the_fifth_frame(dir.path(), &later);
    assert_refused_at(dir.path(), &path, fifth);
}

#[test]
fn a_last_frame_running_past_the_end_of_the_file_is_cut_off() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = long_log(dir.path(), 3);
    let last = 2 * long_group_bytes();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|file| file.set_len(last + 100))
        .expect("cuts the file");
    let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
    assert_eq!(indexes(&files), vec![1, 2]);
    assert_cut_at_the_first_write(&files, &path, last);
}

#[test]
fn zeros_after_the_last_frame_are_kept_as_space_written_ahead() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = long_log(dir.path(), 3);
    let size = std::fs::metadata(&path).expect("stats").len();
    assert!(
        size > 3 * long_frame_bytes(),
        "the segment is extended ahead"
    );
    let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
    assert_eq!(indexes(&files), vec![1, 2, 3]);
    assert_eq!(std::fs::metadata(&path).expect("stats").len(), size);
}

#[test]
fn zeros_inside_a_written_sector_of_the_last_frame_fail_open() {
    // A disk writes a sector whole: zeros after written bytes of the same
    // sector are damage, not a write that never landed.
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = long_log(dir.path(), 3);
    let last = 2 * long_group_bytes();
    let zeros_to = next_sector(last + 60) - 4;
    write_at(&path, last + 40, &vec![0; (zeros_to - last - 40) as usize]);
    assert_refused_at(dir.path(), &path, last);
}

#[test]
fn a_checksum_failure_in_the_written_last_frame_fails_open_naming_file_and_byte() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = long_log(dir.path(), 3);
    let last = 2 * long_group_bytes();
    flip_bits(&path, last + 300, 0x01);
    assert_refused_at(dir.path(), &path, last);
    let error = LogFiles::open(dir.path(), SEGMENT_BYTES).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(&format!("byte {last}")), "{message}");
    assert!(message.contains("docs/recovery.md"), "{message}");
}

/// What opening a log with one flipped byte must do.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Open, keeping these entries.
    Kept(Vec<u64>),
    /// Refuse, naming the first segment, this byte and this damage.
    Damaged { offset: u64, damage: FrameDamage },
}

/// Writes `entries` one group each in segments of `segment_bytes`,
/// flips the byte at `at` of the first segment, and opens the log again.
fn open_with_a_flipped_byte(entries: u64, segment_bytes: u64, at: u64) -> Expect {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (files, _) = LogFiles::open(dir.path(), segment_bytes).expect("opens");
    for index in 1..=entries {
        files.append(&[entry(1, index)], true).expect("appends");
    }
    drop(files);
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).expect("reads");
    bytes[at as usize] ^= 0xff;
    std::fs::write(&path, &bytes).expect("writes");
    match LogFiles::open(dir.path(), segment_bytes) {
        Ok((files, _)) => Expect::Kept(indexes(&files)),
        Err(StoreError::LogFrameDamaged {
            path: named,
            offset,
            damage,
        }) => {
            assert_eq!(named, path, "the error names the segment");
            let kept = std::fs::read(&path).expect("reads");
            assert_eq!(kept, bytes, "nothing is cut off a damaged segment");
            Expect::Damaged { offset, damage }
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn a_flipped_byte_is_damage_wherever_it_is() {
    // Each write is one entry and its mark.
    let frame = group_bytes();
    // (case, entries, segment bytes, flipped byte, expected)
    let cases = [
        (
            "in the last frame of the last segment",
            3,
            SEGMENT_BYTES,
            2 * frame + 20,
            Expect::Damaged {
                offset: 2 * frame,
                damage: FrameDamage::ChecksumMismatch,
            },
        ),
        (
            "in the length of the last frame",
            3,
            SEGMENT_BYTES,
            2 * frame,
            Expect::Damaged {
                offset: 2 * frame,
                damage: FrameDamage::ChecksumMismatch,
            },
        ),
        (
            "with intact entries after it",
            5,
            SEGMENT_BYTES,
            frame + 20,
            Expect::Damaged {
                offset: frame,
                damage: FrameDamage::ChecksumMismatch,
            },
        ),
        (
            "before the last segment",
            6,
            100,
            20,
            Expect::Damaged {
                offset: 0,
                damage: FrameDamage::ChecksumMismatch,
            },
        ),
    ];
    for (case, entries, segment_bytes, at, expected) in cases {
        let found = open_with_a_flipped_byte(entries, segment_bytes, at);
        assert_eq!(found, expected, "{case}");
    }
}

#[test]
fn a_damaged_frame_is_named_by_file_and_byte() {
    let Expect::Damaged { offset, damage } = open_with_a_flipped_byte(5, SEGMENT_BYTES, 60) else {
        panic!("damage with intact entries after it is not cut");
    };
    let error = StoreError::LogFrameDamaged {
        path: "seg.log".into(),
        offset,
        damage,
    };
    assert!(
        error.to_string().contains("seg.log is damaged at byte 40"),
        "{error}"
    );
}

#[test]
fn a_committed_id_past_the_end_of_the_log_is_forgotten() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("opens");
    files
        .append(&[entry(1, 1), Frame::Committed(id(1, 2))], true)
        .expect("appends");
    drop(files);
    let (_, recovered) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
    assert_eq!(recovered.committed, None);
}

#[test]
fn a_raft_log_of_the_earlier_sled_format_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("conf"), b"segment_size: 524288").expect("writes");
    std::fs::write(dir.path().join("db"), b"sled").expect("writes");
    let error = LogFiles::open(dir.path(), SEGMENT_BYTES).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("sled format"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn unreadable_metadata_is_named() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join(META_FILE), b"{not json").expect("writes");
    let error = LogFiles::open(dir.path(), SEGMENT_BYTES).expect_err("refused");
    assert!(
        matches!(&error, StoreError::LogMetaUnreadable { path, .. }
            if path.ends_with(META_FILE)),
        "{error}"
    );
}

/// A changed digit leaves the metadata valid JSON of another vote, which
/// could let the node vote twice in a term; its checksum tells.
#[test]
fn metadata_with_a_changed_digit_is_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("opens");
    let vote = openraft::Vote::new(7, 2);
    files
        .save_meta(&Meta {
            vote: Some(vote),
            purged: None,
        })
        .expect("saves");
    drop(files);
    let (files, recovered) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("reopens");
    assert_eq!(recovered.meta.vote, Some(vote));
    drop(files);

    let path = dir.path().join(META_FILE);
    let mut file = std::fs::read(&path).expect("reads");
    let term = b"\"term\":7";
    let at = file
        .windows(term.len())
        .position(|window| window == term)
        .expect("the vote's term")
        + term.len()
        - 1;
    file[at] = b'8';
    std::fs::write(&path, &file).expect("writes");
    let error = LogFiles::open(dir.path(), SEGMENT_BYTES).expect_err("refused");
    assert!(
        matches!(&error, StoreError::LogMetaUnreadable { path, reason }
            if path.ends_with(META_FILE) && reason.contains("fails its checksum")),
        "{error}"
    );
    assert!(error.to_string().contains("docs/recovery.md"), "{error}");
}

#[test]
fn the_search_for_an_entry_after_a_cut_short_frame_is_bounded_and_then_refuses() {
    // Every fourth byte starts a frame declaring a 1 MiB body that fits in
    // what follows: checksumming each would take hours.
    let bytes: Vec<u8> = (1u32 << 20)
        .to_le_bytes()
        .into_iter()
        .cycle()
        .take(8 << 20)
        .collect();
    assert!(intact_entry_after(&bytes, 0, None));
    // A short tail without any intact entry is still a torn write.
    assert!(!intact_entry_after(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 0, None));
}

/// An entry of index `index` whose JSON is padded with `pad` bytes.
fn padded_entry(index: u64, pad: usize) -> Frame {
    Frame::Entry(
        id(1, index),
        format!("{{\"i\":{index},\"pad\":\"{:x<pad$}\"}}", "")
            .into_bytes()
            .into(),
    )
}

/// A mark ends in its index's high bytes, zeros by content. Placed so that
/// only those zeros lie past a sector boundary, with the next write's
/// bytes after them in the same sector, a flipped bit in the mark is
/// damage: that sector was written whole. (Taken for a sector never
/// written, it cut the next write, acknowledged, with it.)
#[test]
fn a_flipped_bit_in_a_mark_ending_in_zeros_by_content_is_damage() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let first = frame_bytes_of(&padded_entry(1, 10)) + mark_bytes();
    // The second write's length that ends its mark 4 bytes past a sector
    // boundary: those 4 bytes are the high bytes of the mark's index.
    let pad = (0..600)
        .find(|&pad| {
            let end = first + frame_bytes_of(&padded_entry(2, pad)) + mark_bytes();
            end % torn::SECTOR_BYTES == 4
        })
        .expect("some padding places the mark");
    let (files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES).expect("opens");
    for write in [
        padded_entry(1, 10),
        padded_entry(2, pad),
        padded_entry(3, 10),
    ] {
        files.append(&[write], true).expect("appends");
    }
    drop(files);
    let path = segment_path(dir.path(), 1);
    let mark = first + frame_bytes_of(&padded_entry(2, pad));
    flip_bits(&path, mark + 10, 0x04);
    assert_refused_at(dir.path(), &path, mark);
}

/// Bytes of `frame` encoded.
fn frame_bytes_of(frame: &Frame) -> u64 {
    let mut bytes = Vec::new();
    log_frame::encode(frame, &mut bytes);
    bytes.len() as u64
}
