//! The server side of node-to-node Raft RPC (`/raft/*`, internal).
//!
//! These routes sit outside the API's load shedding and body limit: a
//! node busy with clients must still answer its leader's heartbeats, and a
//! batch of entries or a snapshot chunk is larger than one value. They have
//! bounds of their own instead ([`BodyBound`]): a body is read whole, up to
//! `--max-raft-body-bytes` (a snapshot chunk up to one chunk and its
//! preamble) and within `--raft-body-timeout-ms`, before a handler sees it,
//! so a sender can neither fill the node's memory nor hold a request open
//! for ever. A snapshot arrives in chunks ([`crate::snapshot_transfer`]),
//! written to a partial file as they come, up to `--max-snapshot-bytes` in
//! all.

use std::sync::Arc;
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
use openraft::{Snapshot, Vote};
use tracing::warn;

use schemas::api::ErrorCode;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::config::Config;
use crate::error::StoreError;
use crate::peer_codec::{PeerReply, PeerRequest};
use crate::snapshot_transfer::{decode_chunk, ChunkHeader, ChunkReply, MAX_REQUEST_BYTES};
use crate::store::blocking;
use crate::store::snapshot_receive::{ReceiveError, SnapshotReceiver};
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
        bytes: MAX_REQUEST_BYTES,
        deadline,
    };
    let rpc = Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/read-index", post(read_index))
        .route(
            crate::api::relay::PROPOSE_PATH,
            post(crate::api::relay::propose),
        )
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

/// The refusal of a vote, entries or a snapshot while this node, started
/// with an empty raft log, asks its peers whether its data was lost (see
/// [`crate::join::ask_peers`]): with an empty log it would vote for any
/// candidate, one lacking writes it acknowledged before included, and a
/// leader that kept its progress would send it entries it cannot take.
fn asking_peers(state: &AppState, what: &str) -> Option<Response> {
    if !state.asking_peers.is_asking() {
        return None;
    }
    state.asking_peers.refused_a_call();
    warn!("refused a {what}: this node's raft log is empty, and its peers have not yet said whether it served before");
    Some(
        ApiError::unavailable(
            "this node started with an empty raft log and asks its peers whether its data was \
             lost; it takes part once they have answered",
        )
        .into_response(),
    )
}

async fn append(
    State(state): State<AppState>,
    PeerRequest(encoding, request): PeerRequest<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    if let Some(refusal) = asking_peers(&state, "request to append entries") {
        return refusal;
    }
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
    PeerReply(encoding, reply).into_response()
}

/// A vote request; 410 and the removal to a candidate the cluster removed
/// while it was down (see [`crate::removal`]).
async fn vote(
    State(state): State<AppState>,
    PeerRequest(encoding, request): PeerRequest<VoteRequest<NodeId>>,
) -> Response {
    if state.joining.load(std::sync::atomic::Ordering::Acquire) {
        // An empty log would grant any candidate its vote, a stale one
        // that lacks acknowledged writes included.
        warn!(
            candidate = request.vote.leader_id.node_id,
            "refused a vote: this node is still joining the cluster"
        );
        return ApiError::unavailable(
            "this node is joining the cluster with an empty log: it votes once it is taken",
        )
        .into_response();
    }
    if let Some(refusal) = asking_peers(&state, "vote") {
        return refusal;
    }
    if let Some(notice) = crate::removal::removed_candidate(&state, &request) {
        warn!(
            candidate = notice.node_id,
            removed_at = notice.log_index,
            "a node removed from the cluster asked for votes; it is told so"
        );
        return (StatusCode::GONE, Json(notice)).into_response();
    }
    let reply: Result<VoteResponse<NodeId>, RaftError<NodeId>> = state.raft.vote(request).await;
    PeerReply(encoding, reply).into_response()
}

