//! Fixtures shared by the crash and corruption tests: reading a topic whole
//! and looking at, copying and comparing its directory.

// Each test file uses its own subset of these.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use compaction::{Record, Topic};

/// Every record of the topic from offset 0; panics on a read error.
pub fn read_all(topic: &Topic) -> Vec<Record> {
    topic
        .read_from(0)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("reading {} failed: {error}", topic.dir().display()))
}

/// The names of the files in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every file of `dir` (not recursive) by name, with its bytes.
pub fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    file_names(dir)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Copies the files of `from` into the existing directory `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for name in file_names(from) {
        std::fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

/// Bytes of a frame's header: body length and CRC.
const FRAME_HEADER_BYTES: usize = 8;

/// The frame of `record` as format version 1 wrote it, before batches: no
/// batch position after the offset.
pub fn v1_frame(record: &Record) -> Vec<u8> {
    let mut body = body_of(record);
    body[0] = 1;
    body.drain(10..18);
    frame_of(&body)
}

/// The frame of `record` with its version byte set to `version` and a CRC
/// that matches: a whole frame of a format this build may not know.
pub fn frame_with_version(record: &Record, version: u8) -> Vec<u8> {
    let mut body = body_of(record);
    body[0] = version;
    frame_of(&body)
}

fn body_of(record: &Record) -> Vec<u8> {
    let mut frame = Vec::new();
    record.encode_into(&mut frame);
    frame.split_off(FRAME_HEADER_BYTES)
}

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    frame.extend_from_slice(body);
    frame
}

/// Byte position of the frame of `records[i]` in a log holding `records`.
pub fn frame_position(records: &[Record], i: usize) -> u64 {
    records[..i]
        .iter()
        .map(|record| record.frame_len() as u64)
        .sum()
}

/// The length of the file at `path`.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}
