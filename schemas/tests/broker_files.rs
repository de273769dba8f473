//! A broker's own `topics.json` and `subscriptionGroup.json` read and write
//! back unchanged, and hold only valid configs once system names are allowed.

use schemas::{
    EffectiveRetryPolicy, SubscriptionGroupFile, TopicConfigFile, TopicFilterType, ValidateOptions,
    ValidationError,
};
use serde_json::{json, Value};

const TOPICS_JSON: &str = include_str!("fixtures/topics.json");
const SUBSCRIPTION_GROUP_JSON: &str = include_str!("fixtures/subscriptionGroup.json");

fn topics_file() -> TopicConfigFile {
    serde_json::from_str(TOPICS_JSON).expect("the fixture is a valid topics.json")
}

fn subscription_group_file() -> SubscriptionGroupFile {
    serde_json::from_str(SUBSCRIPTION_GROUP_JSON)
        .expect("the fixture is a valid subscriptionGroup.json")
}

fn as_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn topics_json_round_trips_unchanged() {
    let written = serde_json::to_value(topics_file()).unwrap();

    assert_eq!(written, as_value(TOPICS_JSON));
}

#[test]
fn subscription_group_json_round_trips_unchanged() {
    let written = serde_json::to_value(subscription_group_file()).unwrap();

    assert_eq!(written, as_value(SUBSCRIPTION_GROUP_JSON));
}

#[test]
fn topics_json_entries_read_as_rocketmq_meant_them() {
    let file = topics_file();

    assert_eq!(file.data_version.counter, 23);
    assert_eq!(file.data_version.timestamp, 1_718_351_234_567);
    assert_eq!(file.data_version.state_version, Some(0));
    let tbw102 = &file.topic_config_table["TBW102"];
    assert_eq!((tbw102.read_queue_nums, tbw102.perm), (8, 7));
    let orders = &file.topic_config_table["orders"];
    assert!(orders.order);
    assert_eq!(orders.message_type(), "FIFO");
    let audit_log = &file.topic_config_table["audit-log"];
    assert_eq!(audit_log.topic_filter_type, TopicFilterType::MultiTag);
    assert_eq!(
        (audit_log.read_queue_nums, audit_log.write_queue_nums),
        (4, 2)
    );
}

#[test]
fn subscription_group_json_entries_read_as_rocketmq_meant_them() {
    let file = subscription_group_file();

    let forbidden = file.forbidden_table.as_ref().unwrap();
    assert_eq!(forbidden["analytics-group"]["orders"], 4);
    let pop = &file.subscription_group_table["payment-pop-group"];
    assert_eq!(pop.subscription_data_set.len(), 2);
    assert_eq!(pop.subscription_data_set[1].expression_type, "SQL92");
    let EffectiveRetryPolicy::Exponential(exponential) = pop.group_retry_policy.effective() else {
        panic!("payment-pop-group retries exponentially");
    };
    assert_eq!(exponential.max, 600_000);
    let analytics = &file.subscription_group_table["analytics-group"];
    assert_eq!(
        analytics.group_retry_policy.effective(),
        EffectiveRetryPolicy::Customized(&[1_000, 5_000, 10_000, 30_000, 60_000, 300_000])
    );
}

#[test]
fn broker_files_are_valid_once_system_names_are_allowed() {
    topics_file()
        .validate(ValidateOptions::ALLOW_SYSTEM)
        .unwrap();
    subscription_group_file()
        .validate(ValidateOptions::ALLOW_SYSTEM)
        .unwrap();
}

#[test]
fn broker_files_hold_system_names_that_a_user_may_not_create() {
    let topics_error = topics_file()
        .validate(ValidateOptions::default())
        .unwrap_err();
    let groups_error = subscription_group_file()
        .validate(ValidateOptions::default())
        .unwrap_err();

    // Tables are walked in name order; `%RETRY%…` is an ordinary topic name.
    assert_eq!(
        topics_error.field(),
        "topicConfigTable.BenchmarkTest.topicName"
    );
    assert_eq!(
        groups_error.field(),
        "subscriptionGroupTable.CID_ONS-HTTP-PROXY.groupName"
    );
}

#[test]
fn file_errors_name_the_field_from_the_file_root() {
    let mut file = topics_file();
    file.topic_config_table.get_mut("orders").unwrap().perm = 9;

    let error = file.validate(ValidateOptions::ALLOW_SYSTEM).unwrap_err();

    assert_eq!(error.field(), "topicConfigTable.orders.perm");
}

#[test]
fn a_config_filed_under_another_name_is_refused() {
    let mut file = subscription_group_file();
    let moved = file
        .subscription_group_table
        .remove("analytics-group")
        .unwrap();
    file.subscription_group_table
        .insert("reports".to_string(), moved);

    let error = file.validate(ValidateOptions::ALLOW_SYSTEM).unwrap_err();

    assert_eq!(error.field(), "subscriptionGroupTable.reports.groupName");
    assert!(matches!(error, ValidationError::Malformed { .. }));
}

#[test]
fn rocketmq_4_files_without_state_version_or_forbidden_table_round_trip() {
    let old_topics = json!({
        "topicConfigTable": {"T": {"topicName": "T", "readQueueNums": 4, "writeQueueNums": 4,
            "perm": 6, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": false,
            "attributes": {}}},
        "dataVersion": {"timestamp": 1600000000000i64, "counter": 1}
    });
    let old_groups = json!({
        "subscriptionGroupTable": {},
        "dataVersion": {"timestamp": 1600000000000i64, "counter": 0}
    });

    let topics: TopicConfigFile = serde_json::from_value(old_topics.clone()).unwrap();
    let groups: SubscriptionGroupFile = serde_json::from_value(old_groups.clone()).unwrap();

    assert_eq!(serde_json::to_value(topics).unwrap(), old_topics);
    assert_eq!(serde_json::to_value(groups).unwrap(), old_groups);
}
