//! Named crash points for the fault tests.
//!
//! With `KV_CRASH_AT=<point>` in its environment the process aborts the
//! moment it reaches that point — no destructors, no flushes, as a power
//! cut or `kill -9` there would — so a test can crash a real node at a
//! chosen step of a multi-step operation instead of hoping a timed kill
//! lands there. Without the variable a point costs one comparison.
//!
//! `KV_FAIL_FSYNC=topic` likewise makes a real fsync fail: the checkpoint's
//! sync of the topic reports an I/O error, as a failing disk would.

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

/// `KV_FAIL_FSYNC=topic`: the checkpoint's fsync of the topic fails, as a
/// failing disk's would, once the topic holds a record (so that something
/// acknowledged is at stake). Read once, like `KV_CRASH_AT`.
pub const FSYNC_TOPIC: &str = "topic";

/// Whether `KV_FAIL_FSYNC` names `what`: its fsync is to fail.
pub fn fsync_fails(what: &str) -> bool {
    static FAIL: OnceLock<Option<String>> = OnceLock::new();
    let fail = FAIL.get_or_init(|| std::env::var("KV_FAIL_FSYNC").ok());
    fail.as_deref() == Some(what)
}

/// The error an injected fsync failure of `path` reports.
pub fn injected_fsync_error(path: &std::path::Path) -> crate::error::StoreError {
    crate::error::StoreError::Io {
        op: "fsync",
        path: path.to_path_buf(),
        source: std::io::Error::other("injected by KV_FAIL_FSYNC"),
    }
}
