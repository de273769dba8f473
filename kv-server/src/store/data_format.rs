//! The data directory's format marker: `data/format` holds the format of
//! everything under it (`6`), written before the node's raft dir is
//! created, so a data dir from before the marker (a raft log and no
//! marker) is told apart from a new one and refused rather than misread.
//!
//! Format 3 is format 2 plus raft entries that carry a batch of commands
//! (and records that say their place in such an entry), which a binary of
//! format 2 cannot read. This binary reads format 2 and marks such a dir 3
//! at start, before it can write a batch: from then on a format-2 binary
//! refuses the dir, and peers of format 2 refuse this node (and it them),
//! since every peer request names its format.
//!
//! Format 4 is format 3 plus the NOSPACE alarm's commands (`AlarmRaise`,
//! `AlarmDisarm`), which a binary of format 3 cannot decode: it reads 2 and
//! 3 and marks them 4, as above.
//!
//! Format 5 is format 4 with a transaction's compare of a value exact:
//! numbers by their decimal value, not as `f64`, and values `serde_json`
//! cannot hold compared as text (`store::json_compare`). The commands are
//! the same, but a binary of format 4 could apply one differently (a compare
//! of integers past 2^53), so peers of the two formats refuse each other.
//! Its raft log also ends each synced write with a frame of a kind format
//! 4 does not read (`log_frame`). This binary reads 2 to 4 and marks them 5.
//! An entry written before the upgrade and applied after it is decided by
//! the new rule: the two differ only for a compare of numbers past 2^53
//! or of values `serde_json` cannot read, which should not be in flight
//! while a cluster moves from format 4.
//!
//! Format 6 is format 5 plus a client's write proposed as its token's
//! (`Op::ByToken`, with `--auth`: checked again when it applies), which a
//! binary of format 5 cannot decode: it reads 2 to 5 and marks them 6, and
//! peers of the two formats refuse each other, as above.
//!
//! Refusing instead of converting follows the project's precedent for data
//! dirs from before the peer port: there is no release to upgrade from, and
//! a node started afresh is restored from a replay.

use std::path::{Path, PathBuf};

use compaction::fsutil;

use crate::error::StoreError;
use crate::store::DataDirs;

/// The marker's file name, in the data directory.
pub const FORMAT_FILE: &str = "format";
/// The data format this server writes and reads.
pub const DATA_FORMAT: &str = "6";
/// Earlier formats this server reads, and marks [`DATA_FORMAT`]: before
/// batch entries (2), before the alarm's commands (3), before exact
/// compares (4), before a token's commands (5).
const EARLIER_FORMATS: &[&str] = &["2", "3", "4", "5"];

/// Checks that `root` holds data of [`DATA_FORMAT`], marking it so when it
/// holds no raft log yet (a new node). Called before the raft log is
/// opened, which creates the raft dir.
pub fn check_or_mark(root: &Path) -> Result<(), StoreError> {
    let path = marker(root);
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == DATA_FORMAT => Ok(()),
        Ok(found) if EARLIER_FORMATS.contains(&found.trim()) => {
            tracing::info!(
                dir = %root.display(),
                found = found.trim(),
                "marking a data dir of an earlier format as format {DATA_FORMAT}"
            );
            fsutil::write_synced(&path, DATA_FORMAT.as_bytes())?;
            fsutil::fsync_dir(root)?;
            Ok(())
        }
        Ok(found) => Err(StoreError::UnknownDataFormat {
            path,
            found: found.trim().to_string(),
            expected: DATA_FORMAT,
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if has_raft_log(&DataDirs::new(root).raft)? {
                return Err(StoreError::OldDataDir {
                    dir: root.to_path_buf(),
                });
            }
            std::fs::create_dir_all(root).map_err(StoreError::io("create", root))?;
            fsutil::write_synced(&path, DATA_FORMAT.as_bytes())?;
            fsutil::fsync_dir(root)?;
            Ok(())
        }
        Err(error) => Err(StoreError::io("read", path)(error)),
    }
}

/// The marker's path in `root`.
fn marker(root: &Path) -> PathBuf {
    root.join(FORMAT_FILE)
}

/// Whether `raft_dir` holds anything: a raft log, or its vote.
fn has_raft_log(raft_dir: &Path) -> Result<bool, StoreError> {
    match std::fs::read_dir(raft_dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(StoreError::io("read directory", raft_dir)(error)),
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;
    use crate::store::log_files::{LogFiles, SEGMENT_BYTES};
    use crate::store::log_frame::Frame;
    use crate::store::log_store::LogStore;
    use crate::types::Entry;

    /// Writes one entry to the raft log of `root`, as a node of any
    /// version would have.
    fn write_raft_log(root: &Path) {
        let (files, _) =
            LogFiles::open(&DataDirs::new(root).raft, SEGMENT_BYTES).expect("log opens");
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Blank,
        };
        let json = serde_json::to_vec(&entry).expect("an entry serializes");
        files
            .append(&[Frame::Entry(entry.log_id, json.into())], true)
            .expect("log appends");
    }

    #[test]
    fn a_new_data_dir_is_marked_and_then_opens_again() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let data = root.path().join("data");
        check_or_mark(&data).expect("a new data dir is taken");
        assert_eq!(std::fs::read_to_string(marker(&data)).unwrap(), "6");
        LogStore::open(&DataDirs::new(&data).raft, Some(1)).expect("the raft log opens");
        write_raft_log(&data);
        check_or_mark(&data).expect("a marked data dir is taken again");
    }

    #[test]
    fn a_raft_log_without_a_marker_is_refused_naming_the_dir() {
        let root = tempfile::tempdir().expect("a temporary directory");
        write_raft_log(root.path());
        let error = check_or_mark(root.path()).expect_err("an unmarked raft log is refused");
        assert!(
            matches!(&error, StoreError::OldDataDir { dir } if dir == root.path()),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&root.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("afresh"), "{message}");
        assert!(
            !marker(root.path()).exists(),
            "a refused dir is left as it was"
        );
    }

    #[test]
    fn a_marker_of_another_format_is_refused() {
        let root = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(marker(root.path()), "7\n").expect("writes");
        match check_or_mark(root.path()) {
            Err(StoreError::UnknownDataFormat { found, .. }) => assert_eq!(found, "7"),
            other => panic!("expected an unknown format, got {other:?}"),
        }
    }

    /// A data dir of the format before batch entries is read, and marked
    /// with the new format before anything is written, so that a binary
    /// of the old format refuses it from then on.
    #[test]
    fn a_data_dir_of_the_format_before_batches_is_taken_and_marked_anew() {
        let root = tempfile::tempdir().expect("a temporary directory");
        write_raft_log(root.path());
        std::fs::write(marker(root.path()), "2").expect("writes");
        check_or_mark(root.path()).expect("a format-2 data dir is taken");
        assert_eq!(std::fs::read_to_string(marker(root.path())).unwrap(), "6");
        check_or_mark(root.path()).expect("and taken again");
    }
}
