//! A field missing from the JSON takes RocketMQ's default.

use schemas::{
    perm, EffectiveRetryPolicy, GroupRetryPolicyType, SimpleSubscriptionData,
    SubscriptionGroupConfig, TopicConfig, TopicFilterType, DEFAULT_RETRY_DELAYS_MS,
};
use serde_json::json;

#[test]
fn topic_with_only_a_name_takes_rocketmq_defaults() {
    let topic: TopicConfig = serde_json::from_value(json!({"topicName": "orders"})).unwrap();

    assert_eq!(topic.topic_name, "orders");
    assert_eq!(topic.read_queue_nums, 16);
    assert_eq!(topic.write_queue_nums, 16);
    assert_eq!(topic.perm, perm::READ | perm::WRITE);
    assert_eq!(topic.perm, 6);
    assert_eq!(topic.topic_filter_type, TopicFilterType::SingleTag);
    assert_eq!(topic.topic_sys_flag, 0);
    assert!(!topic.order);
    assert!(topic.attributes.is_empty());
    assert!(topic.extra.is_empty());
    assert_eq!(topic, TopicConfig::new("orders"));
    assert_eq!(topic.message_type(), "NORMAL");
}

#[test]
fn topic_without_a_name_is_refused_by_serde() {
    let error = serde_json::from_value::<TopicConfig>(json!({"readQueueNums": 4})).unwrap_err();
    assert!(error.to_string().contains("topicName"), "{error}");
}

#[test]
fn group_with_only_a_name_takes_rocketmq_defaults() {
    let group: SubscriptionGroupConfig =
        serde_json::from_value(json!({"groupName": "billing"})).unwrap();

    assert_eq!(group.group_name, "billing");
    assert!(group.consume_enable);
    assert!(group.consume_from_min_enable);
    assert!(group.consume_broadcast_enable);
    assert!(!group.consume_message_orderly);
    assert_eq!(group.retry_queue_nums, 1);
    assert_eq!(group.retry_max_times, 16);
    assert_eq!(
        group.group_retry_policy.policy_type,
        GroupRetryPolicyType::Customized
    );
    assert_eq!(group.broker_id, 0);
    assert_eq!(group.which_broker_when_consume_slowly, 1);
    assert!(group.notify_consumer_ids_changed_enable);
    assert_eq!(group.group_sys_flag, 0);
    assert_eq!(group.consume_timeout_minute, 15);
    assert!(group.subscription_data_set.is_empty());
    assert!(group.attributes.is_empty());
    assert!(group.extra.is_empty());
    assert_eq!(group, SubscriptionGroupConfig::new("billing"));
}

#[test]
fn default_retry_policy_follows_rocketmq_delay_levels() {
    let group = SubscriptionGroupConfig::new("billing");
    let expected_ms = [
        1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
        480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
    ];

    assert_eq!(DEFAULT_RETRY_DELAYS_MS, expected_ms);
    assert_eq!(
        group.group_retry_policy.effective(),
        EffectiveRetryPolicy::Customized(&expected_ms)
    );
    // RocketMQ writes the default policy as just its type.
    assert_eq!(
        serde_json::to_value(&group.group_retry_policy).unwrap(),
        json!({"type": "CUSTOMIZED"})
    );
}

#[test]
fn retry_policy_parameters_take_rocketmq_defaults() {
    let group: SubscriptionGroupConfig = serde_json::from_value(json!({
        "groupName": "g",
        "groupRetryPolicy": {"type": "EXPONENTIAL", "exponentialRetryPolicy": {}}
    }))
    .unwrap();

    let EffectiveRetryPolicy::Exponential(exponential) = group.group_retry_policy.effective()
    else {
        panic!("an EXPONENTIAL policy with parameters is exponential");
    };
    assert_eq!(exponential.initial, 5_000);
    assert_eq!(exponential.max, 7_200_000);
    assert_eq!(exponential.multiplier, 2);

    let customized: SubscriptionGroupConfig = serde_json::from_value(json!({
        "groupName": "g",
        "groupRetryPolicy": {"customizedRetryPolicy": {}}
    }))
    .unwrap();
    assert_eq!(
        customized.group_retry_policy.effective(),
        EffectiveRetryPolicy::Customized(&DEFAULT_RETRY_DELAYS_MS)
    );
}

#[test]
fn exponential_type_without_parameters_falls_back_to_default_list_like_rocketmq() {
    let group: SubscriptionGroupConfig = serde_json::from_value(json!({
        "groupName": "g",
        "groupRetryPolicy": {"type": "EXPONENTIAL"}
    }))
    .unwrap();

    assert_eq!(
        group.group_retry_policy.effective(),
        EffectiveRetryPolicy::Customized(&DEFAULT_RETRY_DELAYS_MS)
    );
}

#[test]
fn subscription_with_only_a_topic_takes_every_message_by_tag() {
    let group: SubscriptionGroupConfig = serde_json::from_value(json!({
        "groupName": "g",
        "subscriptionDataSet": [{"topic": "orders"}]
    }))
    .unwrap();

    assert_eq!(
        group.subscription_data_set,
        vec![SimpleSubscriptionData::all_of("orders")]
    );
    let only = &group.subscription_data_set[0];
    assert_eq!(
        (only.expression_type.as_str(), only.expression.as_str()),
        ("TAG", "*")
    );
    assert_eq!(only.version, 0);
}

#[test]
fn empty_optional_parts_are_left_out_when_written_like_rocketmq_does() {
    let written = serde_json::to_value(SubscriptionGroupConfig::new("g")).unwrap();

    assert!(written.get("subscriptionDataSet").is_none());
    assert_eq!(written["attributes"], json!({}));
    assert_eq!(written["groupRetryPolicy"], json!({"type": "CUSTOMIZED"}));
}
