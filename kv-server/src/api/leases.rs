//! `/v1/leases`: grant, keep alive, look at and revoke leases (etcd's
//! model). Grants and revokes go through Raft; keep-alives and the time a
//! lease has left are the leader's alone (see `crate::leases`), so every
//! route here is served by the leader: a follower passes the reads on as
//! it passes writes.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use schemas::api::{
    parse_lease_id, ErrorCode, GrantLease, Lease, LeaseInfo, LeaseKeepAlive, LeaseList,
    LeaseRevoked, LeaseSummary,
};

use crate::api::auth::Presented;
use crate::api::error::{lease_not_found, ApiError};
use crate::api::params::{path_capture, Query};
use crate::api::propose::propose;
use crate::api::read::linearizable_barrier;
use crate::api::topic_reads::read_topic;
use crate::api::write::object_body;
use crate::api::AppState;
use crate::leases::KeepAlive;
use crate::store::leases;
use crate::types::{Command, CommandResult, LeaseId, Op};

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/leases", post(grant).get(list))
        .route("/v1/leases/{id}", get(info).delete(revoke))
        .route("/v1/leases/{id}/keepalive", post(keep_alive))
}

/// The lease id of the path.
fn lease_id(path: Result<Path<String>, PathRejection>) -> Result<LeaseId, ApiError> {
    let text = path_capture(path, ErrorCode::InvalidLeaseId, "id")?;
    Ok(parse_lease_id(&text, "id")?)
}

/// `POST /v1/leases {"ttl_s": N}` → 201 `{"id", "ttl_s"}`.
async fn grant(
    State(state): State<AppState>,
    Presented(credential): Presented,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    Query::parse(query.as_deref(), &[])?;
    let asked: GrantLease = object_body(&state, body, "{\"ttl_s\": <seconds>}")?;
    asked.validate()?;
    let command = Command {
        timestamp_ms: crate::clock::now_ms(),
        idempotency_key: None,
        request_hash: None,
        op: Op::LeaseGrant {
            ttl_ms: asked.ttl_s * 1000,
            max_leases: state.config.max_leases,
        },
    };
    match propose(&state, command, credential.as_ref()).await? {
        CommandResult::LeaseGranted { id, .. } => Ok((
            StatusCode::CREATED,
            Json(Lease {
                id,
                ttl_s: asked.ttl_s,
            }),
        )
            .into_response()),
        CommandResult::LeaseLimit { max_leases } => Err(ApiError::new(
            ErrorCode::LeaseLimit,
            format!("{max_leases} leases exist, the most --max-leases allows: revoke some first"),
        )),
        other => Err(ApiError::internal(format!(
            "a lease grant produced {other:?}"
        ))),
    }
}

/// `POST /v1/leases/{id}/keepalive` → `{"id", "ttl_s"}`: the lease has its
/// full TTL again. Answered only once this node has confirmed it still
/// leads, in the term its deadlines are kept for, so a deposed leader never
/// acknowledges a keep-alive that counts for nothing. (A follower's barrier
/// asks the leader, so the barrier alone would not show it.)
async fn keep_alive(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = lease_id(path)?;
    Query::parse(query.as_deref(), &[])?;
    no_body(body)?;
    linearizable_barrier(&state).await?;
    match state
        .store
        .leases
        .keep_alive(id, Instant::now(), leader_term(&state))
    {
        KeepAlive::Renewed(ttl) => Ok(Json(LeaseKeepAlive {
            id,
            ttl_s: ttl.as_secs(),
        })
        .into_response()),
        KeepAlive::NotFound => Err(lease_not_found(id)),
        KeepAlive::NotLeading => Err(not_keeping(&state)),
    }
}

