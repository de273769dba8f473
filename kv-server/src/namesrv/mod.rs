//! The RocketMQ name server: every node answers RocketMQ's remoting
//! protocol, with all route state in the replicated store.
//!
//! **What is stored where** (see [`keys`]): a broker's registration is the
//! key `namesrv/brokers/{brokerName}/{brokerId}`, attached to a lease of
//! `--namesrv-broker-ttl-s` seconds that its heartbeats renew; a master's
//! topic configs become one `QueueData` per topic at
//! `namesrv/topics/{topic}/{brokerName}`, attached to the group's lease
//! (`namesrv/groups/{brokerName}`), which every member's registration and
//! heartbeat renews, so a group's queues stay while any member does;
//! KV config entries and the name server's properties live under
//! `namesrv/kv/` and `namesrv/config/` with no lease. A broker's expiry,
//! unregister or a topic's delete is thus one transaction: every node sees
//! all of it or none of it.
//!
//! **Writes** ([`writes`]) go through this node's own HTTP API, in-process,
//! so a follower passes them to the leader as it does a client's. A
//! registration whose data version and addresses did not change renews
//! the leases only: no Raft write.
//!
//! **Reads** ([`view`]) are answered from this node's view, never through
//! Raft. The consistency promise: a healthy node serves what it has
//! applied, at most the entries in flight behind the leader (one
//! heartbeat interval, plus the apply), and every write it answered (a
//! write waits for this node's apply). A node that has not heard from a
//! quorum for longer than an election timeout answers SYSTEM_BUSY instead
//! of a possibly stale route, and closes the connection ([`freshness`]):
//! the leader knows from openraft's `millis_since_quorum_ack`, a follower
//! from the time it last accepted an append-entries from a leader
//! (recorded by `/raft/append`).

pub mod brokers;
pub mod config;
pub mod dispatch;
pub mod freshness;
pub mod keys;
pub mod kv_config;
pub mod listener;
pub mod routes;
pub mod topics;
pub mod view;
pub mod writes;

use std::sync::Arc;
use std::time::Duration;

use schemas::remoting::{response_code, HeaderError, RemotingCommand};
use tokio::sync::Semaphore;

use crate::api::AppState;
use crate::error::StoreError;
use crate::namesrv::writes::{WriteError, Writer};

/// Bytes of inflated registration bodies read at once, over every
/// connection (in KiB permits). A compressed registration costs some
/// hundreds of times its inflated size while it is read and written (100,000
/// topics: 230 KB sent, 3.4 MB inflated, 1.2 GB at the peak), which the
/// listener's frame budget, counting bytes as sent, does not bound. One
/// body larger than this takes all of it, and is read alone.
pub const INFLATED_BUDGET_BYTES: usize = 2 << 20;

/// What every handler shares: the node's state and its in-process API.
#[derive(Clone)]
pub struct NameServer {
    /// The node's state: the store, Raft, the configuration.
    pub state: AppState,
    /// Writes through the node's API.
    pub writer: Writer,
    /// [`INFLATED_BUDGET_BYTES`], in KiB.
    pub inflated_budget: Arc<Semaphore>,
    /// Registration bodies read at once: one. Inflating and parsing one can
    /// take a core for most of a second (64 MiB inflated, or 16 MiB of
    /// JSON), and a few sent at once used to starve the async workers that
    /// serve Raft (the leader lost its lead); they now run in turn, on the
    /// blocking pool. An inflated body waits here for its room in
    /// [`INFLATED_BUDGET_BYTES`], so at most one lies inflated unbudgeted.
    pub decoding: Arc<Semaphore>,
}

impl NameServer {
    /// The name server of the node whose state is `state`.
    pub fn new(state: AppState) -> NameServer {
        let writer = Writer::new(
            crate::api::internal_router(state.clone()),
            state.store.clone(),
            Duration::from_millis(state.config.request_timeout_ms),
        );
        NameServer {
            state,
            writer,
            inflated_budget: Arc::new(Semaphore::new(INFLATED_BUDGET_BYTES >> 10)),
            decoding: Arc::new(Semaphore::new(1)),
        }
    }

    /// The TTL of a broker's lease, in seconds.
    pub fn broker_ttl_s(&self) -> u64 {
        self.state.config.namesrv_broker_ttl_s
    }

    /// Why this node must not answer reads now, if it must not.
    pub fn stale(&self) -> Option<String> {
        if !self.state.caught_up.is_done(&self.state.raft) {
            return Some(
                "this name server restarted with raft log entries it has not applied yet; its \
                 routes may be older than those it gave before, ask another name server"
                    .into(),
            );
        }
        freshness::stale(
            &self.state.raft,
            &self.state.leader_contact,
            Duration::from_millis(self.state.config.election_timeout_ms),
        )
    }
}

/// A request that failed: the answer's code and remark.
#[derive(Debug)]
pub struct Failure {
    /// The response code.
    pub code: i32,
    /// Why, for the remark.
    pub remark: String,
}

impl Failure {
    /// A failure with `code` and `remark`.
    pub fn new(code: i32, remark: impl Into<String>) -> Failure {
        Failure {
            code,
            remark: remark.into(),
        }
    }

    /// A SYSTEM_ERROR with `remark`.
    pub fn system(remark: impl Into<String>) -> Failure {
        Failure::new(response_code::SYSTEM_ERROR, remark)
    }
}

// A missing or bad header field: Apache answers SYSTEM_ERROR with the
// exception's text, which names the field.
impl From<HeaderError> for Failure {
    fn from(error: HeaderError) -> Failure {
        Failure::system(format!("RemotingCommandException: {error}"))
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::system(format!("reading the store: {error}"))
    }
}

impl From<WriteError> for Failure {
    fn from(error: WriteError) -> Failure {
        Failure::system(format!("writing the store: {}", error.remark()))
    }
}

/// What a handler gives: the answer, or why it failed.
pub type Handled = Result<RemotingCommand, Failure>;

/// The body of an answer in RocketMQ's JSON.
pub fn json_body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("the name server's answer types serialize")
}

/// A name-typed header field that must be present and not blank.
pub fn required_name<'a>(request: &'a RemotingCommand, field: &str) -> Result<&'a str, Failure> {
    let value = request.required(field)?;
    if value.trim().is_empty() {
        return Err(Failure::system(format!(
            "RemotingCommandException: the request header field {field} is blank"
        )));
    }
    Ok(value)
}
