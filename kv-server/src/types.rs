//! The Raft type configuration and the commands the state machine applies.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identifies a node of the cluster; a store revision (the offset of the
/// last applied record). Both are the API contract's.
pub use schemas::api::{NodeId, Revision};

/// How other nodes reach a node: the base URL of its HTTP port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The client API's base URL (`--advertise`), e.g. `http://127.0.0.1:7070`;
    /// empty until the node has published it (a cluster formed by `--peers`
    /// knows only its members' peer URLs).
    pub addr: String,
    /// The peer port's base URL (`--peer-advertise`), e.g.
    /// `http://127.0.0.1:7170`: Raft RPC, forwarded writes, read index.
    #[serde(default)]
    pub peer_addr: String,
}

impl Node {
    /// Where other nodes reach this one.
    pub fn peer_url(&self) -> &str {
        &self.peer_addr
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (peer {})", self.addr, self.peer_addr)
    }
}

openraft::declare_raft_types!(
    /// The types openraft is instantiated with.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The openraft instance of this server.
pub type Raft = openraft::Raft<TypeConfig>;
/// A raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A raft log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership as stored with the applied state.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;

/// A write, as proposed by the leader and applied by every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// When the leader accepted the write, ms since the epoch: the record's
    /// timestamp and the clock for idempotency expiry, the same on every node.
    pub timestamp_ms: u64,
    /// A client's retry token: a second command with the same key returns
    /// the first one's result and changes nothing.
    pub idempotency_key: Option<Uuid>,
    /// What to do.
    pub op: Op,
}

/// The operation of a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Set `key` to `value` (JSON text) if `condition` holds.
    Put {
        /// The key.
        key: String,
        /// The value, as JSON text.
        value: String,
        /// Compare-and-set condition.
        condition: Condition,
    },
    /// Delete `key` (append a tombstone) if `condition` holds.
    Delete {
        /// The key.
        key: String,
        /// Compare-and-delete condition.
        condition: Condition,
    },
}

impl Op {
    /// The key the operation writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// The condition the operation is subject to.
    pub fn condition(&self) -> Condition {
        match self {
            Op::Put { condition, .. } | Op::Delete { condition, .. } => *condition,
        }
    }
}

/// What must hold for a write to apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// Always apply.
    #[default]
    Always,
    /// The key exists with this `mod_revision` (`If-Match: "<rev>"`).
    ModRevision(Revision),
    /// The key does not exist (`If-None-Match: *`).
    Absent,
}

/// The outcome of applying a command (or of the log entry that carried none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// A blank or membership entry.
    #[default]
    None,
    /// The write applied; the key now stands at this revision.
    Written {
        /// The entry's log index: the record's offset and the key's `mod_revision`.
        revision: Revision,
        /// The key's version after the write (0 after a delete).
        version: u64,
        /// Whether the key was created by this write.
        created: bool,
    },
    /// The condition did not hold; nothing changed.
    PreconditionFailed {
        /// The key's current `mod_revision`, if it exists.
        current_mod_revision: Option<Revision>,
    },
    /// A delete found no key; nothing changed.
    NotFound,
}
