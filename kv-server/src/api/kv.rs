//! `/v1/kv`: point reads, writes with compare-and-set and idempotency keys,
//! listing by prefix, and long-poll watches of a key or a prefix.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::api::params::{header, Blocking, Consistency, Query};
use crate::api::{linearizable_barrier, propose, AppState, INDEX_HEADER, REVISION_HEADER};
use crate::store::view::KeyEntry;
use crate::types::{Command, CommandResult, Condition, Op, Revision};
use crate::watch::WatchTarget;

/// Default and largest page of a list.
const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 10_000;

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

/// A key as the API shows it.
#[derive(Serialize)]
pub struct KeyView {
    key: String,
    value: Box<RawValue>,
    create_revision: Revision,
    mod_revision: Revision,
    version: u64,
}

impl KeyView {
    fn new(key: String, entry: KeyEntry) -> Result<KeyView, ApiError> {
        let text = String::from_utf8(entry.value)
            .map_err(|_| ApiError::internal(format!("stored value of {key:?} is not UTF-8")))?;
        let value = RawValue::from_string(text)
            .map_err(|_| ApiError::internal(format!("stored value of {key:?} is not JSON")))?;
        Ok(KeyView {
            key,
            value,
            create_revision: entry.create_revision,
            mod_revision: entry.mod_revision,
            version: entry.version,
        })
    }
}

/// The answer to a write.
#[derive(Serialize)]
struct WriteView<'a> {
    key: &'a str,
    revision: Revision,
    version: u64,
    created: bool,
}

/// A key from the path, checked.
fn key_from_path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|rejection| {
        ApiError::bad_field(
            "invalid_key",
            "key",
            format!("the key in the path is unreadable: {rejection}"),
        )
    })?;
    schemas::validate_key(&key)
        .map_err(|error| ApiError::bad_field("invalid_key", "key", error.to_string()))?;
    Ok(key)
}

pub fn etag(revision: Revision) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).expect("a quoted number is a valid header")
}

/// Reads the condition headers: `If-Match: "<rev>"`, `If-None-Match: *`.
pub fn condition(headers: &HeaderMap) -> Result<Condition, ApiError> {
    let if_match = header(headers, "if-match")?;
    let if_none_match = header(headers, "if-none-match")?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "conflicting_conditions",
            "If-Match and If-None-Match cannot be combined",
        )),
        (Some(raw), None) => {
            let revision = raw.trim().trim_matches('"');
            revision
                .parse::<Revision>()
                .map(Condition::ModRevision)
                .map_err(|_| {
                    ApiError::bad_field(
                        "invalid_header",
                        "If-Match",
                        format!("If-Match takes a quoted revision such as \"42\", got {raw:?}"),
                    )
                })
        }
        (None, Some(raw)) if raw.trim() == "*" => Ok(Condition::Absent),
        (None, Some(raw)) => Err(ApiError::bad_field(
            "invalid_header",
            "If-None-Match",
            format!("If-None-Match takes only *, got {raw:?}"),
        )),
        (None, None) => Ok(Condition::Always),
    }
}

pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    header(headers, "idempotency-key")?
        .map(|raw| {
            Uuid::parse_str(raw.trim()).map_err(|_| {
                ApiError::bad_field(
                    "invalid_header",
                    "Idempotency-Key",
                    format!("Idempotency-Key must be a UUID, got {raw:?}"),
                )
            })
        })
        .transpose()
}

/// Turns the result of a write into the HTTP answer.
pub fn write_response(key: &str, result: CommandResult) -> Response {
    match result {
        CommandResult::Written {
            revision,
            version,
            created,
        } => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let body = WriteView {
                key,
                revision,
                version,
                created,
            };
            let mut response = (status, Json(body)).into_response();
            response.headers_mut().insert(header::ETAG, etag(revision));
            response
                .headers_mut()
                .insert(REVISION_HEADER, HeaderValue::from(revision));
            response
        }
        CommandResult::PreconditionFailed {
            current_mod_revision,
        } => {
            let message = match current_mod_revision {
                Some(revision) => format!("key {key:?} is at revision {revision}"),
                None => format!("key {key:?} does not exist"),
            };
            let mut response = ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                message,
            )
            .into_response();
            if let Some(revision) = current_mod_revision {
                response.headers_mut().insert(header::ETAG, etag(revision));
            }
            response
        }
        CommandResult::NotFound => ApiError::key_not_found(key).into_response(),
        CommandResult::None => ApiError::internal("a write produced no result").into_response(),
    }
}

