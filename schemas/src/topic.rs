//! RocketMQ's `TopicConfig`: one topic's queues, permissions and attributes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attribute::{self, check_topic_attributes, FIXED_AT_CREATION};
use crate::error::{check_range, join_field, ValidationError};
use crate::name::{
    check_name_matches_path, validate_topic_name, ValidateOptions, NAME_PATTERN,
    RETRY_OR_DLQ_TOPIC_MAX_LEN,
};
use crate::perm;

/// RocketMQ's default number of read and of write queues for a new topic.
pub const DEFAULT_QUEUE_NUMS: i32 = 16;
/// Most queues a topic (or a group's retry topic) may have: RocketMQ sets no
/// bound, this store does; its own largest topic, `BenchmarkTest`, has 1024.
pub const MAX_QUEUE_NUMS: i32 = 1024;

/// How consumers may filter a topic's messages (RocketMQ's `TopicFilterType`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TopicFilterType {
    /// A message carries one tag.
    #[default]
    SingleTag,
    /// A message may carry several tags.
    MultiTag,
}

/// One topic's configuration, in RocketMQ's JSON shape (`topics.json`).
///
/// Missing fields take RocketMQ's defaults; fields this crate does not know
/// are kept in `extra` and written back as the same JSON values (an integer
/// beyond 64 bits comes back as the nearest double).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// The topic's name; the store keeps it at key `topics/{topicName}`.
    #[schemars(length(min = 1, max = RETRY_OR_DLQ_TOPIC_MAX_LEN), pattern(NAME_PATTERN))]
    pub topic_name: String,
    /// Number of queues consumers read from.
    #[serde(default = "default_queue_nums")]
    #[schemars(range(min = 1, max = MAX_QUEUE_NUMS))]
    pub read_queue_nums: i32,
    /// Number of queues producers write to.
    #[serde(default = "default_queue_nums")]
    #[schemars(range(min = 1, max = MAX_QUEUE_NUMS))]
    pub write_queue_nums: i32,
    /// Permission bits: READ 4, WRITE 2, INHERIT 1 (RocketMQ's `PermName`).
    #[serde(default = "default_perm")]
    #[schemars(range(min = 0, max = perm::MAX))]
    pub perm: i32,
    /// How consumers may filter the topic's messages.
    #[serde(default)]
    pub topic_filter_type: TopicFilterType,
    /// Broker-internal flag bits.
    #[serde(default)]
    pub topic_sys_flag: i32,
    /// Whether messages are consumed in queue order.
    #[serde(default)]
    pub order: bool,
    /// String attributes: `cleanup.policy`, `message.type`, `queue.type`,
    /// `reserve.time`, or any other key.
    #[serde(default)]
    #[schemars(extend("properties" = {
        "cleanup.policy": { "enum": attribute::CLEANUP_POLICIES },
        "message.type": { "enum": attribute::MESSAGE_TYPES },
        "queue.type": { "enum": attribute::QUEUE_TYPES },
        "reserve.time": { "pattern": "^[+-]?[0-9]+$" }
    }))]
    pub attributes: BTreeMap<String, String>,
    /// Fields of newer brokers that this crate does not know, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn default_queue_nums() -> i32 {
    DEFAULT_QUEUE_NUMS
}

fn default_perm() -> i32 {
    perm::DEFAULT
}

impl TopicConfig {
    /// A topic named `topic_name` with every other field at RocketMQ's default.
    pub fn new(topic_name: impl Into<String>) -> Self {
        Self {
            topic_name: topic_name.into(),
            read_queue_nums: DEFAULT_QUEUE_NUMS,
            write_queue_nums: DEFAULT_QUEUE_NUMS,
            perm: perm::DEFAULT,
            topic_filter_type: TopicFilterType::default(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Checks the config against RocketMQ's rules; the error names the field.
    pub fn validate(&self, opts: ValidateOptions) -> Result<(), ValidationError> {
        validate_topic_name(&self.topic_name, opts)?;
        let max_queues = i64::from(MAX_QUEUE_NUMS);
        check_range("readQueueNums", self.read_queue_nums.into(), 1, max_queues)?;
        check_range(
            "writeQueueNums",
            self.write_queue_nums.into(),
            1,
            max_queues,
        )?;
        check_range("perm", self.perm.into(), 0, perm::MAX.into())?;
        check_topic_attributes(&self.attributes)
    }

    /// Checks that `topicName` equals the name in the request's URL path.
    pub fn check_path_name(&self, path_name: &str) -> Result<(), ValidationError> {
        check_name_matches_path("topicName", path_name, &self.topic_name)
    }

    /// Checks that replacing `previous` with `self` changes no attribute that
    /// RocketMQ fixes at creation (`cleanup.policy`, `queue.type`).
    pub fn check_update_of(&self, previous: &TopicConfig) -> Result<(), ValidationError> {
        for key in FIXED_AT_CREATION {
            let before = previous.attributes.get(*key);
            let after = self.attributes.get(*key);
            if before != after {
                return Err(ValidationError::Unchangeable {
                    field: join_field("attributes", key),
                    before: before.cloned(),
                    after: after.cloned(),
                });
            }
        }
        Ok(())
    }

    /// The `message.type` attribute, `NORMAL` when unset (as RocketMQ reads it).
    pub fn message_type(&self) -> &str {
        self.attributes
            .get(attribute::MESSAGE_TYPE)
            .map_or("NORMAL", String::as_str)
    }
}
