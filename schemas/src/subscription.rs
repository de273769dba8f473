//! RocketMQ's `SubscriptionGroupConfig`: one consumer group's settings.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attribute::check_group_attributes;
use crate::error::{check_range, shown, ValidationError};
use crate::name::{
    check_name_matches_path, check_topic_syntax, validate_group_name, ValidateOptions,
    GROUP_MAX_LEN, NAME_PATTERN, RETRY_OR_DLQ_TOPIC_MAX_LEN,
};
use crate::retry::GroupRetryPolicy;
use crate::topic::MAX_QUEUE_NUMS;

/// Filter expression type that matches tags (`tagA || tagB`, `*`).
pub const EXPRESSION_TYPE_TAG: &str = "TAG";
/// Filter expression type that evaluates SQL92 over message properties.
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";
/// The expression that matches every message.
pub const SUBSCRIBE_ALL: &str = "*";

/// One consumer group's configuration, in RocketMQ's JSON shape
/// (`subscriptionGroup.json`).
///
/// Missing fields take RocketMQ's defaults; fields this crate does not know
/// are kept in `extra` and written back as the same JSON values (an integer
/// beyond 64 bits comes back as the nearest double).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    /// The group's name; the store keeps it at key `subscriptions/{groupName}`.
    #[schemars(length(min = 1, max = GROUP_MAX_LEN), pattern(NAME_PATTERN))]
    pub group_name: String,
    /// Whether the group may consume at all.
    #[serde(default = "yes")]
    pub consume_enable: bool,
    /// Whether a new consumer may start from the queue's minimum offset.
    #[serde(default = "yes")]
    pub consume_from_min_enable: bool,
    /// Whether the group may consume in broadcast mode.
    #[serde(default = "yes")]
    pub consume_broadcast_enable: bool,
    /// Whether the group consumes each queue in order.
    #[serde(default)]
    pub consume_message_orderly: bool,
    /// Number of queues of the group's retry topic; 0 means no retry.
    #[serde(default = "default_retry_queue_nums")]
    #[schemars(range(min = 0, max = MAX_QUEUE_NUMS))]
    pub retry_queue_nums: i32,
    /// Deliveries after the first before a message goes to the dead-letter topic.
    #[serde(default = "default_retry_max_times")]
    #[schemars(range(min = 0))]
    pub retry_max_times: i32,
    /// When a failed message is delivered again.
    #[serde(default)]
    pub group_retry_policy: GroupRetryPolicy,
    /// Broker to consume from: 0 is the master.
    #[serde(default)]
    pub broker_id: i64,
    /// Broker to switch to when the consumer falls behind.
    #[serde(default = "default_which_broker_when_consume_slowly")]
    pub which_broker_when_consume_slowly: i64,
    /// Whether consumers are told when the group's membership changes.
    #[serde(default = "yes")]
    pub notify_consumer_ids_changed_enable: bool,
    /// Broker-internal flag bits.
    #[serde(default)]
    pub group_sys_flag: i32,
    /// Minutes a push consumer may take for one message.
    #[serde(default = "default_consume_timeout_minute")]
    #[schemars(range(min = 1))]
    pub consume_timeout_minute: i32,
    /// Subscriptions declared for the group (RocketMQ keeps a set; absent when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscription_data_set: Vec<SimpleSubscriptionData>,
    /// String attributes (RocketMQ defines none for groups yet).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Fields of newer brokers that this crate does not know, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One subscription of a group: a topic and the filter applied to it
/// (RocketMQ's `SimpleSubscriptionData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimpleSubscriptionData {
    /// The subscribed topic.
    #[schemars(length(min = 1, max = RETRY_OR_DLQ_TOPIC_MAX_LEN), pattern(NAME_PATTERN))]
    pub topic: String,
    /// `TAG` or `SQL92`.
    #[serde(default = "default_expression_type")]
    pub expression_type: String,
    /// The filter: tags such as `tagA || tagB`, or an SQL92 condition; `*` takes all.
    #[serde(default = "default_expression")]
    pub expression: String,
    /// Version stamp of the subscription, set by the client.
    #[serde(default)]
    pub version: i64,
    /// Fields of newer brokers that this crate does not know, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn yes() -> bool {
    true
}

