//! `GET /v1/cluster?index=N&wait=30s`: the cluster's state by long-poll,
//! for a page that shows it live (the console) without asking every
//! second.
//!
//! `index` is the applied index of the last answer (its `X-Kv-Index`).
//! The answer comes at once when this node has applied past it; else when
//! this node's Raft state moves: a new term or leader, a role, the
//! membership, its log, or how far a member has replicated.

use openraft::{LogId, RaftMetrics, ServerState};

use crate::api::error::ApiError;
use crate::api::long_polls::LongPollGate;
use crate::api::params::Query;
use crate::api::AppState;
use crate::types::{Node, NodeId};

/// What a watcher of the cluster waits for a change of.
#[derive(Debug, PartialEq)]
struct Progress {
    term: u64,
    leader: Option<NodeId>,
    state: ServerState,
    applied: Option<LogId<NodeId>>,
    last_log: Option<u64>,
    membership: Option<LogId<NodeId>>,
    replication: Option<Vec<(NodeId, Option<LogId<NodeId>>)>>,
}

impl Progress {
    fn of(metrics: &RaftMetrics<NodeId, Node>) -> Progress {
        Progress {
            term: metrics.current_term,
            leader: metrics.current_leader,
            state: metrics.state,
            applied: metrics.last_applied,
            last_log: metrics.last_log_index,
            membership: metrics.membership_config.log_id().to_owned(),
            replication: metrics.replication.as_ref().map(|replication| {
                replication
                    .iter()
                    .map(|(id, matched)| (*id, *matched))
                    .collect()
            }),
        }
    }
}

/// The applied index an answer is stamped with, for the next `index`.
pub fn applied_index(metrics: &RaftMetrics<NodeId, Node>) -> u64 {
    metrics.last_applied.map_or(0, |id| id.index)
}

/// Holds the request, when its query asks, until this node's Raft state
/// moves past what the client saw, or its `wait` runs out.
pub async fn wait_for_progress(
    state: &AppState,
    long_polls: &LongPollGate,
    query: Option<&str>,
) -> Result<(), ApiError> {
    let query = Query::parse(query, &["index", "wait"])?;
    let Some(blocking) = query.blocking(state.config.max_wait_ms)? else {
        return Ok(());
    };
    let mut metrics = state.raft.metrics();
    let seen = Progress::of(&metrics.borrow_and_update());
    if seen.applied.map_or(0, |id| id.index) != blocking.index {
        return Ok(());
    }
    let _slot = long_polls.hold()?;
    let _ = tokio::time::timeout(blocking.wait, async {
        // Raft's metrics also change with every heartbeat's timing: only
        // a change a reader of the status would see ends the wait.
        while metrics.changed().await.is_ok() {
            if Progress::of(&metrics.borrow_and_update()) != seen {
                return;
            }
        }
        // Raft has stopped (the node is stopping): nothing will move, so
        // the wait runs its course rather than have a watcher ask again
        // at once, and again.
        std::future::pending::<()>().await;
    })
    .await;
    Ok(())
}
