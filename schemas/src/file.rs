//! The broker's own metadata files, `topics.json` and
//! `subscriptionGroup.json`, for import and export.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{shown, ValidationError};
use crate::name::ValidateOptions;
use crate::subscription::SubscriptionGroupConfig;
use crate::topic::TopicConfig;

/// Version stamp of a broker's metadata table (RocketMQ's `DataVersion`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    /// Broker state epoch; RocketMQ 4 files do not have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_version: Option<i64>,
    /// Time of the last change, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub timestamp: i64,
    /// Number of changes so far.
    #[serde(default)]
    pub counter: i64,
    /// Fields of newer brokers that this crate does not know, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A broker's `topics.json`: every topic's config by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigFile {
    /// Topic configs, keyed by topic name.
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// Version of the table.
    #[serde(default)]
    pub data_version: DataVersion,
    /// Fields of newer brokers that this crate does not know, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A broker's `subscriptionGroup.json`: every consumer group's config by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupFile {
    /// Group configs, keyed by group name.
    #[serde(default)]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// Per group, per topic: forbidden permission bits; RocketMQ 4 files do not have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbidden_table: Option<BTreeMap<String, BTreeMap<String, i32>>>,
    /// Version of the table.
    #[serde(default)]
    pub data_version: DataVersion,
    /// Fields of newer brokers that this crate does not know, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl TopicConfigFile {
    /// Checks every topic and that each sits under its own name; fields are
    /// named from the file's root (`topicConfigTable.T.perm`).
    pub fn validate(&self, opts: ValidateOptions) -> Result<(), ValidationError> {
        for (name, config) in &self.topic_config_table {
            let parent = format!("topicConfigTable.{name}");
            config.validate(opts).map_err(|e| e.within(&parent))?;
            check_table_key(&parent, "topicName", name, &config.topic_name)?;
        }
        Ok(())
    }
}

impl SubscriptionGroupFile {
    /// Checks every group and that each sits under its own name; fields are
    /// named from the file's root (`subscriptionGroupTable.G.retryMaxTimes`).
    pub fn validate(&self, opts: ValidateOptions) -> Result<(), ValidationError> {
        for (name, config) in &self.subscription_group_table {
            let parent = format!("subscriptionGroupTable.{name}");
            config.validate(opts).map_err(|e| e.within(&parent))?;
            check_table_key(&parent, "groupName", name, &config.group_name)?;
        }
        Ok(())
    }
}

fn check_table_key(
    parent: &str,
    name_field: &str,
    table_key: &str,
    name: &str,
) -> Result<(), ValidationError> {
    if table_key == name {
        Ok(())
    } else {
        Err(ValidationError::Malformed {
            field: format!("{parent}.{name_field}"),
            value: shown(name),
            reason: format!("must equal its table key {:?}", shown(table_key)),
        })
    }
}
