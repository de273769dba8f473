//! Key naming: where RocketMQ metadata lives in the key space, and which keys
//! the raw KV API accepts.
//!
//! A key is one or more non-empty segments joined by `/`: at most
//! [`MAX_KEY_BYTES`] bytes of UTF-8, no control characters, no leading or
//! trailing `/`, no empty segment (`a//b`), no `.` or `..` segment. Keys
//! thereby read the same in a URL path, a log line and a file name, and a
//! prefix listing (`topics/`) never meets a key that normalizes elsewhere.

use crate::error::{shown, ValidationError};

/// Prefix of every topic's key: `topics/{topicName}`.
pub const TOPICS_PREFIX: &str = "topics/";
/// Prefix of every consumer group's key: `subscriptions/{groupName}`.
pub const SUBSCRIPTIONS_PREFIX: &str = "subscriptions/";
/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// The key of topic `topic_name`.
pub fn topic_key(topic_name: &str) -> String {
    format!("{TOPICS_PREFIX}{topic_name}")
}

/// The key of consumer group `group_name`.
pub fn subscription_key(group_name: &str) -> String {
    format!("{SUBSCRIPTIONS_PREFIX}{group_name}")
}

/// The topic name a key holds, if it is a topic's key (`topics/T` → `T`).
pub fn topic_name_of_key(key: &str) -> Option<&str> {
    single_segment_after(key, TOPICS_PREFIX)
}

/// The group name a key holds, if it is a group's key (`subscriptions/G` → `G`).
pub fn group_name_of_key(key: &str) -> Option<&str> {
    single_segment_after(key, SUBSCRIPTIONS_PREFIX)
}

fn single_segment_after<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

/// Checks a key of the raw KV API against the rule in the module doc; errors
/// name the field `key`.
pub fn validate_key(key: &str) -> Result<(), ValidationError> {
    let malformed = |reason: &str| ValidationError::Malformed {
        field: "key".to_string(),
        value: shown(key),
        reason: reason.to_string(),
    };
    if key.is_empty() {
        return Err(ValidationError::Blank {
            field: "key".to_string(),
        });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ValidationError::TooLong {
            field: "key".to_string(),
            len: key.len(),
            max: MAX_KEY_BYTES,
            unit: "bytes",
        });
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(malformed(&format!(
            "control character U+{:04X} is not allowed",
            u32::from(c)
        )));
    }
    if key.starts_with('/') {
        return Err(malformed("a key must not start with '/'"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(malformed("a key must not have an empty segment")),
            "." | ".." => return Err(malformed("a key must not have a '.' or '..' segment")),
            _ => {}
        }
    }
    Ok(())
}