/// One chunk of a snapshot: written to the partial file of its snapshot
/// id if it starts where that file ends and its CRC32C matches; on the
/// last chunk the whole file is checked and handed to Raft. File work runs
/// on the blocking pool, never on the async workers.
async fn snapshot(State(state): State<AppState>, body: Bytes) -> Response {
    if let Some(refusal) = asking_peers(&state, "snapshot chunk") {
        return refusal;
    }
    let (header, data) = match decode_chunk(&body) {
        Ok(parts) => parts,
        Err(why) => {
            return ApiError::new(ErrorCode::InvalidSnapshot, why.to_string()).into_response()
        }
    };
    heard_from_leader(&state, &header.vote).await;
    // A view of the body, not a copy.
    let data = body.slice_ref(data);
    let receiver = Arc::clone(&state.snapshot_receiver);
    let id = header.meta.snapshot_id.clone();
    let chunk = (header.offset, header.crc32c);
    let written = blocking(move || Ok(receiver.accept(&id, chunk.0, &data, chunk.1))).await;
    match flatten(written) {
        Ok(_) if header.end.is_some() => install(&state, header).await,
        Ok(held) => (StatusCode::OK, Json(ChunkReply::Held { held })).into_response(),
        Err(error) => refusal(&header, error),
    }
}

/// Checks the snapshot received whole and hands it to Raft.
async fn install(state: &AppState, header: ChunkHeader) -> Response {
    let end = header.end.expect("install is called on the last chunk");
    let receiver: Arc<SnapshotReceiver> = Arc::clone(&state.snapshot_receiver);
    let id = header.meta.snapshot_id.clone();
    let checked = blocking(move || {
        Ok(receiver.finish(&id, end).and_then(|path| {
            std::fs::File::open(&path)
                .map_err(|error| ReceiveError::Store(StoreError::io("open", &path)(error)))
        }))
    })
    .await;
    let file = match flatten(checked) {
        Ok(file) => file,
        Err(error) => return refusal(&header, error),
    };
    let snapshot = Snapshot {
        meta: header.meta.clone(),
        snapshot: Box::new(tokio::fs::File::from_std(file)),
    };
    let install = state.raft.install_full_snapshot(header.vote, snapshot);
    tokio::pin!(install);
    let mut beat = tokio::time::interval(Duration::from_millis(state.config.heartbeat_ms));
    let reply = loop {
        tokio::select! {
            reply = &mut install => break reply,
            _ = beat.tick() => heard_from_leader(state, &header.vote).await,
        }
    };
    // Installed (stored as the current snapshot) or refused: either way
    // this copy is done with.
    let receiver = Arc::clone(&state.snapshot_receiver);
    let id = header.meta.snapshot_id.clone();
    if let Err(error) = blocking(move || receiver.remove_received(&id)).await {
        warn!(%error, "could not remove a received snapshot");
    }
    (StatusCode::OK, Json(ChunkReply::Installed(reply))).into_response()
}

/// Tells Raft that the leader of `vote` was heard from, as a heartbeat
/// does: an append of no entries. While the leader sends this node a
/// snapshot and waits for its install, its replication to this node sends
/// nothing else, for as long as a large snapshot takes; without this the
/// node would start an election, and its higher term would depose the live
/// leader and make it send the snapshot again, over and over. (Should that
/// leader die meanwhile, its connection closes and the beats stop with the
/// request.) A vote older than this node's is refused, as any append is.
async fn heard_from_leader(state: &AppState, vote: &Vote<NodeId>) {
    let heartbeat = AppendEntriesRequest {
        vote: *vote,
        prev_log_id: None,
        leader_commit: None,
        entries: Vec::new(),
    };
    if let Err(error) = state.raft.append_entries(heartbeat).await {
        warn!(%error, "could not take a snapshot chunk as word from the leader");
    }
}

/// A chunk's refusal: 409 with the bytes held (a chunk at the wrong
/// offset), 400 with them (a damaged chunk or file), else an API error.
fn refusal(header: &ChunkHeader, error: ReceiveError) -> Response {
    warn!(snapshot = %header.meta.snapshot_id, offset = header.offset, %error, "refused a snapshot chunk");
    let status = match &error {
        ReceiveError::WrongOffset { .. } => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    match error.held() {
        Some(held) => {
            let reason = error.to_string();
            (status, Json(ChunkReply::Refused { held, reason })).into_response()
        }
        None => match error {
            ReceiveError::TooLarge { .. } => {
                ApiError::new(ErrorCode::ValueTooLarge, error.to_string()).into_response()
            }
            ReceiveError::Store(error) => ApiError::from(error).into_response(),
            other => ApiError::new(ErrorCode::InvalidSnapshot, other.to_string()).into_response(),
        },
    }
}

/// The receiver's answer out of a blocking call that may itself fail.
fn flatten<T>(result: Result<Result<T, ReceiveError>, StoreError>) -> Result<T, ReceiveError> {
    result?
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
