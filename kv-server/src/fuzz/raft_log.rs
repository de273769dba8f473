//! The raft log: its frame decoder, and recovery at open (every frame of
//! every segment checked, a torn tail cut, the metadata file read).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use fuzzkit::proptest::collection::vec;
use fuzzkit::proptest::prelude::*;
use fuzzkit::proptest::sample::Index;
use fuzzkit::{
    apply, mutations, outcome, outcome_of, reseal_frames, within_allocation_limit, LengthField,
};
use openraft::{CommittedLeaderId, Vote};

use super::{case_dir, SLACK_BYTES};
use crate::error::StoreError;
use crate::store::log_files::{LogFiles, Meta};
use crate::store::log_frame::{self, Frame, FRAME_HEADER_BYTES};
use crate::types::LogId;

fn id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// Entries with increasing indexes and some committed ids among them.
fn frames() -> impl Strategy<Value = Vec<Frame>> {
    vec((any::<bool>(), vec(any::<u8>(), 0..40), 1u64..4), 1..10).prop_map(|specs| {
        let mut index = 0;
        specs
            .into_iter()
            .map(|(committed, payload, term)| {
                if committed && index > 0 {
                    Frame::Committed(id(term, index))
                } else {
                    index += 1;
                    Frame::Entry(id(term, index), payload.into())
                }
            })
            .collect()
    })
}

/// The frames' bytes and their body-length fields.
fn encode(frames: &[Frame]) -> (Vec<u8>, Vec<LengthField>) {
    let mut bytes = Vec::new();
    let mut fields = Vec::new();
    for frame in frames {
        fields.push(LengthField::u32_le(bytes.len()));
        log_frame::encode(frame, &mut bytes);
    }
    (bytes, fields)
}

#[test]
fn fuzz_raft_log_frames() {
    let strategy = (frames(), fuzzkit::mutations(), any::<bool>());
    fuzzkit::fuzz(
        "raft log frames",
        strategy,
        |(frames, mutations, reseal)| {
            let (valid, fields) = encode(frames);
            let mut bytes = apply(&valid, &fields, mutations);
            if *reseal {
                reseal_frames(&mut bytes, 0);
            }
            let decoded = within_allocation_limit(SLACK_BYTES, || {
                let mut position = 0;
                let mut decoded = 0;
                while position < bytes.len() {
                    let frame = match log_frame::decode(&bytes[position..]) {
                        Ok(frame) => frame,
                        Err(damage) => {
                            outcome(&outcome_of(&damage.to_string()));
                            return Ok(decoded);
                        }
                    };
                    if frame.len <= FRAME_HEADER_BYTES || frame.len > bytes.len() - position {
                        return Err(format!(
                            "a frame of {} bytes at byte {position} of {}",
                            frame.len,
                            bytes.len()
                        ));
                    }
                    position += frame.len;
                    decoded += 1;
                }
                outcome("all frames");
                Ok(decoded)
            })??;
            if mutations.is_empty() && decoded != frames.len() {
                return Err(format!(
                    "{decoded} of {} valid frames decoded",
                    frames.len()
                ));
            }
            Ok(())
        },
    );
}

/// Bytes of zeros the template keeps after each segment's last frame (a
/// real segment has up to a MiB of them, written ahead).
const ZERO_TAIL_BYTES: usize = 300;

