//! Client requests' blocking work on a few threads of the blocking pool.
//!
//! Reading segment files blocks, so the change feed and replay read on
//! tokio's blocking pool, which Raft's storage also uses (apply, vote,
//! truncate, purge, snapshots: `store::blocking`); so do a lease's keys and
//! the list of leases. At most [`CONCURRENT_TOPIC_READS`] such client tasks
//! hold a thread at once; the rest wait for a turn without one. However
//! many clients ask, however many give up before their answer (the work
//! goes on, holding its turn), and however slowly they take what is read,
//! the pool keeps all but a few of its threads (512 by default) for Raft.
//! `/v1/space`'s walk of the data directory has turns of its own
//! ([`SPACE_TURNS`]): a leader disarming an alarm asks each member for it
//! within 2 s, and must not wait behind replays.

use tokio::sync::Semaphore;

use crate::api::error::ApiError;

/// Client tasks (topic reads and lease reads) that hold a blocking thread
/// at once.
pub const CONCURRENT_TOPIC_READS: usize = 16;

/// Turns to read the topic and leases; shared by every request of the
/// process.
static TURNS: Semaphore = Semaphore::const_new(CONCURRENT_TOPIC_READS);

/// Turns to measure the data directory for `/v1/space`.
pub static SPACE_TURNS: Semaphore = Semaphore::const_new(2);

/// Runs `read` on the blocking pool once a turn is free (see
/// [`run_in_turn`]).
pub async fn read_topic<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    run_in_turn(&TURNS, read).await
}

/// Runs `work` on the blocking pool once one of `turns` is free. The turn
/// goes with the work: a client gone before it ends (its request dropped)
/// does not free the turn of work still holding a thread.
pub async fn run_in_turn<T: Send + 'static>(
    turns: &'static Semaphore,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let turn = turns
        .acquire()
        .await
        .expect("the blocking turns' semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
    .map_err(|error| ApiError::internal(format!("blocking work for a client failed: {error}")))
}
