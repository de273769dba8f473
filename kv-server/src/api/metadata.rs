//! `/v1/topics` and `/v1/subscriptions`: RocketMQ topic configs and
//! subscription groups, validated, stored at `topics/{name}` and
//! `subscriptions/{group}`.
//!
//! The stored value is the config as the `schemas` crate normalizes it:
//! defaults filled in, unknown fields kept. A write checks the previous
//! config (fields fixed at creation) and commits with compare-and-set on the
//! revision it checked, so a concurrent change cannot slip in between.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use schemas::api::{ErrorCode, MetadataKind};
use schemas::{SubscriptionGroupConfig, TopicConfig, ValidateOptions};
use serde_json::value::RawValue;

use crate::api::auth::Presented;
use crate::api::error::ApiError;
use crate::api::params::{page_bounds, path_capture, Consistency, Query, LIST_PAGE};
use crate::api::write::{
    body_error, condition, condition_part, etag, idempotency_key, request_hash, value_too_large,
    write_response,
};
use crate::api::{linearizable_barrier, propose, AppState, REVISION_HEADER};
use crate::types::{Command, CommandResult, Condition, Op};

/// The routes of both kinds.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/topics", get(list::<TopicConfig>))
        .route(
            "/v1/topics/{name}",
            get(get_one::<TopicConfig>)
                .put(put::<TopicConfig>)
                .delete(delete::<TopicConfig>),
        )
        .route("/v1/subscriptions", get(list::<SubscriptionGroupConfig>))
        .route(
            "/v1/subscriptions/{name}",
            get(get_one::<SubscriptionGroupConfig>)
                .put(put::<SubscriptionGroupConfig>)
                .delete(delete::<SubscriptionGroupConfig>),
        )
}

/// The name from the path, checked (system names pass here; the body's
/// validation decides on them).
fn name_from_path<T: MetadataKind>(
    path: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let name = path_capture(path, ErrorCode::InvalidName, "name")?;
    T::validate_name(&name, ValidateOptions::ALLOW_SYSTEM)?;
    Ok(name)
}

/// `?system=true` lets a call create or delete RocketMQ's reserved system
/// names (as RocketMQ's broker refuses to delete a system topic).
fn options(query: &Query) -> Result<ValidateOptions, ApiError> {
    match query.get("system") {
        None | Some("false") => Ok(ValidateOptions::default()),
        Some("true") => Ok(ValidateOptions::ALLOW_SYSTEM),
        Some(other) => Err(ApiError::bad_field(
            ErrorCode::InvalidParameter,
            "system",
            format!("system must be true or false, got {other:?}"),
        )),
    }
}

/// 404 for a config that does not exist.
fn not_found<T: MetadataKind>(name: &str) -> ApiError {
    ApiError::new(T::NOT_FOUND, format!("{} {name:?} does not exist", T::NOUN))
}

fn stored<T: MetadataKind>(key: &str, value: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(value).map_err(|error| {
        ApiError::internal(format!(
            "stored {} {key:?} does not parse: {error}",
            T::NOUN
        ))
    })
}

