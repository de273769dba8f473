//! Who leads, as this node knows it, and waiting for a leader to be known.

use std::time::Duration;

use schemas::api::LeaderHint;
use tokio::time::Instant;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::types::{NodeId, Raft};

/// How long a request waits for a leader to be known before it gets 503.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Who leads, as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leader {
    /// This node.
    This,
    /// Another node.
    Other {
        /// Its id.
        id: NodeId,
        /// Its client API's URL, for clients (empty until it published it).
        addr: String,
        /// Its peer port's URL, where this node passes requests.
        peer_addr: String,
    },
}

impl Leader {
    /// The leader as an error names it to a client; `None` for this node.
    pub fn hint(&self) -> Option<LeaderHint> {
        match self {
            Leader::This => None,
            Leader::Other { addr, .. } if addr.is_empty() => None,
            Leader::Other { id, addr, .. } => Some(LeaderHint {
                id: *id,
                addr: addr.clone(),
            }),
        }
    }
}

/// The leader this node knows, if it is a member of the cluster (a vote
/// remembered from an older membership does not count).
pub fn known_leader(state: &AppState) -> Option<Leader> {
    leader_of(&state.raft, state.node_id)
}

/// The leader node `this`, running `raft`, knows (see [`known_leader`]).
pub fn leader_of(raft: &Raft, this: NodeId) -> Option<Leader> {
    // Borrowed, not cloned: every write asks, and a clone copies the
    // membership with every node's URLs. The borrow ends before any await.
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let leader = metrics.current_leader?;
    let node = metrics.membership_config.membership().get_node(&leader)?;
    Some(if leader == this {
        Leader::This
    } else {
        Leader::Other {
            id: leader,
            addr: node.addr.clone(),
            peer_addr: node.peer_addr.clone(),
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
    await_leader(&state.raft, state.node_id, not, deadline).await
}

/// [`wait_for_leader`] for node `this`, running `raft`.
pub async fn await_leader(
    raft: &Raft,
    this: NodeId,
    not: Option<&Leader>,
    deadline: Instant,
) -> Result<Leader, ApiError> {
    let deadline = deadline.min(Instant::now() + LEADER_WAIT);
    let mut metrics = raft.metrics();
    loop {
        if let Some(leader) = leader_of(raft, this) {
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
                return Err(ApiError::not_leader(
                    format!("node {this} knows no leader yet"),
                    None,
                ));
            }
        }
    }
}