fn default_retry_queue_nums() -> i32 {
    1
}

fn default_retry_max_times() -> i32 {
    16
}

fn default_which_broker_when_consume_slowly() -> i64 {
    1
}

fn default_consume_timeout_minute() -> i32 {
    15
}

fn default_expression_type() -> String {
    EXPRESSION_TYPE_TAG.to_string()
}

fn default_expression() -> String {
    SUBSCRIBE_ALL.to_string()
}

impl SubscriptionGroupConfig {
    /// A group named `group_name` with every other field at RocketMQ's default.
    pub fn new(group_name: impl Into<String>) -> Self {
        Self {
            group_name: group_name.into(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: default_retry_queue_nums(),
            retry_max_times: default_retry_max_times(),
            group_retry_policy: GroupRetryPolicy::default(),
            broker_id: 0,
            which_broker_when_consume_slowly: default_which_broker_when_consume_slowly(),
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: default_consume_timeout_minute(),
            subscription_data_set: Vec::new(),
            attributes: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Checks the config against RocketMQ's rules; the error names the field.
    pub fn validate(&self, opts: ValidateOptions) -> Result<(), ValidationError> {
        validate_group_name(&self.group_name, opts)?;
        check_range(
            "retryQueueNums",
            self.retry_queue_nums.into(),
            0,
            MAX_QUEUE_NUMS.into(),
        )?;
        check_range(
            "retryMaxTimes",
            self.retry_max_times.into(),
            0,
            i32::MAX.into(),
        )?;
        check_range(
            "consumeTimeoutMinute",
            self.consume_timeout_minute.into(),
            1,
            i32::MAX.into(),
        )?;
        self.group_retry_policy
            .validate()
            .map_err(|e| e.within("groupRetryPolicy"))?;
        for (index, subscription) in self.subscription_data_set.iter().enumerate() {
            let field = format!("subscriptionDataSet[{index}]");
            subscription.validate().map_err(|e| e.within(&field))?;
            // RocketMQ keeps a set keyed by topic, type and expression.
            let earlier = &self.subscription_data_set[..index];
            if earlier.iter().any(|other| other.same_filter(subscription)) {
                return Err(ValidationError::Duplicate { field });
            }
        }
        check_group_attributes(&self.attributes)
    }

    /// Checks that `groupName` equals the name in the request's URL path.
    pub fn check_path_name(&self, path_name: &str) -> Result<(), ValidationError> {
        check_name_matches_path("groupName", path_name, &self.group_name)
    }
}

impl SimpleSubscriptionData {
    /// A subscription to every message of `topic`.
    pub fn all_of(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            expression_type: default_expression_type(),
            expression: default_expression(),
            version: 0,
            extra: BTreeMap::new(),
        }
    }

    /// Whether both select the same messages (RocketMQ's `equals`: the
    /// version does not count).
    fn same_filter(&self, other: &Self) -> bool {
        self.topic == other.topic
            && self.expression_type == other.expression_type
            && self.expression == other.expression
    }

    /// Fields are named relative to the subscription (`topic`).
    fn validate(&self) -> Result<(), ValidationError> {
        // Subscribing to a system or retry topic is normal: only the syntax counts.
        check_topic_syntax("topic", &self.topic)?;
        let allowed = [EXPRESSION_TYPE_TAG, EXPRESSION_TYPE_SQL92];
        if !allowed.contains(&self.expression_type.as_str()) {
            return Err(ValidationError::NotOneOf {
                field: "expressionType".to_string(),
                value: shown(&self.expression_type),
                allowed: allowed.join(", "),
            });
        }
        if self.expression.trim().is_empty() {
            return Err(ValidationError::Blank {
                field: "expression".to_string(),
            });
        }
        Ok(())
    }
}
