//! The rules a transaction must keep before it is proposed: limits, keys,
//! reserved keys, one write per key, and compare values of the right type.

use std::collections::HashMap;

use crate::api::{
    is_metadata_key, CompareOp, CompareTarget, ErrorCode, FieldError, JsonText, KeyOrPrefix, TxnOp,
    TxnRequest,
};
use crate::error::shown;
use crate::{MAX_KEY_BYTES, SUBSCRIPTIONS_PREFIX, TOPICS_PREFIX};

/// The most compares a transaction may have, and the most ops in each
/// branch: enough for a broker's registration, small enough that one
/// transaction stays one modest raft entry.
pub const MAX_TXN_OPS: usize = 128;

/// The most compares and ops per branch of a node's own transactions (the
/// name server's): a broker's record and one queue record per topic it may
/// register, in one unit. The request body limit still bounds the entry.
pub const MAX_INTERNAL_TXN_OPS: usize = crate::remoting::MAX_REGISTERED_TOPICS + 8;

pub(super) fn validate(txn: &TxnRequest, max_ops: usize) -> Result<(), FieldError> {
    check_count("compare", txn.compare.len(), "compares", max_ops)?;
    check_count("success", txn.success.len(), "ops", max_ops)?;
    check_count("failure", txn.failure.len(), "ops", max_ops)?;
    for (index, compare) in txn.compare.iter().enumerate() {
        let field = format!("compare[{index}]");
        check_key(&field, &compare.key)?;
        check_compare_value(&field, compare.target, compare.op, &compare.value)?;
    }
    check_branch("success", &txn.success)?;
    check_branch("failure", &txn.failure)
}

fn check_count(field: &str, count: usize, what: &str, max_ops: usize) -> Result<(), FieldError> {
    if count <= max_ops {
        return Ok(());
    }
    Err(FieldError::new(
        ErrorCode::TooManyOps,
        field,
        format!("{field} has {count} {what}, more than the limit of {max_ops}"),
    ))
}

/// A key of the KV API, the `key` field of the object at `parent`.
fn check_key(parent: &str, key: &str) -> Result<(), FieldError> {
    // `validate_key` names its field `key`; placed under the parent it
    // becomes the whole path (`success[3].put.key`).
    crate::validate_key(key).map_err(|error| {
        let error = error.within(parent);
        FieldError::new(ErrorCode::InvalidKey, error.field(), error.to_string())
    })
}

/// A prefix: anything a valid key can start with (see [`KeyOrPrefix`]);
/// empty only where `empty_allowed`.
/// Checks a prefix a read lists or watches (`prefix` of `/v1/kv` and
/// `/v1/changes`) as a transaction's get prefix is checked: one that could
/// begin a key, or empty for every key.
pub fn check_read_prefix(field: &str, prefix: &str) -> Result<(), FieldError> {
    check_prefix(field, prefix, true)
}

fn check_prefix(field: &str, prefix: &str, empty_allowed: bool) -> Result<(), FieldError> {
    let refuse = |reason: String| {
        Err(FieldError::new(
            ErrorCode::InvalidKey,
            field,
            format!("{field} {:?} is invalid: {reason}", shown(prefix)),
        ))
    };
    if prefix.is_empty() && !empty_allowed {
        return refuse("a delete's prefix must not be empty; it would delete every key".into());
    }
    if prefix.len() > MAX_KEY_BYTES {
        return refuse(format!(
            "it is {} bytes long, longer than a key may be ({MAX_KEY_BYTES})",
            prefix.len()
        ));
    }
    if let Some(c) = prefix.chars().find(|c| c.is_control()) {
        return refuse(format!(
            "control character U+{:04X} is not allowed",
            u32::from(c)
        ));
    }
    if prefix.starts_with('/') {
        return refuse("a prefix must not start with '/'".into());
    }
    Ok(())
}

