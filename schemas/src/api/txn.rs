//! `POST /v1/txn`: a multi-key transaction, as in etcd. If every compare
//! holds, the `success` ops run, else the `failure` ops; either way as one
//! write with one revision, which readers, watchers and the change feed see
//! whole or not at all.
//!
//! ```
//! use schemas::api::{parse_txn, CompareTarget, TxnOp};
//!
//! let txn = parse_txn(br#"{
//!     "compare": [{"key": "accounts/a", "target": "mod_revision", "op": "=", "value": 41}],
//!     "success": [
//!         {"put": {"key": "accounts/a", "value": 90}},
//!         {"put": {"key": "accounts/b", "value": 110}}
//!     ],
//!     "failure": [{"get": {"key": "accounts/a"}}]
//! }"#).unwrap();
//! txn.validate().unwrap();
//! assert_eq!(txn.compare[0].target, CompareTarget::ModRevision);
//! assert!(matches!(&txn.success[1], TxnOp::Put(put) if put.key == "accounts/b"));
//! ```
//!
//! The answer says which branch ran, and what each of its ops did:
//!
//! ```
//! use schemas::api::{TxnOpResult, TxnResponse};
//!
//! let answer: TxnResponse = serde_json::from_str(
//!     r#"{"succeeded":true,"revision":44,"results":[{"put":{"revision":44}},{"put":{"revision":44}}]}"#,
//! ).unwrap();
//! assert_eq!(answer.results[1], TxnOpResult::Put { revision: 44 });
//! assert!(!answer.deduplicated);
//! ```
//!
//! The checks ([`TxnRequest::validate`]) name the field they refuse as a
//! JSON path (`success[3].put.key`, `compare[0].value`); the codes:
//!
//! * `too_many_ops`: more than [`MAX_TXN_OPS`] compares, or ops in a branch;
//! * `invalid_key`: a key that [`crate::validate_key`] refuses, or a bad
//!   prefix (see [`KeyOrPrefix`]);
//! * `invalid_lease_id`: a put's `lease` of 0;
//! * `reserved_key`: a put or delete that reaches `topics/` or
//!   `subscriptions/` keys, which only the typed metadata routes write;
//! * `duplicate_key`: a branch that writes a key twice;
//! * `invalid_field`: a compare whose value is of the wrong JSON type for its
//!   target, or an op its target does not take; also what [`parse_txn`]
//!   reports for an unknown field, target, op or kind of op.

mod check;

use std::borrow::Cow;

use schemars::{JsonSchema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::api::{ErrorCode, FieldError, KeyValue, LeaseId, Revision};

pub use check::{check_read_prefix, MAX_INTERNAL_TXN_OPS, MAX_TXN_OPS};

/// The body of `POST /v1/txn`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    /// Conditions on keys; all must hold for `success` to run.
    #[serde(default)]
    pub compare: Vec<Compare>,
    /// The ops run when every compare holds (also when there is none).
    #[serde(default)]
    pub success: Vec<TxnOp>,
    /// The ops run when a compare does not hold.
    #[serde(default)]
    pub failure: Vec<TxnOp>,
}

impl TxnRequest {
    /// Checks the limits and rules of the module doc; the error names the
    /// first field that breaks one.
    pub fn validate(&self) -> Result<(), FieldError> {
        check::validate(self, MAX_TXN_OPS)
    }

    /// [`validate`](Self::validate) with at most `max_ops` compares and
    /// ops per branch: a node's own transactions use
    /// [`MAX_INTERNAL_TXN_OPS`].
    pub fn validate_within(&self, max_ops: usize) -> Result<(), FieldError> {
        check::validate(self, max_ops)
    }
}

/// Reads a [`TxnRequest`] from a request body. Malformed JSON is
/// `invalid_json` about the whole body; JSON of the wrong shape (an unknown
/// field, target, op or kind of op, a wrong type) is `invalid_field`, a
/// missing field `missing_field` and a field given twice `duplicate`, each
/// naming the field's JSON path; a body that is not a JSON object is
/// `invalid_json`. It does not
/// [validate](TxnRequest::validate).
///
/// ```
/// use schemas::api::{parse_txn, ErrorCode};
///
/// let refused = parse_txn(br#"{"compare": [{"key": "a", "target": "size", "op": "=", "value": 1}]}"#)
///     .unwrap_err();
/// assert_eq!((refused.code, refused.field.as_str()), (ErrorCode::InvalidField, "compare[0].target"));
/// ```
pub fn parse_txn(body: &[u8]) -> Result<TxnRequest, FieldError> {
    // serde reads a struct from an array too (`[]` would be an empty
    // transaction); the contract is an object.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(FieldError::new(
            ErrorCode::InvalidJson,
            "",
            "the body must be a JSON object: {\"compare\", \"success\", \"failure\"}",
        ));
    }
    crate::from_json(body).map_err(|error| {
        let error = FieldError::from(error);
        // serde says only where it stopped in an op that holds none of
        // put, get and delete, or more than one.
        if error.code == ErrorCode::InvalidField && is_op_path(&error.field) {
            let message = format!(
                "{}: an op is an object with exactly one of \"put\", \"get\" and \"delete\"",
                error.field
            );
            return FieldError::new(ErrorCode::InvalidField, error.field, message);
        }
        error
    })
}

