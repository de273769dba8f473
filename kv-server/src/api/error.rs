//! Every error the HTTP API returns, mapped to a status in one place.
//!
//! The body is always `{"error":{"code","message","field"?}}`; bad input is
//! a 4xx naming the problem, never a 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use schemas::ValidationError;
use serde::Serialize;

use crate::error::StoreError;
use crate::types::Revision;

/// The code of a 503 that says the node answering is not the leader.
pub const NOT_LEADER: &str = "not_leader";

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after_s: Option<u64>,
    revision: Option<Revision>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_s: None,
            revision: None,
        }
    }

    /// 400 with a code naming the problem.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 naming the offending field or parameter.
    pub fn bad_field(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        ApiError::bad_request(code, message).with_field(field)
    }

    /// 404 for a key that does not exist.
    pub fn key_not_found(key: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            format!("key {key:?} does not exist"),
        )
    }

    /// 503: no leader, or the node is not ready; the client should retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        error.retry_after_s = Some(1);
        error
    }

    /// 503 `not_leader`: this node cannot take the request and no node it
    /// could pass it to is known; the client should retry.
    pub fn not_leader(message: impl Into<String>) -> Self {
        let mut error = ApiError::unavailable(message);
        error.code = NOT_LEADER;
        error
    }

    /// 500: a fault of this server (storage, consensus), not of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Names the field the error is about.
    pub fn with_field(mut self, field: &str) -> Self {
        if !field.is_empty() {
            self.field = Some(field.to_string());
        }
        self
    }

    /// Adds the `X-Kv-Revision` the answer reflects.
    pub fn with_revision(mut self, revision: Revision) -> Self {
        self.revision = Some(revision);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        let code = match &error {
            ValidationError::NotJson { .. } => "invalid_json",
            ValidationError::Missing { .. } => "missing_field",
            ValidationError::WrongType { .. } => "invalid_field",
            ValidationError::Blank { .. } => "blank_field",
            ValidationError::IllegalCharacter { .. } => "illegal_character",
            ValidationError::TooLong { .. } => "too_long",
            ValidationError::OutOfRange { .. } => "out_of_range",
            ValidationError::NotOneOf { .. } => "not_allowed_value",
            ValidationError::Malformed { .. } => "malformed",
            ValidationError::SystemName { .. } => "system_name",
            ValidationError::PathMismatch { .. } => "name_mismatch",
            ValidationError::Unchangeable { .. } => "unchangeable",
            ValidationError::Duplicate { .. } => "duplicate",
        };
        let field = error.field().to_string();
        ApiError::bad_request(code, error.to_string()).with_field(&field)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "storage failure");
        ApiError::internal(format!("storage failure: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let json = serde_json::to_vec(&body).expect("an error body serializes");
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(revision) = self.revision {
            headers.insert(super::REVISION_HEADER, HeaderValue::from(revision));
        }
        response
    }
}
