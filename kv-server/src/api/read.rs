//! Linearizable reads: before a read is served from this node's view, the
//! leader confirms with a quorum that it still leads, and this node waits
//! until it has applied up to the leader's commit index at that moment (the
//! read index).
//!
//! On the leader the check is openraft's own, in a round shared with the
//! reads that arrive meanwhile; a follower asks the leader for the index
//! (`/raft/read-index`), again in shared rounds, and then waits for its own
//! apply. The read itself, and any long-poll after it, is served here.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::time::Instant;
use tracing::debug;

use crate::api::error::ApiError;
use crate::api::leader::{known_leader, wait_for_leader, Leader};
use crate::api::AppState;
use crate::read_index::RemoteFailure;

/// Times a read follows the leadership to another node before it gives up.
const LEADER_CHANGES: usize = 3;

/// Waits until this node may serve a linearizable read.
pub async fn linearizable_barrier(state: &AppState) -> Result<(), ApiError> {
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    linearizable_barrier_until(state, Instant::now() + timeout).await
}

/// [`linearizable_barrier`] that gives up at `deadline`.
pub async fn linearizable_barrier_until(
    state: &AppState,
    deadline: Instant,
) -> Result<(), ApiError> {
    // Boxed: the follower path holds an HTTP client's large future, and a
    // long-poll that passed the barrier should not carry its size while it
    // waits.
    Box::pin(read_barrier(state, deadline)).await?;
    state.caught_up.mark("a linearizable read passed");
    Ok(())
}

async fn read_barrier(state: &AppState, deadline: Instant) -> Result<(), ApiError> {
    let mut leader = match known_leader(state) {
        Some(leader) => leader,
        None => wait_for_leader(state, None, deadline).await?,
    };
    // Leadership may move between the two paths; each is tried at most twice.
    for _ in 0..2 {
        if leader == Leader::This {
            match local_read_index(state, deadline).await? {
                Some(index) => return wait_applied(state, index, deadline).await,
                None => {
                    leader = wait_for_leader(state, Some(&leader), deadline).await?;
                    continue;
                }
            }
        }
        let Some(index) = remote_read_index(state, leader.clone(), deadline).await? else {
            leader = Leader::This;
            continue;
        };
        return wait_applied(state, index, deadline).await;
    }
    Err(ApiError::not_leader(
        "leadership kept moving; no read index was confirmed",
        None,
    ))
}

/// Waits until this node has applied up to `index`.
async fn wait_applied(state: &AppState, index: u64, deadline: Instant) -> Result<(), ApiError> {
    let applied = state.raft.metrics().borrow().last_applied;
    if applied.is_some_and(|id| id.index >= index) {
        return Ok(());
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    match state
        .raft
        .wait(Some(remaining))
        .applied_index_at_least(Some(index), "read index")
        .await
    {
        Ok(_) => Ok(()),
        Err(_) => {
            let applied = state.raft.metrics().borrow().last_applied;
            Err(ApiError::unavailable(format!(
                "this node did not apply up to the read index {index} in time \
                 (it has applied up to {})",
                applied.map_or(0, |id| id.index)
            )))
        }
    }
}

/// The leader's own read index, from a round shared with the reads that
/// arrive meanwhile; `None` when it turns out not to lead.
///
/// openraft gives each heartbeat of a round only `--heartbeat-ms` to be
/// answered, so a busy follower can fail a round while the leader still
/// leads. Such a round is tried again until the read's deadline, as etcd's
/// read loop does, rather than failing every read that shared it.
async fn local_read_index(state: &AppState, deadline: Instant) -> Result<Option<u64>, ApiError> {
    let retry_after = Duration::from_millis(state.config.heartbeat_ms);
    loop {
        let check = Box::pin(state.read_index.read_log_id(&state.raft));
        let error = match tokio::time::timeout_at(deadline, check).await {
            Err(_) => break,
            Ok(Ok((read, _applied))) => return Ok(Some(read.map_or(0, |id| id.index))),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => {
                return Ok(None)
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error)))) => error,
            Ok(Err(error)) => return Err(error.into()),
        };
        debug!(%error, "a read-index round found no quorum in time; trying again");
        if Instant::now() + retry_after >= deadline {
            break;
        }
        tokio::time::sleep(retry_after).await;
    }
    Err(ApiError::unavailable(format!(
        "node {}: no quorum confirmed its leadership in time",
        state.node_id
    )))
}

/// The read index of a linearizable read on a follower: asked of the
/// leader, which confirms its leadership with a quorum first. Follows a
/// leader change a few times within `deadline`, and asks again when the
/// leader's round found no quorum in time (see [`local_read_index`]);
/// `None` when this node turns out to lead.
async fn remote_read_index(
    state: &AppState,
    mut leader: Leader,
    deadline: Instant,
) -> Result<Option<u64>, ApiError> {
    let retry_after = Duration::from_millis(state.config.heartbeat_ms);
    let mut leader_changes = 0;
    while leader_changes < LEADER_CHANGES {
        let Leader::Other {
            id,
            peer_addr: addr,
            ..
        } = &leader
        else {
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
                leader_changes += 1;
                continue;
            }
            Ok(Err(RemoteFailure::Failed(error))) => return Err(ApiError::unavailable(error)),
        };
        match reply {
            Ok(index) => return Ok(Some(index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                leader = wait_for_leader(state, Some(&leader), deadline).await?;
                leader_changes += 1;
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error)))
                if Instant::now() + retry_after < deadline =>
            {
                debug!(leader = id, %error, "the leader's read-index round found no quorum in time; asking again");
                tokio::time::sleep(retry_after).await;
            }
            Err(error) => return Err(ApiError::from(error)),
        }
    }
    Err(ApiError::not_leader(
        "the leader kept changing; no read index was confirmed",
        None,
    ))
}
