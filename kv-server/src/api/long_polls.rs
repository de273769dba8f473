//! How many long-polls may wait at once, node-wide.
//!
//! A waiting long-poll costs little, but it holds one of the
//! `--max-concurrent-requests` slots for up to `--max-wait-ms`; without a
//! cap of their own, watchers alone could take every slot and leave none
//! for writes and reads. Beyond `--max-long-polls` a request that would
//! wait is answered 503 at once (with `Retry-After`); one whose answer is
//! ready does not need a slot.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::error::ApiError;

/// The node's long-poll slots, shared by every handler that waits.
#[derive(Clone, Debug)]
pub struct LongPolls {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl LongPolls {
    /// Room for `limit` long-polls at once.
    pub fn new(limit: usize) -> LongPolls {
        LongPolls {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A slot for one long-poll, held while it waits; 503 when all are
    /// taken.
    pub fn hold(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            ApiError::unavailable(format!(
                "{} long-polls wait already, the most this node holds; retry later",
                self.limit
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::LongPolls;

    #[test]
    fn a_slot_is_refused_while_all_are_held_and_given_again_once_one_is_freed() {
        let long_polls = LongPolls::new(2);
        let first = long_polls.hold().expect("the first slot is free");
        let _second = long_polls.hold().expect("the second slot is free");
        assert!(long_polls.hold().is_err(), "a third is refused");
        drop(first);
        assert!(long_polls.hold().is_ok(), "a freed slot is given again");
    }
}
