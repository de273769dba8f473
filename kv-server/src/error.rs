//! Errors of the server's storage layer. The HTTP layer maps every error to
//! a status in one place (`api/error.rs`).

use std::path::PathBuf;

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
