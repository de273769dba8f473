//! Fields this crate does not know are kept and written back, at every level,
//! so that a newer broker's metadata survives a pass through the store.

use schemas::{SubscriptionGroupConfig, SubscriptionGroupFile, TopicConfig, TopicConfigFile};
use serde_json::{json, Value};

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(input: &Value) -> (T, Value) {
    let parsed: T = serde_json::from_value(input.clone()).unwrap();
    let written = serde_json::to_value(&parsed).unwrap();
    (parsed, written)
}

#[test]
fn unknown_topic_fields_are_kept_verbatim() {
    let input = json!({
        "topicName": "orders",
        "readQueueNums": 8, "writeQueueNums": 8, "perm": 6,
        "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": false,
        "attributes": {},
        "queueMappingEpoch": 3,
        "zone": {"name": "az-1", "preferred": true},
        "tags": ["a", null, 1.5]
    });

    let (topic, written): (TopicConfig, _) = round_trip(&input);

    assert_eq!(topic.extra["queueMappingEpoch"], 3);
    assert_eq!(
        topic.extra["zone"],
        json!({"name": "az-1", "preferred": true})
    );
    assert_eq!(written, input);
}

#[test]
fn unknown_group_fields_are_kept_verbatim_at_every_level() {
    let input = json!({
        "groupName": "billing",
        "consumeEnable": true, "consumeFromMinEnable": true, "consumeBroadcastEnable": true,
        "consumeMessageOrderly": false, "retryQueueNums": 1, "retryMaxTimes": 16,
        "brokerId": 0, "whichBrokerWhenConsumeSlowly": 1,
        "notifyConsumerIdsChangedEnable": true, "groupSysFlag": 0, "consumeTimeoutMinute": 15,
        "attributes": {},
        "groupRetryPolicy": {
            "type": "CUSTOMIZED",
            "customizedRetryPolicy": {"next": [1000, 2000], "jitterMs": 50},
            "exponentialRetryPolicy": {"initial": 1, "max": 2, "multiplier": 2, "cap": "x"},
            "lastChangedBy": "admin"
        },
        "subscriptionDataSet": [
            {"topic": "orders", "expressionType": "TAG", "expression": "*", "version": 1,
             "filterClass": "com.example.Filter"}
        ],
        "liteBindTopic": "orders"
    });

    let (group, written): (SubscriptionGroupConfig, _) = round_trip(&input);

    assert_eq!(group.extra["liteBindTopic"], "orders");
    assert_eq!(group.group_retry_policy.extra["lastChangedBy"], "admin");
    assert_eq!(
        group.subscription_data_set[0].extra["filterClass"],
        "com.example.Filter"
    );
    assert_eq!(written, input);
}

#[test]
fn unknown_file_fields_are_kept_verbatim() {
    let topics = json!({
        "topicConfigTable": {},
        "dataVersion": {"timestamp": 1, "counter": 2, "stateVersion": 0, "epoch": 7},
        "topicQueueMappingInfoMap": {"T": {"bname": "broker-a"}}
    });
    let groups = json!({
        "subscriptionGroupTable": {},
        "forbiddenTable": {},
        "dataVersion": {"timestamp": 1, "counter": 2},
        "maxGroupCount": 10000
    });

    let (topics_file, topics_written): (TopicConfigFile, _) = round_trip(&topics);
    let (_, groups_written): (SubscriptionGroupFile, _) = round_trip(&groups);

    assert_eq!(topics_file.data_version.extra["epoch"], 7);
    assert_eq!(topics_written, topics);
    assert_eq!(groups_written, groups);
}

#[test]
fn known_fields_never_land_in_extra() {
    let topic: TopicConfig =
        serde_json::from_value(json!({"topicName": "t", "perm": 4, "order": true})).unwrap();

    assert!(topic.extra.is_empty());
    assert_eq!((topic.perm, topic.order), (4, true));
}
