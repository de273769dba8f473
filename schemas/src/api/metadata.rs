//! `/v1/topics` and `/v1/subscriptions`: what the two kinds of RocketMQ
//! metadata share, for the server, the client and `kvctl` alike.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::ErrorCode;
use crate::{
    validate_group_name, validate_topic_name, SubscriptionGroupConfig, TopicConfig,
    ValidateOptions, ValidationError,
};

/// A kind of typed metadata: its routes, keys, names and rules.
///
/// ```
/// use schemas::api::MetadataKind;
/// use schemas::TopicConfig;
///
/// fn path_of<T: MetadataKind>(config: &T) -> String {
///     format!("/v1/{}/{}", T::COLLECTION, config.name())
/// }
/// assert_eq!(path_of(&TopicConfig::new("orders")), "/v1/topics/orders");
/// ```
pub trait MetadataKind: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The collection: the path segment after `/v1/` and the list's field.
    const COLLECTION: &'static str;
    /// The prefix of its keys in the store.
    const KEY_PREFIX: &'static str;
    /// What one is called in messages (`topic`, `subscription group`).
    const NOUN: &'static str;
    /// Its short name in reports and tables (`topic`, `group`).
    const KIND: &'static str;
    /// The error code of a missing one.
    const NOT_FOUND: ErrorCode;
    /// The table of a broker's file holding this kind (`topicConfigTable`).
    const BROKER_TABLE: &'static str;
    /// The JSON field holding the name (`topicName`).
    const NAME_FIELD: &'static str;
    /// One page of the collection's list.
    type List: Serialize + DeserializeOwned + JsonSchema;

    /// The config's name.
    fn name(&self) -> &str;
    /// Checks a name (from a path, or a file's table).
    fn validate_name(name: &str, options: ValidateOptions) -> Result<(), ValidationError>;
    /// Checks the whole config.
    fn validate(&self, options: ValidateOptions) -> Result<(), ValidationError>;
    /// Checks the body's name against the path's.
    fn check_path_name(&self, name: &str) -> Result<(), ValidationError>;
    /// Checks what may not change from the previous config.
    fn check_update_of(&self, _previous: &Self) -> Result<(), ValidationError> {
        Ok(())
    }
    /// A list page's configs, and whether more follow.
    fn list_items(list: Self::List) -> (Vec<Self>, bool)
    where
        Self: Sized;
}

/// One page of `GET /v1/topics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TopicList {
    /// The topics of the page, by name.
    pub topics: Vec<TopicConfig>,
    /// Whether more follow; ask again with `start_after` = the last name.
    pub more: bool,
}

/// One page of `GET /v1/subscriptions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionList {
    /// The groups of the page, by name.
    pub subscriptions: Vec<SubscriptionGroupConfig>,
    /// Whether more follow; ask again with `start_after` = the last name.
    pub more: bool,
}

impl MetadataKind for TopicConfig {
    const COLLECTION: &'static str = "topics";
    const KEY_PREFIX: &'static str = crate::TOPICS_PREFIX;
    const NOUN: &'static str = "topic";
    const KIND: &'static str = "topic";
    const NOT_FOUND: ErrorCode = ErrorCode::TopicNotFound;
    const BROKER_TABLE: &'static str = "topicConfigTable";
    const NAME_FIELD: &'static str = "topicName";
    type List = TopicList;

    fn name(&self) -> &str {
        &self.topic_name
    }
    fn validate_name(name: &str, options: ValidateOptions) -> Result<(), ValidationError> {
        validate_topic_name(name, options)
    }
    fn validate(&self, options: ValidateOptions) -> Result<(), ValidationError> {
        TopicConfig::validate(self, options)
    }
    fn check_path_name(&self, name: &str) -> Result<(), ValidationError> {
        TopicConfig::check_path_name(self, name)
    }
    fn check_update_of(&self, previous: &Self) -> Result<(), ValidationError> {
        TopicConfig::check_update_of(self, previous)
    }
    fn list_items(list: TopicList) -> (Vec<Self>, bool) {
        (list.topics, list.more)
    }
}

impl MetadataKind for SubscriptionGroupConfig {
    const COLLECTION: &'static str = "subscriptions";
    const KEY_PREFIX: &'static str = crate::SUBSCRIPTIONS_PREFIX;
    const NOUN: &'static str = "subscription group";
    const KIND: &'static str = "group";
    const NOT_FOUND: ErrorCode = ErrorCode::SubscriptionNotFound;
    const BROKER_TABLE: &'static str = "subscriptionGroupTable";
    const NAME_FIELD: &'static str = "groupName";
    type List = SubscriptionList;

    fn name(&self) -> &str {
        &self.group_name
    }
    fn validate_name(name: &str, options: ValidateOptions) -> Result<(), ValidationError> {
        validate_group_name(name, options)
    }
    fn validate(&self, options: ValidateOptions) -> Result<(), ValidationError> {
        SubscriptionGroupConfig::validate(self, options)
    }
    fn check_path_name(&self, name: &str) -> Result<(), ValidationError> {
        SubscriptionGroupConfig::check_path_name(self, name)
    }
    fn list_items(list: SubscriptionList) -> (Vec<Self>, bool) {
        (list.subscriptions, list.more)
    }
}

/// Whether a raw key belongs to the typed metadata, which only its own
/// validating routes write.
pub fn is_metadata_key(key: &str) -> bool {
    key.starts_with(crate::TOPICS_PREFIX) || key.starts_with(crate::SUBSCRIPTIONS_PREFIX)
}

/// The error code of a validation failure: one per kind of rule broken.
pub fn validation_code(error: &ValidationError) -> ErrorCode {
    match error {
        ValidationError::NotJson { .. } => ErrorCode::InvalidJson,
        ValidationError::Missing { .. } => ErrorCode::MissingField,
        ValidationError::WrongType { .. } => ErrorCode::InvalidField,
        ValidationError::Blank { .. } => ErrorCode::BlankField,
        ValidationError::IllegalCharacter { .. } => ErrorCode::IllegalCharacter,
        ValidationError::TooLong { .. } => ErrorCode::TooLong,
        ValidationError::OutOfRange { .. } => ErrorCode::OutOfRange,
        ValidationError::NotOneOf { .. } => ErrorCode::NotAllowedValue,
        ValidationError::Malformed { .. } => ErrorCode::Malformed,
        ValidationError::SystemName { .. } => ErrorCode::SystemName,
        ValidationError::PathMismatch { .. } => ErrorCode::NameMismatch,
        ValidationError::Unchangeable { .. } => ErrorCode::Unchangeable,
        ValidationError::Duplicate { .. } => ErrorCode::Duplicate,
    }
}
