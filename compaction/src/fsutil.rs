//! The few file-system steps crash safety is built from, shared by the
//! topic and by the other files a node keeps (its snapshot, its raft log's
//! metadata).
//!
//! Each step fails with a [`FileError`] naming what was being done and to
//! which file, so a caller can fold it into its own error type.
//!
//! ```
//! use compaction::fsutil::write_atomic;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("meta.json");
//! write_atomic(&path, b"{\"version\":1}").unwrap();
//! write_atomic(&path, b"{\"version\":2}").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"{\"version\":2}");
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A file-system step that failed, with the file it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct FileError {
    /// What was being done (`create`, `fsync`, `rename`, …).
    pub op: &'static str,
    /// The file or directory it was done to.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

/// Attaches the step and the path to an `io::Error`.
trait Step<T> {
    fn step(self, op: &'static str, path: &Path) -> Result<T, FileError>;
}

impl<T> Step<T> for io::Result<T> {
    fn step(self, op: &'static str, path: &Path) -> Result<T, FileError> {
        self.map_err(|source| FileError {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes `bytes` to `path` (replacing it) and fsyncs the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let file = File::create(path).step("create", path)?;
    file.write_all_at(bytes, 0).step("write", path)?;
    file.sync_data().step("fsync", path)
}

/// Replaces `path` with `bytes` atomically: a crash leaves the old file or
/// the new one, whole. Write a temporary file (`path` + `.tmp`), fsync it,
/// rename it over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    write_synced(tmp, bytes)?;
    std::fs::rename(tmp, path).step("rename", path)?;
    fsync_dir(parent(path))
}

/// Makes renames, creations and deletions in `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .step("fsync directory", dir)
}

/// Removes a file that may already be gone.
pub fn remove_if_exists(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error).step("remove", path),
        _ => Ok(()),
    }
}

/// The directory holding `path`; `.` for a bare file name.
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_names_the_step_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("file");
        let error = write_synced(&missing, b"x").unwrap_err();
        assert_eq!(error.op, "create");
        assert_eq!(error.path, missing);
        assert!(error.to_string().starts_with("create "), "{error}");
    }

    #[test]
    fn write_atomic_leaves_no_temporary_file_and_remove_if_exists_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.path().join("state.tmp").exists());
        remove_if_exists(&path).unwrap();
        remove_if_exists(&path).unwrap();
        assert!(!path.exists());
    }
}