/// Whether `field` is the path of one op of a branch: `success[3]`.
fn is_op_path(field: &str) -> bool {
    ["success[", "failure["].iter().any(|branch| {
        field
            .strip_prefix(branch)
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|index| {
                !index.is_empty() && index.bytes().all(|byte| byte.is_ascii_digit())
            })
    })
}

/// A condition on one key.
///
/// A missing key has version, create and mod revision 0, no lease (0), and
/// no value: a compare of its `value` never holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// The key compared.
    pub key: String,
    /// What of the key is compared.
    pub target: CompareTarget,
    /// How it is compared with `value`.
    pub op: CompareOp,
    /// What it is compared with: a boolean for `exists`; a number of 0 or
    /// more for `version`, `create_revision`, `mod_revision` and `lease`
    /// (0: no lease); any JSON for `value`, which `=` and `!=` compare as
    /// JSON (numbers exactly, by their decimal value), and `<` and `>` only
    /// as two numbers or two strings.
    pub value: JsonText,
}

/// What of a key a compare looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompareTarget {
    /// Its value.
    Value,
    /// Its version: 1 at creation, +1 per put, 0 when missing.
    Version,
    /// The revision that created it (0 when missing).
    CreateRevision,
    /// The revision of its last write (0 when missing).
    ModRevision,
    /// The lease it is attached to (0 when none).
    Lease,
    /// Whether it exists (`=` or `!=` a boolean).
    Exists,
}

impl CompareTarget {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareTarget::Value => "value",
            CompareTarget::Version => "version",
            CompareTarget::CreateRevision => "create_revision",
            CompareTarget::ModRevision => "mod_revision",
            CompareTarget::Lease => "lease",
            CompareTarget::Exists => "exists",
        }
    }
}

/// How a compare compares: `the key's target <op> value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CompareOp {
    /// Equal.
    #[serde(rename = "=")]
    Equal,
    /// Not equal.
    #[serde(rename = "!=")]
    NotEqual,
    /// Less than.
    #[serde(rename = "<")]
    Less,
    /// Greater than.
    #[serde(rename = ">")]
    Greater,
}

impl CompareOp {
    /// The operator on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Equal => "=",
            CompareOp::NotEqual => "!=",
            CompareOp::Less => "<",
            CompareOp::Greater => ">",
        }
    }
}

/// One op of a branch, run in order; a `get` sees the writes of the ops
/// before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxnOp {
    /// `{"put": {"key", "value", "lease"?}}`: write a key.
    Put(TxnPut),
    /// `{"delete": {"key"}}` or `{"delete": {"prefix"}}`: delete a key, or
    /// every key starting with a prefix.
    Delete(KeyOrPrefix),
    /// `{"get": {"key"}}` or `{"get": {"prefix"}}`: read a key, or the keys
    /// starting with a prefix (one page).
    Get(KeyOrPrefix),
}

/// A put of a transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TxnPut {
    /// The key written.
    pub key: String,
    /// The value: any JSON, kept as the text sent, as a `PUT` keeps its
    /// body (a number past 64 bits or `1e400` is stored as written).
    pub value: JsonText,
    /// The lease to attach the key to; without one, the key is detached
    /// from any lease it had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseId>,
}

/// One JSON value kept as its text: what a client sent is what is stored
/// and read back, number for number, with no round trip through
/// `serde_json::Value` (which turns integers past 64 bits into floats and
/// refuses `1e400`).
///
/// ```
/// use schemas::api::JsonText;
///
/// let text: JsonText = serde_json::from_str("123456789012345678901234567890").unwrap();
/// assert_eq!(text.get(), "123456789012345678901234567890");
/// assert_eq!(JsonText::of(&[1, 2]).unwrap().get(), "[1,2]");
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonText(Box<serde_json::value::RawValue>);

