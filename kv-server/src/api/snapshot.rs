//! `GET /v1/snapshot`: a backup, as etcd's `snapshot save`.
//!
//! The node asked makes a snapshot of what it has applied (unless its
//! current one already covers it) and streams the file: the compacted
//! topic as of one revision, in the topic's record frames, each with its
//! CRC. `kv-server restore` lays a new cluster down from it (see
//! `crate::backup`). Admins only, with `--auth` (every key is in it).
//!
//! By default the node first passes a linearizable read barrier, as a
//! read does, so the backup holds every write acknowledged before it was
//! asked for, from whichever member it is asked; `consistency=stale` takes
//! what the node has applied, as Consul's `snapshot save -stale` does.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::error::ApiError;
use crate::api::params::{Consistency, Query};
use crate::api::read::linearizable_barrier;
use crate::api::{AppState, REVISION_HEADER};

/// How long a snapshot may take to be made.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(300);

/// The backup route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/snapshot", get(save))
}

/// `GET /v1/snapshot`: the node's snapshot as of what it has applied once
/// a read barrier passed (none with `consistency=stale`).
async fn save(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref(), &["consistency"])?;
    if query.consistency()? == Consistency::Linearizable {
        linearizable_barrier(&state).await.map_err(|error| {
            error.with_hint(
                "without a quorum, back up this node's own data with consistency=stale \
                 (kvctl snapshot save --stale)",
            )
        })?;
    }
    let applied = state.raft.metrics().borrow().last_applied;
    if state.raft.metrics().borrow().snapshot < applied {
        state.raft.trigger().snapshot().await?;
        state
            .raft
            .wait(Some(SNAPSHOT_WAIT))
            .metrics(
                |metrics| metrics.snapshot >= applied,
                "a snapshot of what is applied",
            )
            .await
            .map_err(|error| ApiError::unavailable(format!("no snapshot was made: {error}")))?;
    }
    // Asked of the state machine, which reads the current snapshot whole
    // once and replaces a damaged one with one built from the topic: a
    // backup never carries damage to the restore that would meet it.
    state
        .raft
        .get_snapshot()
        .await
        .map_err(|error| ApiError::unavailable(format!("no snapshot to read: {error}")))?;
    let store = std::sync::Arc::clone(&state.store);
    let snapshot = tokio::task::spawn_blocking(move || store.current_snapshot_checked())
        .await
        .map_err(|error| ApiError::internal(format!("reading the snapshot failed: {error}")))??
        .ok_or_else(|| ApiError::unavailable("this node has no snapshot yet"))?;
    let file = snapshot.data()?;
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(snapshot.len));
    headers.insert(REVISION_HEADER, HeaderValue::from(snapshot.header.revision));
    Ok(response)
}
