//! `POST /v1/txn`: compares, then the operations of one branch, applied as
//! one unit with one revision (etcd's `Txn`).
//!
//! The body is checked before anything is proposed (the contract's
//! [`schemas::api::parse_txn`] and [`TxnRequest::validate`], each refusal
//! naming its field); what reaches Raft is the state machine's own
//! [`Txn`], with values as JSON text and every read bounded by a page.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use schemas::api::{
    parse_txn, CompareOp as WireCompareOp, CompareTarget as WireCompareTarget, ErrorCode,
    KeyOrPrefix, KeyValue, TxnOp as WireTxnOp, TxnOpResult as WireTxnOpResult, TxnRequest,
    TxnResponse, MAX_INTERNAL_TXN_OPS, MAX_TXN_OPS,
};
use serde_json::value::RawValue;

use crate::api::auth::Presented;
use crate::api::error::{lease_not_found, ApiError};

use crate::api::params::{Query, LIST_PAGE};
use crate::api::propose::propose;
use crate::api::write::{body_read_error, idempotency_key, request_hash, INTERNAL_REQUEST_HASH};
use crate::api::{
    max_body_bytes, max_internal_body_bytes, AppState, InternalRequest, REVISION_HEADER,
};
use crate::types::{
    Command, CommandResult, Compare, CompareOp, CompareTarget, Op, Txn, TxnKeyValue, TxnOp,
    TxnOpResult, TxnOutcome,
};

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/txn", post(txn))
}

/// `POST /v1/txn`.
async fn txn(
    State(state): State<AppState>,
    Presented(credential): Presented,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    internal: Option<Extension<InternalRequest>>,
    body: Body,
) -> Result<Response, ApiError> {
    Query::parse(query.as_deref(), &[])?;
    // Read here, not by an extractor bound to the client's limit: the
    // node's own transactions (a broker's registration) may be larger.
    let limit = match internal {
        Some(_) => max_internal_body_bytes(&state.config),
        None => max_body_bytes(&state.config),
    };
    let body = axum::body::to_bytes(body, limit).await.map_err(|error| {
        match body_read_error(&state, error) {
            // The whole body is bounded here, not one value (as the
            // auth layer words it when it reads the body first).
            refused if refused.code() == ErrorCode::ValueTooLarge => ApiError::new(
                ErrorCode::ValueTooLarge,
                format!("the transaction is over the body limit of {limit} bytes"),
            ),
            refused => refused,
        }
    })?;
    let request = parse_txn(&body)?;
    let max_ops = match internal {
        Some(_) => MAX_INTERNAL_TXN_OPS,
        None => MAX_TXN_OPS,
    };
    request.validate_within(max_ops)?;
    let txn = to_txn(&state, request)?;
    let leases = lease_fields(&txn);
    let retry_token = idempotency_key(&headers)?;
    let hash = match internal {
        Some(_) => retry_token.map(|_| INTERNAL_REQUEST_HASH),
        None => request_hash(retry_token, &[b"POST /v1/txn", &body]),
    };
    let command = Command {
        timestamp_ms: crate::clock::now_ms(),
        idempotency_key: retry_token,
        request_hash: hash,
        op: Op::Txn(txn),
    };
    let outcome = match propose(&state, command, credential.as_ref()).await? {
        CommandResult::Txn(outcome) => outcome,
        CommandResult::LeaseNotFound { id } => return Err(missing_lease(id, &leases)),
        other => {
            return Err(ApiError::internal(format!(
                "a transaction produced {other:?}"
            )))
        }
    };
    let revision = outcome.revision;
    let mut response = Json(answer(outcome)?).into_response();
    response
        .headers_mut()
        .insert(REVISION_HEADER, HeaderValue::from(revision));
    Ok(response)
}

/// The refusal of a transaction whose branch that ran named lease `id`,
/// which does not exist: naming the first put of it, when one branch
/// alone names it. Named in both, which branch ran is not told, and the
/// message names the first put of each.
fn missing_lease(id: u64, leases: &[(u64, String)]) -> ApiError {
    let naming: Vec<&str> = leases
        .iter()
        .filter(|(lease, _)| *lease == id)
        .map(|(_, field)| field.as_str())
        .collect();
    let branch = |field: &str| field.split('[').next().unwrap_or_default().to_string();
    let error = lease_not_found(id);
    match naming.first() {
        Some(first) if naming.iter().all(|field| branch(field) == branch(first)) => {
            error.with_field(first)
        }
        Some(first) => {
            let other = naming
                .iter()
                .find(|field| branch(field) != branch(first))
                .unwrap_or(first);
            ApiError::new(
                ErrorCode::LeaseNotFound,
                format!(
                    "lease {id} does not exist (never granted, revoked, or expired); \
                     the branch that ran names it ({first} or {other})"
                ),
            )
        }
        None => error,
    }
}