impl JsonText {
    /// `value` written as JSON.
    pub fn of<V: Serialize + ?Sized>(value: &V) -> serde_json::Result<JsonText> {
        serde_json::value::to_raw_value(value).map(JsonText)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The value as an integer of 0 or more, if it is one (`5`; not `5.0`
    /// or `5e0`, as `serde_json::Value::as_u64` reads them).
    pub fn as_u64(&self) -> Option<u64> {
        serde_json::from_str(self.get()).ok()
    }

    /// The value as a boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        serde_json::from_str(self.get()).ok()
    }

    /// Whether the value is a number.
    pub fn is_number(&self) -> bool {
        matches!(self.first_byte(), Some(b'-' | b'0'..=b'9'))
    }

    /// Whether the value is a string.
    pub fn is_string(&self) -> bool {
        self.first_byte() == Some(b'"')
    }

    fn first_byte(&self) -> Option<u8> {
        self.get().trim_start().bytes().next()
    }
}

impl From<u64> for JsonText {
    fn from(number: u64) -> JsonText {
        JsonText::of(&number).expect("a number is JSON")
    }
}

impl From<bool> for JsonText {
    fn from(value: bool) -> JsonText {
        JsonText::of(&value).expect("a boolean is JSON")
    }
}

impl std::fmt::Display for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

impl PartialEq for JsonText {
    /// The same text (not the same JSON: `1` and `1.0` differ).
    fn eq(&self, other: &JsonText) -> bool {
        self.get() == other.get()
    }
}

impl JsonSchema for JsonText {
    fn schema_name() -> Cow<'static, str> {
        serde_json::Value::schema_name()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> schemars::Schema {
        serde_json::Value::json_schema(generator)
    }
}

/// What a `delete` or `get` reaches: `{"key": K}` or `{"prefix": P}`,
/// exactly one of them.
///
/// A prefix matches keys as a string (`app/c` matches `app/config`). It may
/// be at most [`crate::MAX_KEY_BYTES`] long, hold no control character and
/// not start with `/`. A `get` may give the empty prefix (every key,
/// internal keys aside); a `delete` may not, so no transaction wipes the
/// store by accident.
///
/// ```
/// use schemas::api::KeyOrPrefix;
///
/// let prefix: KeyOrPrefix = serde_json::from_str(r#"{"prefix": "brokers/"}"#).unwrap();
/// assert_eq!(prefix, KeyOrPrefix::Prefix("brokers/".into()));
/// assert!(serde_json::from_str::<KeyOrPrefix>(r#"{"key": "a", "prefix": "b"}"#).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "KeyOrPrefixFields", into = "KeyOrPrefixFields")]
pub enum KeyOrPrefix {
    /// One key.
    Key(String),
    /// Every key that starts with this.
    Prefix(String),
}

/// [`KeyOrPrefix`] as JSON: an object with `key` or `prefix`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyOrPrefixFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
}

impl TryFrom<KeyOrPrefixFields> for KeyOrPrefix {
    type Error = &'static str;

    fn try_from(fields: KeyOrPrefixFields) -> Result<Self, Self::Error> {
        match (fields.key, fields.prefix) {
            (Some(key), None) => Ok(KeyOrPrefix::Key(key)),
            (None, Some(prefix)) => Ok(KeyOrPrefix::Prefix(prefix)),
            (Some(_), Some(_)) => Err("give \"key\" or \"prefix\", not both"),
            (None, None) => Err("give \"key\" or \"prefix\""),
        }
    }
}

impl From<KeyOrPrefix> for KeyOrPrefixFields {
    fn from(target: KeyOrPrefix) -> Self {
        match target {
            KeyOrPrefix::Key(key) => KeyOrPrefixFields {
                key: Some(key),
                prefix: None,
            },
            KeyOrPrefix::Prefix(prefix) => KeyOrPrefixFields {
                key: None,
                prefix: Some(prefix),
            },
        }
    }
}

impl JsonSchema for KeyOrPrefix {
    fn schema_name() -> Cow<'static, str> {
        "KeyOrPrefix".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> schemars::Schema {
        let only = |field: &str, description: &str| {
            serde_json::json!({
                "type": "object",
                "properties": { field: { "type": "string", "description": description } },
                "required": [field],
                "additionalProperties": false,
            })
        };
        schemars::json_schema!({
            "description": "One key, or every key that starts with a prefix: exactly one of `key` and `prefix`.",
            "oneOf": [
                only("key", "One key."),
                only("prefix", "Every key that starts with this (a delete's may not be empty)."),
            ],
        })
    }
}

