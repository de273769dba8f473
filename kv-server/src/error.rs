//! Errors of the server's storage layer. The HTTP layer maps every error to
//! a status in one place (`api/error.rs`).
//!
//! Each variant says what failed and where (file, sled key, topic offset,
//! log index), so an operator can act on the message alone. The `Corrupt…`
//! variants are kept for data that is really damaged; a stopped task or an
//! unreadable raft log has its own variant.

use std::path::PathBuf;

use compaction::fsutil::FileError;

use crate::store::log_frame::{FrameDamage, FrameKind};
use crate::types::{LogId, StorageError};

/// What a failed sled operation says: damage found by a read names the
/// view and the way out.
fn sled_op_message(error: &sled::Error) -> String {
    match error {
        sled::Error::Corruption { .. } => format!(
            "the view's files are damaged (sled: {error}): restart the node, which \
             finds the damage as it opens the view and rebuilds it from the topic"
        ),
        error => format!("sled: {error}"),
    }
}

/// What a message about damaged data tells the operator to do.
pub(crate) const REBUILD_THIS_MEMBER: &str =
    "this node's data cannot be trusted: rebuild this member from the \
     others (remove it, wipe its data dir, join it again; see docs/recovery.md)";

/// What can go wrong in the raft log store, the view or the topic.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // Files and databases.
    /// sled could not open a database.
    #[error("cannot open sled database {path}: {source}")]
    Sled {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// sled panicked opening a database: it found its files damaged in a
    /// way it does not report as an error.
    #[error("cannot open sled database {path}: its files are damaged (sled panicked: {message})")]
    SledPanicked {
        /// The database directory.
        path: PathBuf,
        /// The panic's message.
        message: String,
    },
    /// A sled operation failed.
    #[error("{}", sled_op_message(.0))]
    SledOp(#[from] sled::Error),
    /// The compacted topic failed.
    #[error("topic: {0}")]
    Topic(#[from] compaction::Error),
    /// Opening the topic found damage no crash explains.
    #[error("topic: {0}; {REBUILD_THIS_MEMBER}")]
    TopicDamaged(compaction::Error),

    // The raft log.
    /// A frame of a raft log segment is damaged where it cannot be a torn
    /// tail (or a read found it damaged).
    #[error(
        "raft log segment {path} is damaged at byte {offset}: {damage}; {REBUILD_THIS_MEMBER}"
    )]
    LogFrameDamaged {
        /// The segment file.
        path: PathBuf,
        /// Where the damaged frame starts in it.
        offset: u64,
        /// What is wrong with the frame.
        damage: FrameDamage,
    },
    /// An entry's JSON is larger than a frame of the raft log holds: it
    /// is not written, since no read would take it back.
    #[error(
        "raft log entry {index} is {bytes} bytes of JSON, over the {limit} a log frame holds; \
         it is not written"
    )]
    LogEntryTooLarge {
        /// The entry's index.
        index: u64,
        /// Its JSON's size.
        bytes: usize,
        /// The largest a frame holds.
        limit: usize,
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
    /// The raft log, as opened, ends before an entry the view applied:
    /// entries it held durably are gone (a damaged, cut or removed file),
    /// since nothing is applied before the log holds it on disk.
    #[error(
        "the raft log in {dir} ends at index {log_end}, before index {applied} the view \
         applied; entries it held on disk are gone (a damaged, cut or removed file); \
         {REBUILD_THIS_MEMBER}"
    )]
    LogBehindApplied {
        /// The raft log directory.
        dir: PathBuf,
        /// The last index the log holds (or purged).
        log_end: u64,
        /// The view's applied index.
        applied: u64,
    },
    /// The raft log holds entries past the first but no metadata file: the
    /// vote saved before them is gone.
    #[error(
        "{path} is missing, though the raft log reaches index {last}: the vote saved before \
         its entries is gone, and a node that forgot its vote could vote twice in a term; \
         {REBUILD_THIS_MEMBER}"
    )]
    LogMetaMissing {
        /// The metadata file.
        path: PathBuf,
        /// The last index the log holds (or purged).
        last: u64,
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
    /// The raft log's metadata file (vote, purged id) fails its checksum or
    /// is not JSON of its shape.
    #[error(
        "{path} is unreadable: {reason}; it holds this node's vote, which it must not \
         forget; {REBUILD_THIS_MEMBER}"
    )]
    LogMetaUnreadable {
        /// The metadata file.
        path: PathBuf,
        /// What the checksum or the JSON decoder found.
        reason: String,
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
    /// An earlier checkpoint failed; none is tried again (see
    /// `Store::checkpoint`).
    #[error("an earlier checkpoint failed ({first}); the node is stopping")]
    CheckpointFailedBefore {
        /// The first failure.
        first: String,
    },
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

    // Damaged data.
    /// The view was written in another layout format; it is rebuilt from
    /// the topic.
    #[error(
        "the view in {dir} has layout format {found}, this server writes another; it is rebuilt"
    )]
    ViewFormat {
        /// The view's directory.
        dir: PathBuf,
        /// The format it has.
        found: String,
    },
    /// The view's records do not add up to its digest: one was lost,
    /// came back older than written, or changed. The view is rebuilt.
    #[error(
        "the view in {dir} does not match its digest ({records} records sum to {found}, \
         {stored} was written): a record is damaged, lost or older than written; it is rebuilt"
    )]
    ViewDigest {
        /// The view's directory.
        dir: PathBuf,
        /// How many records it holds.
        records: usize,
        /// The digest of the records read.
        found: String,
        /// The digest written with them.
        stored: String,
    },
    /// A value stored in the view does not decode.
    #[error("view entry {key} is corrupt: {reason}")]
    CorruptViewEntry {
        /// The sled key, printable: `k<key>`, `i<uuid>`, `q<ms>/<uuid>`,
        /// `m:applied`, `m:membership`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A topic record was not written by [`crate::store::record`]'s encoding.
    #[error("topic record at offset {offset} is corrupt: {reason}")]
    CorruptRecord {
        /// The record's offset.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A snapshot's bytes do not decode.
    #[error("snapshot {name} is corrupt: {reason}")]
    CorruptSnapshot {
        /// The snapshot's file or id.
        name: String,
        /// What is wrong with it, and at which byte.
        reason: String,
    },
    /// The data directory's `cluster-id` file is gone while the raft log
    /// holds entries, each taken under that id.
    #[error(
        "{path} is missing, though the raft log reaches index {last}: this node would take \
         the id of whichever cluster called it first; {REBUILD_THIS_MEMBER}"
    )]
    ClusterIdMissing {
        /// The file.
        path: PathBuf,
        /// The last index the log holds (or purged).
        last: u64,
    },
    /// The data directory's `cluster-id` file does not hold an id.
    #[error("{path} does not hold a cluster id: {reason}")]
    CorruptClusterId {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The data directory's `format` file names a format this server
    /// does not read.
    #[error("{path} names data format {found:?}, but this server reads only format {expected}")]
    UnknownDataFormat {
        /// The file.
        path: PathBuf,
        /// What it holds.
        found: String,
        /// The format this server writes and reads.
        expected: &'static str,
    },
    /// The data directory holds a raft log but no `format` file: it was
    /// written before the data format was recorded, and is not read.
    #[error(
        "data directory {dir} was written by an earlier server (it has a raft log but no format \
         file): start the node afresh with an empty data directory and restore the data from a \
         replay"
    )]
    OldDataDir {
        /// The data directory.
        dir: PathBuf,
    },

    /// Another process holds the data directory's lock.
    #[error(
        "data dir {dir} is in use by another process (it holds the lock on {lock}): stop it \
         first, or give this node a --data-dir of its own"
    )]
    DataDirInUse {
        /// The data directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },

    // Recovery at open.
    /// The view pointer names no view directory.
    #[error("the view pointer {path} names {found:?}, which is no view directory")]
    CorruptViewPointer {
        /// The pointer file.
        path: PathBuf,
        /// What it names.
        found: String,
    },
    /// The current snapshot ends before what the raft log purged: an older
    /// file took its place.
    #[error(
        "{path} covers the raft log up to index {covers}, but the log was purged up to index \
         {purged}: the entries between are nowhere (an older snapshot put in its place?); \
         {REBUILD_THIS_MEMBER}"
    )]
    SnapshotBehindPurge {
        /// The snapshot file.
        path: PathBuf,
        /// The last index it covers.
        covers: u64,
        /// The last index purged.
        purged: u64,
    },
    /// The view must be rebuilt, the raft log was purged, and the current
    /// snapshot that covers what it purged is gone.
    #[error(
        "{path} is missing, though the raft log was purged up to index {purged}: the \
         membership and the writes before it are gone; {REBUILD_THIS_MEMBER}"
    )]
    SnapshotMissing {
        /// The snapshot file.
        path: PathBuf,
        /// The last index purged.
        purged: u64,
    },
    /// The topic's last record came from a log entry that neither the raft
    /// log nor the snapshot knows: the view cannot be given an applied log
    /// id.
    #[error(
        "the topic ends at offset {offset}, written by log entry {log_index}, \
         but neither the raft log nor a snapshot has that entry"
    )]
    TopicEndNotInLog {
        /// The topic's last offset.
        offset: u64,
        /// The log index the view would have to be at.
        log_index: u64,
    },
    /// A transaction's plan said a key would be there to delete, and it was
    /// not: the plan and the run read the view differently, a bug.
    #[error("a transaction planned to delete key {key:?}, which was gone when it ran")]
    TxnPlan {
        /// The key.
        key: String,
    },
    /// Applying the log again gave a record other than the one the topic
    /// holds at that offset: the topic and the log tell different stories.
    #[error(
        "the topic holds {found} at offset {offset}, but applying the raft log gives {expected} there"
    )]
    TopicDisagrees {
        /// The offset.
        offset: u64,
        /// What applying the log wrote there.
        expected: String,
        /// What the topic holds.
        found: String,
    },
    /// The raft log could not be read while the store decided how to recover.
    #[error("cannot read raft log entries {first}..={last}: {source}")]
    RaftLogRead {
        /// First index asked for.
        first: u64,
        /// Last index asked for.
        last: u64,
        /// openraft's storage error.
        source: Box<StorageError>,
    },

    // Tasks.
    /// A storage task on the blocking pool panicked or was cancelled.
    #[error("a storage task on the blocking pool failed: {0}")]
    TaskFailed(#[from] tokio::task::JoinError),
}

