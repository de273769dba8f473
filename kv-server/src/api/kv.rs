//! `/v1/kv`: point reads, writes with compare-and-set and idempotency keys,
//! listing by prefix, and long-poll watches of a key or a prefix.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use schemas::api::{is_metadata_key, ErrorCode, KeyList, KeyValue};
use serde_json::value::RawValue;

use crate::api::auth::Presented;
use crate::api::error::ApiError;
use crate::api::long_polls::LongPollGate;
use crate::api::params::{page_bounds, path_capture, Blocking, Consistency, Query, LIST_PAGE};
use crate::api::propose::propose_or_relay;
use crate::api::write::{
    body_error, condition, condition_part, etag, idempotency_key, request_hash, validate_json,
    value_too_large, write_response,
};
use crate::api::{linearizable_barrier, AppState, INDEX_HEADER, REVISION_HEADER};
use crate::store::view::KeyEntry;
use crate::types::{Command, Op};
use crate::watch::WatchTarget;

/// The `/v1/kv` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/kv", get(list))
        .route("/v1/kv/", get(list))
        .route(
            "/v1/kv/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
}

/// A key as the API shows it; the value is the stored JSON text.
type KeyView = KeyValue<Box<RawValue>>;

/// A stored entry as the API shows it.
fn key_view(key: String, entry: KeyEntry) -> Result<KeyView, ApiError> {
    let text = String::from_utf8(entry.value)
        .map_err(|_| ApiError::internal(format!("stored value of {key:?} is not UTF-8")))?;
    let value = RawValue::from_string(text)
        .map_err(|_| ApiError::internal(format!("stored value of {key:?} is not JSON")))?;
    Ok(KeyValue {
        key,
        value,
        create_revision: entry.create_revision,
        mod_revision: entry.mod_revision,
        version: entry.version,
        lease: (entry.lease != 0).then_some(entry.lease),
    })
}

/// A key from the path, checked.
fn key_from_path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let key = path_capture(path, ErrorCode::InvalidKey, "key")?;
    check_key(&key)?;
    Ok(key)
}

/// Checks `key` is one a key's request may name.
fn check_key(key: &str) -> Result<(), ApiError> {
    schemas::validate_key(key)
        .map_err(|error| ApiError::bad_field(ErrorCode::InvalidKey, "key", error.to_string()))
}

/// Checks `key` is one a key's request may write: valid, and not typed
/// metadata's. A relayed write is checked again so on the leader.
pub(crate) fn check_writable_key(key: &str) -> Result<(), ApiError> {
    check_key(key)?;
    refuse_metadata_key(key)
}

/// `PUT /v1/kv/{key}?lease=ID`: body is any JSON value; with `lease`, the
/// key is attached to that lease (and ends with it), without, detached.
async fn put_key(
    State(state): State<AppState>,
    Presented(credential): Presented,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = key_from_path(path)?;
    check_writable_key(&key)?;
    let lease = Query::parse(query.as_deref(), &["lease"])?.lease()?;
    let body = body.map_err(|rejection| body_error(&state, rejection))?;
    if body.len() > state.config.max_value_bytes {
        return Err(value_too_large(&state, body.len()));
    }
    let value = validate_json(&body)?;
    let retry_token = idempotency_key(&headers)?;
    let condition = condition(&headers)?;
    let command = Command {
        timestamp_ms: crate::clock::now_ms(),
        idempotency_key: retry_token,
        request_hash: request_hash(
            retry_token,
            &[
                b"PUT /v1/kv",
                key.as_bytes(),
                value.as_bytes(),
                &condition_part(condition, lease),
            ],
        ),
        op: Op::Put {
            key: key.clone(),
            value,
            condition,
            lease,
        },
    };
    let result = propose_or_relay(&state, command, credential).await?;
    Ok(write_response(&key, condition, result))
}

