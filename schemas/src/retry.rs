//! A group's retry schedule (RocketMQ's `GroupRetryPolicy`): how long a
//! failed message waits before it is delivered again.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{check_range, ValidationError};

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// RocketMQ's default redelivery delays in milliseconds, its old delay levels:
/// 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h.
pub const DEFAULT_RETRY_DELAYS_MS: [i64; 18] = [
    SECOND_MS,
    5 * SECOND_MS,
    10 * SECOND_MS,
    30 * SECOND_MS,
    MINUTE_MS,
    2 * MINUTE_MS,
    3 * MINUTE_MS,
    4 * MINUTE_MS,
    5 * MINUTE_MS,
    6 * MINUTE_MS,
    7 * MINUTE_MS,
    8 * MINUTE_MS,
    9 * MINUTE_MS,
    10 * MINUTE_MS,
    20 * MINUTE_MS,
    30 * MINUTE_MS,
    HOUR_MS,
    2 * HOUR_MS,
];

/// Which of the two schedules a group uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GroupRetryPolicyType {
    /// Delays grow geometrically: `initial * multiplier^n`, capped at `max`.
    Exponential,
    /// Delays follow a fixed list.
    #[default]
    Customized,
}

/// A group's retry schedule, as RocketMQ stores it: the chosen type plus
/// either schedule's parameters. A missing schedule means RocketMQ's default
/// list of delays (see `GroupRetryPolicy::effective`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupRetryPolicy {
    /// The schedule in force.
    #[serde(rename = "type", default)]
    pub policy_type: GroupRetryPolicyType,
    /// Parameters of the fixed-list schedule, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customized_retry_policy: Option<CustomizedRetryPolicy>,
    /// Parameters of the geometric schedule, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_retry_policy: Option<ExponentialRetryPolicy>,
    /// Fields of newer brokers that this crate does not know, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A fixed list of redelivery delays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomizedRetryPolicy {
    /// Delays in milliseconds; redelivery `n` waits `next[min(n + 2, len - 1)]`.
    #[serde(default = "default_next")]
    #[schemars(length(min = 1))]
    pub next: Vec<i64>,
    /// Fields of newer brokers that this crate does not know, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A geometric schedule of redelivery delays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExponentialRetryPolicy {
    /// First delay in milliseconds (RocketMQ: 5 s).
    #[serde(default = "default_initial_ms")]
    #[schemars(range(min = 0))]
    pub initial: i64,
    /// Longest delay in milliseconds (RocketMQ: 2 h).
    #[serde(default = "default_max_ms")]
    #[schemars(range(min = 0))]
    pub max: i64,
    /// Factor between consecutive delays (RocketMQ: 2).
    #[serde(default = "default_multiplier")]
    #[schemars(range(min = 1))]
    pub multiplier: i64,
    /// Fields of newer brokers that this crate does not know, kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The schedule a group actually follows, after RocketMQ's fallbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectiveRetryPolicy<'a> {
    /// A fixed list of delays in milliseconds.
    Customized(&'a [i64]),
    /// A geometric schedule.
    Exponential(&'a ExponentialRetryPolicy),
}

fn default_next() -> Vec<i64> {
    DEFAULT_RETRY_DELAYS_MS.to_vec()
}

fn default_initial_ms() -> i64 {
    5 * SECOND_MS
}

fn default_max_ms() -> i64 {
    2 * HOUR_MS
}

fn default_multiplier() -> i64 {
    2
}

impl Default for CustomizedRetryPolicy {
    fn default() -> Self {
        Self {
            next: default_next(),
            extra: BTreeMap::new(),
        }
    }
}

impl Default for ExponentialRetryPolicy {
    fn default() -> Self {
        Self {
            initial: default_initial_ms(),
            max: default_max_ms(),
            multiplier: default_multiplier(),
            extra: BTreeMap::new(),
        }
    }
}

impl GroupRetryPolicy {
    /// The schedule in force: the chosen type's parameters, or, as in
    /// RocketMQ's `getRetryPolicy`, the default list when they are missing.
    pub fn effective(&self) -> EffectiveRetryPolicy<'_> {
        match (
            self.policy_type,
            &self.exponential_retry_policy,
            &self.customized_retry_policy,
        ) {
            (GroupRetryPolicyType::Exponential, Some(exponential), _) => {
                EffectiveRetryPolicy::Exponential(exponential)
            }
            (GroupRetryPolicyType::Customized, _, Some(customized)) => {
                EffectiveRetryPolicy::Customized(&customized.next)
            }
            _ => EffectiveRetryPolicy::Customized(&DEFAULT_RETRY_DELAYS_MS),
        }
    }

    /// Checks both schedules' parameters, where present. Fields are named
    /// relative to the policy (`customizedRetryPolicy.next`).
    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        if let Some(customized) = &self.customized_retry_policy {
            // RocketMQ indexes the list without a guard: an empty one throws.
            if customized.next.is_empty() {
                return Err(ValidationError::Malformed {
                    field: "customizedRetryPolicy.next".to_string(),
                    value: "[]".to_string(),
                    reason: "the list of delays must not be empty".to_string(),
                });
            }
            for (index, &delay_ms) in customized.next.iter().enumerate() {
                let field = format!("customizedRetryPolicy.next[{index}]");
                check_range(&field, delay_ms, 0, i64::MAX)?;
            }
        }
        if let Some(exponential) = &self.exponential_retry_policy {
            let field = |name: &str| format!("exponentialRetryPolicy.{name}");
            check_range(&field("initial"), exponential.initial, 0, i64::MAX)?;
            check_range(
                &field("max"),
                exponential.max,
                exponential.initial,
                i64::MAX,
            )?;
            check_range(&field("multiplier"), exponential.multiplier, 1, i64::MAX)?;
        }
        Ok(())
    }
}
