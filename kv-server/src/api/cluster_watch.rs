//! `GET /v1/cluster?index=N&wait=30s`: the cluster's state by long-poll,
//! for a page that shows it live (the console) without asking every
//! second.
//!
//! `index` is the `X-Kv-Index` of the last answer: an opaque digest of
//! what a watcher waits for a change of (a term or leader, a role, the
//! membership, the log, what is applied, how far a member has replicated).
//! The answer comes at once when the state differs from the one that index
//! was given for, so nothing that moved between two polls is missed; else
//! when it moves, or when `wait` runs out.

use std::hash::{DefaultHasher, Hash, Hasher};

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

impl Progress {
    /// The `X-Kv-Index` of an answer showing this state: a digest of it,
    /// below 2^63 as an `index` must be. The same state gives the same
    /// index in every process of a build.
    fn index(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        format!("{self:?}").hash(&mut hasher);
        hasher.finish() >> 1
    }
}

/// The `X-Kv-Index` of an answer showing the Raft state `metrics` holds.
pub fn index_of(metrics: &RaftMetrics<NodeId, Node>) -> u64 {
    Progress::of(metrics).index()
}

/// Holds the request, when its query asks, until this node's Raft state
/// differs from the one its `index` was given for, or its `wait` runs out.
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
    if seen.index() != blocking.index {
        return Ok(());
    }
    let _slot = long_polls.hold()?;
    let progress = async {
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
    };
    // A stopping node answers at once, as its key watches do.
    tokio::select! {
        _ = tokio::time::timeout(blocking.wait, progress) => {}
        () = long_polls.closing() => {}
    }
    Ok(())
}
