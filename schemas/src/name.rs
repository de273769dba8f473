//! Topic and group names: RocketMQ's character set and length limits
//! (`TopicValidator`), and its reserved system names (`TopicValidator`,
//! `MixAll`).

use crate::error::{shown, ValidationError};

/// Longest ordinary topic name, in characters (RocketMQ's `TOPIC_MAX_LENGTH`).
pub const TOPIC_MAX_LEN: usize = 127;
/// Longest retry (`%RETRY%…`) or dead-letter (`%DLQ%…`) topic name, in characters.
pub const RETRY_OR_DLQ_TOPIC_MAX_LEN: usize = 255;
/// Longest group name, in characters: a group also becomes part of its retry
/// and dead-letter topic names (RocketMQ's `GROUP_MAX_LENGTH`).
pub const GROUP_MAX_LEN: usize = 120;

/// Prefix of the retry topic RocketMQ keeps per consumer group.
pub const RETRY_TOPIC_PREFIX: &str = "%RETRY%";
/// Prefix of the dead-letter topic RocketMQ keeps per consumer group.
pub const DLQ_TOPIC_PREFIX: &str = "%DLQ%";

/// The pattern every topic and group name matches (checked by hand, no regex).
pub const NAME_PATTERN: &str = "^[%|a-zA-Z0-9_-]+$";

/// Topic names RocketMQ reserves for the broker itself
/// (`TopicValidator.SYSTEM_TOPIC_SET`).
pub const SYSTEM_TOPICS: &[&str] = &[
    "TBW102",
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRACE_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
    "CHECKPOINT_TOPIC",
];

/// Prefixes that make a topic a system topic: RocketMQ's `rmq_sys_`, its
/// upper-case twin `RMQ_SYS_`, and `%SYS%`, which this store reserves.
pub const SYSTEM_TOPIC_PREFIXES: &[&str] = &["rmq_sys_", "RMQ_SYS_", "%SYS%"];

/// Group names RocketMQ predefines (`MixAll.PREDEFINE_GROUP_SET`).
pub const SYSTEM_GROUPS: &[&str] = &[
    "DEFAULT_CONSUMER",
    "DEFAULT_PRODUCER",
    "TOOLS_CONSUMER",
    "SCHEDULE_CONSUMER",
    "FILTERSRV_CONSUMER",
    "__MONITOR_CONSUMER",
    "CLIENT_INNER_PRODUCER",
    "SELF_TEST_P_GROUP",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_ONSAPI_PULL",
    "CID_RMQ_SYS_TRANS",
];

/// Prefixes that make a group a system group (`MixAll.CID_RMQ_SYS_PREFIX`).
pub const SYSTEM_GROUP_PREFIXES: &[&str] = &["CID_RMQ_SYS_"];

/// How strict a validation is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Accept reserved system topic and group names (an import of a broker's
    /// files needs this; a user's request does not).
    pub allow_system: bool,
}

impl ValidateOptions {
    /// Options that accept reserved system names.
    pub const ALLOW_SYSTEM: Self = Self { allow_system: true };
}

/// Whether `topic` is one of RocketMQ's reserved system topics.
pub fn is_system_topic(topic: &str) -> bool {
    SYSTEM_TOPICS.contains(&topic) || SYSTEM_TOPIC_PREFIXES.iter().any(|p| topic.starts_with(p))
}

/// Whether `group` is one of RocketMQ's reserved system groups.
pub fn is_system_group(group: &str) -> bool {
    SYSTEM_GROUPS.contains(&group) || SYSTEM_GROUP_PREFIXES.iter().any(|p| group.starts_with(p))
}

/// Whether `c` belongs to [`NAME_PATTERN`]'s character set.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')
}

/// Checks a topic name (field `topicName`): characters, length, and that it
/// is no system topic unless `opts` allows one.
pub fn validate_topic_name(topic: &str, opts: ValidateOptions) -> Result<(), ValidationError> {
    check_topic_syntax("topicName", topic)?;
    if !opts.allow_system && is_system_topic(topic) {
        return Err(ValidationError::SystemName {
            field: "topicName".to_string(),
            name: topic.to_string(),
            kind: "topic",
        });
    }
    Ok(())
}

/// Checks a group name (field `groupName`): characters, length, and that it
/// is no system group unless `opts` allows one.
pub fn validate_group_name(group: &str, opts: ValidateOptions) -> Result<(), ValidationError> {
    check_name_syntax("groupName", group, GROUP_MAX_LEN)?;
    if !opts.allow_system && is_system_group(group) {
        return Err(ValidationError::SystemName {
            field: "groupName".to_string(),
            name: group.to_string(),
            kind: "group",
        });
    }
    Ok(())
}

/// Checks that the name in a request body equals the name in its URL path
/// (`PUT /v1/topics/{name}` with body field `topicName`, for instance).
pub fn check_name_matches_path(
    field: &str,
    path_name: &str,
    body_name: &str,
) -> Result<(), ValidationError> {
    if path_name == body_name {
        Ok(())
    } else {
        Err(ValidationError::PathMismatch {
            field: field.to_string(),
            path: shown(path_name),
            body: shown(body_name),
        })
    }
}

/// Checks a topic name's characters and length, with the longer limit for
/// retry and dead-letter topics; system names are not refused here.
pub(crate) fn check_topic_syntax(field: &str, topic: &str) -> Result<(), ValidationError> {
    let max = if topic.starts_with(RETRY_TOPIC_PREFIX) || topic.starts_with(DLQ_TOPIC_PREFIX) {
        RETRY_OR_DLQ_TOPIC_MAX_LEN
    } else {
        TOPIC_MAX_LEN
    };
    check_name_syntax(field, topic, max)
}

/// RocketMQ's order of checks: blank, then characters, then length.
fn check_name_syntax(field: &str, name: &str, max: usize) -> Result<(), ValidationError> {
    if name.trim().is_empty() {
        return Err(ValidationError::Blank {
            field: field.to_string(),
        });
    }
    if let Some(illegal) = name.chars().find(|&c| !is_name_char(c)) {
        return Err(ValidationError::IllegalCharacter {
            field: field.to_string(),
            value: shown(name),
            illegal,
        });
    }
    // Only ASCII is left, so bytes and characters agree.
    if name.len() > max {
        return Err(ValidationError::TooLong {
            field: field.to_string(),
            len: name.len(),
            max,
            unit: "characters",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_chars_are_exactly_the_rocketmq_set() {
        let allowed: String = (0u8..128)
            .map(char::from)
            .filter(|&c| is_name_char(c))
            .collect();
        assert_eq!(
            allowed,
            "%-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz|"
        );
        assert!(!is_name_char('é'));
    }
}
