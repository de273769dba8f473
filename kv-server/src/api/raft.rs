//! The server side of node-to-node Raft RPC (`/raft/*`, internal).
//!
//! These routes sit outside the API's load shedding and body limit: a
//! node busy with clients must still answer its leader's heartbeats, and a
//! batch of entries or a snapshot is larger than one value.

use std::io::Cursor;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
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
use crate::network::decode_snapshot;
use crate::store::snapshot::SnapshotFile;
use crate::types::{Node, NodeId, TypeConfig};

/// The `/raft/*` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/read-index", post(read_index))
        .layer(DefaultBodyLimit::disable())
}

async fn append(
    State(state): State<AppState>,
    Json(request): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(state.raft.append_entries(request).await)
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
    let data = Bytes::copy_from_slice(data);
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
