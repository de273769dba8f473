//! Fuzzing the topic's decoders with damaged copies of valid data: the
//! record frame decoder ([`decode_frames`]), and through [`Topic::open`],
//! reads and [`Topic::verify`] the segment scanner, the torn-tail recovery
//! of the active segment, the sparse index loader and the checkpoint.
//!
//! Every input must give records or an error naming the file (or stream)
//! and a byte inside it; none may panic or allocate beyond what the input's
//! own size explains. `FUZZ_CASES` sets the cases per target (`make fuzz`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use compaction::{decode_frames, BatchPos, Error, Record, Topic, TopicConfig};
use fuzzkit::proptest::collection::vec;
use fuzzkit::proptest::prelude::*;
use fuzzkit::proptest::sample::Index;
use fuzzkit::{
    apply, mutations, outcome, outcome_of, reseal_frames, within_allocation_limit, LengthField,
    Mutation,
};

#[global_allocator]
static ALLOCATOR: fuzzkit::PeakAlloc = fuzzkit::PeakAlloc;

/// Where the header-length field sits in a version 2 frame: frame header
/// (8), version, flags, offset, sub, rest, timestamp.
const HEADERS_LEN_AT: usize = 8 + 1 + 1 + 8 + 4 + 4 + 8;

/// What a decoder may allocate beyond the input itself: error messages,
/// paths, the scanner's bookkeeping.
const SLACK_BYTES: usize = 64 << 10;

/// Any record: a put or a tombstone, with headers, in a batch position
/// its offset allows.
fn record() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        vec(any::<u8>(), 0..24),
        fuzzkit::proptest::option::of(vec(any::<u8>(), 0..48)),
        vec(any::<u8>(), 0..8),
        (0u32..3, 0u32..3),
    )
        .prop_map(|(timestamp_ms, key, value, headers, (sub, rest))| {
            let record = match value {
                Some(value) => Record::put(0, timestamp_ms, key, value),
                None => Record::tombstone(0, timestamp_ms, key),
            };
            record
                .with_headers(headers)
                .with_batch(BatchPos::new(sub, rest))
        })
}

/// Records at increasing offsets from 10, each a whole batch of its own
/// size (so a segment of them is coherent).
fn records(max: usize) -> impl Strategy<Value = Vec<Record>> {
    vec(record(), 1..max).prop_map(|records| {
        let mut offset = 10;
        records
            .into_iter()
            .map(|record| {
                let record = Record {
                    offset,
                    batch: BatchPos::SINGLE,
                    ..record
                };
                offset += 1;
                record
            })
            .collect()
    })
}

/// The frames of `records` and the length fields in them (body, headers,
/// key and value lengths).
fn encode(records: &[Record]) -> (Vec<u8>, Vec<LengthField>) {
    let mut bytes = Vec::new();
    let mut fields = Vec::new();
    for record in records {
        let start = bytes.len();
        record.encode_into(&mut bytes);
        let key_len_at = start + HEADERS_LEN_AT + 4 + record.headers.len();
        let value_len_at = key_len_at + 4 + record.key.len();
        for at in [start, start + HEADERS_LEN_AT, key_len_at, value_len_at] {
            fields.push(LengthField::u32_le(at));
        }
    }
    (bytes, fields)
}

/// Damaged bytes: mutations of a valid stream, with checksums recomputed
/// half of the time so that the body parser sees the damage.
fn damaged(records: &[Record], mutations: &[Mutation], reseal: bool) -> Vec<u8> {
    let (valid, fields) = encode(records);
    let mut bytes = apply(&valid, &fields, mutations);
    if reseal {
        reseal_frames(&mut bytes, 0);
    }
    bytes
}

/// The kind of error, for the target's summary.
fn error_outcome(error: &Error) -> String {
    match error {
        Error::Corrupt { reason, .. } => outcome_of(reason),
        Error::InvalidFile { what, .. } => format!("invalid {what}"),
        other => outcome_of(&other.to_string()),
    }
}

/// Checks that an error names `path` (or a file in it) and a byte within
/// `len` bytes.
fn names_a_place(error: &Error, path: &Path, len: u64) -> Result<(), String> {
    match error {
        Error::Corrupt {
            path: named,
            position,
            ..
        } if named.starts_with(path) && *position <= len => Ok(()),
        Error::InvalidFile { path: named, .. } | Error::ManifestMismatch { path: named, .. }
            if named.starts_with(path) =>
        {
            Ok(())
        }
        other => Err(format!(
            "the error does not name a place within the input: {other}"
        )),
    }
}

#[test]
fn fuzz_record_frames() {
    let strategy = (records(12), mutations(), any::<bool>());
    fuzzkit::fuzz("record frames", strategy, |(records, mutations, reseal)| {
        let bytes = Bytes::from(damaged(records, mutations, *reseal));
        let len = bytes.len() as u64;
        let decoded: Vec<compaction::Result<Record>> =
            within_allocation_limit(bytes.len() + SLACK_BYTES, || {
                decode_frames("stream", bytes).collect()
            })?;
        if mutations.is_empty() {
            let records_back: Vec<&Record> =
                decoded.iter().filter_map(|r| r.as_ref().ok()).collect();
            if records_back != records.iter().collect::<Vec<_>>() {
                return Err("valid frames did not decode to their records".to_string());
            }
        }
        match decoded.last() {
            Some(Err(error)) => outcome(&error_outcome(error)),
            _ => outcome("all records"),
        }
        for (i, result) in decoded.iter().enumerate() {
            if let Err(error) = result {
                names_a_place(error, Path::new("stream"), len)?;
                if i + 1 != decoded.len() {
                    return Err("the stream went on after an error".to_string());
                }
            }
        }
        Ok(())
    });
}

