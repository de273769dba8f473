//! Any node takes any request: what only the leader can do is done there.
//!
//! * Writes (every method but GET and HEAD) reaching a follower are passed
//!   to the leader whole — method, path, query, headers, body — and the
//!   leader's answer is passed back, so the client sees one answer. If the
//!   leader changed or was gone before it got the request, the follower
//!   waits for the next leader and passes it there; a request the leader
//!   may have received is never sent twice.
//! * Linearizable reads on a follower ask the leader for its read index
//!   (confirmed by a quorum) and wait until this node has applied that far;
//!   the read itself, and any long-poll after it, is served here.
//!
//! A forwarded request carries `X-Kv-Forwarded-By` and is never forwarded
//! again: a node that is no longer the leader answers 503 `not_leader`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::time::Instant;
use tracing::debug;

use crate::api::error::{ApiError, NOT_LEADER};
use crate::api::AppState;
use crate::read_index::RemoteFailure;
use crate::types::NodeId;

/// Header of a forwarded request: the id of the node that forwarded it.
pub const FORWARDED_HEADER: HeaderName = HeaderName::from_static("x-kv-forwarded-by");

/// How long a request waits for a leader to be known before it gets 503.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// Times a request is passed on after the leader changed under it.
const FORWARD_ATTEMPTS: usize = 3;

/// Who leads, as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leader {
    /// This node.
    This,
    /// Another node, at this base URL.
    Other {
        /// Its id.
        id: NodeId,
        /// Its base URL.
        addr: String,
    },
}

/// The leader this node knows, if it is a member of the cluster (a vote
/// remembered from an older membership does not count).
pub fn known_leader(state: &AppState) -> Option<Leader> {
    let metrics = state.raft.metrics().borrow().clone();
    let leader = metrics.current_leader?;
    let node = metrics
        .membership_config
        .membership()
        .get_node(&leader)
        .cloned()?;
    Some(if leader == state.node_id {
        Leader::This
    } else {
        Leader::Other {
            id: leader,
            addr: node.addr,
        }
    })
}

/// Waits (bounded by `deadline` and [`LEADER_WAIT`]) until a leader other
/// than `not` is known.
pub async fn wait_for_leader(
    state: &AppState,
    not: Option<&Leader>,
    deadline: Instant,
) -> Result<Leader, ApiError> {
    let deadline = deadline.min(Instant::now() + LEADER_WAIT);
    let mut metrics = state.raft.metrics();
    loop {
        if let Some(leader) = known_leader(state) {
            if Some(&leader) != not {
                return Ok(leader);
            }
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return Err(ApiError::unavailable("raft stopped"));
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                return Err(ApiError::not_leader("no leader is known yet"));
            }
        }
    }
}

/// Middleware: passes writes that reach a follower to the leader.
pub async fn forward_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
    if read_only || request.headers().contains_key(FORWARDED_HEADER) {
        return next.run(request).await;
    }
    // Boxed: the forwarding path holds an HTTP client's large future, and a
    // parked long-poll passing through here should not carry its size.
    Box::pin(route_write(state, request, next)).await
}

