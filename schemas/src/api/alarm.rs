//! `/v1/alarms`, `/v1/space` and `/readyz`: the NOSPACE alarm, as etcd's.
//!
//! A node whose topic and raft log outgrow `--quota-bytes`, or whose
//! file system has less than `--min-free-bytes` free, raises the NOSPACE
//! alarm through Raft, so every node knows it. While it is raised the
//! cluster refuses every write that adds data (`507 no_space`) and still
//! takes reads, deletes and lease revokes, so space can be won back. An
//! operator disarms it once the limits hold again.
//!
//! ```
//! use schemas::api::{AlarmKind, AlarmList};
//!
//! let list: AlarmList = serde_json::from_str(r#"{"alarms": [{"member": 2,
//!     "alarm": "NOSPACE", "reason": "…", "raised_ms": 1700000000000}]}"#).unwrap();
//! assert_eq!(list.alarms[0].alarm, AlarmKind::NoSpace);
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::NodeId;

/// What an alarm is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AlarmKind {
    /// A member crossed `--quota-bytes` or `--min-free-bytes`.
    #[serde(rename = "NOSPACE")]
    NoSpace,
}

impl std::fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AlarmKind::NoSpace => "NOSPACE",
        })
    }
}

/// A raised alarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Alarm {
    /// The member that raised it.
    pub member: NodeId,
    /// What it is about.
    pub alarm: AlarmKind,
    /// The limit crossed, with the figures then.
    pub reason: String,
    /// When it was raised, ms since the epoch (the leader's clock).
    pub raised_ms: u64,
}

/// `GET /v1/alarms`, and what `DELETE /v1/alarms` disarmed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AlarmList {
    /// The alarms, by member.
    pub alarms: Vec<Alarm>,
}

/// `GET /v1/space`: the answering node's disk, as it last measured it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeSpace {
    /// The answering node.
    pub node_id: NodeId,
    /// Bytes of its topic and raft log entries; absent until measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// `--quota-bytes` (0: none).
    pub quota_bytes: u64,
    /// Bytes free on its data directory's file system; absent until
    /// measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    /// `--min-free-bytes` (0: none).
    pub min_free_bytes: u64,
    /// The limit it crosses now, with the figures, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_limit: Option<String>,
    /// `no space left on <path>` while one of its writes waits for room on
    /// a full disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_full: Option<String>,
}
