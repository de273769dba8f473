//! Errors of the server's storage layer. The HTTP layer maps every error to
//! a status in one place (`api/error.rs`).

use std::path::PathBuf;

use crate::store::log_frame::{FrameDamage, FrameKind};
use crate::types::LogId;

/// What can go wrong in the raft log store, the view or the topic.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled could not open a database.
    #[error("cannot open sled database {path}: {source}")]
    Sled {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// A sled operation failed.
    #[error("sled: {0}")]
    SledOp(#[from] sled::Error),
    /// The compacted topic failed.
    #[error("topic: {0}")]
    Topic(#[from] compaction::Error),

    // The raft log.
    /// A frame of a raft log segment is damaged where it cannot be a torn
    /// tail (or a read found it damaged).
    #[error("raft log segment {path} is damaged at byte {offset}: {damage}")]
    LogFrameDamaged {
        /// The segment file.
        path: PathBuf,
        /// Where the damaged frame starts in it.
        offset: u64,
        /// What is wrong with the frame.
        damage: FrameDamage,
    },
    /// A segment holds a different frame where the log's index expects an
    /// entry: the file changed under the running node.
    #[error(
        "raft log segment {path} holds the {found_kind} {found} at byte {offset}, where the index \
         expects entry {expected}"
    )]
    LogFrameMisplaced {
        /// The segment file.
        path: PathBuf,
        /// Where the frame starts in it.
        offset: u64,
        /// The entry the index placed there.
        expected: LogId,
        /// What the frame there holds.
        found_kind: FrameKind,
        /// The log id of the frame there.
        found: LogId,
    },
    /// The raft log directory holds the sled database of earlier versions.
    #[error(
        "{dir} holds a raft log in the sled format of earlier versions, which this \
         version does not read; start this node with an empty data directory"
    )]
    LogInSledFormat {
        /// The raft log directory.
        dir: PathBuf,
    },
    /// The raft log's metadata file (vote, purged id) is not JSON of its shape.
    #[error("{path} is unreadable: {source}")]
    LogMetaUnreadable {
        /// The metadata file.
        path: PathBuf,
        /// What the JSON decoder found.
        source: serde_json::Error,
    },
    /// An entry's frame is intact but its JSON is not an entry.
    #[error("raft log entry {log_id} does not decode: {source}")]
    LogEntryUndecodable {
        /// The entry's id.
        log_id: LogId,
        /// What the JSON decoder found.
        source: serde_json::Error,
    },
    /// A write of the raft log failed earlier: from then on nothing more is
    /// written, so nothing more becomes durable.
    #[error("the raft log cannot be written since an earlier write failed, so entry {index} never became durable")]
    LogNotWritable {
        /// The first entry that is not durable.
        index: u64,
    },
    /// The thread that writes the raft log is gone.
    #[error("the raft log's writer has stopped")]
    LogWriterStopped,
    /// A file other than the topic's failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Stored data does not decode.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps an I/O error with the operation and the file.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}
