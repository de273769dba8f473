//! The server side of node-to-node Raft RPC (`/raft/*`, internal).
//!
//! These routes sit outside the API's load shedding and body limit: a
//! node busy with clients must still answer its leader's heartbeats, and a
//! batch of entries or a snapshot is larger than one value. They have
//! bounds of their own instead ([`BodyBound`]): a body is read whole, up to
//! `--max-raft-body-bytes` (a snapshot up to `--max-snapshot-bytes`) and
//! within `--raft-body-timeout-ms`, before a handler sees it, so a sender
//! can neither fill the node's memory nor hold a request open for ever.

use std::io::Cursor;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::Snapshot;
use tracing::warn;

use schemas::api::ErrorCode;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::config::Config;
use crate::network::decode_snapshot;
use crate::store::snapshot::SnapshotFile;
use crate::types::{Node, NodeId, TypeConfig};

/// How much of a `/raft/*` body is read, and for how long.
#[derive(Clone, Copy, Debug)]
struct BodyBound {
    /// Bytes at most.
    bytes: usize,
    /// The whole body must have arrived within this.
    deadline: Duration,
}

/// The `/raft/*` routes, their bodies bounded as `config` says.
pub fn routes(config: &Config) -> Router<AppState> {
    let deadline = Duration::from_millis(config.raft_body_timeout_ms);
    let rpc_bound = BodyBound {
        bytes: config.max_raft_body_bytes,
        deadline,
    };
    let snapshot_bound = BodyBound {
        bytes: config.max_snapshot_bytes,
        deadline,
    };
    let rpc = Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/read-index", post(read_index))
        .layer(axum::middleware::from_fn_with_state(
            rpc_bound,
            read_bounded,
        ));
    let snapshots = Router::new().route("/raft/snapshot", post(snapshot)).layer(
        axum::middleware::from_fn_with_state(snapshot_bound, read_bounded),
    );
    // The bound is [`read_bounded`]'s; axum's own would stop at 2 MB.
    rpc.merge(snapshots).layer(DefaultBodyLimit::disable())
}

/// Reads the body whole within `bound`, then passes it on: 413 beyond its
/// bytes, 400 when it does not arrive in time.
async fn read_bounded(State(bound): State<BodyBound>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let read = tokio::time::timeout(bound.deadline, axum::body::to_bytes(body, bound.bytes)).await;
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(error)) if is_length_limit(&error) => {
            warn!(%path, limit = bound.bytes, "refused a raft body over the limit");
            let message = format!(
                "the body of {path} is over the limit of {} bytes",
                bound.bytes
            );
            return ApiError::new(ErrorCode::ValueTooLarge, message).into_response();
        }
        Ok(Err(error)) => {
            let message = format!("the body of {path} could not be read: {error}");
            return ApiError::new(ErrorCode::InvalidBody, message).into_response();
        }
        Err(_) => {
            warn!(%path, deadline = ?bound.deadline, "a raft body did not arrive in time");
            let message = format!(
                "the body of {path} did not arrive within {} ms",
                bound.deadline.as_millis()
            );
            return ApiError::new(ErrorCode::InvalidBody, message).into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// Whether reading a body stopped at its length limit.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

async fn append(
    State(state): State<AppState>,
    Json(request): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    let reply = state.raft.append_entries(request).await;
    if matches!(
        reply,
        Ok(AppendEntriesResponse::Success
            | AppendEntriesResponse::PartialSuccess(_)
            | AppendEntriesResponse::Conflict)
    ) {
        // Taken from a leader of the current term: the name server's
        // proof that this follower is not cut off.
        state.leader_contact.record();
    }
    Json(reply)
}

async fn vote(
    State(state): State<AppState>,
    Json(request): Json<VoteRequest<NodeId>>,
) -> Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
    Json(state.raft.vote(request).await)
}

/// A whole snapshot: checked record by record before openraft sees it, so
/// a damaged transfer is refused (and sent again) rather than installed.
async fn snapshot(State(state): State<AppState>, body: Bytes) -> Response {
    let (preamble, data) = match decode_snapshot(&body) {
        Ok(parts) => parts,
        Err(why) => return ApiError::new(ErrorCode::InvalidSnapshot, why).into_response(),
    };
    // A view of the body, not a copy: a snapshot may be as large as
    // --max-snapshot-bytes, and openraft takes one copy of its own below.
    let data = body.slice_ref(data);
    let checked = SnapshotFile::parse(&preamble.meta.snapshot_id, data.clone())
        .map_err(|error| error.to_string())
        .and_then(|file| {
            file.records()
                .try_for_each(|record| record.map(drop))
                .map_err(|error| error.to_string())
        });
    if let Err(why) = checked {
        warn!(snapshot = %preamble.meta.snapshot_id, %why, "refused a damaged snapshot");
        return ApiError::new(ErrorCode::InvalidSnapshot, why).into_response();
    }
    let snapshot = Snapshot {
        meta: preamble.meta,
        snapshot: Box::new(Cursor::new(data.to_vec())),
    };
    let reply = state
        .raft
        .install_full_snapshot(preamble.vote, snapshot)
        .await;
    (StatusCode::OK, Json(reply)).into_response()
}

/// The leader's read index: the log index a follower must apply before it
/// serves a linearizable read (confirmed by a quorum's heartbeats, in a
/// round shared with the reads that arrive meanwhile).
async fn read_index(
    State(state): State<AppState>,
) -> Json<Result<u64, RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>>> {
    let reply = state.read_index.read_log_id(&state.raft).await;
    Json(reply.map(|(read, _applied)| read.map_or(0, |id| id.index)))
}