/// Serves a write here if this node leads, else passes it to the leader.
async fn route_write(state: AppState, request: Request, next: Next) -> Response {
    let deadline = Instant::now() + Duration::from_millis(state.config.request_timeout_ms);
    let leader = match known_leader(&state) {
        Some(leader) => leader,
        None => match wait_for_leader(&state, None, deadline).await {
            Ok(leader) => leader,
            Err(error) => return error.into_response(),
        },
    };
    if leader == Leader::This {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let limit = state.config.max_value_bytes + 64 * 1024;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(error) => return body_read_error(&state, error).into_response(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_string();
    let mut leader = leader;
    for attempt in 1..=FORWARD_ATTEMPTS {
        let Leader::Other { id, addr } = &leader else {
            // Leadership came here while we waited: serve it ourselves.
            let request = Request::from_parts(parts, Body::from(body));
            return next.run(request).await;
        };
        match send(&state, addr, &parts.method, &path, &parts.headers, &body).await {
            Ok(Sent::Answer(response)) => return response,
            Ok(Sent::NotDelivered(why)) => {
                debug!(leader = id, attempt, %why, "the leader did not take the request; waiting for the next one");
            }
            Err(error) => return error.into_response(),
        }
        leader = match wait_for_leader(&state, Some(&leader), deadline).await {
            Ok(next_leader) => next_leader,
            Err(error) => return error.into_response(),
        };
    }
    ApiError::not_leader("the leader changed while the request was passed to it; retry")
        .into_response()
}

/// The outcome of passing a request on.
enum Sent {
    /// The leader's answer, to hand back.
    Answer(Response),
    /// The leader surely did not act on the request: it refused the
    /// connection, or answered that it is no longer the leader.
    NotDelivered(String),
}

/// Sends the request to the leader at `addr`.
async fn send(
    state: &AppState,
    addr: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Sent, ApiError> {
    let url = format!("{addr}{path}");
    // The leader bounds its own work (a write's commit, a new member's
    // catch-up); this guards against a leader that stopped answering.
    let mut timeout =
        Duration::from_millis(state.config.request_timeout_ms) + Duration::from_secs(1);
    if path.starts_with("/v1/cluster/members") {
        timeout += crate::api::cluster::CATCH_UP_TIMEOUT;
    }
    let mut outgoing = state
        .peers
        .request(method.clone(), &url)
        .timeout(timeout)
        .header(FORWARDED_HEADER, HeaderValue::from(state.node_id))
        .body(body.clone());
    for (name, value) in headers {
        if !is_hop_by_hop(name) && *name != header::HOST && *name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let response = match outgoing.send().await {
        Ok(response) => response,
        Err(error) if error.is_connect() => {
            return Ok(Sent::NotDelivered(format!("cannot connect to {addr}: {error}")))
        }
        Err(error) => {
            return Err(ApiError::unavailable(format!(
                "the leader at {addr} did not answer ({error}); the request may or may not have taken effect"
            )))
        }
    };
    let status = StatusCode::from_u16(response.status().as_u16())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer_headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if !is_hop_by_hop(name) && *name != header::CONTENT_LENGTH {
            answer_headers.append(name.clone(), value.clone());
        }
    }
    let bytes = response.bytes().await.map_err(|error| {
        ApiError::unavailable(format!(
            "the leader at {addr} answered {status} but its body was cut off: {error}"
        ))
    })?;
    if status == StatusCode::SERVICE_UNAVAILABLE
        && error_code(&bytes).as_deref() == Some(NOT_LEADER)
    {
        return Ok(Sent::NotDelivered(format!(
            "{addr} is no longer the leader"
        )));
    }
    let mut answer = (status, bytes).into_response();
    *answer.headers_mut() = answer_headers;
    Ok(Sent::Answer(answer))
}

/// The `error.code` of an error body.
fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["error"]["code"].as_str().map(str::to_string)
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
    )
}

/// The error for a body that could not be buffered for forwarding.
fn body_read_error(state: &AppState, error: axum::Error) -> ApiError {
    let too_large = std::error::Error::source(&error)
        .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
        || error.to_string().contains("length limit");
    if too_large {
        crate::api::kv::value_too_large(state, state.config.max_value_bytes + 1)
    } else {
        ApiError::bad_request(
            "invalid_body",
            format!("the body could not be read: {error}"),
        )
    }
}

/// The read index of a linearizable read on a follower: asked of the
/// leader, which confirms its leadership with a quorum first. Follows a
/// leader change a few times within `deadline`.
pub async fn remote_read_index(
    state: &AppState,
    mut leader: Leader,
    deadline: Instant,
) -> Result<Option<u64>, ApiError> {
    for _ in 0..FORWARD_ATTEMPTS {
        let Leader::Other { id, addr } = &leader else {
            return Ok(None);
        };
        // Shared with the reads that wait meanwhile; each still keeps to
        // its own deadline.
        let timeout = Duration::from_millis(state.config.request_timeout_ms);
        let shared = state
            .remote_read_index
            .read_index(&state.peers, addr.clone(), timeout);
        let reply = match tokio::time::timeout_at(deadline, shared).await {
            Err(_) => {
                return Err(ApiError::unavailable(format!(
                    "the leader at {addr} gave no read index in time"
                )))
            }
            Ok(Ok(reply)) => reply,
            Ok(Err(RemoteFailure::Unreachable(error))) => {
                debug!(leader = id, %error, "cannot reach the leader for a read index");
                leader = wait_for_leader(state, Some(&leader), deadline).await?;
                continue;
            }
            Ok(Err(RemoteFailure::Failed(error))) => return Err(ApiError::unavailable(error)),
        };
        match reply {
            Ok(index) => return Ok(Some(index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                leader = wait_for_leader(state, Some(&leader), deadline).await?;
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error))) => {
                return Err(ApiError::unavailable(format!("no quorum: {error}")))
            }
            Err(RaftError::Fatal(fatal)) => {
                return Err(ApiError::unavailable(format!(
                    "raft stopped on the leader: {fatal}"
                )))
            }
        }
    }
    Err(ApiError::not_leader(
        "the leader kept changing; no read index was confirmed",
    ))
}
