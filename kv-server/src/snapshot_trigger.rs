//! `--snapshot-every` counts writes, as etcd's `--snapshot-count` counts
//! applied requests. openraft's policy counts raft entries, and writes that
//! arrive together share one entry (see `api::batcher`), so under load its
//! policy alone would let many times more writes pile up in the raft log
//! between two snapshots. This task asks for a snapshot whenever the flag's
//! number of commands was applied since it last asked; openraft's policy
//! still runs beside it, so a snapshot comes after the flag's number of
//! entries or of writes, whichever is first.

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::store::Store;
use crate::types::Raft;

/// How often the applied commands are counted.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Asks `raft` for a snapshot whenever `every` commands were applied to
/// `store` since the last request; ends when Raft has shut down.
pub async fn snapshot_every_writes(raft: Raft, store: Arc<Store>, every: u64) {
    // At least one new write between two requests, even with `every` 0.
    let every = every.max(1);
    let mut asked_at = store.commands_applied();
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let applied = store.commands_applied();
        if applied.saturating_sub(asked_at) < every {
            continue;
        }
        debug!(applied, every, "asking for a snapshot by writes applied");
        if raft.trigger().snapshot().await.is_err() {
            return; // Raft has shut down.
        }
        asked_at = applied;
    }
}