async fn put<T: MetadataKind>(
    State(state): State<AppState>,
    Presented(credential): Presented,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = name_from_path::<T>(path)?;
    let query = Query::parse(query.as_deref(), &["system", "lease"])?;
    let options = options(&query)?;
    let lease = query.lease()?;
    let body = body.map_err(|rejection| body_error(&state, rejection))?;
    if body.len() > state.config.max_value_bytes {
        return Err(value_too_large(&state, body.len()));
    }
    let config: T = schemas::from_json(&body)?;
    config.check_path_name(&name)?;
    config.validate(options)?;
    let key = format!("{}{name}", T::KEY_PREFIX);
    let current = state.store.get(&key)?;
    if let Some(entry) = &current {
        config.check_update_of(&stored::<T>(&key, &entry.value)?)?;
    }
    // The checks above hold for the revision read: commit only on it.
    let checked = match &current {
        Some(entry) => Condition::ModRevision(entry.mod_revision),
        None => Condition::Absent,
    };
    let asked = condition(&headers)?;
    let retry_token = idempotency_key(&headers)?;
    let value = serde_json::to_string(&config).expect("a validated config serializes");
    // The request as the client sent it: the condition checked here moves
    // with the key, so a retry would not carry the same one.
    let hash = request_hash(
        retry_token,
        &[
            b"PUT",
            T::KEY_PREFIX.as_bytes(),
            name.as_bytes(),
            value.as_bytes(),
            &condition_part(asked, lease),
        ],
    );
    if asked != Condition::Always && asked != checked {
        if retry_token.is_none() {
            return Ok(write_response(
                &key,
                asked,
                CommandResult::PreconditionFailed {
                    current_mod_revision: current.map(|entry| entry.mod_revision),
                },
            ));
        }
        // Perhaps a retry of a write that already applied (and changed what
        // the condition sees): the state machine answers it from the dedupe
        // table, or fails the condition as the check here would.
        let command = Command {
            timestamp_ms: crate::clock::now_ms(),
            idempotency_key: retry_token,
            request_hash: hash,
            op: Op::Put {
                key: key.clone(),
                value,
                condition: asked,
                lease,
            },
        };
        return Ok(write_response(
            &key,
            asked,
            propose(&state, command, credential.as_ref()).await?,
        ));
    }
    let command = Command {
        timestamp_ms: crate::clock::now_ms(),
        idempotency_key: retry_token,
        request_hash: hash,
        op: Op::Put {
            key: key.clone(),
            value,
            condition: checked,
            lease,
        },
    };
    match propose(&state, command, credential.as_ref()).await? {
        CommandResult::PreconditionFailed { .. } if asked == Condition::Always => {
            Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "{} {name:?} changed while this write was checked; retry",
                    T::NOUN
                ),
            ))
        }
        result => Ok(write_response(&key, asked, result)),
    }
}

async fn get_one<T: MetadataKind>(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let name = name_from_path::<T>(path)?;
    let query = Query::parse(query.as_deref(), &["consistency"])?;
    if query.consistency()? == Consistency::Linearizable {
        linearizable_barrier(&state).await?;
    }
    let key = format!("{}{name}", T::KEY_PREFIX);
    let (entry, revision) = state.store.get_at_revision(&key)?;
    let Some(entry) = entry else {
        return Err(not_found::<T>(&name).with_revision(revision));
    };
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        entry.value,
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(entry.mod_revision));
    response
        .headers_mut()
        .insert(REVISION_HEADER, HeaderValue::from(revision));
    Ok(response)
}

async fn delete<T: MetadataKind>(
    State(state): State<AppState>,
    Presented(credential): Presented,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = name_from_path::<T>(path)?;
    let query = Query::parse(query.as_deref(), &["system"])?;
    // Deleting TBW102 stops brokers from creating topics: a system name
    // goes only when the call says it means one, as a create does.
    T::validate_name(&name, options(&query)?)?;
    let key = format!("{}{name}", T::KEY_PREFIX);
    let retry_token = idempotency_key(&headers)?;
    let condition = condition(&headers)?;
    let command = Command {
        timestamp_ms: crate::clock::now_ms(),
        idempotency_key: retry_token,
        request_hash: request_hash(
            retry_token,
            &[
                b"DELETE",
                T::KEY_PREFIX.as_bytes(),
                name.as_bytes(),
                &condition_part(condition, None),
            ],
        ),
        op: Op::Delete {
            key: key.clone(),
            condition,
        },
    };
    match propose(&state, command, credential.as_ref()).await? {
        CommandResult::NotFound => Err(not_found::<T>(&name)),
        result => Ok(write_response(&key, condition, result)),
    }
}

async fn list<T: MetadataKind>(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref(), &["limit", "start_after", "consistency"])?;
    let limit = query.limit(LIST_PAGE)?;
    if query.consistency()? == Consistency::Linearizable {
        linearizable_barrier(&state).await?;
    }
    let start_after = query
        .get("start_after")
        .map(|name| format!("{}{name}", T::KEY_PREFIX));
    let page = state.store.list(
        T::KEY_PREFIX,
        start_after.as_deref(),
        page_bounds(&state, limit),
    )?;
    let (entries, more, revision) = (page.entries, page.more, page.revision);
    // The stored configs are written out as stored, in their field order.
    let mut body = format!("{{\"{}\":[", T::COLLECTION).into_bytes();
    for (i, (key, entry)) in entries.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::from_slice::<&RawValue>(&entry.value)
            .map_err(|_| ApiError::internal(format!("stored value of {key:?} is not JSON")))?;
        body.extend_from_slice(&entry.value);
    }
    body.extend_from_slice(format!("],\"more\":{more}}}").as_bytes());
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    response
        .headers_mut()
        .insert(REVISION_HEADER, HeaderValue::from(revision));
    Ok(response)
}
