//! The Raft type configuration and the commands the state machine applies.

use std::fmt;

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
        SnapshotData = tokio::fs::File,
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
///
/// Every field is always serialized, even when `None`: peers send commands
/// in postcard, which reads fields by position (`peer_codec`). `default`
/// reads entries written before a field existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// When the leader accepted the write, ms since the epoch: the record's
    /// timestamp and the clock for idempotency expiry, the same on every node.
    pub timestamp_ms: u64,
    /// A client's retry token: a second command with the same key returns
    /// the first one's result and changes nothing.
    pub idempotency_key: Option<Uuid>,
    /// With `idempotency_key`: a hash of the request the key came with
    /// ([`crate::api::write::request_hash`]); a later command with the same
    /// key and another hash is refused, not answered the first result.
    /// Entries written before it have none and are not checked.
    #[serde(default)]
    pub request_hash: Option<u64>,
    /// What to do.
    pub op: Op,
}

impl Command {
    /// The command as the token whose secret hashes to `token` asks for
    /// it ([`Op::ByToken`]); as it is without one.
    pub fn by_token(self, token: Option<&str>) -> Command {
        match token {
            None => self,
            Some(token) => Command {
                op: Op::ByToken {
                    token: token.to_string(),
                    op: Box::new(self.op),
                },
                ..self
            },
        }
    }
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
        /// The lease to attach the key to; `None` detaches it from any.
        #[serde(default)]
        lease: Option<LeaseId>,
    },
    /// Delete `key` (append a tombstone) if `condition` holds.
    Delete {
        /// The key.
        key: String,
        /// Compare-and-delete condition.
        condition: Condition,
    },
    /// Compare, then run one branch's operations, all as one unit.
    Txn(Txn),
    /// Grant a lease of `ttl_ms`, unless `max_leases` exist already.
    LeaseGrant {
        /// Its time to live.
        ttl_ms: u64,
        /// The `--max-leases` of the leader that proposed it: carried in
        /// the command so that every node decides alike.
        max_leases: u64,
    },
    /// Revoke lease `id`: delete its keys and it, as one unit.
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
    /// Lease `id` expired (the leader's keeper saw no keep-alive in its
    /// TTL): delete its keys and it, as one unit.
    LeaseExpire {
        /// The lease.
        id: LeaseId,
    },
    /// Writes proposed together as one raft entry: each applies in order
    /// as a command of its own (its own date, idempotency key, revision
    /// and result); a batch inside a batch is refused.
    Batch(Vec<Command>),
    /// Raise the NOSPACE alarm for `member` (it crossed `--quota-bytes`
    /// or `--min-free-bytes`); a raised alarm stays as it was.
    AlarmRaise {
        /// The member whose disk crossed a limit.
        member: NodeId,
        /// The limit and the figures.
        reason: String,
    },
    /// Disarm `member`'s NOSPACE alarm.
    AlarmDisarm {
        /// The member.
        member: NodeId,
    },
    /// `op` as the client holding the token whose secret hashes to `token`
    /// asked for it, with `--auth`: it applies only if that token still
    /// exists and may still do it, by the roles and tokens as they stand
    /// when it applies (etcd's check at apply). The node that took the
    /// request checked it already; a revocation or a role change proposed
    /// before the command, and not yet applied then, is seen here.
    ByToken {
        /// The hash of the token's secret, as `\0acl/tokens/<hash>` keys it.
        token: String,
        /// What it asked for.
        op: Box<Op>,
    },
}

impl Op {
    /// What is asked for: the op itself, or the one an [`Op::ByToken`]
    /// carries.
    pub fn asked(&self) -> &Op {
        match self {
            Op::ByToken { op, .. } => op.asked(),
            op => op,
        }
    }

    /// Whether applying it can add data, so that a raised NOSPACE alarm
    /// refuses it (etcd's rule): a put of a client's key, a transaction
    /// with a put in either branch, a lease grant. Deletes, lease ends,
    /// alarms and the server's own internal keys (roles, tokens) pass. A
    /// batch is judged command by command as it applies.
    pub fn adds_data(&self) -> bool {
        match self {
            Op::Put { key, .. } => !crate::store::internal::is_internal_key(key),
            Op::Txn(txn) => txn
                .success
                .iter()
                .chain(&txn.failure)
                .any(|op| matches!(op, TxnOp::Put { .. })),
            Op::LeaseGrant { .. } => true,
            Op::Batch(commands) => commands.iter().any(|command| command.op.adds_data()),
            Op::ByToken { op, .. } => op.adds_data(),
            Op::Delete { .. }
            | Op::LeaseRevoke { .. }
            | Op::LeaseExpire { .. }
            | Op::AlarmRaise { .. }
            | Op::AlarmDisarm { .. } => false,
        }
    }
}

/// A lease's id: the revision of its grant.
pub type LeaseId = u64;

