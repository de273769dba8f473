//! Client requests' blocking work on a few threads of the blocking pool.
//!
//! Reading segment files blocks, so the change feed and replay read on
//! tokio's blocking pool, which Raft's storage also uses (apply, vote,
//! truncate, purge, snapshots: `store::blocking`); so do a lease's keys, the
//! list of leases and `/v1/space`'s walk of the data directory. At most
//! [`CONCURRENT_TOPIC_READS`] such client tasks hold a thread at once; the
//! rest wait for a turn without one. However many clients ask, however
//! many give up before their answer (the work goes on, holding its turn),
//! and however slowly they take what is read, the pool keeps all but a few
//! of its threads (512 by default) for Raft.

use tokio::sync::Semaphore;

use crate::api::error::ApiError;

/// Client tasks (topic reads and the rest above) that hold a blocking
/// thread at once.
pub const CONCURRENT_TOPIC_READS: usize = 16;

/// Turns to hold a blocking thread; shared by every request of the process.
static TURNS: Semaphore = Semaphore::const_new(CONCURRENT_TOPIC_READS);

/// Runs `read` on the blocking pool once a turn is free. The turn goes
/// with the work: a client gone before it ends (its request dropped) does
/// not free the turn of work still holding a thread.
pub async fn read_topic<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let turn = TURNS
        .acquire()
        .await
        .expect("the topic read semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        read()
    })
    .await
    .map_err(|error| ApiError::internal(format!("a read for a client failed: {error}")))
}
