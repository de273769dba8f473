//! Named crash points for the fault tests.
//!
//! With `KV_CRASH_AT=<point>` in its environment the process aborts the
//! moment it reaches that point — no destructors, no flushes, as a power
//! cut or `kill -9` there would — so a test can crash a real node at a
//! chosen step of a multi-step operation instead of hoping a timed kill
//! lands there. Without the variable a point costs one comparison.
//!
//! With `KV_FSYNC_DELAY_MS=<ms>` every fsync of the raft log's appends and
//! of the view's checkpoint first sleeps that long: a slow (or, with a
//! large value, stalled) disk, on the threads that do the syncing, for the
//! tests of what a slow disk must not hold up.
//!
//! `KV_FAIL_FSYNC=topic` likewise makes a real fsync fail: the checkpoint's
//! sync of the topic reports an I/O error, as a failing disk would.
//!
//! `KV_DELAY_AT=<point>:<ms>` holds a step open (see [`delay`]), so a test
//! can look at a node in the middle of it.

use std::sync::OnceLock;

/// After a received snapshot replaced the topic, before the view is rebuilt.
pub const SNAPSHOT_TOPIC_REPLACED: &str = "snapshot-topic-replaced";

/// In the periodic checkpoint, when records were applied since the last
/// one, before anything is synced: the topic's tail and the view's
/// changes since then are left unsynced.
pub const CHECKPOINT_OF_NEW_RECORDS: &str = "checkpoint-of-new-records";

/// Aborts the process if `KV_CRASH_AT` names `point`.
pub fn point(point: &str) {
    if armed(point) {
        tracing::error!(point, "KV_CRASH_AT reached: aborting");
        std::process::abort();
    }
}

/// Whether `KV_CRASH_AT` names `point`: for a step that is done
/// differently (in two parts, say) only so that the point can sit inside it.
pub fn armed(point: &str) -> bool {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("KV_CRASH_AT").ok());
    at.as_deref() == Some(point)
}

/// The variable that slows every fsync of the raft log and the checkpoint.
pub const FSYNC_DELAY_ENV: &str = "KV_FSYNC_DELAY_MS";

/// Sleeps `KV_FSYNC_DELAY_MS` milliseconds, if set: called before an fsync
/// a slow disk would hold up. Read once.
pub fn fsync_delay() {
    static DELAY: OnceLock<Option<std::time::Duration>> = OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        let ms = std::env::var(FSYNC_DELAY_ENV).ok()?.parse().ok()?;
        tracing::warn!(ms, "{FSYNC_DELAY_ENV} is set: every fsync is slowed");
        Some(std::time::Duration::from_millis(ms))
    });
    if let Some(delay) = delay {
        std::thread::sleep(*delay);
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
    if let Some(delay) = delay_at(point) {
        std::thread::sleep(delay);
    }
}

/// [`delay`] for a step on the async runtime: waits without holding a
/// runtime thread.
pub async fn delay_async(point: &str) {
    if let Some(delay) = delay_at(point) {
        tokio::time::sleep(delay).await;
    }
}

/// How long `KV_DELAY_AT` holds `point`, if it names it. Read once.
fn delay_at(point: &str) -> Option<std::time::Duration> {
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    let at = AT.get_or_init(|| {
        let value = std::env::var("KV_DELAY_AT").ok()?;
        let (name, ms) = value.rsplit_once(':')?;
        Some((name.to_string(), ms.parse().ok()?))
    });
    let (name, ms) = at.as_ref().filter(|(name, _)| name == point)?;
    tracing::warn!(point = %name, ms, "KV_DELAY_AT reached: holding");
    Some(std::time::Duration::from_millis(*ms))
}

/// On the leader, in an addition of a voter, once the node was added as a
/// learner and before it is promoted.
pub const MEMBER_LEARNER_ADDED: &str = "member-learner-added";

/// In the apply of a raft entry carrying a batch of commands, after the
/// records of its first command reached the topic and before the others':
/// the topic ends inside the entry, after a whole unit. Only while this
/// point is armed are those records appended in two parts.
pub const BATCH_ENTRY_PART_APPENDED: &str = "batch-entry-part-appended";

/// On a new leader, once its term's first entry is applied and before it
/// loads the leases' deadlines: keep-alives meanwhile find it leading but
/// not yet keeping them.
pub const LEASE_KEEPER_PROMOTE: &str = "lease-keeper-promote";
