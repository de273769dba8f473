//! Where the name server keeps its state: ordinary keys under `namesrv/`,
//! visible through `/v1/kv`, each name percent-encoded into one path
//! segment so that a name holding `/`, `%`, `.` or `..` cannot reach
//! another key.
//!
//! | key | value | lease |
//! |---|---|---|
//! | `namesrv/brokers/{brokerName}/{brokerId}` | [`BrokerRecord`] | the broker's |
//! | `namesrv/groups/{brokerName}` | [`GroupRecord`] | the group's: every member renews it |
//! | `namesrv/topics/{topic}/{brokerName}` | `QueueData` | the group's |
//! | `namesrv/kv/{namespace}/{key}` | the value (a JSON string) | none |
//! | `namesrv/config/{name}` | the property (a JSON string) | none |

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use schemas::remoting::DataVersion;
use serde::{Deserialize, Serialize};

/// Every key of the name server starts with this: the watch prefix of its
/// HTTP views.
pub const ROOT: &str = "namesrv/";
/// The brokers' registrations.
pub const BROKERS: &str = "namesrv/brokers/";
/// The broker groups' leases.
pub const GROUPS: &str = "namesrv/groups/";
/// The topics' queues, per broker group.
pub const TOPICS: &str = "namesrv/topics/";
/// The KV config namespaces.
pub const KV: &str = "namesrv/kv/";
/// The name server's properties.
pub const CONFIG: &str = "namesrv/config/";

/// What a name segment keeps as is: letters, digits, `-`, `_`, `~`. The
/// rest, `.` included, is percent-encoded, so no segment is `.` or `..`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// `name` as one key segment.
pub fn segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// The name a key segment holds; `None` if it is not one [`segment`]
/// wrote.
pub fn name_of(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|name| name.into_owned())
}

/// The registration key of broker `broker_id` of group `broker_name`.
pub fn broker(broker_name: &str, broker_id: i64) -> String {
    format!("{BROKERS}{}/{broker_id}", segment(broker_name))
}

/// The prefix of every registration of group `broker_name`.
pub fn broker_group(broker_name: &str) -> String {
    format!("{BROKERS}{}/", segment(broker_name))
}

/// The key of group `broker_name`'s lease.
pub fn group(broker_name: &str) -> String {
    format!("{GROUPS}{}", segment(broker_name))
}

/// The key of `topic`'s queues on group `broker_name`.
pub fn topic_queues(topic: &str, broker_name: &str) -> String {
    format!("{TOPICS}{}/{}", segment(topic), segment(broker_name))
}

/// The prefix of every group's queues of `topic`.
pub fn topic(topic: &str) -> String {
    format!("{TOPICS}{}/", segment(topic))
}

/// The topic and group of a key under [`TOPICS`].
pub fn parse_topic_queues(key: &str) -> Option<(String, String)> {
    let (topic, group) = key.strip_prefix(TOPICS)?.split_once('/')?;
    Some((name_of(topic)?, name_of(group)?))
}

/// The key of entry `key` of KV config namespace `namespace`.
pub fn kv(namespace: &str, key: &str) -> String {
    format!("{KV}{}/{}", segment(namespace), segment(key))
}

/// The prefix of every entry of KV config namespace `namespace`.
pub fn kv_namespace(namespace: &str) -> String {
    format!("{KV}{}/", segment(namespace))
}

/// The entry name of a key under a [`kv_namespace`] prefix.
pub fn kv_entry_name(prefix: &str, key: &str) -> Option<String> {
    name_of(key.strip_prefix(prefix)?)
}

/// The key of the name-server property `name`.
pub fn config(name: &str) -> String {
    format!("{CONFIG}{}", segment(name))
}

/// A broker's registration as stored: what its last REGISTER_BROKER said,
/// and the lease that ends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerRecord {
    /// The cluster the broker belongs to.
    pub cluster_name: String,
    /// The broker's group.
    pub broker_name: String,
    /// Its id in the group (0: the master).
    pub broker_id: i64,
    /// Where clients reach it.
    pub broker_addr: String,
    /// Where its slaves replicate from.
    #[serde(default)]
    pub ha_server_addr: String,
    /// The zone it is in, if any.
    #[serde(default)]
    pub zone_name: Option<String>,
    /// Whether a slave may act as master when the master is gone.
    #[serde(default)]
    pub enable_acting_master: bool,
    /// The version of the topic configs it registered.
    pub data_version: DataVersion,
    /// The lease the record lives by.
    pub lease: u64,
}

/// A broker group as stored: the lease its queues live by. Every member's
/// registration and heartbeat renews it, so the group's queues stay while
/// any member does (a slave whose master is gone still serves reads), as
/// Apache keeps a group's queues until its last member goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The group's lease.
    pub lease: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_like_paths_stay_inside_one_segment() {
        for name in ["a/b", "..", ".", "%2F", "x%y", "名字", "a b"] {
            let encoded = segment(name);
            assert!(!encoded.contains('/'), "{name:?} → {encoded:?}");
            assert!(encoded != "." && encoded != "..", "{name:?} → {encoded:?}");
            assert_eq!(name_of(&encoded).as_deref(), Some(name));
            schemas::validate_key(&topic_queues(name, name)).expect("a valid key");
        }
        assert_eq!(
            parse_topic_queues(&topic_queues("a/b", "broker.a")),
            Some(("a/b".to_string(), "broker.a".to_string()))
        );
        assert!(topic_queues("a", "b").starts_with(&topic("a")));
        assert!(!topic_queues("ab", "c").starts_with(&topic("a")));
    }
}
