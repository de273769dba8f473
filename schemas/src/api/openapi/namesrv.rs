//! The path items of the name server's HTTP views: `/v1/brokers` and
//! `/v1/routes/{topic}`, in RocketMQ's JSON. The wire types live in
//! `crate::remoting` (which knows no schemas); the shapes below describe
//! their JSON, and a test checks the two agree.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use utoipa::openapi::path::{HttpMethod, ParameterIn, PathItem};

use super::parts::{long_poll, ok, operation, parameter, string_schema};
use super::Components;
use crate::api::ErrorCode;

/// One broker group's queues of a topic (RocketMQ's `QueueData`).
#[derive(JsonSchema)]
#[schemars(rename = "QueueData", rename_all = "camelCase")]
#[allow(dead_code)]
struct QueueData {
    /// The broker group holding the queues.
    broker_name: String,
    /// Number of queues consumers read from.
    read_queue_nums: i32,
    /// Number of queues producers write to.
    write_queue_nums: i32,
    /// Permission bits: READ 4, WRITE 2, INHERIT 1.
    perm: i32,
    /// Broker-internal flag bits (unit topic 1, unit subscription 2).
    topic_sys_flag: i32,
}

/// One broker group (RocketMQ's `BrokerData`).
#[derive(JsonSchema)]
#[schemars(rename = "BrokerData", rename_all = "camelCase")]
#[allow(dead_code)]
struct BrokerData {
    /// The cluster the group belongs to.
    cluster: String,
    /// The group's name.
    broker_name: String,
    /// Each member's address by broker id (`"0"`: the master).
    broker_addrs: BTreeMap<String, String>,
    /// The zone the group is in, if any.
    zone_name: Option<String>,
    /// Whether a slave may act as master when the master is gone.
    enable_acting_master: bool,
}

/// A topic's route (RocketMQ's `TopicRouteData`).
#[derive(JsonSchema)]
#[schemars(rename = "TopicRouteData", rename_all = "camelCase")]
#[allow(dead_code)]
struct TopicRouteData {
    /// The ordered-topic config, when `orderMessageEnable` is set.
    order_topic_conf: Option<String>,
    /// The queues of each broker group holding the topic.
    queue_datas: Vec<QueueData>,
    /// Those broker groups.
    broker_datas: Vec<BrokerData>,
    /// Filter servers by broker address (always empty).
    filter_server_table: BTreeMap<String, Vec<String>>,
    /// Static-topic queue mappings (always null).
    topic_queue_mapping_info: Option<serde_json::Value>,
}

/// Every broker group and which cluster holds which (RocketMQ's
/// `ClusterInfo`).
#[derive(JsonSchema)]
#[schemars(rename = "ClusterInfo", rename_all = "camelCase")]
#[allow(dead_code)]
struct ClusterInfo {
    /// Each broker group by name.
    broker_addr_table: BTreeMap<String, BrokerData>,
    /// Each cluster's broker group names.
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

pub(super) fn brokers(components: &mut Components) -> PathItem {
    let read = operation(
        "get_brokers",
        "The name server's brokers and clusters (RocketMQ's ClusterInfo); with `index`, a long-poll of every name-server change",
        (
            "200",
            ok(
                "Every registered broker group, from this node's view.",
                components.of::<ClusterInfo>(),
            ),
        ),
        &[
            ErrorCode::InvalidParameter,
            ErrorCode::UnknownParameter,
            ErrorCode::NotReady,
        ],
        components,
    )
    .parameters(Some(long_poll()));
    PathItem::new(HttpMethod::Get, read)
}

pub(super) fn route(components: &mut Components) -> PathItem {
    let read = operation(
        "get_route",
        "A topic's route (RocketMQ's TopicRouteData), as GET_ROUTEINFO_BY_TOPIC answers it; with `index`, a long-poll",
        (
            "200",
            ok(
                "The topic's queues and broker groups, from this node's view.",
                components.of::<TopicRouteData>(),
            ),
        ),
        &[
            ErrorCode::NotFound,
            ErrorCode::InvalidParameter,
            ErrorCode::UnknownParameter,
            ErrorCode::NotReady,
        ],
        components,
    )
    .parameter(parameter(
        "topic",
        ParameterIn::Path,
        string_schema(),
        "The topic.",
    ))
    .parameters(Some(long_poll()));
    PathItem::new(HttpMethod::Get, read)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The property names of component `name` of the document.
    fn properties(name: &str) -> Vec<String> {
        let document = crate::api::openapi::document();
        let mut names: Vec<String> = document["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} is a component"))
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The field names of `value`'s JSON.
    fn fields(value: &impl serde::Serialize) -> Vec<String> {
        let Value::Object(object) = serde_json::to_value(value).expect("serializes") else {
            panic!("not an object");
        };
        let mut names: Vec<String> = object.keys().cloned().collect();
        names.sort();
        names
    }

    #[test]
    fn the_described_shapes_have_the_fields_of_the_wire_types() {
        use crate::remoting::{BrokerData, ClusterInfo, QueueData, TopicRouteData};
        let queues = QueueData {
            broker_name: "b".into(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            perm: 6,
            topic_sys_flag: 0,
        };
        let group = BrokerData {
            cluster: "c".into(),
            broker_name: "b".into(),
            broker_addrs: Default::default(),
            zone_name: None,
            enable_acting_master: false,
        };
        assert_eq!(properties("QueueData"), fields(&queues));
        assert_eq!(properties("BrokerData"), fields(&group));
        assert_eq!(
            properties("TopicRouteData"),
            fields(&TopicRouteData::default())
        );
        assert_eq!(properties("ClusterInfo"), fields(&ClusterInfo::default()));
    }
}
