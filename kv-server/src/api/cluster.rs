//! `/v1/cluster`: who leads, at which term, and how far each node is.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::api::AppState;
use crate::types::NodeId;

/// The `/v1/cluster` routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/cluster", get(status))
}

/// The cluster as this node sees it.
#[derive(Serialize)]
struct ClusterView {
    node_id: NodeId,
    leader: Option<NodeId>,
    term: u64,
    state: String,
    applied_index: u64,
    committed_index: u64,
    last_log_index: u64,
    snapshot_index: u64,
    members: Vec<MemberView>,
}

/// One member.
#[derive(Serialize)]
struct MemberView {
    id: NodeId,
    addr: String,
    voter: bool,
    /// Replicated up to this index (known on the leader only).
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_index: Option<u64>,
}

async fn status(State(state): State<AppState>) -> Json<ClusterView> {
    let metrics = state.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let replication = metrics.replication.as_ref();
    let members = membership
        .nodes()
        .map(|(id, node)| MemberView {
            id: *id,
            addr: node.addr.clone(),
            voter: membership.voter_ids().any(|voter| voter == *id),
            matched_index: replication
                .and_then(|replication| replication.get(id))
                .map(|matched| matched.map_or(0, |log_id| log_id.index)),
        })
        .collect();
    Json(ClusterView {
        node_id: state.node_id,
        leader: metrics.current_leader,
        term: metrics.current_term,
        state: format!("{:?}", metrics.state),
        applied_index: metrics.last_applied.map_or(0, |id| id.index),
        committed_index: state.committed.load(std::sync::atomic::Ordering::Acquire),
        last_log_index: metrics.last_log_index.unwrap_or(0),
        snapshot_index: metrics.snapshot.map_or(0, |id| id.index),
        members,
    })
}
