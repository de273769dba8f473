//! Where metadata lives in the key space, and which keys the raw KV API
//! accepts.

use schemas::{
    group_name_of_key, subscription_key, topic_key, topic_name_of_key, validate_key,
    ValidationError, GROUP_MAX_LEN, MAX_KEY_BYTES, RETRY_OR_DLQ_TOPIC_MAX_LEN,
    SUBSCRIPTIONS_PREFIX, TOPICS_PREFIX,
};

#[test]
fn topics_and_groups_live_under_their_prefixes() {
    assert_eq!(TOPICS_PREFIX, "topics/");
    assert_eq!(SUBSCRIPTIONS_PREFIX, "subscriptions/");
    assert_eq!(topic_key("orders"), "topics/orders");
    assert_eq!(subscription_key("billing"), "subscriptions/billing");
}

#[test]
fn names_are_read_back_from_their_keys() {
    assert_eq!(topic_name_of_key("topics/orders"), Some("orders"));
    assert_eq!(group_name_of_key("subscriptions/billing"), Some("billing"));
    for not_a_topic in ["topics/", "topics/a/b", "subscriptions/orders", "orders"] {
        assert_eq!(topic_name_of_key(not_a_topic), None, "{not_a_topic}");
    }
    assert_eq!(group_name_of_key("topics/billing"), None);
}

#[test]
fn every_valid_topic_or_group_name_makes_a_valid_key() {
    let longest_topic = format!("%RETRY%{}", "t".repeat(RETRY_OR_DLQ_TOPIC_MAX_LEN - 7));
    let odd_group = format!("%|_-{}", "g".repeat(GROUP_MAX_LEN - 4));
    validate_key(&topic_key(&longest_topic)).unwrap();
    validate_key(&subscription_key(&odd_group)).unwrap();
}

#[test]
fn ordinary_keys_are_accepted() {
    for key in [
        "a",
        "config/app/feature.flag",
        "x/y/z",
        "ünïcode/キー",
        "a.b/..c/d..",
        "with space",
    ] {
        validate_key(key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
    }
    validate_key(&"k".repeat(MAX_KEY_BYTES)).unwrap();
}

#[test]
fn empty_key_is_refused() {
    assert_eq!(
        validate_key("").unwrap_err(),
        ValidationError::Blank {
            field: "key".into()
        }
    );
}

#[test]
fn key_is_at_most_1024_bytes() {
    assert_eq!(MAX_KEY_BYTES, 1024);
    let error = validate_key(&"k".repeat(MAX_KEY_BYTES + 1)).unwrap_err();
    assert_eq!(error.field(), "key");
    assert_eq!(
        error.to_string(),
        "key is 1025 bytes long, longer than the limit of 1024"
    );
    // The limit counts bytes: 342 three-byte characters are 1026 bytes.
    assert!(validate_key(&"キ".repeat(342)).is_err());
}

#[test]
fn keys_with_control_characters_are_refused() {
    for key in ["a\nb", "a\0", "\tkey", "del\u{7f}", "c1\u{85}"] {
        let error = validate_key(key).unwrap_err();
        assert_eq!(error.field(), "key");
        assert!(error.to_string().contains("control character"), "{error}");
    }
}

#[test]
fn keys_with_a_leading_slash_or_an_empty_or_dot_segment_are_refused() {
    for key in ["/a", "/", "a//b", "a/", "./a", "a/./b", "a/..", ".."] {
        let error = validate_key(key).unwrap_err();
        assert_eq!(error.field(), "key", "{key}");
        assert!(matches!(error, ValidationError::Malformed { .. }), "{key}");
    }
}
