//! RocketMQ-compatible metadata types, their validation, and key naming.
//!
//! This crate owns what a topic or consumer group *is* in the store: the
//! JSON shape RocketMQ brokers use, the rules a config must satisfy, and the
//! keys configs live under. It knows nothing of storage or networking.
//!
//! * [`TopicConfig`] and [`SubscriptionGroupConfig`]: RocketMQ's types with
//!   its camelCase field names and defaults. Unknown fields are kept in
//!   `extra` and written back, so a newer broker's fields survive a round trip.
//! * [`TopicConfig::validate`], [`SubscriptionGroupConfig::validate`]:
//!   RocketMQ's name, queue, permission and attribute rules; a
//!   [`ValidationError`] names the offending JSON field. Reserved system names
//!   pass only with [`ValidateOptions::allow_system`].
//! * [`from_json`]: reads a config from a request body; a missing field or a
//!   wrong type is a [`ValidationError`] naming the field too.
//! * [`topic_key`], [`subscription_key`], [`validate_key`]: the key space.
//! * [`TopicConfigFile`], [`SubscriptionGroupFile`]: a broker's
//!   `topics.json` and `subscriptionGroup.json`, for import and export.
//! * [`schema`]: JSON Schemas generated from the types.
//! * [`remoting`]: RocketMQ's remoting protocol: frames, codes, and the
//!   bodies a name server reads and writes.
//!
//! The rules are written down in `docs/schemas.md`.
//!
//! # Example
//!
//! ```
//! use schemas::{from_json, topic_key, TopicConfig, ValidateOptions};
//!
//! let body = br#"{"topicName": "orders", "writeQueueNums": 8, "brokerZone": "az-1"}"#;
//! let topic: TopicConfig = from_json(body)?;
//! assert_eq!(topic.read_queue_nums, 16); // RocketMQ's default
//! assert_eq!(topic.extra["brokerZone"], "az-1"); // unknown fields are kept
//! topic.validate(ValidateOptions::default())?;
//! assert_eq!(topic_key(&topic.topic_name), "topics/orders");
//!
//! let system = TopicConfig::new("TBW102");
//! let refused = system.validate(ValidateOptions::default()).unwrap_err();
//! assert_eq!(refused.field(), "topicName");
//! system.validate(ValidateOptions { allow_system: true })?;
//!
//! let wrong = from_json::<TopicConfig>(br#"{"topicName": "t", "perm": "rw"}"#).unwrap_err();
//! assert_eq!(wrong.field(), "perm");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod api;
pub mod attribute;
mod error;
mod file;
mod key;
mod name;
mod parse;
pub mod perm;
pub mod remoting;
mod retry;
pub mod schema;
mod subscription;
mod topic;

pub use error::ValidationError;
pub use file::{DataVersion, SubscriptionGroupFile, TopicConfigFile};
pub use key::{
    group_name_of_key, subscription_key, topic_key, topic_name_of_key, validate_key, MAX_KEY_BYTES,
    SUBSCRIPTIONS_PREFIX, TOPICS_PREFIX,
};
pub use name::{
    check_name_matches_path, is_name_char, is_system_group, is_system_topic, validate_group_name,
    validate_topic_name, ValidateOptions, DLQ_TOPIC_PREFIX, GROUP_MAX_LEN, NAME_PATTERN,
    RETRY_OR_DLQ_TOPIC_MAX_LEN, RETRY_TOPIC_PREFIX, SYSTEM_GROUPS, SYSTEM_GROUP_PREFIXES,
    SYSTEM_TOPICS, SYSTEM_TOPIC_PREFIXES, TOPIC_MAX_LEN,
};
pub use parse::from_json;
pub use retry::{
    CustomizedRetryPolicy, EffectiveRetryPolicy, ExponentialRetryPolicy, GroupRetryPolicy,
    GroupRetryPolicyType, DEFAULT_RETRY_DELAYS_MS,
};
pub use subscription::{
    SimpleSubscriptionData, SubscriptionGroupConfig, EXPRESSION_TYPE_SQL92, EXPRESSION_TYPE_TAG,
    SUBSCRIBE_ALL,
};
pub use topic::{TopicConfig, TopicFilterType, DEFAULT_QUEUE_NUMS, MAX_QUEUE_NUMS};