/// A directory for one case, on a memory file system when there is one.
fn case_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temp dir")
}

/// Opens the topic in `dir`, reads it all and verifies it: the whole
/// decoding path a restart and a reader take.
fn open_read_verify(dir: &Path, config: TopicConfig) -> compaction::Result<Vec<Record>> {
    let topic = Topic::open(dir, config)?;
    let records = topic.read_from(0).collect::<compaction::Result<Vec<_>>>()?;
    topic.verify()?;
    Ok(records)
}

/// The largest file in `dir`: what a decoder may hold at once.
fn largest_file(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("lists the case dir")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len() as usize)
        .max()
        .unwrap_or(0)
}

/// Opens `dir` and checks that the outcome is records or an error naming
/// a file of `dir` and a byte inside it, within the allocation bound.
fn open_checked(dir: &Path, config: TopicConfig) -> Result<(), String> {
    let limit = largest_file(dir) + (1 << 20) + SLACK_BYTES;
    let files_before: BTreeMap<PathBuf, u64> = std::fs::read_dir(dir)
        .expect("lists the case dir")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            Some((entry.path(), entry.metadata().ok()?.len()))
        })
        .collect();
    let opened = within_allocation_limit(limit, || open_read_verify(dir, config))?;
    match &opened {
        Ok(_) => outcome("opened, read and verified"),
        Err(error) => outcome(&error_outcome(error)),
    }
    if let Err(error) = opened {
        let named_len = match &error {
            Error::Corrupt { path, .. } => files_before.get(path).copied().unwrap_or(0),
            _ => 0,
        };
        names_a_place(&error, dir, named_len)?;
    }
    Ok(())
}

#[test]
fn fuzz_active_segment_recovery() {
    let strategy = (records(10), mutations(), any::<bool>());
    fuzzkit::fuzz(
        "active segment recovery",
        strategy,
        |(records, mutations, reseal)| {
            let bytes = damaged(records, mutations, *reseal);
            let dir = case_dir();
            let log = dir.path().join(compaction::log_file_name(10));
            std::fs::write(&log, &bytes).expect("writes the segment");
            open_checked(dir.path(), TopicConfig::default())?;
            // Recovery only ever cuts: what is left is a prefix of the input.
            let left = std::fs::read(&log).unwrap_or_default();
            if !bytes.starts_with(&left) {
                return Err("recovery rewrote the segment instead of cutting it".to_string());
            }
            Ok(())
        },
    );
}

/// Small segments with a dense index, so a small topic has several of each.
fn small_segments() -> TopicConfig {
    TopicConfig {
        segment_bytes: 1024,
        index_interval_bytes: 96,
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        ..TopicConfig::default()
    }
}

/// A cleaned topic of several closed segments, their indexes and a
/// checkpoint: every file name and its bytes.
fn template_topic() -> &'static BTreeMap<String, Vec<u8>> {
    static TEMPLATE: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let topic = Topic::open(dir.path(), small_segments()).expect("opens");
        let append = |offsets: std::ops::RangeInclusive<u64>| {
            for offset in offsets {
                let key = format!("key-{}", offset % 7);
                let record = if offset % 11 == 0 {
                    Record::tombstone(offset, 1_000 + offset, key)
                } else {
                    Record::put(offset, 1_000 + offset, key, format!("value-{offset}"))
                };
                topic.append(&[record]).expect("appends");
            }
        };
        // Cleaned segments, a checkpoint, then closed segments not yet
        // cleaned and the active one.
        append(1..=60);
        topic.roll().expect("rolls");
        topic.clean_once().expect("cleans");
        append(61..=120);
        topic.sync().expect("syncs");
        drop(topic);
        std::fs::read_dir(dir.path())
            .expect("lists")
            .map(|entry| {
                let entry = entry.expect("an entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(entry.path()).expect("reads"))
            })
            .collect()
    })
}

/// The length fields of a segment file: each frame's body length.
fn frame_lengths(bytes: &[u8]) -> Vec<LengthField> {
    let mut fields = Vec::new();
    let mut position = 0;
    while let Some(word) = bytes.get(position..position + 4) {
        fields.push(LengthField::u32_le(position));
        position += 8 + u32::from_le_bytes(word.try_into().expect("4 bytes")) as usize;
    }
    fields
}

#[test]
fn fuzz_closed_segments_indexes_and_checkpoint() {
    let template = template_topic();
    let indexes = template.keys().filter(|name| name.ends_with(".index"));
    assert!(indexes.count() >= 2, "{:?}", template.keys());
    let strategy = (any::<Index>(), mutations(), any::<bool>());
    fuzzkit::fuzz(
        "closed segments, indexes and checkpoint",
        strategy,
        |(which, mutations, reseal)| {
            let dir = case_dir();
            let damaged_name = template
                .keys()
                .nth(which.index(template.len()))
                .expect("an index within the template");
            for (name, valid) in template {
                let bytes = if name == damaged_name {
                    let fields = if name.ends_with(".log") {
                        frame_lengths(valid)
                    } else {
                        Vec::new()
                    };
                    let mut bytes = apply(valid, &fields, mutations);
                    if *reseal && name.ends_with(".log") {
                        reseal_frames(&mut bytes, 0);
                    }
                    bytes
                } else {
                    valid.clone()
                };
                std::fs::write(dir.path().join(name), bytes).expect("writes a file");
            }
            open_checked(dir.path(), small_segments())
        },
    );
}
