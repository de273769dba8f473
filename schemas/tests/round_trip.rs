//! Any valid config, however its fields are set, reads back from its JSON
//! exactly as it was written.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use schemas::{
    CustomizedRetryPolicy, ExponentialRetryPolicy, GroupRetryPolicy, GroupRetryPolicyType,
    SimpleSubscriptionData, SubscriptionGroupConfig, TopicConfig, TopicFilterType, ValidateOptions,
};
use serde_json::Value;

fn name(max_len: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[%|a-zA-Z0-9_-]{{1,{max_len}}}")).unwrap()
}

/// JSON no known field can be mistaken for: keys start with `x`.
/// Floats are left out: serde_json's default parser may miss their last bit.
fn extra_fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::from),
            btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    btree_map("x[A-Za-z0-9]{0,8}", value, 0..3)
}

fn topic_attributes() -> impl Strategy<Value = BTreeMap<String, String>> {
    let pick = |values: &'static [&'static str]| option::of(proptest::sample::select(values));
    (
        pick(schemas::attribute::MESSAGE_TYPES),
        pick(schemas::attribute::CLEANUP_POLICIES),
        pick(schemas::attribute::QUEUE_TYPES),
        option::of(-1i64..=i64::MAX),
        btree_map("x\\.[a-z.]{1,10}", "[A-Za-z0-9_.:|%]{1,10}", 0..3),
    )
        .prop_map(
            |(message_type, cleanup, queue_type, reserve_hours, mut unknown)| {
                let known = [
                    (
                        schemas::attribute::MESSAGE_TYPE,
                        message_type.map(str::to_string),
                    ),
                    (
                        schemas::attribute::CLEANUP_POLICY,
                        cleanup.map(str::to_string),
                    ),
                    (
                        schemas::attribute::QUEUE_TYPE,
                        queue_type.map(str::to_string),
                    ),
                    (
                        schemas::attribute::RESERVE_TIME,
                        reserve_hours.map(|h| h.to_string()),
                    ),
                ];
                for (key, value) in known {
                    if let Some(value) = value {
                        unknown.insert(key.to_string(), value);
                    }
                }
                unknown
            },
        )
}

prop_compose! {
    fn topic_config()(
        topic_name in name(127),
        read_queue_nums in 1..=1024i32,
        write_queue_nums in 1..=1024i32,
        perm in 0..=7i32,
        multi_tag in any::<bool>(),
        topic_sys_flag in any::<i32>(),
        order in any::<bool>(),
        attributes in topic_attributes(),
        extra in extra_fields(),
    ) -> TopicConfig {
        let topic_filter_type =
            if multi_tag { TopicFilterType::MultiTag } else { TopicFilterType::SingleTag };
        TopicConfig {
            topic_name, read_queue_nums, write_queue_nums, perm, topic_filter_type,
            topic_sys_flag, order, attributes, extra,
        }
    }
}

prop_compose! {
    fn retry_policy()(
        exponential_type in any::<bool>(),
        next in option::of(vec(0..=86_400_000i64, 1..20)),
        exponential in option::of((0..=60_000i64, 0..=86_400_000i64, 1..=10i64)),
        extra in extra_fields(),
    ) -> GroupRetryPolicy {
        GroupRetryPolicy {
            policy_type: if exponential_type {
                GroupRetryPolicyType::Exponential
            } else {
                GroupRetryPolicyType::Customized
            },
            customized_retry_policy: next.map(|next| CustomizedRetryPolicy {
                next,
                extra: BTreeMap::new(),
            }),
            exponential_retry_policy: exponential.map(|(initial, above, multiplier)| {
                ExponentialRetryPolicy {
                    initial,
                    max: initial + above,
                    multiplier,
                    extra: BTreeMap::new(),
                }
            }),
            extra,
        }
    }
}

prop_compose! {
    fn subscription()(
        topic in name(127),
        retry in any::<bool>(),
        sql in any::<bool>(),
        expression in "[a-zA-Z0-9*|> ]{0,20}[a-z*]",
        version in any::<i64>(),
        extra in extra_fields(),
    ) -> SimpleSubscriptionData {
        let topic = if retry { format!("%RETRY%{topic}") } else { topic };
        let expression_type = if sql { "SQL92" } else { "TAG" }.to_string();
        SimpleSubscriptionData { topic, expression_type, expression, version, extra }
    }
}

/// Distinct by RocketMQ's set identity: topic, type and expression.
fn subscriptions() -> impl Strategy<Value = Vec<SimpleSubscriptionData>> {
    vec(subscription(), 0..4).prop_map(|all| {
        let mut seen = std::collections::BTreeSet::new();
        all.into_iter()
            .filter(|s| {
                seen.insert((
                    s.topic.clone(),
                    s.expression_type.clone(),
                    s.expression.clone(),
                ))
            })
            .collect()
    })
}

prop_compose! {
    fn group_config()(
        group_name in name(120),
        flags in any::<[bool; 5]>(),
        retry_queue_nums in 0..=1024i32,
        retry_max_times in 0..=i32::MAX,
        group_retry_policy in retry_policy(),
        broker_id in any::<i64>(),
        which_broker_when_consume_slowly in any::<i64>(),
        group_sys_flag in any::<i32>(),
        consume_timeout_minute in 1..=i32::MAX,
        subscription_data_set in subscriptions(),
        attributes in btree_map("[a-z.]{1,10}", "[A-Za-z0-9_.]{1,10}", 0..3),
        extra in extra_fields(),
    ) -> SubscriptionGroupConfig {
        let [consume_enable, consume_from_min_enable, consume_broadcast_enable,
            consume_message_orderly, notify_consumer_ids_changed_enable] = flags;
        SubscriptionGroupConfig {
            group_name, consume_enable, consume_from_min_enable, consume_broadcast_enable,
            consume_message_orderly, retry_queue_nums, retry_max_times, group_retry_policy,
            broker_id, which_broker_when_consume_slowly, notify_consumer_ids_changed_enable,
            group_sys_flag, consume_timeout_minute, subscription_data_set, attributes, extra,
        }
    }
}

proptest! {
    #[test]
    fn any_valid_topic_config_round_trips_through_json(topic in topic_config()) {
        prop_assert_eq!(topic.validate(ValidateOptions::ALLOW_SYSTEM), Ok(()));
        let text = serde_json::to_string(&topic).unwrap();
        let read_back: TopicConfig = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(read_back, topic);
    }

    #[test]
    fn any_valid_group_config_round_trips_through_json(group in group_config()) {
        prop_assert_eq!(group.validate(ValidateOptions::ALLOW_SYSTEM), Ok(()));
        let text = serde_json::to_string(&group).unwrap();
        let read_back: SubscriptionGroupConfig = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(read_back, group);
    }
}
