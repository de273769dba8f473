//! `/v1/kv`: a key as the API shows it, what a write answers, a list page.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::Revision;

/// A key, its value and its revisions.
///
/// `V` is the value's type: any JSON ([`serde_json::Value`]) for a client;
/// the server writes the stored text as it is.
///
/// ```
/// let entry: schemas::api::KeyValue = serde_json::from_str(
///     r#"{"key":"app/config","value":{"retention":"7d"},"create_revision":2,"mod_revision":5,"version":2}"#,
/// ).unwrap();
/// assert_eq!(entry.value["retention"], "7d");
/// assert_eq!((entry.create_revision, entry.mod_revision, entry.version), (2, 5, 2));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "KeyValue")]
pub struct KeyValue<V = serde_json::Value> {
    /// The key.
    pub key: String,
    /// The value: any JSON.
    pub value: V,
    /// Revision of the write that created the key (since its last delete).
    pub create_revision: Revision,
    /// Revision of the key's last write; `If-Match` compares with this.
    pub mod_revision: Revision,
    /// 1 at creation, +1 per write.
    pub version: u64,
    /// The lease the key is attached to (it is deleted when the lease
    /// ends); absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
}

impl KeyValue {
    /// The value as a `T`.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Config { retention: String }
    ///
    /// let entry = schemas::api::KeyValue {
    ///     key: "app/config".into(),
    ///     value: serde_json::json!({"retention": "7d"}),
    ///     create_revision: 2,
    ///     mod_revision: 2,
    ///     version: 1,
    ///     lease: None,
    /// };
    /// let config: Config = entry.value_as().unwrap();
    /// assert_eq!(config.retention, "7d");
    /// ```
    pub fn value_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.value)
    }
}

/// What a write did.
///
/// ```
/// let written: schemas::api::WriteResult =
///     serde_json::from_str(r#"{"key":"a/b","revision":7,"version":1,"created":true}"#).unwrap();
/// assert!(written.created);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WriteResult {
    /// The key written.
    pub key: String,
    /// The revision of the write: the key's new `mod_revision`.
    pub revision: Revision,
    /// The key's version after the write (0 after a delete).
    pub version: u64,
    /// Whether the write created the key.
    pub created: bool,
}

/// One page of `GET /v1/kv?prefix=…`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "KeyList")]
pub struct KeyList<V = serde_json::Value> {
    /// The keys of the page, in key order.
    pub entries: Vec<KeyValue<V>>,
    /// Whether more keys follow; ask again with `start_after` = the last key.
    pub more: bool,
}
