//! How far the raft log is on this node's disk: the gate the state machine
//! and the network wait at before they act on an entry.
//!
//! Only the raft log's writer moves it (see `log_flusher`): forward after a
//! write is synced, back when a truncation removes entries, and to failed
//! when a write fails. Once failed it never moves forward again: after a
//! failed `fdatasync` the kernel may have dropped the unwritten pages, so a
//! later sync that succeeds proves nothing about the earlier entries.

use std::sync::Arc;

use tokio::sync::watch;

use crate::error::StoreError;

/// How far the raft log is durable on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Durable {
    /// One past the last durable index (0: nothing is).
    end: u64,
    /// Writing the log failed: nothing more will become durable.
    failed: bool,
}

/// A shared view of how far the raft log is durable, for those who must not
/// act on an entry before it is: the state machine and the network.
#[derive(Clone, Debug)]
pub struct Durability {
    state: Arc<watch::Sender<Durable>>,
}

impl Durability {
    /// Starts with everything below `end` durable: what the files held at open.
    pub(super) fn new(end: u64) -> Durability {
        Durability {
            state: Arc::new(watch::Sender::new(Durable { end, failed: false })),
        }
    }

    /// One past the last durable index.
    pub(super) fn end(&self) -> u64 {
        self.state.borrow().end
    }

    /// Whether a write of the log has failed.
    pub(super) fn has_failed(&self) -> bool {
        self.state.borrow().failed
    }

    /// Everything below `end` is synced to disk (unless a write failed).
    pub(super) fn advance_to(&self, end: u64) {
        self.state.send_if_modified(|durable| {
            let advanced = !durable.failed && end > durable.end;
            if advanced {
                durable.end = end;
            }
            advanced
        });
    }

    /// A truncation removed every entry from `end` on.
    pub(super) fn truncate_to(&self, end: u64) {
        self.state.send_if_modified(|durable| {
            let truncated = end < durable.end;
            durable.end = durable.end.min(end);
            truncated
        });
    }

    /// A write failed: wakes every waiter with an error, now and from now on.
    pub(super) fn fail(&self) {
        self.state.send_modify(|durable| durable.failed = true);
    }

    /// Waits until the entry at `index` is durable; an error once writing
    /// the log has failed.
    pub async fn wait_covers(&self, index: u64) -> Result<(), StoreError> {
        let mut state = self.state.subscribe();
        let durable = *state
            .wait_for(|durable| durable.failed || durable.end > index)
            .await
            .map_err(|_| StoreError::LogWriterStopped)?;
        if durable.end > index {
            Ok(())
        } else {
            Err(StoreError::LogNotWritable { index })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change the log's writer makes.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Advance(u64),
        Truncate(u64),
        Fail,
    }

    #[test]
    fn the_durable_end_follows_syncs_truncations_and_failure() {
        use Step::*;
        // (starting end, steps, end after, failed after)
        let cases: [(u64, &[Step], u64, bool); 7] = [
            (0, &[Advance(3)], 3, false),
            (5, &[Advance(3)], 5, false),
            (5, &[Truncate(2), Advance(4)], 4, false),
            (5, &[Truncate(7)], 5, false),
            (5, &[Fail], 5, true),
            (5, &[Fail, Advance(9)], 5, true),
            (5, &[Fail, Truncate(3), Advance(9)], 3, true),
        ];
        for (start, steps, end, failed) in cases {
            let durability = Durability::new(start);
            for step in steps {
                match *step {
                    Advance(to) => durability.advance_to(to),
                    Truncate(to) => durability.truncate_to(to),
                    Fail => durability.fail(),
                }
            }
            let found = (durability.end(), durability.has_failed());
            assert_eq!(found, (end, failed), "from {start} through {steps:?}");
        }
    }

    #[tokio::test]
    async fn a_waiter_is_let_through_once_its_entry_is_durable() {
        let durability = Durability::new(3);
        durability
            .wait_covers(2)
            .await
            .expect("index 2 is below the end");
        let waiter = tokio::spawn({
            let durability = durability.clone();
            async move { durability.wait_covers(4).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "index 4 is not durable yet");
        durability.advance_to(5);
        waiter
            .await
            .expect("the waiter does not panic")
            .expect("index 4 is durable");
    }

    #[tokio::test]
    async fn a_failed_write_turns_every_waiter_away() {
        let durability = Durability::new(3);
        let waiter = tokio::spawn({
            let durability = durability.clone();
            async move { durability.wait_covers(4).await }
        });
        tokio::task::yield_now().await;
        durability.fail();
        let error = waiter
            .await
            .expect("the waiter does not panic")
            .expect_err("index 4 never becomes durable");
        assert!(
            matches!(error, StoreError::LogNotWritable { index: 4 }),
            "{error}"
        );
        durability.advance_to(9);
        let later = durability.wait_covers(6).await;
        assert!(later.is_err(), "nothing becomes durable after a failure");
        durability
            .wait_covers(2)
            .await
            .expect("what was durable before the failure stays so");
    }
}
