//! The few file-system steps crash safety is built from.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Writes `bytes` to `path` (replacing it) and fsyncs the file.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let file = File::create(path).io_context("create", path)?;
    file.write_all_at(bytes, 0).io_context("write", path)?;
    file.sync_data().io_context("fsync", path)
}

/// Replaces `path` with `bytes` atomically: a crash leaves the old file or
/// the new one, whole. Write a temporary file, fsync it, rename it over the
/// target, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    write_synced(tmp, bytes)?;
    std::fs::rename(tmp, path).io_context("rename", path)?;
    fsync_dir(parent(path))
}

/// Makes renames, creations and deletions in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .io_context("fsync directory", dir)
}

/// Removes a file that may already be gone.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).io_context("remove", path)
        }
        _ => Ok(()),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}
