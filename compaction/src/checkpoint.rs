//! The cleaner's checkpoint: how far the topic is clean, the tombstone floor,
//! and when each stretch of offsets became clean (for tombstone retention).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{from_checked_json, to_checked_json, write_atomic};
use crate::Offset;

/// File name of the checkpoint inside the topic directory.
pub const CHECKPOINT_FILE: &str = "cleaner-checkpoint.json";

/// Offsets below `upto` (and above the previous entry's) became clean at
/// `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanTime {
    /// Exclusive upper bound of the stretch of offsets.
    pub upto: Offset,
    /// When the cleaner pass that covered them finished, ms since the epoch.
    pub at_ms: u64,
}

/// What the cleaner remembers between passes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Offsets below this are clean: no two records below it share a key.
    pub clean_offset: Offset,
    /// A reader starting at or above this offset sees every delete; the
    /// cleaner has dropped tombstones below it.
    pub tombstone_floor: Offset,
    /// When each stretch of the clean section became clean, oldest first.
    pub clean_times: Vec<CleanTime>,
}

impl Checkpoint {
    /// Reads the checkpoint of `dir`; none is the default (a topic opened
    /// writes one, see [`Checkpoint::load_present`]).
    pub fn load(dir: &Path) -> Result<Checkpoint> {
        Ok(Checkpoint::load_present(dir)?.unwrap_or_default())
    }

    /// Reads the checkpoint of `dir`, if it has one.
    pub fn load_present(dir: &Path) -> Result<Option<Checkpoint>> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).io_context("read", &path),
        };
        from_checked_json(&bytes)
            .map(Some)
            .map_err(|reason| Error::InvalidFile {
                what: "cleaner checkpoint",
                path,
                reason,
            })
    }

    /// The checkpoint of a topic found without one, whose records end at
    /// `last_offset`. A topic is given its checkpoint when it is created,
    /// so one holding records has lost it (or was written by a build that
    /// made none before its first pass): nothing says which tombstones the
    /// cleaner dropped, so the floor is the topic's end. A reader from
    /// before it is told to list again rather than miss a delete. Nothing
    /// is taken as clean.
    pub fn in_place_of_missing(last_offset: Option<Offset>) -> Checkpoint {
        Checkpoint {
            tombstone_floor: last_offset.map_or(0, |last| last + 1),
            ..Checkpoint::default()
        }
    }

    /// Writes the checkpoint of `dir` atomically.
    pub fn store(&self, dir: &Path) -> Result<()> {
        Ok(write_atomic(
            &dir.join(CHECKPOINT_FILE),
            &to_checked_json(self),
        )?)
    }

    /// When the record at `offset` became clean, if it has.
    pub fn became_clean_at(&self, offset: Offset) -> Option<u64> {
        let after = self.clean_times.partition_point(|time| time.upto <= offset);
        self.clean_times.get(after).map(|time| time.at_ms)
    }

    /// Records a pass that made everything below `clean_offset` clean at
    /// `now_ms`, and forgets the times that no longer matter: stretches that
    /// have been clean longer than `retention_ms` collapse into one.
    pub fn advance(&mut self, clean_offset: Offset, now_ms: u64, retention_ms: u64) {
        if clean_offset > self.clean_offset {
            self.clean_offset = clean_offset;
            self.clean_times.push(CleanTime {
                upto: clean_offset,
                at_ms: now_ms,
            });
        }
        let expired = self
            .clean_times
            .partition_point(|time| time.at_ms.saturating_add(retention_ms) <= now_ms);
        if expired > 1 {
            self.clean_times.drain(..expired - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_times_answer_by_stretch_and_collapse_once_expired() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.advance(10, 1_000, 500);
        checkpoint.advance(20, 1_100, 500);
        assert_eq!(checkpoint.became_clean_at(0), Some(1_000));
        assert_eq!(checkpoint.became_clean_at(9), Some(1_000));
        assert_eq!(checkpoint.became_clean_at(10), Some(1_100));
        assert_eq!(checkpoint.became_clean_at(20), None);
        checkpoint.advance(30, 2_000, 500);
        assert_eq!(checkpoint.clean_times.len(), 2, "{checkpoint:?}");
        // Everything below 20 expired; the collapse keeps it expired.
        let time = checkpoint.became_clean_at(5).unwrap();
        assert!(time + 500 <= 2_000);
        assert_eq!(checkpoint.became_clean_at(25), Some(2_000));
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CHECKPOINT_FILE), b"{\"clean_off").unwrap();
        let error = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(CHECKPOINT_FILE), "{error}");
    }
}
