//! The `attributes` map of topics and groups: RocketMQ's known topic
//! attributes (`TopicAttributes`) and the shape every attribute must have.

use std::collections::BTreeMap;

use crate::error::{check_range, join_field, shown, ValidationError};

/// How a compacting broker cleans the topic: `DELETE` or `COMPACTION`.
/// Fixed at creation.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// Which kind of messages the topic takes (`NORMAL`, `FIFO`, …).
pub const MESSAGE_TYPE: &str = "message.type";
/// The consume-queue format: `SimpleCQ` or `BatchCQ`. Fixed at creation.
pub const QUEUE_TYPE: &str = "queue.type";
/// Hours the topic's messages are kept; `-1` means the broker's default.
pub const RESERVE_TIME: &str = "reserve.time";

/// Values RocketMQ accepts for [`CLEANUP_POLICY`].
pub const CLEANUP_POLICIES: &[&str] = &["DELETE", "COMPACTION"];
/// Values RocketMQ accepts for [`MESSAGE_TYPE`] (`TopicMessageType`).
pub const MESSAGE_TYPES: &[&str] = &[
    "UNSPECIFIED",
    "NORMAL",
    "FIFO",
    "DELAY",
    "TRANSACTION",
    "MIXED",
];
/// Values RocketMQ accepts for [`QUEUE_TYPE`].
pub const QUEUE_TYPES: &[&str] = &["BatchCQ", "SimpleCQ"];
/// Smallest value RocketMQ accepts for [`RESERVE_TIME`].
pub const RESERVE_TIME_MIN: i64 = -1;

/// Topic attributes that RocketMQ refuses to change once the topic exists.
pub const FIXED_AT_CREATION: &[&str] = &[CLEANUP_POLICY, QUEUE_TYPE];

/// Checks every entry of a topic's `attributes`: the shape of keys and
/// values, and the value of each known key. Unknown keys are allowed.
pub(crate) fn check_topic_attributes(
    attributes: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    for (key, value) in attributes {
        check_entry(key, value)?;
        let field = join_field("attributes", key);
        match key.as_str() {
            CLEANUP_POLICY => check_one_of(&field, value, CLEANUP_POLICIES)?,
            MESSAGE_TYPE => check_one_of(&field, value, MESSAGE_TYPES)?,
            QUEUE_TYPE => check_one_of(&field, value, QUEUE_TYPES)?,
            RESERVE_TIME => check_reserve_time(&field, value)?,
            _ => {}
        }
    }
    Ok(())
}

/// Checks the shape of a group's `attributes` (RocketMQ defines no known
/// group attribute yet).
pub(crate) fn check_group_attributes(
    attributes: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    attributes
        .iter()
        .try_for_each(|(key, value)| check_entry(key, value))
}

/// RocketMQ sends attributes as `+key=value,-key` and registers topics as
/// space-separated text, so keys hold none of `+ - = ,` or whitespace, and
/// values none of `= ,` or whitespace; neither may be empty.
fn check_entry(key: &str, value: &str) -> Result<(), ValidationError> {
    let field = join_field("attributes", key);
    if key.is_empty() {
        return Err(ValidationError::Malformed {
            field: "attributes".to_string(),
            value: String::new(),
            reason: "an attribute key must not be empty".to_string(),
        });
    }
    if let Some(c) = key
        .chars()
        .find(|&c| matches!(c, '+' | '-' | '=' | ',') || c.is_whitespace() || c.is_control())
    {
        return Err(ValidationError::Malformed {
            field,
            value: shown(key),
            reason: format!("an attribute key must not contain {c:?}"),
        });
    }
    if value.is_empty() {
        return Err(ValidationError::Blank { field });
    }
    if let Some(c) = value
        .chars()
        .find(|&c| matches!(c, '=' | ',') || c.is_whitespace() || c.is_control())
    {
        return Err(ValidationError::Malformed {
            field,
            value: shown(value),
            reason: format!("an attribute value must not contain {c:?}"),
        });
    }
    Ok(())
}

fn check_one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ValidationError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ValidationError::NotOneOf {
            field: field.to_string(),
            value: shown(value),
            allowed: allowed.join(", "),
        })
    }
}

/// Parsed like Java's `Long.parseLong`: an optional sign, then digits.
fn check_reserve_time(field: &str, value: &str) -> Result<(), ValidationError> {
    let hours: i64 = value.parse().map_err(|_| ValidationError::Malformed {
        field: field.to_string(),
        value: shown(value),
        reason: "not an integer".to_string(),
    })?;
    check_range(field, hours, RESERVE_TIME_MIN, i64::MAX)
}
