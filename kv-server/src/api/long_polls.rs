//! How many long-polls may wait at once, node-wide and per connection.
//!
//! A waiting long-poll costs little, but it holds one of the
//! `--max-concurrent-requests` slots for up to `--max-wait-ms`; without a
//! cap of their own, watchers alone could take every slot and leave none
//! for writes and reads. Beyond `--max-long-polls` a request that would
//! wait is answered 503 at once (with `Retry-After`); one whose answer is
//! ready does not need a slot.
//!
//! One connection may hold at most `--max-long-polls-per-connection` of
//! them, so one client cannot take the node's whole allowance, and an
//! HTTP/2 connection full of watchers keeps streams for its other requests.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::api::error::ApiError;
use crate::api::AppState;

/// The node's long-poll slots, shared by every handler that waits.
#[derive(Clone, Debug)]
pub struct LongPolls {
    slots: Arc<Semaphore>,
    limit: usize,
    /// Cancelled when the node stops: waits that no registry wakes (the
    /// cluster's state) end on it.
    closing: tokio_util::sync::CancellationToken,
}

impl LongPolls {
    /// Room for `limit` long-polls at once.
    pub fn new(limit: usize) -> LongPolls {
        LongPolls {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            closing: Default::default(),
        }
    }

    /// How many long-polls hold a slot now.
    pub fn held(&self) -> usize {
        self.limit - self.slots.available_permits()
    }

    /// A slot for one long-poll, held while it waits; 503 when all are
    /// taken.
    pub fn hold(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|error| match error {
                TryAcquireError::Closed => ApiError::unavailable(
                    "this node is shutting down and holds no more long-polls; ask another",
                ),
                TryAcquireError::NoPermits => ApiError::unavailable(format!(
                    "{} long-polls wait already, the most this node holds; retry later",
                    self.limit
                )),
            })
    }

    /// Holds no more long-polls: the node is shutting down (see
    /// [`crate::watch::WatchRegistry::wake_all`] for those waiting).
    pub fn close(&self) {
        self.slots.close();
        self.closing.cancel();
    }
}

/// The long-poll slots of one connection, put in each of its requests'
/// extensions by the listener.
#[derive(Clone, Debug)]
pub struct ConnectionLongPolls {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl ConnectionLongPolls {
    /// Room for `limit` long-polls on one connection.
    pub fn new(limit: usize) -> ConnectionLongPolls {
        ConnectionLongPolls {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A slot of this connection's; 503 when all are taken.
    fn hold(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            ApiError::unavailable(format!(
                "{} long-polls wait already on this connection, the most one connection \
                 holds; open another connection or retry later",
                self.limit
            ))
        })
    }
}

/// What a waiting request holds: a slot of the node's and one of its
/// connection's. Both are given back when it is dropped.
#[derive(Debug)]
pub struct LongPollSlot {
    _node: OwnedSemaphorePermit,
    _connection: Option<OwnedSemaphorePermit>,
}

/// A handler's way to the long-poll slots: the node's, and those of the
/// connection the request came on (none when served without a listener).
#[derive(Debug)]
pub struct LongPollGate {
    node: LongPolls,
    connection: Option<ConnectionLongPolls>,
}

impl LongPollGate {
    /// Slots for one long-poll, held while it waits; 503 when the
    /// connection's or the node's are all taken.
    pub fn hold(&self) -> Result<LongPollSlot, ApiError> {
        let connection = self.connection.as_ref().map(ConnectionLongPolls::hold);
        Ok(LongPollSlot {
            _connection: connection.transpose()?,
            _node: self.node.hold()?,
        })
    }

    /// Resolves once the node stops: a long-poll waiting then answers
    /// what it holds now.
    pub async fn closing(&self) {
        self.node.closing.cancelled().await
    }
}

impl FromRequestParts<AppState> for LongPollGate {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<LongPollGate, Self::Rejection> {
        Ok(LongPollGate {
            node: state.long_polls.clone(),
            connection: parts.extensions.get::<ConnectionLongPolls>().cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{ConnectionLongPolls, LongPollGate, LongPolls};

    #[test]
    fn a_slot_is_refused_while_all_are_held_and_given_again_once_one_is_freed() {
        let long_polls = LongPolls::new(2);
        let first = long_polls.hold().expect("the first slot is free");
        let _second = long_polls.hold().expect("the second slot is free");
        assert!(long_polls.hold().is_err(), "a third is refused");
        drop(first);
        assert!(long_polls.hold().is_ok(), "a freed slot is given again");
    }

    #[test]
    fn a_connection_holds_no_more_than_its_own_share_of_the_node_slots() {
        let node = LongPolls::new(3);
        let gate = |connection: &ConnectionLongPolls| LongPollGate {
            node: node.clone(),
            connection: Some(connection.clone()),
        };
        let busy = ConnectionLongPolls::new(2);
        let _first = gate(&busy).hold().expect("the connection's first slot");
        let _second = gate(&busy).hold().expect("the connection's second slot");
        let refused = gate(&busy).hold().expect_err("a third on that connection");
        assert!(
            format!("{refused:?}").contains("this connection"),
            "{refused:?}"
        );
        let other = ConnectionLongPolls::new(2);
        let third = gate(&other).hold().expect("another connection is served");
        assert!(
            gate(&other).hold().is_err(),
            "the node's slots are all held"
        );
        drop(third);
        assert!(
            gate(&other).hold().is_ok(),
            "a freed node slot is given again"
        );
    }
}
