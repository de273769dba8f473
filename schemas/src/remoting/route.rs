//! The bodies of a name server's answers, in RocketMQ's JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A broker's version of its topic configs: a broker sends it with each
/// registration, and a changed one means its topics changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    /// Bumped on a change of the broker's state (master/slave).
    pub state_version: i64,
    /// When the version was made, in ms since the epoch.
    pub timestamp: i64,
    /// Bumped on each change.
    pub counter: i64,
}

/// One broker group's queues of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    /// The broker group holding the queues.
    pub broker_name: String,
    /// Number of queues consumers read from.
    pub read_queue_nums: i32,
    /// Number of queues producers write to.
    pub write_queue_nums: i32,
    /// Permission bits: READ 4, WRITE 2, INHERIT 1.
    pub perm: i32,
    /// Broker-internal flag bits (unit topic, unit subscription).
    #[serde(default)]
    pub topic_sys_flag: i32,
}

/// One broker group: its cluster, name, and the address of each member by
/// broker id (0 is the master).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// The cluster the group belongs to.
    pub cluster: String,
    /// The group's name.
    pub broker_name: String,
    /// Each member's address by broker id.
    pub broker_addrs: BTreeMap<i64, String>,
    /// The zone the group is in, if any.
    #[serde(default)]
    pub zone_name: Option<String>,
    /// Whether a slave may act as master when the master is gone.
    #[serde(default)]
    pub enable_acting_master: bool,
}

/// A topic's route: which broker groups hold its queues, and where they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// The ordered-topic config from the `ORDER_TOPIC_CONFIG` KV namespace.
    #[serde(default)]
    pub order_topic_conf: Option<String>,
    /// The queues of each broker group holding the topic.
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    /// Those broker groups.
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers by broker address (always empty here).
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// Static-topic queue mappings (not kept here: null).
    #[serde(default)]
    pub topic_queue_mapping_info: Option<Value>,
}

/// Every broker group and which cluster holds which groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Each broker group by name.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Each cluster's broker group names.
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// A list of topic names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    /// The topics.
    pub topic_list: BTreeSet<String>,
    /// For the system-topic list, a broker address to ask; else null.
    #[serde(default)]
    pub broker_addr: Option<String>,
}

/// A string table: a KV config namespace, or a name server's properties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvTable {
    /// The entries.
    pub table: BTreeMap<String, String>,
}