fn check_compare_value(
    field: &str,
    target: CompareTarget,
    op: CompareOp,
    value: &JsonText,
) -> Result<(), FieldError> {
    let ordered = matches!(op, CompareOp::Less | CompareOp::Greater);
    let wrong_value = |expected: &str| {
        Err(FieldError::new(
            ErrorCode::InvalidField,
            format!("{field}.value"),
            format!(
                "{field}.value must be {expected} to compare a key's {} with {:?}, got {value}",
                target.as_str(),
                op.as_str()
            ),
        ))
    };
    match target {
        CompareTarget::Exists if ordered => Err(FieldError::new(
            ErrorCode::InvalidField,
            format!("{field}.op"),
            format!(
                "{field}.op {:?} does not apply to exists; use \"=\" or \"!=\"",
                op.as_str()
            ),
        )),
        CompareTarget::Exists if value.as_bool().is_none() => wrong_value("true or false"),
        CompareTarget::Version
        | CompareTarget::CreateRevision
        | CompareTarget::ModRevision
        | CompareTarget::Lease
            if value.as_u64().is_none() =>
        {
            wrong_value("an integer from 0 to 18446744073709551615")
        }
        CompareTarget::Value if ordered && !(value.is_number() || value.is_string()) => {
            wrong_value("a number or a string")
        }
        _ => Ok(()),
    }
}

/// What one op of a branch writes.
enum Write<'a> {
    Key(&'a str),
    Prefix(&'a str),
}

impl Write<'_> {
    /// Whether two writes reach a common key.
    fn overlaps(&self, other: &Write<'_>) -> bool {
        match (self, other) {
            (Write::Key(a), Write::Key(b)) => a == b,
            (Write::Key(key), Write::Prefix(prefix)) | (Write::Prefix(prefix), Write::Key(key)) => {
                key.starts_with(prefix)
            }
            (Write::Prefix(a), Write::Prefix(b)) => a.starts_with(b) || b.starts_with(a),
        }
    }

    fn describe(&self) -> String {
        match self {
            Write::Key(key) => format!("key {:?}", shown(key)),
            Write::Prefix(prefix) => format!("prefix {:?}", shown(prefix)),
        }
    }
}

fn check_branch(branch: &str, ops: &[TxnOp]) -> Result<(), FieldError> {
    // (field, write) of the ops so far, in order; the name server's
    // transactions hold up to MAX_INTERNAL_TXN_OPS of them, so a key is
    // looked up by its first write rather than compared with every one.
    let mut writes: Vec<(String, Write<'_>)> = Vec::new();
    let mut first_write_of_key: HashMap<&str, usize> = HashMap::new();
    let mut prefixes: Vec<usize> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let (field, write) = match op {
            TxnOp::Put(put) => {
                let parent = format!("{branch}[{index}].put");
                check_key(&parent, &put.key)?;
                if put.lease == Some(0) {
                    return Err(FieldError::new(
                        ErrorCode::InvalidLeaseId,
                        format!("{parent}.lease"),
                        format!("{parent}.lease is 0, which no lease has; leave it out for none"),
                    ));
                }
                (format!("{parent}.key"), Write::Key(&put.key))
            }
            TxnOp::Delete(KeyOrPrefix::Key(key)) => {
                let parent = format!("{branch}[{index}].delete");
                check_key(&parent, key)?;
                (format!("{parent}.key"), Write::Key(key))
            }
            TxnOp::Delete(KeyOrPrefix::Prefix(prefix)) => {
                let field = format!("{branch}[{index}].delete.prefix");
                check_prefix(&field, prefix, false)?;
                (field, Write::Prefix(prefix))
            }
            TxnOp::Get(KeyOrPrefix::Key(key)) => {
                check_key(&format!("{branch}[{index}].get"), key)?;
                continue;
            }
            TxnOp::Get(KeyOrPrefix::Prefix(prefix)) => {
                check_prefix(&format!("{branch}[{index}].get.prefix"), prefix, true)?;
                continue;
            }
        };
        check_not_reserved(&field, &write)?;
        // The earliest write this one overlaps: a key meets the same key or
        // a prefix of it; a prefix may meet any write.
        let earlier = match write {
            Write::Key(key) => first_write_of_key
                .get(key)
                .copied()
                .into_iter()
                .chain(
                    prefixes
                        .iter()
                        .copied()
                        .filter(|&at| writes[at].1.overlaps(&write)),
                )
                .min(),
            Write::Prefix(_) => writes.iter().position(|(_, seen)| seen.overlaps(&write)),
        };
        if let Some(earlier) = earlier {
            return Err(FieldError::new(
                ErrorCode::DuplicateKey,
                &field,
                format!(
                    "{field}: the {} is written by {} already; a transaction writes a key once",
                    write.describe(),
                    writes[earlier].0
                ),
            ));
        }
        match write {
            Write::Key(key) => {
                first_write_of_key.insert(key, writes.len());
            }
            Write::Prefix(_) => prefixes.push(writes.len()),
        }
        writes.push((field, write));
    }
    Ok(())
}