/// `DELETE /v1/kv/{key}`: appends a tombstone.
async fn delete_key(
    State(state): State<AppState>,
    Presented(credential): Presented,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = key_from_path(path)?;
    check_writable_key(&key)?;
    Query::parse(query.as_deref(), &[])?;
    let retry_token = idempotency_key(&headers)?;
    let condition = condition(&headers)?;
    let command = Command {
        timestamp_ms: crate::clock::now_ms(),
        idempotency_key: retry_token,
        request_hash: request_hash(
            retry_token,
            &[
                b"DELETE /v1/kv",
                key.as_bytes(),
                &condition_part(condition, None),
            ],
        ),
        op: Op::Delete {
            key: key.clone(),
            condition,
        },
    };
    let result = propose_or_relay(&state, command, credential).await?;
    Ok(write_response(&key, condition, result))
}

/// `GET /v1/kv/{key}`, optionally a long-poll with `index` and `wait`.
async fn get_key(
    State(state): State<AppState>,
    long_polls: LongPollGate,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let key = key_from_path(path)?;
    let query = Query::parse(query.as_deref(), &["consistency", "index", "wait"])?;
    let consistency = query.consistency()?;
    let blocking = query.blocking(state.config.max_wait_ms)?;
    if consistency == Consistency::Linearizable {
        linearizable_barrier(&state).await?;
    }
    let store = &state.store;
    if let Some(Blocking { index, wait }) = blocking {
        // Register first, then read: a change between the two still wakes us.
        let waiter = store.watch(WatchTarget::Key(key.clone()), index);
        let changed = match store.get(&key)? {
            Some(entry) => entry.mod_revision > index,
            None => store.revision() > index,
        };
        if !changed {
            let _slot = long_polls.hold()?;
            let _ = tokio::time::timeout(wait, waiter).await;
        }
    }
    let (entry, revision) = store.get_at_revision(&key)?;
    let Some(entry) = entry else {
        let mut response = ApiError::key_not_found(&key)
            .with_revision(revision)
            .into_response();
        response
            .headers_mut()
            .insert(INDEX_HEADER, HeaderValue::from(revision));
        return Ok(response);
    };
    let mod_revision = entry.mod_revision;
    let mut response = Json(key_view(key, entry)?).into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(mod_revision));
    headers.insert(REVISION_HEADER, HeaderValue::from(revision));
    headers.insert(INDEX_HEADER, HeaderValue::from(mod_revision));
    Ok(response)
}

/// `GET /v1/kv?prefix=p&limit=n&start_after=k`, optionally a long-poll.
async fn list(
    State(state): State<AppState>,
    long_polls: LongPollGate,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(
        query.as_deref(),
        &[
            "prefix",
            "limit",
            "start_after",
            "consistency",
            "index",
            "wait",
        ],
    )?;
    let prefix = query.get("prefix").unwrap_or("").to_string();
    schemas::api::check_read_prefix("prefix", &prefix).map_err(ApiError::from)?;
    let limit = query.limit(LIST_PAGE)?;
    let consistency = query.consistency()?;
    let blocking = query.blocking(state.config.max_wait_ms)?;
    if consistency == Consistency::Linearizable {
        linearizable_barrier(&state).await?;
    }
    let store = &state.store;
    if let Some(Blocking { index, wait }) = blocking {
        let waiter = store.watch(WatchTarget::Prefix(prefix.clone()), index);
        if store.revision() <= index {
            let _slot = long_polls.hold()?;
            let _ = tokio::time::timeout(wait, waiter).await;
        }
    }
    let page = store.list(
        &prefix,
        query.get("start_after"),
        page_bounds(&state, limit),
    )?;
    let (revision, more) = (page.revision, page.more);
    let entries = page
        .entries
        .into_iter()
        .map(|(key, entry)| key_view(key, entry))
        .collect::<Result<Vec<_>, _>>()?;
    let mut response = Json(KeyList { entries, more }).into_response();
    response
        .headers_mut()
        .insert(REVISION_HEADER, HeaderValue::from(revision));
    response
        .headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(revision));
    Ok(response)
}

/// Topic configs and subscription groups are written only through their
/// own, validating API; the raw KV API reads them but does not write them.
fn refuse_metadata_key(key: &str) -> Result<(), ApiError> {
    if is_metadata_key(key) {
        return Err(ApiError::bad_field(
            ErrorCode::ReservedKey,
            "key",
            format!(
                "{key:?} holds typed metadata: write it through /v1/topics or /v1/subscriptions"
            ),
        ));
    }
    Ok(())
}
