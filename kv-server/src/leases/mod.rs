//! Leases on the leader: their deadlines, and the loop that ends the ones
//! nobody kept alive.
//!
//! What a lease is in the replicated state (its grant, its keys, its end as
//! one unit) is in `crate::store::leases`. When it ends is decided here, by
//! the leader alone, as in etcd: keep-alives move a deadline in the
//! leader's memory ([`LeaseKeeper`]), and a lease past its deadline is
//! ended by proposing its expiry through Raft. A node starts keeping the
//! deadlines once it leads and its term's first entry is applied, giving
//! every lease a full TTL from then; it forgets them when it stops leading.
//! So a lease may outlive its last keep-alive by its TTL plus the time the
//! cluster took to elect the new leader and apply that entry, never less.

pub mod keeper;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use tracing::{debug, info, warn};

pub use keeper::{KeepAlive, LeaseKeeper};

use crate::store::{blocking, Store};
use crate::types::{Command, CommandResult, LeaseId, NodeId, Op, Raft};

/// How often the loop looks for due leases and at the leader's state.
const TICK: Duration = Duration::from_millis(100);
/// How long an expiry that could not be proposed waits to be tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the loop needs.
pub struct LeaseLoop {
    /// This node's raft.
    pub raft: Raft,
    /// This node's id.
    pub node_id: NodeId,
    /// The store, whose keeper this loop drives.
    pub store: Arc<Store>,
    /// `--lease-expiries-per-sec`.
    pub expiries_per_sec: u32,
    /// How long an expiry's proposal may take before it is logged as slow
    /// (it is waited for all the same).
    pub propose_timeout: Duration,
}

impl LeaseLoop {
    /// Runs until the raft it watches shuts down: keeps the keeper's
    /// leadership in step with raft's, and proposes due expiries at no more
    /// than `expiries_per_sec`.
    pub async fn run(self) {
        // Woken when the server's state or vote changes (openraft's server
        // metrics), not with every entry as the full metrics are; the
        // applied id (its data metrics) only while a new leader waits for
        // its term's first entry to be applied. Each is read from the
        // channel that woke it, so no change is missed.
        let mut server = self.raft.server_metrics();
        let mut data = self.raft.data_metrics();
        let mut awaiting_apply = false;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let rate = f64::from(self.expiries_per_sec);
        // Expiries that may be proposed now: refilled at `rate`, at most a
        // second's worth.
        let mut allowance = 0.0_f64;
        let mut last = Instant::now();
        loop {
            tokio::select! {
                changed = server.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                changed = data.changed(), if awaiting_apply => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tick.tick() => {}
            }
            let (state, term) = {
                let server = server.borrow_and_update();
                (server.state, server.vote.leader_id().term)
            };
            let applied_term = data
                .borrow_and_update()
                .last_applied
                .map(|id| id.leader_id.term);
            awaiting_apply = false;
            let keeper = &self.store.leases;
            if state != ServerState::Leader {
                keeper.demote();
                continue;
            }
            if !keeper.leads_in(term) {
                // Every grant committed before this term is applied once
                // the term's first entry is.
                if applied_term != Some(term) {
                    awaiting_apply = true;
                    continue;
                }
                crate::crash::delay_async(crate::crash::LEASE_KEEPER_PROMOTE).await;
                if let Err(error) = self.promote(term).await {
                    warn!(%error, "cannot load the leases; trying again");
                    continue;
                }
            }
            let now = Instant::now();
            allowance = (allowance + rate * now.duration_since(last).as_secs_f64()).min(rate);
            last = now;
            let due = keeper.due(now, allowance as usize);
            allowance -= due.len() as f64;
            for id in due {
                tokio::spawn(expire(
                    self.raft.clone(),
                    Arc::clone(&self.store),
                    id,
                    self.propose_timeout,
                ));
            }
        }
    }

    /// Starts keeping the deadlines of every lease, as leader of `term`.
    /// Grants and ends applied from the keeper's first step on are followed
    /// as they apply, so the list read after it misses no grant, and a
    /// lease it names that ended meanwhile is left out (see `keeper`).
    async fn promote(&self, term: u64) -> Result<(), crate::error::StoreError> {
        self.store.leases.start_leading(term);
        let store = Arc::clone(&self.store);
        let all = blocking(move || store.all_leases()).await?;
        let count = all.len();
        let ttls = all
            .into_iter()
            .map(|(id, lease)| (id, Duration::from_millis(lease.ttl_ms)))
            .collect();
        self.store.leases.loaded(term, ttls, Instant::now());
        info!(
            node_id = self.node_id,
            term,
            leases = count,
            "keeping the leases' deadlines: each has its full TTL from now"
        );
        Ok(())
    }
}

/// Proposes the expiry of lease `id` and waits for its outcome; if it was
/// refused while this node still keeps the deadlines, it comes due again a
/// little later.
///
/// A proposal that is slow to commit is waited for, not proposed again: a
/// leader cut off from its quorum keeps leading in openraft 0.9, and
/// proposing each due lease anew at every timeout grew its log (and the
/// responders openraft holds) without bound. Its entry commits once the
/// quorum is back, or fails when this node stops leading.
async fn expire(raft: Raft, store: Arc<Store>, id: LeaseId, slow_after: Duration) {
    let command = Command {
        timestamp_ms: crate::clock::now_ms(),
        idempotency_key: None,
        request_hash: None,
        op: Op::LeaseExpire { id },
    };
    let written = raft.client_write(command);
    tokio::pin!(written);
    let outcome = match tokio::time::timeout(slow_after, &mut written).await {
        Ok(outcome) => outcome,
        Err(_) => {
            debug!(lease = id, after = ?slow_after, "the lease's expiry is not committed yet; still waiting");
            written.await
        }
    };
    match outcome {
        Ok(written) => {
            if let CommandResult::LeaseNotFound { .. } = written.data {
                // Already gone: revoked meanwhile.
                store.leases.ended(id);
            }
            debug!(lease = id, "lease expired");
        }
        Err(error) => {
            debug!(lease = id, %error, "the lease's expiry was not committed");
            store.leases.retry_at(id, Instant::now() + RETRY_AFTER);
        }
    }
}
