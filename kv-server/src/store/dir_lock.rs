//! One process per data directory: every command that opens a node's data
//! (the server, `rebuild`, `restore`) first takes an exclusive lock on
//! `data/lock`, and holds it until it ends (a server until the process
//! exits). Two servers on one directory would each take the other's files
//! for damaged ones: the second could not open the view (sled holds its
//! own lock), rebuilt it under the first, and both went on acknowledging
//! writes to the same raft log.
//!
//! The lock is the operating system's (`flock`), so it ends with the
//! process however that ends, kill -9 included; the file itself stays.

use std::fs::{File, TryLockError};
use std::path::Path;

use crate::error::StoreError;

/// The lock file's name, in the data directory.
pub const LOCK_FILE: &str = "lock";

/// The data directory's lock, held for as long as this value lives.
#[derive(Debug)]
pub struct DataDirLock {
    /// The locked file: the lock goes with it.
    _file: File,
}

impl DataDirLock {
    /// Keeps the lock until the process exits. A server's storage outlives
    /// its orderly close by a moment (the cleaner finishing a pass, sled's
    /// last write): a lock dropped at the close could let another process
    /// in while they still write.
    pub fn hold_until_exit(self) {
        std::mem::forget(self);
    }

    /// Locks `root` (created if missing) for this process, or names the
    /// directory another process holds.
    pub fn take(root: &Path) -> Result<DataDirLock, StoreError> {
        std::fs::create_dir_all(root).map_err(StoreError::io("create", root))?;
        let path = root.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io("open", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::DataDirInUse {
                dir: root.to_path_buf(),
                lock: path,
            }),
            Err(TryLockError::Error(error)) => Err(StoreError::io("lock", &path)(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second lock on a held directory is refused by name, and taken
    /// once the first is dropped.
    #[test]
    fn a_held_data_dir_is_refused_until_it_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let held = DataDirLock::take(&root).expect("the first lock");
        match DataDirLock::take(&root) {
            Err(StoreError::DataDirInUse { dir, lock }) => {
                assert_eq!(dir, root);
                assert_eq!(lock, root.join(LOCK_FILE));
            }
            other => panic!("expected DataDirInUse, got {other:?}"),
        }
        drop(held);
        DataDirLock::take(&root).expect("taken again once let go");
    }
}