/// `PUT /v1/kv/{key}`: body is any JSON value.
async fn put_key(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = key_from_path(path)?;
    refuse_metadata_key(&key)?;
    Query::parse(query.as_deref(), &[])?;
    let body = body.map_err(|rejection| body_error(&state, rejection))?;
    if body.len() > state.config.max_value_bytes {
        return Err(value_too_large(&state, body.len()));
    }
    let value = validate_json(&body)?;
    let command = Command {
        timestamp_ms: compaction::now_ms(),
        idempotency_key: idempotency_key(&headers)?,
        op: Op::Put {
            key: key.clone(),
            value,
            condition: condition(&headers)?,
        },
    };
    let result = propose(&state, command).await?;
    Ok(write_response(&key, result))
}

/// `DELETE /v1/kv/{key}`: appends a tombstone.
async fn delete_key(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = key_from_path(path)?;
    refuse_metadata_key(&key)?;
    Query::parse(query.as_deref(), &[])?;
    let command = Command {
        timestamp_ms: compaction::now_ms(),
        idempotency_key: idempotency_key(&headers)?,
        op: Op::Delete {
            key: key.clone(),
            condition: condition(&headers)?,
        },
    };
    let result = propose(&state, command).await?;
    Ok(write_response(&key, result))
}

/// `GET /v1/kv/{key}`, optionally a long-poll with `index` and `wait`.
async fn get_key(
    State(state): State<AppState>,
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
        let waiter = store.watches.watch(WatchTarget::Key(key.clone()), index);
        let changed = match store.view.get(&key)? {
            Some(entry) => entry.mod_revision > index,
            None => store.revision() > index,
        };
        if !changed {
            let _ = tokio::time::timeout(wait, waiter).await;
        }
    }
    let revision = store.revision();
    let Some(entry) = store.view.get(&key)? else {
        let mut response = ApiError::key_not_found(&key)
            .with_revision(revision)
            .into_response();
        response
            .headers_mut()
            .insert(INDEX_HEADER, HeaderValue::from(revision));
        return Ok(response);
    };
    let mod_revision = entry.mod_revision;
    let mut response = Json(KeyView::new(key, entry)?).into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(mod_revision));
    headers.insert(REVISION_HEADER, HeaderValue::from(revision));
    headers.insert(INDEX_HEADER, HeaderValue::from(mod_revision));
    Ok(response)
}

/// A page of a list.
#[derive(Serialize)]
struct ListView {
    entries: Vec<KeyView>,
    /// Whether more keys follow; ask again with `start_after` = the last key.
    more: bool,
}

/// `GET /v1/kv?prefix=p&limit=n&start_after=k`, optionally a long-poll.
async fn list(
    State(state): State<AppState>,
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
    let limit = query.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let consistency = query.consistency()?;
    let blocking = query.blocking(state.config.max_wait_ms)?;
    if consistency == Consistency::Linearizable {
        linearizable_barrier(&state).await?;
    }
    let store = &state.store;
    if let Some(Blocking { index, wait }) = blocking {
        let waiter = store
            .watches
            .watch(WatchTarget::Prefix(prefix.clone()), index);
        if store.revision() <= index {
            let _ = tokio::time::timeout(wait, waiter).await;
        }
    }
    let revision = store.revision();
    let (entries, more) = store
        .view
        .list(&prefix, query.get("start_after"), limit as usize)?;
    let entries = entries
        .into_iter()
        .map(|(key, entry)| KeyView::new(key, entry))
        .collect::<Result<Vec<_>, _>>()?;
    let mut response = Json(ListView { entries, more }).into_response();
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
    if crate::api::metadata::is_metadata_key(key) {
        return Err(ApiError::bad_field(
            "reserved_key",
            "key",
            format!(
                "{key:?} holds typed metadata: write it through /v1/topics or /v1/subscriptions"
            ),
        ));
    }
    Ok(())
}

/// Checks the body is one JSON value and returns it as text.
pub fn validate_json(body: &[u8]) -> Result<String, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8 text"))?;
    serde_json::from_str::<&RawValue>(text).map_err(|error| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not one JSON value: {error}"),
        )
    })?;
    Ok(text.trim().to_string())
}

pub fn body_error(state: &AppState, rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        value_too_large(state, state.config.max_value_bytes + 1)
    } else {
        ApiError::bad_request(
            "invalid_body",
            format!("the body could not be read: {rejection}"),
        )
    }
}

pub fn value_too_large(state: &AppState, bytes: usize) -> ApiError {
    let limit = state.config.max_value_bytes;
    let message = if bytes > limit + 1 {
        format!("the value is {bytes} bytes, over the limit of {limit}")
    } else {
        format!("the value is over the limit of {limit} bytes")
    };
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", message)
}
