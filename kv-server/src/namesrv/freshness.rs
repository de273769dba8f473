//! Whether this node may answer reads: it must have heard from a quorum
//! within an election timeout, else its view may be stale and it answers
//! SYSTEM_BUSY so the client asks another name server.
//!
//! The leader knows from openraft's metrics (`millis_since_quorum_ack`:
//! the time since a quorum last acknowledged it). A follower records, in
//! [`LeaderContact`], when it last accepted an append-entries (entries or
//! a heartbeat) from a leader: a leader sends one at least every heartbeat
//! interval, and only a leader with a quorum's votes sends them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use openraft::ServerState;

use crate::types::Raft;

/// The instant the node's clock of [`LeaderContact`] counts from.
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

/// When this node last accepted an append-entries from a leader, as
/// milliseconds since the node started (0: never). Written by the
/// `/raft/append` handler, read by the name server.
#[derive(Clone, Debug, Default)]
pub struct LeaderContact(Arc<AtomicU64>);

impl LeaderContact {
    /// Notes a leader's append-entries accepted now.
    pub fn record(&self) {
        let now_ms = STARTED.elapsed().as_millis() as u64;
        self.0.store(now_ms.max(1), Ordering::Release);
    }

    /// Time since the last accepted append-entries; `None` if never.
    pub fn since(&self) -> Option<Duration> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            at_ms => Some(
                STARTED
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at_ms)),
            ),
        }
    }
}

/// How long ago this node last knew it was part of a working quorum, or
/// `None` if it cannot say it ever was.
pub fn quorum_age(raft: &Raft, contact: &LeaderContact) -> Option<Duration> {
    let receiver = raft.metrics();
    let metrics = receiver.borrow();
    if metrics.state == ServerState::Leader {
        let mut voters = metrics.membership_config.membership().voter_ids();
        if voters.next().is_some() && voters.next().is_none() {
            // A cluster of one is its own quorum.
            return Some(Duration::ZERO);
        }
        return metrics.millis_since_quorum_ack.map(Duration::from_millis);
    }
    contact.since()
}

/// Whether this node's view may be stale: no quorum heard from for
/// longer than `election_timeout`. Says how long it has been.
pub fn stale(raft: &Raft, contact: &LeaderContact, election_timeout: Duration) -> Option<String> {
    match quorum_age(raft, contact) {
        Some(age) if age <= election_timeout => None,
        Some(age) => Some(format!(
            "this name server has not heard from a quorum for {} ms (more than the election \
             timeout of {} ms); its routes may be stale, ask another name server",
            age.as_millis(),
            election_timeout.as_millis()
        )),
        None => {
            Some("this name server has not heard from a quorum yet; ask another name server".into())
        }
    }
}
