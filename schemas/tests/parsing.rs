//! A body that does not fit the types is refused with the field it breaks,
//! before any rule is checked.

use schemas::{from_json, SubscriptionGroupConfig, TopicConfig, TopicConfigFile, ValidationError};

fn topic_error(body: &str) -> ValidationError {
    from_json::<TopicConfig>(body.as_bytes()).expect_err("the body should be refused")
}

#[test]
fn a_well_typed_body_reads_like_serde_json() {
    let topic: TopicConfig = from_json(br#"{"topicName": "orders", "perm": 4}"#).unwrap();
    assert_eq!(
        topic,
        serde_json::from_str(r#"{"topicName": "orders", "perm": 4}"#).unwrap()
    );
}

#[test]
fn missing_name_is_named() {
    assert_eq!(
        topic_error(r#"{"readQueueNums": 4}"#),
        ValidationError::Missing {
            field: "topicName".into()
        }
    );
    let error = from_json::<SubscriptionGroupConfig>(
        br#"{"groupName": "g", "subscriptionDataSet": [{"topic": "t"}, {"expression": "*"}]}"#,
    )
    .unwrap_err();
    assert_eq!(error.field(), "subscriptionDataSet[1].topic");
    assert_eq!(
        error.to_string(),
        "subscriptionDataSet[1].topic is required"
    );
}

#[test]
fn wrong_types_and_unrepresentable_numbers_are_named() {
    let cases = [
        (
            r#"{"topicName": "t", "readQueueNums": "8"}"#,
            "readQueueNums",
        ),
        (
            r#"{"topicName": "t", "writeQueueNums": 99999999999}"#,
            "writeQueueNums",
        ),
        (r#"{"topicName": "t", "order": "yes"}"#, "order"),
        (
            r#"{"topicName": "t", "topicFilterType": "REGEX"}"#,
            "topicFilterType",
        ),
        (
            r#"{"topicName": "t", "attributes": {"owner": 7}}"#,
            "attributes.owner",
        ),
        (r#"{"topicName": 5}"#, "topicName"),
    ];
    for (body, field) in cases {
        let error = topic_error(body);
        assert!(
            matches!(error, ValidationError::WrongType { .. }),
            "{body}: {error:?}"
        );
        assert_eq!(error.field(), field, "{body}");
    }
}

#[test]
fn nested_fields_are_named_by_their_full_path() {
    let error = from_json::<SubscriptionGroupConfig>(
        br#"{"groupName": "g", "groupRetryPolicy": {"customizedRetryPolicy": {"next": [1, "2s"]}}}"#,
    )
    .unwrap_err();
    assert_eq!(
        error.field(),
        "groupRetryPolicy.customizedRetryPolicy.next[1]"
    );

    let error = from_json::<TopicConfigFile>(
        br#"{"topicConfigTable": {"T": {"topicName": "T", "perm": true}}}"#,
    )
    .unwrap_err();
    assert_eq!(error.field(), "topicConfigTable.T.perm");
}

#[test]
fn malformed_json_names_no_field() {
    for body in [
        r#"{"topicName": "t""#,
        "",
        r#"{"topicName": "t"} trailing"#,
        "{'a': 1}",
    ] {
        let error = topic_error(body);
        assert!(
            matches!(error, ValidationError::NotJson { .. }),
            "{body}: {error:?}"
        );
        assert_eq!(error.field(), "");
    }
}

#[test]
fn a_body_of_the_wrong_shape_names_no_field() {
    let error = topic_error(r#"["orders"]"#);
    assert!(
        matches!(error, ValidationError::WrongType { .. }),
        "{error:?}"
    );
    assert_eq!(error.field(), "");
}

#[test]
fn a_field_given_twice_is_named_and_the_body_itself_is_named_as_such() {
    let error = from_json::<schemas::api::GrantLease>(br#"{"ttl_s": 30, "ttl_s": 40}"#)
        .expect_err("a field given twice is refused");
    assert_eq!(
        error,
        ValidationError::Duplicate {
            field: "ttl_s".into()
        }
    );
    assert_eq!(error.to_string(), "ttl_s duplicates an earlier entry");
    let error = topic_error(r#""orders""#);
    assert_eq!(error.field(), "");
    assert!(
        error
            .to_string()
            .starts_with("the body has the wrong type or value: "),
        "{error}"
    );
}