impl StoreError {
    /// Whether this is a write refused for want of space (`ENOSPC`, or
    /// `EDQUOT`) that wrote nothing durable: a write or an extension, never
    /// an fsync, whose failure is final (see `Store::checkpoint`). Such a
    /// write can be tried again once space returns.
    pub fn is_no_space(&self) -> bool {
        let (op, source) = match self {
            StoreError::Io { op, source, .. } => (*op, source),
            StoreError::Topic(compaction::Error::Io { op, source, .. }) => (*op, source),
            StoreError::SledOp(sled::Error::Io(source)) => ("write", source),
            _ => return false,
        };
        !op.starts_with("fsync") && crate::space::is_no_space(source)
    }

    /// Whether the error is a lack of room (`ENOSPC`, `EDQUOT`), wherever
    /// it came from, an fsync or sled's own files included: what a node
    /// that cannot start for it waits out, rather than take for damage.
    pub fn lacks_space(&self) -> bool {
        match self {
            StoreError::Io { source, .. }
            | StoreError::Topic(compaction::Error::Io { source, .. })
            | StoreError::SledOp(sled::Error::Io(source))
            | StoreError::Sled {
                source: sled::Error::Io(source),
                ..
            } => crate::space::is_no_space(source),
            _ => false,
        }
    }

