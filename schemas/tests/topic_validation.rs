//! Every rule a `TopicConfig` must satisfy, and the field each refusal names.

use schemas::{TopicConfig, ValidateOptions, ValidationError};
use serde_json::{json, Value};

/// A valid topic with `patch`'s fields laid over it.
fn topic(patch: Value) -> TopicConfig {
    let mut body = json!({"topicName": "orders"});
    body.as_object_mut()
        .unwrap()
        .extend(patch.as_object().unwrap().clone());
    serde_json::from_value(body).unwrap()
}

fn refusal(patch: Value) -> ValidationError {
    topic(patch)
        .validate(ValidateOptions::default())
        .expect_err("the topic should be refused")
}

fn accepts(patch: Value) {
    let config = topic(patch);
    if let Err(error) = config.validate(ValidateOptions::default()) {
        panic!("{config:?} was refused: {error}");
    }
}

#[test]
fn blank_topic_name_is_refused() {
    for name in ["", "   "] {
        let error = refusal(json!({"topicName": name}));
        assert_eq!(error.field(), "topicName");
        assert!(matches!(error, ValidationError::Blank { .. }));
    }
}

#[test]
fn topic_name_allows_only_letters_digits_and_percent_bar_underscore_dash() {
    accepts(json!({"topicName": "%|azAZ09_-"}));
    for (name, illegal) in [
        ("orders.v1", '.'),
        ("a b", ' '),
        ("a/b", '/'),
        ("caf\u{e9}", '\u{e9}'),
        ("x:y", ':'),
    ] {
        let error = refusal(json!({"topicName": name}));
        assert_eq!(error.field(), "topicName");
        assert_eq!(
            error,
            ValidationError::IllegalCharacter {
                field: "topicName".into(),
                value: name.into(),
                illegal
            }
        );
    }
}

#[test]
fn topic_name_is_at_most_127_characters() {
    accepts(json!({"topicName": "t".repeat(127)}));
    let error = refusal(json!({"topicName": "t".repeat(128)}));
    assert_eq!(error.field(), "topicName");
    assert_eq!(
        error.to_string(),
        "topicName is 128 characters long, longer than the limit of 127"
    );
}

#[test]
fn retry_and_dead_letter_topic_names_are_at_most_255_characters() {
    for prefix in ["%RETRY%", "%DLQ%"] {
        let longest = format!("{prefix}{}", "g".repeat(255 - prefix.len()));
        accepts(json!({"topicName": longest}));
        let error = refusal(json!({"topicName": format!("{longest}g")}));
        assert_eq!(error.field(), "topicName");
    }
}

#[test]
fn queue_counts_lie_between_1_and_1024() {
    for field in ["readQueueNums", "writeQueueNums"] {
        accepts(json!({field: 1}));
        accepts(json!({field: 1024}));
        for bad in [0, -1, 1025] {
            let error = refusal(json!({field: bad}));
            assert_eq!(error.field(), field);
            assert_eq!(
                error.to_string(),
                format!("{field} must be between 1 and 1024, got {bad}")
            );
        }
    }
}

#[test]
fn perm_lies_between_0_and_7_so_the_priority_bit_is_refused() {
    for perm in 0..=7 {
        accepts(json!({"perm": perm}));
    }
    for bad in [8, 14, -1] {
        assert_eq!(refusal(json!({"perm": bad})).field(), "perm");
    }
}

#[test]
fn filter_type_outside_rocketmq_enum_is_refused_by_serde() {
    let error = serde_json::from_value::<TopicConfig>(
        json!({"topicName": "t", "topicFilterType": "REGEX"}),
    )
    .unwrap_err();
    assert!(error.to_string().contains("REGEX"), "{error}");
}

#[test]
fn known_attributes_take_only_the_values_rocketmq_accepts() {
    let accepted = [
        (
            "message.type",
            &[
                "UNSPECIFIED",
                "NORMAL",
                "FIFO",
                "DELAY",
                "TRANSACTION",
                "MIXED",
            ][..],
        ),
        ("cleanup.policy", &["DELETE", "COMPACTION"][..]),
        ("queue.type", &["BatchCQ", "SimpleCQ"][..]),
        (
            "reserve.time",
            &["-1", "0", "72", "+5", "9223372036854775807"][..],
        ),
    ];
    for (key, values) in accepted {
        for value in values {
            accepts(json!({"attributes": {key: value}}));
        }
    }

    let refused = [
        ("message.type", "normal"),
        ("cleanup.policy", "COMPACT"),
        ("queue.type", "RocksDBCQ"),
        ("reserve.time", "-2"),
        ("reserve.time", "1.5"),
        ("reserve.time", "forever"),
        ("reserve.time", "9223372036854775808"),
    ];
    for (key, value) in refused {
        let error = refusal(json!({"attributes": {key: value}}));
        assert_eq!(error.field(), format!("attributes.{key}"), "{key}={value}");
    }
}

#[test]
fn refused_enum_attribute_lists_the_allowed_values() {
    let error = refusal(json!({"attributes": {"cleanup.policy": "KEEP"}}));
    assert_eq!(
        error.to_string(),
        r#"attributes.cleanup.policy must be one of DELETE, COMPACTION, got "KEEP""#
    );
}

#[test]
fn unknown_attribute_keys_are_allowed() {
    accepts(json!({"attributes": {"retention.bytes": "1048576", "owner": "team_payments"}}));
}

#[test]
fn attributes_must_survive_rocketmq_text_encodings() {
    for key in ["+message.type", "a-b", "a=b", "a,b", "a b"] {
        let error = refusal(json!({"attributes": {key: "x"}}));
        assert_eq!(error.field(), format!("attributes.{key}"));
    }
    assert_eq!(
        refusal(json!({"attributes": {"": "x"}})).field(),
        "attributes"
    );
    for value in ["", "a b", "a=b", "a,b"] {
        let error = refusal(json!({"attributes": {"owner": value}}));
        assert_eq!(error.field(), "attributes.owner", "{value:?}");
    }
}

#[test]
fn body_name_must_match_the_name_in_the_path() {
    let config = topic(json!({}));
    config.check_path_name("orders").unwrap();

    let error = config.check_path_name("payments").unwrap_err();

    assert_eq!(error.field(), "topicName");
    assert_eq!(
        error.to_string(),
        r#"topicName "orders" must match the name "payments" in the path"#
    );
}

#[test]
fn cleanup_policy_and_queue_type_are_fixed_at_creation() {
    let created =
        topic(json!({"attributes": {"queue.type": "SimpleCQ", "message.type": "NORMAL"}}));

    let retyped = topic(json!({"attributes": {"queue.type": "SimpleCQ", "message.type": "FIFO"}}));
    retyped.check_update_of(&created).unwrap();

    let requeued =
        topic(json!({"attributes": {"queue.type": "BatchCQ", "message.type": "NORMAL"}}));
    assert_eq!(
        requeued.check_update_of(&created).unwrap_err().field(),
        "attributes.queue.type"
    );
    let compacted = topic(json!({"attributes": {
        "queue.type": "SimpleCQ", "message.type": "NORMAL", "cleanup.policy": "COMPACTION"
    }}));
    assert_eq!(
        compacted.check_update_of(&created).unwrap_err(),
        ValidationError::Unchangeable {
            field: "attributes.cleanup.policy".into(),
            before: None,
            after: Some("COMPACTION".into()),
        }
    );
}

#[test]
fn a_hostile_long_name_is_shortened_in_the_message() {
    let error = refusal(json!({"topicName": format!("{}.", "x".repeat(100_000))}));
    assert!(error.to_string().len() < 400, "{}", error.to_string().len());
}
