//! Every rule a `SubscriptionGroupConfig` must satisfy, and the field each
//! refusal names.

use schemas::{SubscriptionGroupConfig, ValidateOptions, ValidationError};
use serde_json::{json, Value};

/// A valid group with `patch`'s fields laid over it.
fn group(patch: Value) -> SubscriptionGroupConfig {
    let mut body = json!({"groupName": "billing"});
    body.as_object_mut()
        .unwrap()
        .extend(patch.as_object().unwrap().clone());
    serde_json::from_value(body).unwrap()
}

fn refused_field(patch: Value) -> String {
    group(patch)
        .validate(ValidateOptions::default())
        .expect_err("the group should be refused")
        .field()
        .to_string()
}

fn accepts(patch: Value) {
    let config = group(patch);
    if let Err(error) = config.validate(ValidateOptions::default()) {
        panic!("{config:?} was refused: {error}");
    }
}

#[test]
fn group_name_follows_the_topic_character_rules() {
    accepts(json!({"groupName": "%|azAZ09_-"}));
    assert_eq!(refused_field(json!({"groupName": ""})), "groupName");
    assert_eq!(
        refused_field(json!({"groupName": "billing.v2"})),
        "groupName"
    );
}

#[test]
fn group_name_is_at_most_120_characters() {
    accepts(json!({"groupName": "g".repeat(120)}));
    let error = group(json!({"groupName": "g".repeat(121)}))
        .validate(ValidateOptions::default())
        .unwrap_err();
    assert_eq!(
        error,
        ValidationError::TooLong {
            field: "groupName".into(),
            len: 121,
            max: 120,
            unit: "characters"
        }
    );
}

#[test]
fn retry_queue_count_lies_between_0_and_1024() {
    accepts(json!({"retryQueueNums": 0}));
    accepts(json!({"retryQueueNums": 1024}));
    assert_eq!(
        refused_field(json!({"retryQueueNums": -1})),
        "retryQueueNums"
    );
    assert_eq!(
        refused_field(json!({"retryQueueNums": 1025})),
        "retryQueueNums"
    );
}

#[test]
fn retry_count_is_not_negative() {
    accepts(json!({"retryMaxTimes": 0}));
    assert_eq!(refused_field(json!({"retryMaxTimes": -1})), "retryMaxTimes");
}

#[test]
fn consume_timeout_is_at_least_a_minute() {
    accepts(json!({"consumeTimeoutMinute": 1}));
    assert_eq!(
        refused_field(json!({"consumeTimeoutMinute": 0})),
        "consumeTimeoutMinute"
    );
}

#[test]
fn customized_retry_delays_are_a_non_empty_list_of_non_negative_millis() {
    accepts(json!({"groupRetryPolicy": {"customizedRetryPolicy": {"next": [0, 1000]}}}));
    assert_eq!(
        refused_field(json!({"groupRetryPolicy": {"customizedRetryPolicy": {"next": []}}})),
        "groupRetryPolicy.customizedRetryPolicy.next"
    );
    assert_eq!(
        refused_field(json!({"groupRetryPolicy": {"customizedRetryPolicy": {"next": [1000, -5]}}})),
        "groupRetryPolicy.customizedRetryPolicy.next[1]"
    );
}

#[test]
fn exponential_retry_grows_from_initial_up_to_max() {
    let policy = |initial: i64, max: i64, multiplier: i64| {
        json!({"groupRetryPolicy": {"type": "EXPONENTIAL", "exponentialRetryPolicy":
            {"initial": initial, "max": max, "multiplier": multiplier}}})
    };
    accepts(policy(1000, 1000, 1));
    let field = |name: &str| format!("groupRetryPolicy.exponentialRetryPolicy.{name}");
    assert_eq!(refused_field(policy(-1, 1000, 2)), field("initial"));
    assert_eq!(refused_field(policy(5000, 1000, 2)), field("max"));
    assert_eq!(refused_field(policy(1000, 5000, 0)), field("multiplier"));
}

#[test]
fn retry_policy_type_outside_rocketmq_enum_is_refused_by_serde() {
    let body = json!({"groupName": "g", "groupRetryPolicy": {"type": "LINEAR"}});
    assert!(serde_json::from_value::<SubscriptionGroupConfig>(body).is_err());
}

#[test]
fn subscriptions_name_valid_topics_and_filter_types() {
    accepts(json!({"subscriptionDataSet": [
        {"topic": "orders", "expressionType": "SQL92", "expression": "a > 1"},
        {"topic": "%RETRY%billing"},
        {"topic": "RMQ_SYS_TRACE_TOPIC"}
    ]}));
    assert_eq!(
        refused_field(json!({"subscriptionDataSet": [{"topic": "ok"}, {"topic": "a.b"}]})),
        "subscriptionDataSet[1].topic"
    );
    assert_eq!(
        refused_field(json!({"subscriptionDataSet": [{"topic": "t", "expressionType": "REGEX"}]})),
        "subscriptionDataSet[0].expressionType"
    );
    assert_eq!(
        refused_field(json!({"subscriptionDataSet": [{"topic": "t", "expression": " "}]})),
        "subscriptionDataSet[0].expression"
    );
}

#[test]
fn the_same_subscription_twice_is_refused_whatever_its_version() {
    let error = group(json!({"subscriptionDataSet": [
        {"topic": "orders", "expression": "a", "version": 1},
        {"topic": "orders", "expression": "b", "version": 1},
        {"topic": "orders", "expression": "a", "version": 2}
    ]}))
    .validate(ValidateOptions::default())
    .unwrap_err();

    assert_eq!(
        error,
        ValidationError::Duplicate {
            field: "subscriptionDataSet[2]".into()
        }
    );
}

#[test]
fn group_attributes_must_survive_rocketmq_text_encodings() {
    accepts(json!({"attributes": {"owner": "team_billing"}}));
    assert_eq!(
        refused_field(json!({"attributes": {"owner": "team billing"}})),
        "attributes.owner"
    );
}

#[test]
fn body_name_must_match_the_name_in_the_path() {
    let config = group(json!({}));
    config.check_path_name("billing").unwrap();
    let error = config.check_path_name("shipping").unwrap_err();
    assert_eq!(error.field(), "groupName");
    assert!(matches!(error, ValidationError::PathMismatch { .. }));
}
