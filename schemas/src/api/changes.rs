//! `/v1/changes` and `/v1/topic/records`: the compacted topic's records.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::Revision;

/// One record of the compacted topic: a put or a delete of one key.
///
/// A delete shows `"value": null` and `"deleted": true`; a put of the JSON
/// value `null` shows `"value": null` too, with `"deleted": false` and a
/// version of 1 or more.
///
/// The records of one write (a single put or delete: one record; a
/// transaction, or a lease's end: one per key) have consecutive offsets
/// and the same `revision`, the offset of the last of them, which is the
/// `mod_revision` they gave their keys. Pages and long-poll answers hold
/// whole writes; a client resumes after a `revision`.
///
/// ```
/// let delete: schemas::api::ChangeRecord = serde_json::from_str(
///     r#"{"offset":9,"revision":9,"timestamp_ms":1,"key":"a/b","value":null,"deleted":true,"create_revision":7,"version":0}"#,
/// ).unwrap();
/// assert!(delete.deleted && delete.value.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "ChangeRecord")]
pub struct ChangeRecord<V = serde_json::Value> {
    /// The record's offset in the topic.
    pub offset: Revision,
    /// The revision of the write the record belongs to: the offset of its
    /// last record.
    pub revision: Revision,
    /// When the write was proposed, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The key written.
    pub key: String,
    /// The value written; `null` for a delete.
    pub value: Option<V>,
    /// Whether the record deletes its key (a tombstone).
    #[serde(default)]
    pub deleted: bool,
    /// The key's `create_revision` at this write.
    pub create_revision: Revision,
    /// The key's version after this write; 0 for a delete.
    pub version: u64,
}

/// One answer of the change feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "ChangesPage")]
pub struct ChangesPage<V = serde_json::Value> {
    /// The latest record of each key changed after `from`, in offset order,
    /// whole writes only.
    pub records: Vec<ChangeRecord<V>>,
    /// Send this as `from` next: the revision of the last write read.
    pub next: Revision,
    /// Whether the page stopped at `limit` before the end of the topic:
    /// ask again at once.
    #[serde(default)]
    pub more: bool,
}
