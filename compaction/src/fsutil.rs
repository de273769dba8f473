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

/// What starts the line a checked file ends with; the line goes on with
/// the CRC-32C of the content before it, in hex, and a newline.
const CHECKSUM_TAG: &[u8] = b"\ncrc32c ";
/// The whole line: the tag, eight hex digits and the newline.
const CHECKSUM_LINE_BYTES: usize = CHECKSUM_TAG.len() + 8 + 1;

/// `content` followed by a line holding its CRC-32C: a small file (a JSON
/// state file) that [`checked_content`] reads back. A flipped bit in such
/// a file can leave it valid JSON of another state; the line tells.
pub fn with_checksum(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + CHECKSUM_LINE_BYTES);
    out.extend_from_slice(content);
    out.extend_from_slice(CHECKSUM_TAG);
    out.extend_from_slice(format!("{:08x}\n", crc32c::crc32c(content)).as_bytes());
    out
}

/// The content of a file [`with_checksum`] wrote, once its checksum holds,
/// or why it does not. A file without the line, written before there was
/// one, is its own content: a damaged line leaves bytes after the JSON,
/// which its decoder refuses.
pub fn checked_content(bytes: &[u8]) -> Result<&[u8], String> {
    let Some(at) = bytes.len().checked_sub(CHECKSUM_LINE_BYTES) else {
        return Ok(bytes);
    };
    let (content, line) = bytes.split_at(at);
    if !line.starts_with(CHECKSUM_TAG) || !line.ends_with(b"\n") {
        return Ok(bytes);
    }
    let digits = &line[CHECKSUM_TAG.len()..CHECKSUM_LINE_BYTES - 1];
    let written = std::str::from_utf8(digits)
        .ok()
        // Lower case only, as written: an upper-case digit is a changed bit.
        .filter(|digits| {
            digits
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        })
        .and_then(|digits| u32::from_str_radix(digits, 16).ok())
        .ok_or_else(|| {
            format!(
                "its checksum line is damaged ({:?})",
                String::from_utf8_lossy(&line[1..line.len() - 1])
            )
        })?;
    let read = crc32c::crc32c(content);
    if written != read {
        return Err(format!(
            "it fails its checksum (crc32c {written:08x} written, {read:08x} read): \
             the file is damaged"
        ));
    }
    Ok(content)
}

/// A JSON value from a file [`with_checksum`] wrote (or one written before
/// there was a checksum line), or why it cannot be read.
pub fn decode_checked_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(checked_content(bytes)?).map_err(|error| error.to_string())
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

    /// A checked file reads back; one written before checksums reads as
    /// it is; a changed byte anywhere, line included, is refused.
    #[test]
    fn a_checked_file_reads_back_and_any_changed_byte_is_refused() {
        let content = br#"{"clean_offset":12,"tombstone_floor":7}"#;
        let file = with_checksum(content);
        assert!(file.ends_with(b"\n"));
        assert_eq!(checked_content(&file).unwrap(), content);
        assert_eq!(checked_content(content).unwrap(), content);
        assert_eq!(checked_content(b"").unwrap(), b"");
        for at in 0..file.len() {
            for bit in 0..8 {
                let mut damaged = file.clone();
                damaged[at] ^= 1 << bit;
                let read: Result<serde_json::Value, String> = decode_checked_json(&damaged);
                assert!(
                    read.is_err(),
                    "a flip of bit {bit} at byte {at} went unseen"
                );
            }
        }
        let error = checked_content(&{
            let mut damaged = file.clone();
            damaged[1] = b'x';
            damaged
        })
        .unwrap_err();
        assert!(error.contains("fails its checksum"), "{error}");
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
