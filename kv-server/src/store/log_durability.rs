//! How far the raft log is on this node's disk: the gate the state machine
//! and the network wait at before they act on an entry.
//!
//! The network does not wait long: a heartbeat (or a read index's round)
//! that waited for a slow fsync would time out, so past a short wait it
//! tells followers only the commit index the leader's disk already covers
//! ([`Durability::commit_to_send`]).
//!
//! Only the raft log's writer moves it (see `log_flusher`): forward after a
//! write is synced, back when a truncation removes entries, and to failed
//! when a write fails. Once failed it never moves forward again: after a
//! failed `fdatasync` the kernel may have dropped the unwritten pages, so a
//! later sync that succeeds proves nothing about the earlier entries.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::StoreError;
use crate::types::LogId;

/// How far the raft log is durable on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Durable {
    /// One past the last durable index (0: nothing is).
    end: u64,
    /// The id of the entry at `end - 1`, when known (not after a
    /// truncation, until the next write).
    last: Option<LogId>,
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
    /// Starts with everything up to `last` durable: what the files held at
    /// open.
    pub(crate) fn new(last: Option<LogId>) -> Durability {
        let durable = Durable {
            end: last.map_or(0, |id| id.index + 1),
            last,
            failed: false,
        };
        Durability {
            state: Arc::new(watch::Sender::new(durable)),
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

    /// Everything up to `last` is synced to disk (unless a write failed).
    pub(super) fn advance_to(&self, last: LogId) {
        self.state.send_if_modified(|durable| {
            let advanced = !durable.failed && last.index >= durable.end;
            if advanced {
                durable.end = last.index + 1;
                durable.last = Some(last);
            }
            advanced
        });
    }

    /// A truncation removed every entry from `end` on.
    pub(super) fn truncate_to(&self, end: u64) {
        self.state.send_if_modified(|durable| {
            let truncated = end < durable.end;
            if truncated {
                durable.end = end;
                durable.last = None;
            }
            truncated
        });
    }

    /// A write failed: wakes every waiter with an error, now and from now on.
    pub(super) fn fail(&self) {
        self.state.send_modify(|durable| durable.failed = true);
    }

    /// The commit id a leader may tell a follower now: `commit` once the
    /// leader's disk covers it (waiting at most `wait` for that), else the
    /// last durable id below it (`None`: no commit id to tell). A follower
    /// keeps the greatest commit id it was told, so a lower one is safe; it
    /// learns the rest with the next append or heartbeat. An error once
    /// writing the log has failed.
    pub async fn commit_to_send(
        &self,
        commit: Option<LogId>,
        wait: Duration,
    ) -> Result<Option<LogId>, StoreError> {
        let Some(commit) = commit else {
            return Ok(None);
        };
        match tokio::time::timeout(wait, self.wait_covers(commit.index)).await {
            Ok(covered) => covered.map(|()| Some(commit)),
            Err(_) => {
                let durable = *self.state.borrow();
                if durable.failed {
                    return Err(StoreError::LogNotWritable {
                        index: commit.index,
                    });
                }
                if durable.end > commit.index {
                    return Ok(Some(commit));
                }
                Ok(durable.last.filter(|last| last.index < commit.index))
            }
        }
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
    use openraft::CommittedLeaderId;

    use super::*;

    /// The id of the entry at `index`, of term 1.
    fn id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// A durability with everything below `end` durable.
    fn durable_below(end: u64) -> Durability {
        Durability::new(end.checked_sub(1).map(id))
    }

    /// Everything below `end` became durable.
    fn advance(durability: &Durability, end: u64) {
        durability.advance_to(id(end - 1));
    }

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
            let durability = durable_below(start);
            for step in steps {
                match *step {
                    Advance(to) => advance(&durability, to),
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
        let durability = durable_below(3);
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
        advance(&durability, 5);
        waiter
            .await
            .expect("the waiter does not panic")
            .expect("index 4 is durable");
    }

    #[tokio::test]
    async fn a_failed_write_turns_every_waiter_away() {
        let durability = durable_below(3);
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
        advance(&durability, 9);
        let later = durability.wait_covers(6).await;
        assert!(later.is_err(), "nothing becomes durable after a failure");
        durability
            .wait_covers(2)
            .await
            .expect("what was durable before the failure stays so");
    }

    #[tokio::test]
    async fn a_leader_tells_the_commit_its_disk_covers_without_waiting_past_the_bound() {
        let wait = Duration::from_millis(20);
        // (durable below, commit to send, what is sent)
        let cases: [(u64, Option<u64>, Option<u64>); 5] = [
            (6, Some(4), Some(4)),
            (6, Some(5), Some(5)),
            (6, Some(9), Some(5)),
            (0, Some(2), None),
            (6, None, None),
        ];
        for (end, commit, sent) in cases {
            let durability = durable_below(end);
            let started = std::time::Instant::now();
            let found = durability
                .commit_to_send(commit.map(id), wait)
                .await
                .expect("the log did not fail");
            assert_eq!(
                found,
                sent.map(id),
                "durable below {end}, commit {commit:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "durable below {end}, commit {commit:?}: waited {:?}",
                started.elapsed()
            );
        }

        let durability = durable_below(3);
        durability.truncate_to(2);
        let found = durability.commit_to_send(Some(id(4)), wait).await;
        assert_eq!(
            found.expect("not failed"),
            None,
            "after a truncation, until the next write"
        );

        let durability = durable_below(3);
        let sending = tokio::spawn({
            let durability = durability.clone();
            async move {
                durability
                    .commit_to_send(Some(id(4)), Duration::from_secs(10))
                    .await
            }
        });
        tokio::task::yield_now().await;
        advance(&durability, 5);
        let found = sending.await.expect("does not panic").expect("not failed");
        assert_eq!(
            found,
            Some(id(4)),
            "a sync within the wait lets the commit through"
        );

        let durability = durable_below(3);
        durability.fail();
        let found = durability.commit_to_send(Some(id(4)), wait).await;
        assert!(found.is_err(), "a failed log tells no commit: {found:?}");
    }
}
