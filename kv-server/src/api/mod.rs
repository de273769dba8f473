//! The HTTP/JSON API: one router, one module per area.
//!
//! `AppState` is cloned into every handler; everything in it is shared and
//! safe to use concurrently (openraft's handle, the store whose only writer
//! is the state machine, an HTTP client pool).

pub mod changes;
pub mod cluster;
pub mod error;
pub mod forward;
pub mod kv;
pub mod metadata;
pub mod metrics;
pub mod params;
pub mod raft;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Json, Router};
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use tower::ServiceBuilder;
use tracing::{debug, debug_span, Instrument};

use crate::api::error::ApiError;
use crate::config::Config;
use crate::read_index::{ReadIndexRounds, RemoteReadIndexRounds};
use crate::store::Store;
use crate::types::{Command, CommandResult, Node, NodeId, Raft};

/// Header carrying the revision an answer reflects.
pub const REVISION_HEADER: HeaderName = HeaderName::from_static("x-kv-revision");
/// Header carrying the index a long-poll client sends next.
pub const INDEX_HEADER: HeaderName = HeaderName::from_static("x-kv-index");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// This node's id.
    pub node_id: NodeId,
    /// The openraft handle.
    pub raft: Raft,
    /// The topic, the view and the watchers.
    pub store: Arc<Store>,
    /// The node's configuration.
    pub config: Arc<Config>,
    /// The background cleaner, for its status.
    pub cleaner: Arc<compaction::CleanerHandle>,
    /// The committed log index, as the raft log store last saved it.
    pub committed: Arc<std::sync::atomic::AtomicU64>,
    /// HTTP client for requests passed to other nodes (pooled).
    pub peers: reqwest::Client,
    /// Read-index rounds, shared by the linearizable reads this node leads.
    pub read_index: ReadIndexRounds,
    /// Read-index requests to the leader, shared by this node's
    /// linearizable reads while it follows.
    pub remote_read_index: RemoteReadIndexRounds,
}

/// The whole API: the public routes behind load shedding and the body
/// limit, and the node-to-node `/raft/*` routes beside them.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.config.max_value_bytes + 64 * 1024;
    let max_concurrent = state.config.max_concurrent_requests;
    // Handlers bound their own waits (raft, long-polls); this is the outer
    // limit no request outlives, long-polls included.
    let hard_timeout =
        Duration::from_millis(state.config.max_wait_ms + 2 * state.config.request_timeout_ms);
    let public = Router::new()
        .merge(kv::routes())
        .merge(cluster::routes())
        .merge(changes::routes())
        .merge(metadata::routes())
        .merge(metrics::routes())
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::forward_writes,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .concurrency_limit(max_concurrent)
                .timeout(hard_timeout),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes));
    public
        .merge(raft::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Logs and counts each request and stamps `X-Kv-Revision` on every answer.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The route pattern, not the path, so keys do not become label values.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_string();
    let method = request.method().to_string();
    let span = debug_span!("request", %method, path = %request.uri().path());
    async move {
        let started = std::time::Instant::now();
        let mut response = next.run(request).await;
        if !response.headers().contains_key(REVISION_HEADER) {
            let revision = HeaderValue::from(state.store.revision());
            response.headers_mut().insert(REVISION_HEADER, revision);
        }
        let elapsed = started.elapsed();
        let status = response.status().as_u16().to_string();
        ::metrics::counter!(crate::metrics::REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status)
            .increment(1);
        ::metrics::histogram!(crate::metrics::REQUEST_SECONDS, "route" => route, "method" => method)
            .record(elapsed.as_secs_f64());
        debug!(
            status = response.status().as_u16(),
            elapsed_us = elapsed.as_micros() as u64,
            "answered"
        );
        response
    }
    .instrument(span)
    .await
}

