//! A warning for a raft log sync that held the node up, as etcd's "slow
//! fdatasync": elections, writes and the raft core wait on the log's syncs
//! and the vote's, so a disk that takes seconds shows first as leaders not
//! known and writes that time out. The line says which file and how long,
//! where the symptom alone does not.

use std::path::Path;
use std::time::Duration;

/// A sync that takes this long or longer is logged.
pub const SLOW_SYNC: Duration = Duration::from_secs(1);

/// Logs a WARN if `what`, a write and sync of `path`, took [`SLOW_SYNC`] or
/// longer; a disk that slow logs at most a line a second per writer.
pub fn note(what: &str, path: &Path, took: Duration) {
    if took >= SLOW_SYNC {
        tracing::warn!(
            path = %path.display(),
            took_ms = took.as_millis() as u64,
            "{what} took {} ms (expected under {} ms): the disk is slow, and {}",
            took.as_millis(),
            SLOW_SYNC.as_millis(),
            "what waits on it (elections, writes, the raft core) waits as long"
        );
    }
}
