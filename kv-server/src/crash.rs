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

/// Aborts the process if `KV_CRASH_AT` names `point`.
pub fn point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("KV_CRASH_AT").ok());
    if at.as_deref() == Some(point) {
        tracing::error!(point, "KV_CRASH_AT reached: aborting");
        std::process::abort();
    }
}

/// A snapshot install's steps, in order; a crash point sits after each
/// (docs/architecture.md, "Installing a snapshot", says why each is safe).
///
/// After the received snapshot is durable as `installing.snap`.
pub const INSTALL_SNAPSHOT_SAVED: &str = "install-snapshot-saved";
/// After the new view is built and durable beside the one in use.
pub const INSTALL_VIEW_BUILT: &str = "install-view-built";
/// After the view pointer names the new view.
pub const INSTALL_VIEW_SWITCHED: &str = "install-view-switched";
/// After `installing.snap` became `current.snap`, before the old view is
/// removed.
pub const INSTALL_SNAPSHOT_CURRENT: &str = "install-snapshot-current";
/// Each time a view rebuild has replayed a batch of records into the view
/// being built.
pub const VIEW_REPLAY_BATCH: &str = "view-replay-batch";

/// Sleeps if `KV_DELAY_AT=<point>:<ms>` names `point`, so a test can hold a
/// node in the middle of a step long enough to look at it from outside.
pub fn delay(point: &str) {
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    let at = AT.get_or_init(|| {
        let value = std::env::var("KV_DELAY_AT").ok()?;
        let (name, ms) = value.rsplit_once(':')?;
        Some((name.to_string(), ms.parse().ok()?))
    });
    if let Some((name, ms)) = at {
        if name == point {
            tracing::warn!(point, ms, "KV_DELAY_AT reached: sleeping");
            std::thread::sleep(std::time::Duration::from_millis(*ms));
        }
    }
}
