//! Every error the HTTP API returns, and every error of the layers below
//! turned into one, in this one place.
//!
//! The body is always the contract's [`ErrorBody`]; the status comes from
//! the code ([`ErrorCode::status`]). Bad input is a 4xx naming the
//! problem, never a 500; openraft's errors become 503 (`unavailable`,
//! `not_leader` with the leader's address) or 409 (a refused membership
//! change), whichever route they come from.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader, RaftError,
};
use schemas::api::{validation_code, ErrorBody, ErrorCode, FieldError, LeaderHint};
use schemas::ValidationError;

use crate::api::REVISION_HEADER;
use crate::error::StoreError;
use crate::types::{Node, NodeId, Revision};

/// Seconds a client is asked to wait before it retries a 503.
const RETRY_AFTER_S: u64 = 1;

/// An error answer of the API.
#[derive(Clone, Debug)]
pub struct ApiError {
    body: ErrorBody,
    retry_after_s: Option<u64>,
    revision: Option<Revision>,
}

impl ApiError {
    /// An error with this code (which decides the status) and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let retry_after_s = (code.status() == 503).then_some(RETRY_AFTER_S);
        ApiError {
            body: ErrorBody::new(code, message),
            retry_after_s,
            revision: None,
        }
    }

    /// An error naming the offending field, parameter or header.
    pub fn bad_field(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        ApiError::new(code, message).with_field(field)
    }

    /// 404 for a key that does not exist.
    pub fn key_not_found(key: &str) -> Self {
        ApiError::new(
            ErrorCode::KeyNotFound,
            format!("key {key:?} does not exist"),
        )
    }

    /// 503: no leader, no quorum, or the node is not ready; retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unavailable, message)
    }

    /// 503 `not_leader`: this node cannot take the request and could not
    /// pass it on; `leader` tells the client where to go, when known.
    pub fn not_leader(message: impl Into<String>, leader: Option<LeaderHint>) -> Self {
        let mut error = ApiError::new(ErrorCode::NotLeader, message);
        error.body.error.leader = leader;
        error
    }

    /// 500: a fault of this server, not of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Internal, message)
    }

    /// The message with `hint` (what to do instead) added after it.
    pub fn with_hint(mut self, hint: &str) -> Self {
        self.body.error.message = format!("{}; {hint}", self.body.error.message);
        self
    }

    /// Names the field the error is about.
    pub fn with_field(mut self, field: &str) -> Self {
        if !field.is_empty() {
            self.body.error.field = Some(field.to_string());
        }
        self
    }

    /// Adds the `X-Kv-Revision` the answer reflects.
    pub fn with_revision(mut self, revision: Revision) -> Self {
        self.revision = Some(revision);
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.body.error.code
    }

    /// What the error says, for people.
    pub fn message(&self) -> &str {
        &self.body.error.message
    }

    /// The error's body and the revision it names: what another node needs
    /// to give the same answer (see [`ApiError::from_parts`]).
    pub fn into_parts(self) -> (ErrorBody, Option<Revision>) {
        (self.body, self.revision)
    }

    /// The error another node answered with `body`, naming `revision`.
    pub fn from_parts(body: ErrorBody, revision: Option<Revision>) -> Self {
        let mut error = ApiError::new(body.error.code, String::new());
        error.body = body;
        error.revision = revision;
        error
    }
}

/// 404 `lease_not_found` for lease `id`.
pub fn lease_not_found(id: u64) -> ApiError {
    ApiError::new(
        ErrorCode::LeaseNotFound,
        format!("lease {id} does not exist (never granted, revoked, or expired)"),
    )
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        let field = error.field().to_string();
        ApiError::new(validation_code(&error), error.to_string()).with_field(&field)
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        let refused = ApiError::new(error.code, error.message);
        if error.field.is_empty() {
            refused
        } else {
            refused.with_field(&error.field)
        }
    }
}

impl From<StoreError> for ApiError {
    /// A 500; damaged data it names also takes the node out of readiness
    /// (`store::note_damage`).
    fn from(error: StoreError) -> Self {
        crate::store::note_damage(&error);
        tracing::error!(%error, "storage failure");
        ApiError::internal(format!("storage failure: {error}"))
    }
}

impl From<&ForwardToLeader<NodeId, Node>> for ApiError {
    fn from(forward: &ForwardToLeader<NodeId, Node>) -> Self {
        match (&forward.leader_id, &forward.leader_node) {
            (Some(id), Some(node)) if !node.addr.is_empty() => ApiError::not_leader(
                format!("this node is not the leader; node {id} at {} is", node.addr),
                Some(LeaderHint {
                    id: *id,
                    addr: node.addr.clone(),
                }),
            ),
            (Some(id), Some(_)) => {
                ApiError::not_leader(format!("this node is not the leader; node {id} is"), None)
            }
            _ => ApiError::not_leader("no leader is known yet", None),
        }
    }
}

impl From<Fatal<NodeId>> for ApiError {
    fn from(fatal: Fatal<NodeId>) -> Self {
        ApiError::unavailable(format!("raft stopped: {fatal}"))
    }
}

impl From<ChangeMembershipError<NodeId>> for ApiError {
    fn from(error: ChangeMembershipError<NodeId>) -> Self {
        ApiError::new(ErrorCode::MembershipChangeRefused, error.to_string())
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, Node>>> for ApiError {
    fn from(error: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Self {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                ApiError::from(&forward)
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => error.into(),
            RaftError::Fatal(fatal) => fatal.into(),
        }
    }
}

impl From<RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>> for ApiError {
    fn from(error: RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>) -> Self {
        match error {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)) => {
                ApiError::from(&forward)
            }
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error)) => {
                ApiError::unavailable(format!("no quorum: {error}"))
            }
            RaftError::Fatal(fatal) => fatal.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.body.error.code.status())
            .expect("every error code has a valid HTTP status");
        let json = serde_json::to_vec(&self.body).expect("an error body serializes");
        let mut response = (status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(revision) = self.revision {
            headers.insert(REVISION_HEADER, HeaderValue::from(revision));
        }
        response
    }
}