/// Each lease a put of `txn` names, with the field that names it, in the
/// order the state machine checks them.
fn lease_fields(txn: &Txn) -> Vec<(u64, String)> {
    [("success", &txn.success), ("failure", &txn.failure)]
        .into_iter()
        .flat_map(|(name, ops)| {
            ops.iter().enumerate().filter_map(move |(i, op)| match op {
                TxnOp::Put {
                    lease: Some(id), ..
                } => Some((*id, format!("{name}[{i}].put.lease"))),
                _ => None,
            })
        })
        .collect()
}

/// The state machine's transaction of a checked request: values as JSON
/// text, each no larger than a value may be, and prefix reads bounded by
/// the list page.
fn to_txn(state: &AppState, request: TxnRequest) -> Result<Txn, ApiError> {
    let compare = request
        .compare
        .into_iter()
        .enumerate()
        .map(|(i, compare)| {
            let field = |name: &str| format!("compare[{i}].{name}");
            let number = || {
                compare.value.as_u64().ok_or_else(|| {
                    ApiError::bad_field(
                        ErrorCode::InvalidField,
                        &field("value"),
                        "a number of 0 or more",
                    )
                })
            };
            let target = match compare.target {
                WireCompareTarget::Value => CompareTarget::Value(compare.value.get().to_string()),
                WireCompareTarget::Version => CompareTarget::Version(number()?),
                WireCompareTarget::CreateRevision => CompareTarget::CreateRevision(number()?),
                WireCompareTarget::ModRevision => CompareTarget::ModRevision(number()?),
                WireCompareTarget::Lease => CompareTarget::Lease(number()?),
                WireCompareTarget::Exists => match compare.value.as_bool() {
                    Some(exists) => CompareTarget::Exists(exists),
                    None => {
                        return Err(ApiError::bad_field(
                            ErrorCode::InvalidField,
                            &field("value"),
                            "exists compares with true or false",
                        ))
                    }
                },
            };
            let op = match compare.op {
                WireCompareOp::Equal => CompareOp::Equal,
                WireCompareOp::NotEqual => CompareOp::NotEqual,
                WireCompareOp::Less => CompareOp::Less,
                WireCompareOp::Greater => CompareOp::Greater,
            };
            Ok(Compare {
                key: compare.key,
                target,
                op,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Txn {
        compare,
        success: branch(state, "success", request.success)?,
        failure: branch(state, "failure", request.failure)?,
    })
}

/// The operations of one branch, named `name` in errors.
fn branch(state: &AppState, name: &str, ops: Vec<WireTxnOp>) -> Result<Vec<TxnOp>, ApiError> {
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| {
            Ok(match op {
                WireTxnOp::Put(put) => {
                    let value = put.value.get().to_string();
                    if value.len() > state.config.max_value_bytes {
                        return Err(ApiError::bad_field(
                            ErrorCode::ValueTooLarge,
                            &format!("{name}[{i}].put.value"),
                            format!(
                                "the value is {} bytes, over the limit of {}",
                                value.len(),
                                state.config.max_value_bytes
                            ),
                        ));
                    }
                    TxnOp::Put {
                        key: put.key,
                        value,
                        lease: put.lease,
                    }
                }
                WireTxnOp::Delete(KeyOrPrefix::Key(key)) => TxnOp::Delete { key },
                WireTxnOp::Delete(KeyOrPrefix::Prefix(prefix)) => TxnOp::DeletePrefix { prefix },
                WireTxnOp::Get(KeyOrPrefix::Key(key)) => TxnOp::Get { key },
                WireTxnOp::Get(KeyOrPrefix::Prefix(prefix)) => TxnOp::GetPrefix {
                    prefix,
                    limit: LIST_PAGE.max as usize,
                },
            })
        })
        .collect()
}

/// The answer's JSON of what the state machine did.
fn answer(outcome: TxnOutcome) -> Result<TxnResponse<Box<RawValue>>, ApiError> {
    let results = outcome
        .results
        .into_iter()
        .map(|result| {
            Ok(match result {
                TxnOpResult::Put { revision } => WireTxnOpResult::Put { revision },
                TxnOpResult::Delete { deleted } => WireTxnOpResult::Delete { deleted },
                TxnOpResult::Get { kvs, more } => WireTxnOpResult::Get {
                    kvs: kvs.into_iter().map(key_value).collect::<Result<_, _>>()?,
                    more,
                },
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(TxnResponse {
        succeeded: outcome.succeeded,
        revision: outcome.revision,
        results,
        deduplicated: outcome.deduplicated,
    })
}

/// A key read, its value the stored JSON text as it is (as `GET /v1/kv`
/// answers it): the text was checked as JSON when written, but not every
/// such text is a `serde_json::Value` (`1e400`, a lone surrogate, deep
/// nesting), and the writes of the transaction are already applied.
fn key_value(read: TxnKeyValue) -> Result<KeyValue<Box<RawValue>>, ApiError> {
    let value = RawValue::from_string(read.value)
        .map_err(|_| ApiError::internal(format!("stored value of {:?} is not JSON", read.key)))?;
    Ok(KeyValue {
        key: read.key,
        value,
        create_revision: read.create_revision,
        mod_revision: read.mod_revision,
        version: read.version,
        lease: (read.lease != 0).then_some(read.lease),
    })
}
