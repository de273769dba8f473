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
