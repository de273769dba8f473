//! JSON Schemas (draft 2020-12) of the metadata types, generated from the
//! types themselves. The checked-in copies under `schemas/json/` are kept
//! equal to these by a test (`UPDATE_SCHEMAS=1` rewrites them).

use serde_json::Value;

use crate::subscription::SubscriptionGroupConfig;
use crate::topic::TopicConfig;

/// The JSON Schema of a [`TopicConfig`].
pub fn topic_config_schema() -> Value {
    schemars::schema_for!(TopicConfig).to_value()
}

/// The JSON Schema of a [`SubscriptionGroupConfig`].
pub fn subscription_group_config_schema() -> Value {
    schemars::schema_for!(SubscriptionGroupConfig).to_value()
}