/// A transaction as the state machine applies it: when every compare
/// holds, the `success` operations run, else the `failure` ones, in order;
/// their writes are one unit of the topic, with one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// What must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Run when every compare holds.
    pub success: Vec<TxnOp>,
    /// Run otherwise.
    pub failure: Vec<TxnOp>,
}

/// One comparison of a transaction: `key`'s `target` against an operand.
/// A missing key has version, revisions and lease 0, no value, and does
/// not exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key compared.
    pub key: String,
    /// What of it is compared, with the operand.
    pub target: CompareTarget,
    /// How.
    pub op: CompareOp,
}

/// The part of a key a compare looks at, and the operand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The value, against this JSON text (equal as JSON; ordered only
    /// between two numbers or two strings).
    Value(String),
    /// The version.
    Version(u64),
    /// The create revision.
    CreateRevision(Revision),
    /// The mod revision.
    ModRevision(Revision),
    /// The lease the key is attached to (0: none).
    Lease(u64),
    /// Whether the key exists.
    Exists(bool),
}

/// A compare's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// One operation of a transaction's branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Set `key` to `value` (JSON text).
    Put {
        /// The key.
        key: String,
        /// The value, as JSON text.
        value: String,
        /// The lease to attach the key to; `None` detaches it from any.
        #[serde(default)]
        lease: Option<LeaseId>,
    },
    /// Delete `key`, if it exists.
    Delete {
        /// The key.
        key: String,
    },
    /// Delete every key under `prefix`.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
    /// Read `key`, as of the operations before this one.
    Get {
        /// The key.
        key: String,
    },
    /// Read the keys under `prefix`, at most `limit` of them.
    GetPrefix {
        /// The prefix.
        prefix: String,
        /// How many keys at most (the leader's page limit, carried in the
        /// command so that every node answers the same).
        limit: usize,
    },
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
        /// The write's revision: its record's offset and the key's `mod_revision`.
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
    /// A transaction ran.
    Txn(TxnOutcome),
    /// A lease was granted.
    LeaseGranted {
        /// Its id: the revision of the grant.
        id: LeaseId,
        /// Its time to live.
        ttl_ms: u64,
    },
    /// A lease was revoked or expired, with its keys.
    LeaseEnded {
        /// The revision of the unit that deleted them.
        revision: Revision,
        /// How many keys it deleted.
        deleted: u64,
    },
    /// The lease named does not exist (never granted, or ended); nothing
    /// changed.
    LeaseNotFound {
        /// The lease.
        id: LeaseId,
    },
    /// `max_leases` leases exist already; nothing changed.
    LeaseLimit {
        /// The limit.
        max_leases: u64,
    },
    /// The idempotency key came with another request before, whose write
    /// is still remembered; nothing changed.
    IdempotencyKeyReused {
        /// The key.
        key: Uuid,
    },
    /// A batch ran: each command's result, in order.
    Batch(Vec<CommandResult>),
    /// A batch inside a batch, refused; nothing changed.
    NestedBatch,
    /// A write that adds data while the NOSPACE alarm is raised by these
    /// members; nothing changed.
    NoSpace {
        /// The members whose alarm is raised.
        members: Vec<NodeId>,
    },
    /// An [`Op::ByToken`] whose token no longer exists (`token_known`
    /// false) or no longer may do what it asked, when it applied; nothing
    /// changed.
    AccessRefused {
        /// Whether the token still exists.
        token_known: bool,
        /// What it lacks, naming the key or the action.
        reason: String,
    },
}

/// What a transaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// Whether every compare held (and so `success` ran).
    pub succeeded: bool,
    /// The unit's revision if it wrote, else the store's revision when it
    /// ran.
    pub revision: Revision,
    /// Each operation's result, in order; empty when `deduplicated`.
    pub results: Vec<TxnOpResult>,
    /// Whether this is the remembered outcome of an earlier run with the
    /// same idempotency key (which then wrote nothing).
    #[serde(default)]
    pub deduplicated: bool,
}

/// What one operation of a transaction did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResult {
    /// A put: the key's new `mod_revision`.
    Put {
        /// The unit's revision.
        revision: Revision,
    },
    /// A delete: how many keys it removed.
    Delete {
        /// Keys removed.
        deleted: u64,
    },
    /// A read: the keys, in key order.
    Get {
        /// The keys found.
        kvs: Vec<TxnKeyValue>,
        /// Whether more keys matched than the limit let through.
        more: bool,
    },
}

/// A key read by a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnKeyValue {
    /// The key.
    pub key: String,
    /// The value, as JSON text.
    pub value: String,
    /// Its create revision.
    pub create_revision: Revision,
    /// Its mod revision.
    pub mod_revision: Revision,
    /// Its version.
    pub version: u64,
    /// Its lease; 0 for none.
    #[serde(default)]
    pub lease: LeaseId,
}