    /// Whether the error is damaged data found on a read (a record, frame
    /// or snapshot that fails its checks): the same read fails again after
    /// a restart. (A view entry that does not decode holds what was
    /// written: bytes changed on disk fail the view's digest at the next
    /// open instead, and the view is rebuilt.)
    pub fn is_damage(&self) -> bool {
        if let StoreError::Topic(error) = self {
            return error.is_damage();
        }
        matches!(
            self,
            StoreError::TopicDamaged(_)
                | StoreError::LogFrameDamaged { .. }
                | StoreError::LogFrameMisplaced { .. }
                | StoreError::CorruptViewEntry { .. }
                | StoreError::CorruptRecord { .. }
                | StoreError::CorruptSnapshot { .. }
        )
    }

    /// Whether the error is the view's files found damaged by a read
    /// (sled's checks failed): a restart finds it and rebuilds the view
    /// from the topic.
    pub fn is_view_damage(&self) -> bool {
        matches!(
            self,
            StoreError::SledOp(sled::Error::Corruption { .. })
                | StoreError::Sled {
                    source: sled::Error::Corruption { .. },
                    ..
                }
        )
    }

    /// The file or directory the error names, if it names one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            StoreError::Io { path, .. }
            | StoreError::Topic(compaction::Error::Io { path, .. })
            | StoreError::Sled { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Wraps an I/O error with the operation and the file. The path is
    /// copied only if the error happens: this runs on every raft-log write.
    pub fn io<P: AsRef<std::path::Path>>(
        op: &'static str,
        path: P,
    ) -> impl FnOnce(std::io::Error) -> Self {
        move |source| StoreError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Wraps a failed raft log read of `first..=last`.
    pub fn raft_log_read(first: u64, last: u64) -> impl FnOnce(StorageError) -> Self {
        move |source| StoreError::RaftLogRead {
            first,
            last,
            source: Box::new(source),
        }
    }
}

impl From<FileError> for StoreError {
    fn from(error: FileError) -> Self {
        StoreError::Io {
            op: error.op,
            path: error.path,
            source: error.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Damage sled finds on a read names the view and says what to do;
    /// other sled failures are passed on as they are.
    #[test]
    fn a_damaged_view_read_says_a_restart_rebuilds_it() {
        let damaged = StoreError::SledOp(sled::Error::Corruption { at: None, bt: () });
        let message = damaged.to_string();
        assert!(
            message.starts_with("the view's files are damaged"),
            "{message}"
        );
        assert!(message.contains("restart the node"), "{message}");
        let other = StoreError::SledOp(sled::Error::Unsupported("x".into()));
        assert_eq!(other.to_string(), "sled: Unsupported: x");
    }

    /// Which errors keep a node unready, and as what: damage to the view
    /// (a restart rebuilds it) apart from damage to the topic or the raft
    /// log (the member is rebuilt); a failure that is not damage is
    /// neither.
    #[test]
    fn damage_is_told_apart_from_view_damage_and_from_other_failures() {
        let view = StoreError::SledOp(sled::Error::Corruption { at: None, bt: () });
        assert!(view.is_view_damage() && !view.is_damage());
        let topic = StoreError::Topic(compaction::Error::Corrupt {
            path: "data/topic/00000000000000000000.log".into(),
            position: 16,
            reason: "crc32c mismatch".to_string(),
        });
        assert!(topic.is_damage() && !topic.is_view_damage());
        let io = StoreError::Topic(compaction::Error::Io {
            op: "read",
            path: "data/topic/00000000000000000000.log".into(),
            source: std::io::Error::other("the disk went away"),
        });
        assert!(!io.is_damage() && !io.is_view_damage());
        let other = StoreError::SledOp(sled::Error::Unsupported("x".into()));
        assert!(!other.is_damage() && !other.is_view_damage());
    }
}
