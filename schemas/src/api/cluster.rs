//! `/v1/cluster` and `/healthz`: who leads, how far each member is,
//! membership changes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{NodeId, Revision};

/// The cluster as the answering node sees it. Fields a newer server adds
/// are kept in `extra`.
///
/// ```
/// let status: schemas::api::ClusterStatus = serde_json::from_str(r#"{
///     "node_id": 1, "leader": 1, "term": 3, "state": "Leader",
///     "revision": 40, "applied_index": 42, "committed_index": 42, "last_log_index": 42, "snapshot_index": 0,
///     "members": [{"id": 1, "addr": "http://127.0.0.1:7070", "peer_addr": "http://127.0.0.1:7170",
///                  "role": "leader", "voter": true}],
///     "zone": "a"
/// }"#).unwrap();
/// assert_eq!(status.leader_member().unwrap().addr, "http://127.0.0.1:7070");
/// assert_eq!(status.extra["zone"], "a");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterStatus {
    /// The answering node.
    pub node_id: NodeId,
    /// The leader it knows of, if any.
    #[serde(default)]
    pub leader: Option<NodeId>,
    /// The current Raft term.
    #[serde(default)]
    pub term: u64,
    /// The answering node's Raft state (`Leader`, `Follower`, `Candidate`,
    /// `Learner`), or `Joining` while it asks its peers (`--peers`) whether
    /// a cluster is formed, and until its `--join` is answered.
    #[serde(default)]
    pub state: String,
    /// The store's revision there: the offset of the last record applied.
    #[serde(default)]
    pub revision: Revision,
    /// Last log index applied to the store there.
    #[serde(default)]
    pub applied_index: u64,
    /// Last log index known committed.
    #[serde(default)]
    pub committed_index: u64,
    /// Last log index held.
    #[serde(default)]
    pub last_log_index: u64,
    /// Index of the last snapshot.
    #[serde(default)]
    pub snapshot_index: u64,
    /// The cluster's id, made when it formed; `null` until this node knows it.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Last log index purged from the raft log, if any.
    #[serde(default)]
    pub purged_index: Option<u64>,
    /// The members, voters and learners.
    #[serde(default)]
    pub members: Vec<Member>,
    /// The alarms raised in the cluster (see `/v1/alarms`).
    #[serde(default)]
    pub alarms: Vec<crate::api::Alarm>,
    /// The answering node's disk (see `/v1/space`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<crate::api::NodeSpace>,
    /// The answering node's build: its version and commit, e.g.
    /// `0.1.0 (1a2b3c4d5e6f)`.
    #[serde(default)]
    pub version: String,
    /// On a leader, milliseconds since a majority last acknowledged it (its
    /// heartbeats or entries); `null` elsewhere, or before a first
    /// acknowledgement. Past the election timeout, the leader is cut off
    /// from a majority: it still says `Leader`, but takes no write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_ack_ms: Option<u64>,
    /// The ids of the answering node's `--peers` (empty without): nodes
    /// forming a cluster check they were all given the same members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<NodeId>,
    /// Fields this build does not know, kept as they came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ClusterStatus {
    /// The leader among the members, if one is known.
    pub fn leader_member(&self) -> Option<&Member> {
        let leader = self.leader?;
        self.members.iter().find(|member| member.id == leader)
    }
}

/// A member's part in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// The voter that leads.
    Leader,
    /// A voter that follows.
    Follower,
    /// A member that replicates but does not vote.
    Learner,
    /// A role this build does not know.
    #[serde(other)]
    Unknown,
}

/// One member of the cluster.
///
/// ```
/// let member: schemas::api::Member = serde_json::from_str(
///     r#"{"id": 2, "addr": "http://127.0.0.1:7071", "role": "learner", "voter": false, "lag": 7}"#,
/// ).unwrap();
/// assert_eq!((member.voter, member.lag), (false, Some(7)));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Member {
    /// The node's id.
    pub id: NodeId,
    /// The URL clients reach it at (empty until the node has told it).
    pub addr: String,
    /// The URL of its peer port, where the other nodes reach it.
    #[serde(default)]
    pub peer_addr: String,
    /// Leader, follower or learner.
    #[serde(default = "unknown_role")]
    pub role: MemberRole,
    /// Whether it votes (a learner does not).
    #[serde(default)]
    pub voter: bool,
    /// Replicated up to this index, as the leader last heard (known on
    /// the leader, and shown by a follower that asked it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
    /// Entries the leader has and the member does not yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Fields this build does not know, kept as they came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn unknown_role() -> MemberRole {
    MemberRole::Unknown
}

/// `POST /v1/cluster/members`: the node to add.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// Its id.
    pub id: NodeId,
    /// The base URL of its client API, `http://host:port`.
    pub addr: String,
    /// The base URL of its peer port, `http://host:port`.
    pub peer_addr: String,
    /// Make it a voter once it has caught up (the default), or keep it a learner.
    #[serde(default = "yes")]
    pub voter: bool,
    /// Only change the addresses of a node that is a member: 404
    /// `member_not_found` otherwise. A node publishing its own addresses
    /// sends it, so that one removed while it was down never adds itself
    /// back.
    #[serde(default)]
    pub update_only: bool,
    /// Sent by a node joining with `--join` while its raft log is empty:
    /// if its id is already a member, the cluster refuses (409
    /// `member_exists`), since the member's data was lost and the leader
    /// holds its progress; remove the member first (docs/recovery.md).
    #[serde(default)]
    pub empty_log: bool,
}

fn yes() -> bool {
    true
}

/// The answer to a membership change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MembershipChange {
    /// The log index of the membership now in force.
    pub log_index: u64,
    /// The members after the change.
    pub members: Vec<Member>,
}

/// `GET /healthz` (liveness: the process answers) and `GET /readyz` when
/// the node is ready for traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    pub status: String,
    /// The answering node.
    pub node_id: NodeId,
    /// The leader it knows, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
    /// The leader's client URL, once it has published it: where a client
    /// sends its writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_addr: Option<String>,
}