/// The answer of `POST /v1/txn` (200 whichever branch ran). `V` is the
/// type of the values read, as in [`KeyValue`]: any JSON for a client; the
/// server writes the stored text as it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "TxnResponse")]
pub struct TxnResponse<V = serde_json::Value> {
    /// Whether every compare held, so `success` ran (else `failure` did).
    pub succeeded: bool,
    /// The store's revision after the transaction: the revision of its
    /// writes, or the revision it read at when it wrote nothing.
    pub revision: Revision,
    /// One result per op of the branch that ran, in order.
    pub results: Vec<TxnOpResult<V>>,
    /// Whether this answers a retry (the same `Idempotency-Key`) of a
    /// transaction already applied: then `results` is empty, as gets are
    /// not remembered.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deduplicated: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// What one op of a transaction did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "TxnOpResult")]
pub enum TxnOpResult<V = serde_json::Value> {
    /// `{"put": {"revision"}}`.
    Put {
        /// The key's new `mod_revision`: the transaction's revision.
        revision: Revision,
    },
    /// `{"delete": {"deleted"}}`.
    Delete {
        /// How many keys it deleted.
        deleted: u64,
    },
    /// `{"get": {"kvs", "more"}}`.
    Get {
        /// The keys read, in key order; none when the key is missing.
        kvs: Vec<KeyValue<V>>,
        /// Whether the read was cut short: a prefix with more keys than
        /// one page holds, or the transaction's gets past the 4 MiB of
        /// values they answer together (this get and every one after it).
        /// Read the rest with `GET /v1/kv`.
        more: bool,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The code and field `parse_txn` refuses the body with.
    fn refusal(body: &str) -> (ErrorCode, String) {
        let error = parse_txn(body.as_bytes()).expect_err("the body is refused");
        (error.code, error.field)
    }

    fn refused(code: ErrorCode, field: &str) -> (ErrorCode, String) {
        (code, field.to_string())
    }

    /// An op holding none of put, get and delete, or two of them, is
    /// refused saying what an op is, not where serde stopped; a field
    /// given twice is `duplicate`.
    #[test]
    fn an_op_of_no_kind_or_two_kinds_is_refused_saying_what_an_op_is() {
        for body in [
            r#"{"success": [{}]}"#,
            r#"{"failure": [{"get": {"key": "a"}}, {"put": {"key": "a", "value": 1}, "get": {"key": "a"}}]}"#,
        ] {
            let error = parse_txn(body.as_bytes()).expect_err(body);
            assert_eq!(error.code, ErrorCode::InvalidField, "{body}");
            assert!(
                error
                    .message
                    .contains("exactly one of \"put\", \"get\" and \"delete\""),
                "{body}: {}",
                error.message
            );
            assert!(error.message.starts_with(&error.field), "{}", error.message);
        }
        assert_eq!(
            refusal(r#"{"success": [{}]}"#),
            refused(ErrorCode::InvalidField, "success[0]")
        );
        assert_eq!(
            refusal(r#"{"success": [], "success": []}"#),
            refused(ErrorCode::Duplicate, "success")
        );
    }

    #[test]
    fn every_part_of_a_transaction_is_optional() {
        assert_eq!(parse_txn(b"{}").unwrap(), TxnRequest::default());
    }

    #[test]
    fn ops_read_as_the_issue_writes_them() {
        let txn = parse_txn(
            br#"{"success": [
                {"put": {"key": "a", "value": [1], "lease": 9}},
                {"delete": {"key": "b"}},
                {"delete": {"prefix": "c/"}},
                {"get": {"key": "d"}},
                {"get": {"prefix": ""}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            txn.success,
            [
                TxnOp::Put(TxnPut {
                    key: "a".into(),
                    value: JsonText::of(&[1]).unwrap(),
                    lease: Some(9)
                }),
                TxnOp::Delete(KeyOrPrefix::Key("b".into())),
                TxnOp::Delete(KeyOrPrefix::Prefix("c/".into())),
                TxnOp::Get(KeyOrPrefix::Key("d".into())),
                TxnOp::Get(KeyOrPrefix::Prefix("".into())),
            ]
        );
    }

    #[test]
    fn a_transaction_survives_a_round_trip_through_json() {
        let txn = TxnRequest {
            compare: vec![Compare {
                key: "a".into(),
                target: CompareTarget::CreateRevision,
                op: CompareOp::NotEqual,
                value: JsonText::of(&0).unwrap(),
            }],
            success: vec![TxnOp::Put(TxnPut {
                key: "a".into(),
                value: JsonText::of(&()).unwrap(),
                lease: None,
            })],
            failure: vec![TxnOp::Delete(KeyOrPrefix::Prefix("p/".into()))],
        };
        let text = serde_json::to_string(&txn).unwrap();
        assert_eq!(
            text,
            r#"{"compare":[{"key":"a","target":"create_revision","op":"!=","value":0}],"success":[{"put":{"key":"a","value":null}}],"failure":[{"delete":{"prefix":"p/"}}]}"#
        );
        assert_eq!(parse_txn(text.as_bytes()).unwrap(), txn);
    }

    #[test]
    fn every_compare_target_and_op_reads_from_its_wire_name() {
        for target in [
            "value",
            "version",
            "create_revision",
            "mod_revision",
            "lease",
            "exists",
        ] {
            let read: CompareTarget = serde_json::from_value(json!(target)).unwrap();
            assert_eq!(read.as_str(), target);
        }
        for op in ["=", "!=", "<", ">"] {
            let read: CompareOp = serde_json::from_value(json!(op)).unwrap();
            assert_eq!(read.as_str(), op);
        }
    }

    #[test]
    fn an_unknown_compare_target_or_op_is_refused_naming_it() {
        assert_eq!(
            refusal(r#"{"compare": [{"key": "a", "target": "size", "op": "=", "value": 1}]}"#),
            refused(ErrorCode::InvalidField, "compare[0].target")
        );
        assert_eq!(
            refusal(r#"{"compare": [{"key": "a", "target": "version", "op": "==", "value": 1}]}"#),
            refused(ErrorCode::InvalidField, "compare[0].op")
        );
    }

    #[test]
    fn an_unknown_kind_of_op_is_refused_naming_the_op() {
        let (code, field) =
            refusal(r#"{"success": [{"get": {"key": "a"}}, {"patch": {"key": "a"}}]}"#);
        assert_eq!(code, ErrorCode::InvalidField);
        assert!(field.starts_with("success[1]"), "{field}");
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let (code, _) = refusal(r#"{"compare": [], "succes": []}"#);
        assert_eq!(code, ErrorCode::InvalidField);
        let (code, field) =
            refusal(r#"{"success": [{"put": {"key": "a", "value": 1, "ttl": 5}}]}"#);
        assert_eq!(code, ErrorCode::InvalidField);
        assert!(field.starts_with("success[0].put"), "{field}");
    }

    #[test]
    fn a_missing_field_is_refused_naming_it() {
        assert_eq!(
            refusal(r#"{"success": [{"put": {"key": "a"}}]}"#),
            refused(ErrorCode::MissingField, "success[0].put.value")
        );
        assert_eq!(
            refusal(r#"{"compare": [{"key": "a", "target": "version", "op": "="}]}"#),
            refused(ErrorCode::MissingField, "compare[0].value")
        );
    }

    #[test]
    fn a_target_needs_exactly_one_of_key_and_prefix() {
        for target in [r#"{}"#, r#"{"key": "a", "prefix": "b"}"#] {
            let (code, field) = refusal(&format!(r#"{{"success": [{{"delete": {target}}}]}}"#));
            assert_eq!(code, ErrorCode::InvalidField, "{target}");
            assert!(field.starts_with("success[0].delete"), "{field}");
        }
    }

    /// JSON of the wrong shape is named where it is, though serde_json
    /// calls an op that is `{}`, or holds two ops, a syntax error.
    #[test]
    fn an_op_that_is_no_op_or_two_is_named() {
        for op in [
            r#"{}"#,
            r#"{"put": {"key": "a", "value": 1}, "get": {"key": "a"}}"#,
        ] {
            let (code, field) = refusal(&format!(r#"{{"success": [{op}]}}"#));
            assert_eq!(code, ErrorCode::InvalidField, "{op}");
            assert!(field.starts_with("success[0]"), "{op}: {field}");
        }
    }

    #[test]
    fn malformed_json_concerns_the_whole_body() {
        assert_eq!(
            refusal(r#"{"success": ["#),
            refused(ErrorCode::InvalidJson, "")
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        for body in ["[]", " [[], [], []]", "null"] {
            assert_eq!(refusal(body).0, ErrorCode::InvalidJson, "{body}");
        }
    }

    #[test]
    fn an_answer_says_deduplicated_only_when_it_is() {
        let answer: TxnResponse = TxnResponse {
            succeeded: false,
            revision: 12,
            results: vec![TxnOpResult::Get {
                kvs: vec![],
                more: false,
            }],
            deduplicated: false,
        };
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"succeeded": false, "revision": 12, "results": [{"get": {"kvs": [], "more": false}}]})
        );
        let retried = TxnResponse {
            results: vec![],
            deduplicated: true,
            ..answer
        };
        assert_eq!(
            serde_json::to_value(&retried).unwrap()["deduplicated"],
            true
        );
    }
}
