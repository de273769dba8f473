//! The one error type of the compacted topic.

use std::io;
use std::path::PathBuf;

use crate::Offset;

/// Everything that can go wrong in the compacted topic. Each variant names
/// the file, position or offset a reader needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed on the named file or directory.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `read`, `fsync`, …).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// A record failed its checks (CRC, framing) where a torn write cannot
    /// explain it: inside a closed segment, or in the middle of the active one.
    #[error("corrupt record in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The segment file holding the bad record.
        path: PathBuf,
        /// Byte position of the record's frame in that file.
        position: u64,
        /// What check failed.
        reason: String,
    },

    /// A segment file does not agree with the topic's manifest of closed
    /// segments ([`crate::MANIFEST_FILE`]): a listed one is missing or has
    /// changed since it was closed, or one not listed sits among them.
    #[error("segment {path} disagrees with the topic's manifest: {reason}")]
    ManifestMismatch {
        /// The segment's log file.
        path: PathBuf,
        /// What the manifest says and what was found.
        reason: String,
    },

    /// A file other than a segment (index, checkpoint, swap marker) is unreadable.
    #[error("invalid {what} {path}: {reason}")]
    InvalidFile {
        /// What kind of file it is (`checkpoint`, `swap marker`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An append carried an offset that is not above the topic's last offset
    /// (or the previous record of the same batch).
    #[error("offset {offset} is not above the last offset {last}: offsets must strictly increase")]
    OffsetNotIncreasing {
        /// The rejected offset.
        offset: Offset,
        /// The offset it had to exceed.
        last: Offset,
    },

    /// An append (or a roll) would leave a batch incoherent: a gap or a
    /// miscounted position inside it, a batch begun before the previous one
    /// is complete, or a batch cut off at the end of the call.
    #[error("record at offset {offset} breaks its batch: {reason}")]
    InvalidBatch {
        /// The offending record's offset.
        offset: Offset,
        /// What is wrong and what was expected.
        reason: String,
    },

    /// A record is larger than a segment may hold or than the frame allows.
    #[error("record at offset {offset} is {bytes} bytes, over the limit of {limit}")]
    RecordTooLarge {
        /// The record's offset.
        offset: Offset,
        /// Its encoded size.
        bytes: usize,
        /// The limit it exceeds.
        limit: usize,
    },

    /// The configuration cannot work (e.g. a zero segment size).
    #[error("invalid topic configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether the error is damaged data: a record that fails its checks
    /// or a segment that disagrees with the manifest. Reading it again
    /// fails again; the topic's files cannot be trusted.
    pub fn is_damage(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::ManifestMismatch { .. })
    }
}

impl From<crate::fsutil::FileError> for Error {
    fn from(error: crate::fsutil::FileError) -> Self {
        Error::Io {
            op: error.op,
            path: error.path,
            source: error.source,
        }
    }
}

/// Result alias for the compacted topic.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn io_context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}