/// Refuses a write that reaches keys only the typed metadata routes write:
/// a metadata key, or a prefix that covers some (`topics/a`, but also `t`).
fn check_not_reserved(field: &str, write: &Write<'_>) -> Result<(), FieldError> {
    let reserved = match write {
        Write::Key(key) => is_metadata_key(key),
        Write::Prefix(_) => [TOPICS_PREFIX, SUBSCRIPTIONS_PREFIX]
            .iter()
            .any(|reserved| Write::Prefix(reserved).overlaps(write)),
    };
    if !reserved {
        return Ok(());
    }
    Err(FieldError::new(
        ErrorCode::ReservedKey,
        field,
        format!(
            "{field}: the {} is reserved: keys under {TOPICS_PREFIX} and {SUBSCRIPTIONS_PREFIX} \
             are written only through /v1/topics and /v1/subscriptions",
            write.describe()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::{parse_txn, ErrorCode, TxnRequest, MAX_TXN_OPS};

    /// The transaction written as JSON, parsed.
    fn txn(body: serde_json::Value) -> TxnRequest {
        parse_txn(body.to_string().as_bytes()).expect("the test's transaction parses")
    }

    /// The code and field `validate` refuses the transaction with.
    fn refusal(body: serde_json::Value) -> (ErrorCode, String) {
        let error = txn(body)
            .validate()
            .expect_err("the transaction is refused");
        (error.code, error.field)
    }

    fn refused(code: ErrorCode, field: &str) -> (ErrorCode, String) {
        (code, field.to_string())
    }

    fn puts(count: usize) -> Vec<serde_json::Value> {
        (0..count)
            .map(|i| json!({"put": {"key": format!("k/{i}"), "value": i}}))
            .collect()
    }

    #[test]
    fn an_empty_transaction_is_valid() {
        txn(json!({})).validate().unwrap();
    }

    #[test]
    fn validate_within_takes_the_limit_it_is_given() {
        let request = txn(json!({"success": puts(MAX_TXN_OPS + 1)}));
        request.validate_within(MAX_TXN_OPS + 1).unwrap();
        let error = request
            .validate_within(MAX_TXN_OPS)
            .expect_err("over the limit");
        assert_eq!(error.code, ErrorCode::TooManyOps);
        assert!(error.message.contains("limit of 128"), "{error:?}");
    }

    #[test]
    fn a_branch_may_hold_max_txn_ops_ops_and_no_more() {
        txn(json!({"success": puts(MAX_TXN_OPS)}))
            .validate()
            .unwrap();
        assert_eq!(
            refusal(json!({"success": puts(MAX_TXN_OPS + 1)})),
            refused(ErrorCode::TooManyOps, "success")
        );
        assert_eq!(
            refusal(json!({"failure": puts(MAX_TXN_OPS + 1)})),
            refused(ErrorCode::TooManyOps, "failure")
        );
    }

    #[test]
    fn a_transaction_may_hold_max_txn_ops_compares_and_no_more() {
        let compares = |count: usize| -> Vec<serde_json::Value> {
            (0..count)
                .map(|i| json!({"key": format!("k/{i}"), "target": "exists", "op": "=", "value": true}))
                .collect()
        };
        txn(json!({"compare": compares(MAX_TXN_OPS)}))
            .validate()
            .unwrap();
        assert_eq!(
            refusal(json!({"compare": compares(MAX_TXN_OPS + 1)})),
            refused(ErrorCode::TooManyOps, "compare")
        );
    }

    #[test]
    fn an_invalid_key_is_refused_naming_its_op() {
        let ops = json!([{"get": {"key": "ok"}}, {"get": {"key": "ok"}}, {"get": {"key": "ok"}},
                         {"put": {"key": "a//b", "value": 1}}]);
        assert_eq!(
            refusal(json!({"success": ops})),
            refused(ErrorCode::InvalidKey, "success[3].put.key")
        );
        assert_eq!(
            refusal(json!({"failure": [{"delete": {"key": ""}}]})),
            refused(ErrorCode::InvalidKey, "failure[0].delete.key")
        );
        assert_eq!(
            refusal(json!({"success": [{"get": {"key": "a/../b"}}]})),
            refused(ErrorCode::InvalidKey, "success[0].get.key")
        );
        assert_eq!(
            refusal(
                json!({"compare": [{"key": "/a", "target": "version", "op": "=", "value": 1}]})
            ),
            refused(ErrorCode::InvalidKey, "compare[0].key")
        );
    }

    #[test]
    fn an_internal_key_is_an_invalid_key() {
        assert_eq!(
            refusal(json!({"success": [{"put": {"key": "\u{0}acl/roles/r", "value": 1}}]})),
            refused(ErrorCode::InvalidKey, "success[0].put.key")
        );
        assert_eq!(
            refusal(json!({"success": [{"get": {"prefix": "\u{0}lease/"}}]})),
            refused(ErrorCode::InvalidKey, "success[0].get.prefix")
        );
    }

    #[test]
    fn a_delete_prefix_must_not_be_empty_but_a_get_prefix_may() {
        txn(json!({"success": [{"get": {"prefix": ""}}]}))
            .validate()
            .unwrap();
        let (code, field) = refusal(json!({"success": [{"delete": {"prefix": ""}}]}));
        assert_eq!(
            (code, field.as_str()),
            (ErrorCode::InvalidKey, "success[0].delete.prefix")
        );
    }

    #[test]
    fn a_prefix_may_end_with_a_slash_or_inside_a_segment() {
        txn(json!({"success": [{"delete": {"prefix": "app/"}}, {"delete": {"prefix": "cfg/x"}}]}))
            .validate()
            .unwrap();
        assert_eq!(
            refusal(json!({"success": [{"get": {"prefix": "/app"}}]})),
            refused(ErrorCode::InvalidKey, "success[0].get.prefix")
        );
    }

    #[test]
    fn a_put_lease_of_zero_is_an_invalid_lease_id() {
        assert_eq!(
            refusal(json!({"success": [{"put": {"key": "a", "value": 1, "lease": 0}}]})),
            refused(ErrorCode::InvalidLeaseId, "success[0].put.lease")
        );
        txn(json!({"success": [{"put": {"key": "a", "value": 1, "lease": 7}}]}))
            .validate()
            .unwrap();
    }

    #[test]
    fn a_write_to_a_metadata_key_is_reserved() {
        assert_eq!(
            refusal(json!({"success": [{"put": {"key": "topics/orders", "value": {}}}]})),
            refused(ErrorCode::ReservedKey, "success[0].put.key")
        );
        assert_eq!(
            refusal(json!({"failure": [{"delete": {"key": "subscriptions/g"}}]})),
            refused(ErrorCode::ReservedKey, "failure[0].delete.key")
        );
    }

    #[test]
    fn a_delete_prefix_that_covers_metadata_keys_is_reserved() {
        for prefix in ["t", "topics", "topics/", "topics/ord", "sub"] {
            assert_eq!(
                refusal(json!({"success": [{"delete": {"prefix": prefix}}]})),
                refused(ErrorCode::ReservedKey, "success[0].delete.prefix"),
                "{prefix}"
            );
        }
        txn(json!({"success": [{"delete": {"prefix": "tx/"}}]}))
            .validate()
            .unwrap();
    }

    #[test]
    fn metadata_keys_may_be_compared_and_read() {
        txn(json!({
            "compare": [{"key": "topics/orders", "target": "exists", "op": "=", "value": true}],
            "success": [{"get": {"key": "topics/orders"}}, {"get": {"prefix": "subscriptions/"}}],
        }))
        .validate()
        .unwrap();
    }

    #[test]
    fn a_key_written_twice_in_a_branch_is_a_duplicate() {
        let put = |value: i32| json!({"put": {"key": "a", "value": value}});
        let delete = json!({"delete": {"key": "a"}});
        for (ops, field) in [
            (json!([put(1), put(2)]), "success[1].put.key"),
            (json!([put(1), delete]), "success[1].delete.key"),
            (json!([delete, put(1)]), "success[1].put.key"),
            (json!([delete, delete]), "success[1].delete.key"),
        ] {
            assert_eq!(
                refusal(json!({"success": ops})),
                refused(ErrorCode::DuplicateKey, field)
            );
        }
    }

    #[test]
    fn a_write_under_a_prefix_deleted_in_the_branch_is_a_duplicate() {
        let (code, field) = refusal(json!({"success": [
            {"delete": {"prefix": "brokers/"}},
            {"put": {"key": "brokers/b1", "value": 1}},
        ]}));
        assert_eq!(
            (code, field.as_str()),
            (ErrorCode::DuplicateKey, "success[1].put.key")
        );
        let (code, field) = refusal(json!({"failure": [
            {"put": {"key": "brokers/b1", "value": 1}},
            {"delete": {"prefix": "brokers/b"}},
        ]}));
        assert_eq!(
            (code, field.as_str()),
            (ErrorCode::DuplicateKey, "failure[1].delete.prefix")
        );
    }

    #[test]
    fn a_duplicate_in_a_branch_of_the_name_servers_size_names_the_earliest_write() {
        use crate::api::MAX_INTERNAL_TXN_OPS;
        let mut ops = puts(MAX_INTERNAL_TXN_OPS - 1);
        txn(json!({ "success": ops }))
            .validate_within(MAX_INTERNAL_TXN_OPS)
            .unwrap();
        ops.push(json!({"put": {"key": "k/7", "value": 0}}));
        let error = txn(json!({ "success": ops }))
            .validate_within(MAX_INTERNAL_TXN_OPS)
            .expect_err("a key written twice is refused");
        let last = MAX_INTERNAL_TXN_OPS - 1;
        assert_eq!(
            (error.code, error.field.as_str()),
            (
                ErrorCode::DuplicateKey,
                format!("success[{last}].put.key").as_str()
            )
        );
        assert!(
            error.message.contains("success[7].put.key"),
            "{}",
            error.message
        );

        // A key under an earlier prefix delete and after an earlier put of
        // itself: the message names whichever came first.
        for (ops, earliest) in [
            (
                json!([{"delete": {"prefix": "a/"}}, {"put": {"key": "a/b", "value": 1}}]),
                "success[0].delete.prefix",
            ),
            (
                json!([{"put": {"key": "x/1", "value": 1}}, {"delete": {"prefix": "x/"}}]),
                "success[0].put.key",
            ),
        ] {
            let error = txn(json!({ "success": ops }))
                .validate()
                .expect_err("an overlap is refused");
            assert!(error.message.contains(earliest), "{}", error.message);
        }
    }

    #[test]
    fn overlapping_prefix_deletes_are_a_duplicate() {
        let (code, field) = refusal(json!({"success": [
            {"delete": {"prefix": "app/a"}},
            {"delete": {"prefix": "app/"}},
        ]}));
        assert_eq!(
            (code, field.as_str()),
            (ErrorCode::DuplicateKey, "success[1].delete.prefix")
        );
        txn(json!({"success": [{"delete": {"prefix": "app/a"}}, {"delete": {"prefix": "app/b"}}]}))
            .validate()
            .unwrap();
    }

    #[test]
    fn reads_and_the_other_branch_do_not_count_as_writes() {
        txn(json!({
            "success": [{"put": {"key": "a", "value": 1}}, {"get": {"key": "a"}}, {"get": {"prefix": ""}}],
            "failure": [{"put": {"key": "a", "value": 2}}, {"get": {"key": "a"}}],
        }))
        .validate()
        .unwrap();
    }

    #[test]
    fn compare_values_must_suit_their_target() {
        let compare = |target: &str, op: &str, value: serde_json::Value| json!({"compare": [{"key": "a", "target": target, "op": op, "value": value}]});
        for (target, op, value) in [
            ("exists", "=", json!(false)),
            ("version", ">", json!(0)),
            ("create_revision", "<", json!(10)),
            ("mod_revision", "!=", json!(7)),
            ("lease", "=", json!(0)),
            ("value", "=", json!({"any": ["json", null]})),
            ("value", "<", json!(3.5)),
            ("value", ">", json!("m")),
        ] {
            txn(compare(target, op, value)).validate().unwrap();
        }
        for (target, op, value) in [
            ("exists", "=", json!("yes")),
            ("version", "=", json!(-1)),
            ("create_revision", "=", json!(1.5)),
            ("mod_revision", "=", json!("7")),
            ("lease", "=", json!(null)),
            ("value", "<", json!(null)),
            ("value", ">", json!([1])),
        ] {
            assert_eq!(
                refusal(compare(target, op, value.clone())),
                refused(ErrorCode::InvalidField, "compare[0].value"),
                "{target} {op} {value}"
            );
        }
    }

    #[test]
    fn exists_compares_only_with_equal_and_not_equal() {
        assert_eq!(
            refusal(
                json!({"compare": [{"key": "a", "target": "exists", "op": "<", "value": true}]})
            ),
            refused(ErrorCode::InvalidField, "compare[0].op")
        );
    }
}
