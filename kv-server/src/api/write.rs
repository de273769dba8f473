//! What every write route shares: the condition and idempotency headers,
//! the body's checks, and turning a write's result into the answer.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemas::api::header::IDEMPOTENCY_KEY;
use schemas::api::{ErrorCode, WriteResult};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::api::error::{lease_not_found, ApiError};
use crate::api::params::header;
use crate::api::{AppState, REVISION_HEADER};
use crate::types::{CommandResult, Condition, Revision};

/// `ETag: "<revision>"`.
pub fn etag(revision: Revision) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).expect("a quoted number is a valid header")
}

/// Reads the condition headers: `If-Match: "<rev>"`, `If-None-Match: *`.
pub fn condition(headers: &HeaderMap) -> Result<Condition, ApiError> {
    let if_match = header(headers, "if-match")?;
    let if_none_match = header(headers, "if-none-match")?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(ApiError::new(
            ErrorCode::ConflictingConditions,
            "If-Match and If-None-Match cannot be combined",
        )),
        (Some(raw), None) => {
            // A quoted revision (an entity tag), or a bare one; only digits.
            let text = raw.trim();
            let revision = text
                .strip_prefix('"')
                .and_then(|quoted| quoted.strip_suffix('"'))
                .unwrap_or(text);
            Some(revision)
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<Revision>().ok())
                .map(Condition::ModRevision)
                .ok_or_else(|| {
                    ApiError::bad_field(
                        ErrorCode::InvalidHeader,
                        "If-Match",
                        format!("If-Match takes a quoted revision such as \"42\", got {raw:?}"),
                    )
                })
        }
        (None, Some(raw)) if raw.trim() == "*" => Ok(Condition::Absent),
        (None, Some(raw)) => Err(ApiError::bad_field(
            ErrorCode::InvalidHeader,
            "If-None-Match",
            format!("If-None-Match takes only *, got {raw:?}"),
        )),
        (None, None) => Ok(Condition::Always),
    }
}

/// What a write's `Idempotency-Key` is checked against: a hash of the
/// request, from the parts that decide what it does (its route and method,
/// the key or name, the body, the condition and lease headers and
/// parameters), each length-prefixed; `None` without a key. The first 8
/// bytes of a SHA-256: a reused key is a client's mistake to catch, not an
/// adversary's forgery.
pub fn request_hash(idempotency_key: Option<Uuid>, parts: &[&[u8]]) -> Option<u64> {
    idempotency_key?;
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let first: [u8; 8] = digest[..8]
        .try_into()
        .expect("a SHA-256 digest is 32 bytes");
    Some(u64::from_le_bytes(first))
}

/// The request hash of the name server's own transactions, which it keys
/// after what they write and guards with its node's view (which may lag
/// another node's), so that the same registration sent through two nodes
/// still dedupes: one hash for all of them, the key alone deciding among
/// them. A client's request, hashed from its bytes, never matches it, so
/// a client that sends such a key is refused as reusing it rather than
/// handed the name server's result (and the reverse).
pub const INTERNAL_REQUEST_HASH: u64 = 0x6e61_6d65_7372_7600;

/// The hash part of a write's condition and lease, as the state machine
/// sees them (whichever header spelling gave them).
pub fn condition_part(condition: Condition, lease: Option<u64>) -> Vec<u8> {
    format!("{condition:?} lease={lease:?}").into_bytes()
}

/// The `Idempotency-Key` header: a UUID naming the write.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    header(headers, IDEMPOTENCY_KEY)?
        .map(|raw| {
            Uuid::parse_str(raw.trim()).map_err(|_| {
                ApiError::bad_field(
                    ErrorCode::InvalidHeader,
                    "Idempotency-Key",
                    format!("Idempotency-Key must be a UUID, got {raw:?}"),
                )
            })
        })
        .transpose()
}

/// Turns the result of a write into the HTTP answer.
pub fn write_response(key: &str, asked: Condition, result: CommandResult) -> Response {
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
            let body = WriteResult {
                key: key.to_string(),
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
            let mut error = ApiError::new(ErrorCode::PreconditionFailed, message);
            // The header whose condition did not hold.
            match asked {
                Condition::ModRevision(_) => error = error.with_field("If-Match"),
                Condition::Absent => error = error.with_field("If-None-Match"),
                Condition::Always => {}
            }
            let mut response = error.into_response();
            if let Some(revision) = current_mod_revision {
                response.headers_mut().insert(header::ETAG, etag(revision));
            }
            response
        }
        CommandResult::NotFound => ApiError::key_not_found(key).into_response(),
        CommandResult::None => ApiError::internal("a write produced no result").into_response(),
        CommandResult::LeaseNotFound { id } => {
            lease_not_found(id).with_field("lease").into_response()
        }
        other => {
            ApiError::internal(format!("a write of {key:?} produced {other:?}")).into_response()
        }
    }
}

/// Checks the body is one JSON value and returns it as text.
pub fn validate_json(body: &[u8]) -> Result<String, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not UTF-8 text"))?;
    check_json(text)?;
    Ok(text.trim().to_string())
}

/// Checks `text` is one JSON value.
pub fn check_json(text: &str) -> Result<(), ApiError> {
    serde_json::from_str::<&RawValue>(text)
        .map(drop)
        .map_err(|error| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body is not one JSON value: {error}"),
            )
        })
}

/// The error for a body that could not be read.
pub fn body_error(state: &AppState, rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        value_too_large(state, state.config.max_value_bytes + 1)
    } else {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("the body could not be read: {rejection}"),
        )
    }
}

/// The error for a body that could not be read whole (with
/// `axum::body::to_bytes`): over its limit, stalled, or broken off.
pub fn body_read_error(state: &AppState, error: axum::Error) -> ApiError {
    let too_large = std::error::Error::source(&error)
        .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
        || error.to_string().contains("length limit");
    if too_large {
        crate::api::write::value_too_large(state, state.config.max_value_bytes + 1)
    } else if let Some(stalled) = crate::api::layers::BodyStalled::behind(&error) {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("the body could not be read: {stalled}"),
        )
    } else {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("the body could not be read: {error}"),
        )
    }
}

/// A request body that must be one JSON object of type `T`, whatever its
/// `Content-Type`, as every body of the API is read: an array is refused
/// (serde would read a struct from one), and a field of the wrong type or
/// missing is named.
pub fn object_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Result<axum::body::Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| body_error(state, rejection))?;
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body must be a JSON object: {shape}"),
        ));
    }
    Ok(schemas::from_json(&body)?)
}

/// 413 for a value over the limit.
pub fn value_too_large(state: &AppState, bytes: usize) -> ApiError {
    let limit = state.config.max_value_bytes;
    let message = if bytes > limit + 1 {
        format!("the value is {bytes} bytes, over the limit of {limit}")
    } else {
        format!("the value is over the limit of {limit} bytes")
    };
    ApiError::new(ErrorCode::ValueTooLarge, message)
}