/// A log of several segments, with committed ids, a vote and a purged id:
/// every file name and its bytes.
fn template_log() -> &'static BTreeMap<String, Vec<u8>> {
    static TEMPLATE: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (files, _) = LogFiles::open(dir.path(), 400).expect("opens");
        for index in 1..=24u64 {
            let term = 1 + index / 10;
            let payload = format!(
                "{{\"i\":{index},\"pad\":\"{}\"}}",
                "x".repeat(index as usize)
            );
            let mut group = vec![Frame::Entry(id(term, index), payload.into_bytes().into())];
            if index % 5 == 0 {
                group.push(Frame::Committed(id(term, index - 1)));
            }
            files.append(&group, true).expect("appends");
        }
        files
            .save_meta(&Meta {
                vote: Some(Vote::new_committed(3, 1)),
                purged: Some(id(1, 2)),
            })
            .expect("saves the meta");
        drop(files);
        std::fs::read_dir(dir.path())
            .expect("lists")
            .map(|entry| {
                let entry = entry.expect("an entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                let mut bytes = std::fs::read(entry.path()).expect("reads");
                if name.ends_with(".log") {
                    let frames_end =
                        bytes.len() - bytes.iter().rev().take_while(|b| **b == 0).count();
                    bytes.truncate((frames_end + ZERO_TAIL_BYTES).min(bytes.len()));
                }
                (name, bytes)
            })
            .collect()
    })
}

/// The body-length fields of a segment's frames.
fn frame_lengths(bytes: &[u8]) -> Vec<LengthField> {
    let mut fields = Vec::new();
    let mut position = 0;
    while let Some(word) = bytes.get(position..position + 4) {
        let body_len = u32::from_le_bytes(word.try_into().expect("4 bytes")) as usize;
        if body_len == 0 {
            break;
        }
        fields.push(LengthField::u32_le(position));
        position += FRAME_HEADER_BYTES + body_len;
    }
    fields
}

/// Opens the log in `dir` and reads every entry: the path a restart takes.
fn open_and_read(dir: &Path) -> Result<usize, StoreError> {
    let (files, _) = LogFiles::open(dir, 400)?;
    Ok(files.read(..)?.len())
}

#[test]
fn fuzz_raft_log_recovery() {
    let template = template_log();
    let segments = template.keys().filter(|name| name.ends_with(".log"));
    assert!(segments.count() >= 3, "{:?}", template.keys());
    let strategy = (any::<Index>(), mutations(), any::<bool>());
    fuzzkit::fuzz(
        "raft log recovery",
        strategy,
        |(which, mutations, reseal)| {
            let dir = case_dir();
            let damaged_name = template
                .keys()
                .nth(which.index(template.len()))
                .expect("an index within the template");
            let mut written = BTreeMap::new();
            for (name, valid) in template {
                let bytes = if name == damaged_name {
                    let is_segment = name.ends_with(".log");
                    let fields = if is_segment {
                        frame_lengths(valid)
                    } else {
                        Vec::new()
                    };
                    let mut bytes = apply(valid, &fields, mutations);
                    if *reseal && is_segment {
                        reseal_frames(&mut bytes, 0);
                    }
                    bytes
                } else {
                    valid.clone()
                };
                std::fs::write(dir.path().join(name), &bytes).expect("writes a file");
                written.insert(dir.path().join(name), bytes);
            }
            let largest = written.values().map(Vec::len).max().unwrap_or(0);
            let opened =
                within_allocation_limit(largest + SLACK_BYTES, || open_and_read(dir.path()))?;
            match opened {
                Ok(_) => outcome("opened and read"),
                Err(StoreError::LogFrameDamaged {
                    path,
                    offset,
                    damage,
                }) if written
                    .get(&path)
                    .is_some_and(|bytes| offset < bytes.len() as u64) =>
                {
                    outcome(&outcome_of(&damage.to_string()));
                }
                Err(StoreError::LogMetaUnreadable { path, .. }) if written.contains_key(&path) => {
                    outcome("metadata unreadable");
                }
                Err(other) => {
                    return Err(format!("an error naming no place in the input: {other}"))
                }
            }
            // Recovery only ever cuts a torn tail: every file is a prefix of
            // what was written.
            for (path, bytes) in &written {
                let left = std::fs::read(path).unwrap_or_default();
                if !bytes.starts_with(&left) {
                    return Err(format!("recovery rewrote {}", path.display()));
                }
            }
            Ok(())
        },
    );
}
