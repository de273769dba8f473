//! Backpressure on writes, in bytes (`--max-pending-write-bytes`).
//!
//! A write this node proposes holds its size from the budget until Raft is
//! done with it (applied, or failed), not merely until its HTTP request
//! ends: a write whose client gave up still sits in openraft's queue, the
//! raft log's table of unflushed entries or the apply, and still costs its
//! memory there. When the disk stalls the budget runs out; a new write then
//! waits up to [`ADMIT_WAIT`] for room and is answered 503, with
//! `Retry-After` and the limit named, if none frees. The raft log bounds
//! its own table of unflushed entries as well (see `store::log_store`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a write waits for room in the budget before it is refused.
pub const ADMIT_WAIT: Duration = Duration::from_secs(2);

/// The bytes that writes in flight may hold, shared by the write handlers.
#[derive(Clone, Debug)]
pub struct WriteBudget {
    /// One permit per byte.
    room: Arc<Semaphore>,
    /// The budget's size.
    limit_bytes: u32,
}

/// Room held by one write; given back when dropped.
#[derive(Debug)]
pub struct WritePermit {
    _held: OwnedSemaphorePermit,
}

/// No room came free within the wait.
#[derive(Debug, thiserror::Error)]
#[error(
    "writes waiting for this node's disk hold its whole budget \
     (--max-pending-write-bytes {limit_bytes}) and none finished within {waited_ms} ms; retry later"
)]
pub struct BudgetFull {
    /// The budget's size.
    pub limit_bytes: u32,
    /// How long the write waited.
    pub waited_ms: u128,
}

impl WriteBudget {
    /// A budget of `limit_bytes` (at most 4 GiB: larger is taken as 4 GiB).
    pub fn new(limit_bytes: u64) -> WriteBudget {
        let limit_bytes = u32::try_from(limit_bytes).unwrap_or(u32::MAX).max(1);
        WriteBudget {
            room: Arc::new(Semaphore::new(limit_bytes as usize)),
            limit_bytes,
        }
    }

    /// Room for a write of `bytes`, waiting at most `wait` for it. A write
    /// larger than the whole budget takes all of it, so it runs alone.
    pub async fn admit(&self, bytes: usize, wait: Duration) -> Result<WritePermit, BudgetFull> {
        let wanted = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.limit_bytes);
        let room = Arc::clone(&self.room);
        match tokio::time::timeout(wait, room.acquire_many_owned(wanted)).await {
            Ok(Ok(held)) => Ok(WritePermit { _held: held }),
            // The semaphore is never closed; a timeout is the one refusal.
            Ok(Err(_)) | Err(_) => Err(BudgetFull {
                limit_bytes: self.limit_bytes,
                waited_ms: wait.as_millis(),
            }),
        }
    }
}

/// The length of `value`'s JSON, counted without building it.
pub fn serialized_len(value: &impl Serialize) -> usize {
    /// Counts what is written to it.
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("plain data always serializes");
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn writes_wait_for_room_and_are_refused_when_none_frees() {
        let budget = WriteBudget::new(100);
        let first = budget.admit(60, WAIT).await.expect("room for 60 of 100");
        let refused = budget.admit(60, WAIT).await.expect_err("40 left");
        assert!(
            refused
                .to_string()
                .contains("--max-pending-write-bytes 100"),
            "{refused}"
        );
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.admit(60, Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        drop(first);
        waiting
            .await
            .expect("does not panic")
            .expect("admitted once room frees");
    }

    #[tokio::test]
    async fn a_write_larger_than_the_budget_takes_all_of_it() {
        let budget = WriteBudget::new(100);
        let whole = budget.admit(1_000, WAIT).await.expect("runs alone");
        assert!(budget.admit(1, WAIT).await.is_err(), "nothing is left");
        drop(whole);
        budget.admit(1, WAIT).await.expect("room again");
    }

    #[test]
    fn the_counted_length_is_the_json_length() {
        let value = serde_json::json!({"key": "a/b", "value": "x".repeat(1000), "n": [1, 2]});
        assert_eq!(
            serialized_len(&value),
            serde_json::to_vec(&value).unwrap().len()
        );
    }
}