async fn overloaded(error: BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::unavailable("the request took too long")
    } else {
        ApiError::unavailable(format!("the server is overloaded: {error}"))
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// `GET /healthz`: 200 once the node knows a leader that is a member of
/// its cluster (a vote remembered from before is not enough), else 503.
async fn healthz(State(state): State<AppState>) -> Response {
    let leader = match forward::known_leader(&state) {
        Some(forward::Leader::This) => state.node_id,
        Some(forward::Leader::Other { id, .. }) => id,
        None => return ApiError::unavailable("no leader is known yet").into_response(),
    };
    Json(serde_json::json!({
        "status": "ok",
        "node_id": state.node_id,
        "leader": leader,
    }))
    .into_response()
}

/// Proposes a command through Raft and waits until it is applied here.
pub async fn propose(state: &AppState, command: Command) -> Result<CommandResult, ApiError> {
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    // Boxed: openraft's futures are large, and a handler's future is as
    // large as its largest await; a parked long-poll should not carry them.
    match tokio::time::timeout(timeout, Box::pin(state.raft.client_write(command))).await {
        Err(_) => Err(ApiError::unavailable("the write was not committed in time")),
        Ok(Ok(response)) => Ok(response.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
            Err(not_leader(&forward))
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(error)))) => Err(
            ApiError::internal(format!("membership change failed: {error}")),
        ),
        Ok(Err(RaftError::Fatal(fatal))) => {
            Err(ApiError::unavailable(format!("raft stopped: {fatal}")))
        }
    }
}

/// Waits until this node may serve a linearizable read: the leader
/// confirmed with a quorum that it still leads, and this node has applied
/// up to the leader's commit index at that moment (the read index). On the
/// leader that is openraft's own check; a follower asks the leader.
pub async fn linearizable_barrier(state: &AppState) -> Result<(), ApiError> {
    // Boxed: the follower path holds an HTTP client's large future, and a
    // long-poll that passed the barrier should not carry its size while it
    // waits.
    Box::pin(read_barrier(state)).await
}

async fn read_barrier(state: &AppState) -> Result<(), ApiError> {
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut leader = match forward::known_leader(state) {
        Some(leader) => leader,
        None => forward::wait_for_leader(state, None, deadline).await?,
    };
    // Leadership may move between the two paths; each is tried at most twice.
    for _ in 0..2 {
        if leader == forward::Leader::This {
            match local_read_barrier(state, deadline).await? {
                Some(()) => return Ok(()),
                None => {
                    leader = forward::wait_for_leader(state, Some(&leader), deadline).await?;
                    continue;
                }
            }
        }
        let Some(index) = forward::remote_read_index(state, leader.clone(), deadline).await? else {
            leader = forward::Leader::This;
            continue;
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        return match state
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "read index")
            .await
        {
            Ok(_) => Ok(()),
            Err(_) => Err(ApiError::unavailable(format!(
                "this node did not apply up to the read index {index} in time"
            ))),
        };
    }
    Err(ApiError::not_leader(
        "leadership kept moving; no read index was confirmed",
    ))
}

/// The leader's own read barrier, in a read-index round shared with the
/// reads that arrive meanwhile; `None` when it turns out not to lead.
async fn local_read_barrier(
    state: &AppState,
    deadline: tokio::time::Instant,
) -> Result<Option<()>, ApiError> {
    let check = Box::pin(state.read_index.read_log_id(&state.raft));
    match tokio::time::timeout_at(deadline, check).await {
        Err(_) => Err(ApiError::unavailable(
            "no quorum confirmed the read in time",
        )),
        Ok(Ok((read, applied))) => {
            let index = read.map_or(0, |id| id.index);
            if applied.is_some_and(|id| id.index >= index) {
                return Ok(Some(()));
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match state
                .raft
                .wait(Some(remaining))
                .applied_index_at_least(Some(index), "read index")
                .await
            {
                Ok(_) => Ok(Some(())),
                Err(_) => Err(ApiError::unavailable(format!(
                    "this node did not apply up to the read index {index} in time"
                ))),
            }
        }
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => Ok(None),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error)))) => {
            Err(ApiError::unavailable(format!("no quorum: {error}")))
        }
        Ok(Err(RaftError::Fatal(fatal))) => {
            Err(ApiError::unavailable(format!("raft stopped: {fatal}")))
        }
    }
}

fn not_leader(forward: &ForwardToLeader<NodeId, Node>) -> ApiError {
    match (&forward.leader_id, &forward.leader_node) {
        (Some(id), Some(node)) => ApiError::not_leader(format!(
            "this node is not the leader; node {id} at {} is",
            node.addr
        )),
        _ => ApiError::not_leader("no leader is known yet"),
    }
}
