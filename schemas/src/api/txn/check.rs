//! The rules a transaction must keep before it is proposed: limits, keys,
//! reserved keys, one write per key, and compare values of the right type.

use crate::api::{
    is_metadata_key, CompareOp, CompareTarget, ErrorCode, FieldError, KeyOrPrefix, TxnOp,
    TxnRequest,
};
use crate::error::shown;
use crate::{MAX_KEY_BYTES, SUBSCRIPTIONS_PREFIX, TOPICS_PREFIX};

/// The most compares a transaction may have, and the most ops in each
/// branch: enough for a broker's registration, small enough that one
/// transaction stays one modest raft entry.
pub const MAX_TXN_OPS: usize = 128;

pub(super) fn validate(txn: &TxnRequest) -> Result<(), FieldError> {
    check_count("compare", txn.compare.len(), "compares")?;
    check_count("success", txn.success.len(), "ops")?;
    check_count("failure", txn.failure.len(), "ops")?;
    for (index, compare) in txn.compare.iter().enumerate() {
        let field = format!("compare[{index}]");
        check_key(&format!("{field}.key"), &compare.key)?;
        check_compare_value(&field, compare.target, compare.op, &compare.value)?;
    }
    check_branch("success", &txn.success)?;
    check_branch("failure", &txn.failure)
}

fn check_count(field: &str, count: usize, what: &str) -> Result<(), FieldError> {
    if count <= MAX_TXN_OPS {
        return Ok(());
    }
    Err(FieldError::new(
        ErrorCode::TooManyOps,
        field,
        format!("{field} has {count} {what}, more than the limit of {MAX_TXN_OPS}"),
    ))
}

/// A key of the KV API, with its field in the message.
fn check_key(field: &str, key: &str) -> Result<(), FieldError> {
    crate::validate_key(key).map_err(|error| {
        let parent = field.strip_suffix(".key").unwrap_or(field);
        let error = error.within(parent);
        FieldError::new(ErrorCode::InvalidKey, error.field(), error.to_string())
    })
}

/// A prefix: anything a valid key can start with (see [`KeyOrPrefix`]);
/// empty only where `empty_allowed`.
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
    value: &serde_json::Value,
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
        CompareTarget::Exists if !value.is_boolean() => wrong_value("true or false"),
        CompareTarget::Version
        | CompareTarget::CreateRevision
        | CompareTarget::ModRevision
        | CompareTarget::Lease
            if value.as_u64().is_none() =>
        {
            wrong_value("an integer of 0 or more")
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
    // (field, write) of the ops so far; at most MAX_TXN_OPS, so comparing
    // each new write with all of them stays cheap.
    let mut writes: Vec<(String, Write<'_>)> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let (field, write) = match op {
            TxnOp::Put(put) => {
                let field = format!("{branch}[{index}].put.key");
                check_key(&field, &put.key)?;
                (field, Write::Key(&put.key))
            }
            TxnOp::Delete(KeyOrPrefix::Key(key)) => {
                let field = format!("{branch}[{index}].delete.key");
                check_key(&field, key)?;
                (field, Write::Key(key))
            }
            TxnOp::Delete(KeyOrPrefix::Prefix(prefix)) => {
                let field = format!("{branch}[{index}].delete.prefix");
                check_prefix(&field, prefix, false)?;
                (field, Write::Prefix(prefix))
            }
            TxnOp::Get(KeyOrPrefix::Key(key)) => {
                check_key(&format!("{branch}[{index}].get.key"), key)?;
                continue;
            }
            TxnOp::Get(KeyOrPrefix::Prefix(prefix)) => {
                check_prefix(&format!("{branch}[{index}].get.prefix"), prefix, true)?;
                continue;
            }
        };
        check_not_reserved(&field, &write)?;
        if let Some((earlier, _)) = writes.iter().find(|(_, seen)| seen.overlaps(&write)) {
            return Err(FieldError::new(
                ErrorCode::DuplicateKey,
                &field,
                format!(
                    "{field}: the {} is written by {earlier} already; a transaction writes a key once",
                    write.describe()
                ),
            ));
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
            "{field}: the {} reaches keys under {TOPICS_PREFIX} or {SUBSCRIPTIONS_PREFIX}, \
             which only /v1/topics and /v1/subscriptions write",
            write.describe()
        ),
    ))
}