/// A keep-alive takes no body (or `{}`): one asking for another TTL was
/// answered as if it had been heard.
fn no_body(body: Result<Bytes, BytesRejection>) -> Result<(), ApiError> {
    let body =
        body.map_err(|rejection| ApiError::new(ErrorCode::InvalidBody, rejection.body_text()))?;
    let text = body.trim_ascii();
    if text.is_empty() || text == b"{}" {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidBody,
        "a keep-alive takes no body: a lease keeps the TTL it was granted with (grant \
         another lease for another TTL)",
    ))
}

/// `GET /v1/leases/{id}` → the TTL, the time left and the keys.
async fn info(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = lease_id(path)?;
    Query::parse(query.as_deref(), &[])?;
    let store = std::sync::Arc::clone(&state.store);
    let found = read_topic(move || store.lease_with_keys(id)).await??;
    let Some((entry, keys)) = found else {
        return Err(lease_not_found(id));
    };
    let record = lease_record(id, &entry.value)?;
    let remaining = remaining(&state, id)?;
    Ok(Json(LeaseInfo {
        id,
        ttl_s: record.ttl_ms / 1000,
        remaining_ttl_s: remaining,
        keys,
    })
    .into_response())
}

/// `GET /v1/leases` → every lease, with its TTL and time left.
async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    Query::parse(query.as_deref(), &[])?;
    let store = std::sync::Arc::clone(&state.store);
    let all = read_topic(move || store.all_leases()).await??;
    let leases = all
        .into_iter()
        .map(|(id, record)| {
            Ok(LeaseSummary {
                id,
                ttl_s: record.ttl_ms / 1000,
                remaining_ttl_s: remaining(&state, id)?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(LeaseList { leases }).into_response())
}

/// `DELETE /v1/leases/{id}`: the lease and its keys go, as one unit.
async fn revoke(
    State(state): State<AppState>,
    Presented(credential): Presented,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = lease_id(path)?;
    Query::parse(query.as_deref(), &[])?;
    let command = Command {
        timestamp_ms: crate::clock::now_ms(),
        idempotency_key: None,
        request_hash: None,
        op: Op::LeaseRevoke { id },
    };
    match propose(&state, command, credential.as_ref()).await? {
        CommandResult::LeaseEnded { revision, deleted } => Ok(Json(LeaseRevoked {
            id,
            revision,
            deleted,
        })
        .into_response()),
        CommandResult::LeaseNotFound { id } => Err(lease_not_found(id)),
        other => Err(ApiError::internal(format!(
            "a lease revoke produced {other:?}"
        ))),
    }
}

/// Whole seconds lease `id` has left, rounded up (at least 1 while it
/// lives); 503 if this node keeps no deadlines.
fn remaining(state: &AppState, id: LeaseId) -> Result<u64, ApiError> {
    let left = state
        .store
        .leases
        .remaining(id, Instant::now(), leader_term(state))
        .ok_or_else(|| not_keeping(state))?;
    Ok(left.as_millis().div_ceil(1000) as u64)
}

/// The term this node leads in, if it leads now.
fn leader_term(state: &AppState) -> Option<u64> {
    let metrics = state.raft.metrics();
    let metrics = metrics.borrow();
    (metrics.state == openraft::ServerState::Leader).then(|| metrics.vote.leader_id().term)
}

/// 503: the lease exists but this node does not keep its deadline. A node
/// that leads, but has yet to load the deadlines (until its term's first
/// entry is applied), says so as `unavailable`: `not_leader` would send a
/// follower passing the request on to wait for another leader.
fn not_keeping(state: &AppState) -> ApiError {
    match leader_term(state) {
        Some(term) => ApiError::unavailable(format!(
            "node {} has just become the leader (term {term}) and does not keep the leases' \
             deadlines yet: try again",
            state.node_id
        )),
        None => ApiError::not_leader(
            "this node does not keep the leases' deadlines now (it is not the leader): try \
             again",
            None,
        ),
    }
}

fn lease_record(id: LeaseId, value: &[u8]) -> Result<leases::LeaseRecord, ApiError> {
    serde_json::from_slice(value)
        .map_err(|error| ApiError::internal(format!("lease {id} does not decode: {error}")))
}
