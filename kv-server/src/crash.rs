//! Named crash points for the fault tests.
//!
//! With `KV_CRASH_AT=<point>` in its environment the process aborts the
//! moment it reaches that point — no destructors, no flushes, as a power
//! cut or `kill -9` there would — so a test can crash a real node at a
//! chosen step of a multi-step operation instead of hoping a timed kill
//! lands there. Without the variable a point costs one comparison.

use std::sync::OnceLock;

/// After a received snapshot replaced the topic, before the view is rebuilt.
pub const SNAPSHOT_TOPIC_REPLACED: &str = "snapshot-topic-replaced";

/// In the periodic checkpoint, when records were applied since the last
/// one, before anything is synced: the topic's tail and the view's
/// changes since then are left unsynced.
pub const CHECKPOINT_OF_NEW_RECORDS: &str = "checkpoint-of-new-records";

/// Aborts the process if `KV_CRASH_AT` names `point`.
pub fn point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("KV_CRASH_AT").ok());
    if at.as_deref() == Some(point) {
        tracing::error!(point, "KV_CRASH_AT reached: aborting");
        std::process::abort();
    }
}
