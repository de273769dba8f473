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

/// The field a checked JSON file carries its checksum in.
const CHECKSUM_FIELD: &str = "crc32c";

/// `value` as JSON with a `crc32c` field: the CRC-32C of the JSON without
/// it, which [`from_checked_json`] checks. A small state file (a vote, a
/// tombstone floor) whose changed digit would still read as JSON of
/// another state is written so. A build that knows no such field reads the
/// file as before. A value that is not a JSON object is written as it is.
pub fn to_checked_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut json = serde_json::to_value(value).expect("a state file's value always serializes");
    let content = serde_json::to_vec(&json).expect("a JSON value always serializes");
    if let serde_json::Value::Object(fields) = &mut json {
        fields.insert(CHECKSUM_FIELD.into(), crc32c::crc32c(&content).into());
    }
    serde_json::to_vec(&json).expect("a JSON value always serializes")
}

/// The value of a file [`to_checked_json`] wrote, once its checksum holds,
/// or why it cannot be read. A file without the field, written before
/// there was one, is read as it is. The checksum is over the JSON read
/// back and written again without the field, which gives the writer's
/// bytes: both go through `serde_json::Value`, whose fields keep one order.
pub fn from_checked_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    if let serde_json::Value::Object(fields) = &mut json {
        if let Some(written) = fields.remove(CHECKSUM_FIELD) {
            let written = written
                .as_u64()
                .and_then(|written| u32::try_from(written).ok())
                .ok_or_else(|| format!("its {CHECKSUM_FIELD} field is damaged ({written})"))?;
            let content = serde_json::to_vec(&json).expect("a JSON value always serializes");
            let read = crc32c::crc32c(&content);
            if written != read {
                return Err(format!(
                    "it fails its checksum ({CHECKSUM_FIELD} {written} written, {read} read): \
                     the file is damaged"
                ));
            }
        }
    }
    serde_json::from_value(json).map_err(|error| error.to_string())
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

    /// A checked file reads back, and so does one written before
    /// checksums; a changed bit anywhere is refused, or leaves the value
    /// as it was (a bit of the checksum field's name, which makes the file
    /// one without a checksum).
    #[test]
    fn a_checked_file_reads_back_and_no_changed_bit_changes_its_value() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct State {
            clean_offset: u64,
            tombstone_floor: u64,
            times: Vec<(u64, u64)>,
        }
        let state = State {
            clean_offset: 12,
            tombstone_floor: 7,
            times: vec![(3, 1_700_000_000_000), (12, 1_700_000_000_500)],
        };
        let file = to_checked_json(&state);
        assert_eq!(from_checked_json::<State>(&file).unwrap(), state);
        let plain = serde_json::to_vec(&state).unwrap();
        assert_eq!(from_checked_json::<State>(&plain).unwrap(), state);
        let mut refused = 0;
        for at in 0..file.len() {
            for bit in 0..8 {
                let mut damaged = file.clone();
                damaged[at] ^= 1 << bit;
                match from_checked_json::<State>(&damaged) {
                    Ok(read) => assert_eq!(read, state, "a flip of bit {bit} at byte {at}"),
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(
            refused > file.len() * 7,
            "{refused} of {} flips",
            file.len() * 8
        );
        let mut changed = file.clone();
        let floor = b"\"tombstone_floor\":";
        let at = changed
            .windows(floor.len())
            .position(|window| window == floor)
            .unwrap()
            + floor.len();
        changed[at] = b'8';
        let error = from_checked_json::<State>(&changed).unwrap_err();
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
