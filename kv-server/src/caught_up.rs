//! Whether a restarted node may serve reads from its view yet.
//!
//! A node applies committed entries before the raft log holds their commit
//! (the committed id is written with the next append, or alone a few
//! milliseconds later). After a `kill -9` it can restart with entries it had
//! applied, and answered reads from, that it does not know are committed:
//! its view is then older than what it served. So a node that starts with
//! entries in its raft log past what it has applied serves no reads from
//! its view until it has caught up: until it has applied up to the end of
//! the log it started with, or until a linearizable read barrier (a leader's
//! commit index, which covers every commit this node ever saw) has passed.
//! A node that starts with everything applied, or after a clean stop (the
//! view's last checkpoint then holds all it applied: [`CLEAN_STOP_FILE`]),
//! serves at once, also without a majority. etcd serves nothing after a
//! restart until it has applied its own entry published through raft; this
//! waits less.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use schemas::api::ErrorCode;
use tracing::info;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::types::Raft;

/// Written in the data directory by a clean stop, after the view's last
/// checkpoint, and removed at the next start: present at a start, it says
/// the view holds everything the node applied before.
pub const CLEAN_STOP_FILE: &str = "clean-stop";

/// Records a clean stop in `data_dir`: the view's checkpoint holds all
/// this node applied. Call it after that checkpoint, as the process ends.
pub fn record_clean_stop(data_dir: &Path) -> Result<(), compaction::fsutil::FileError> {
    compaction::fsutil::write_atomic(&data_dir.join(CLEAN_STOP_FILE), b"")
}

/// Whether the last stop of the node in `data_dir` was clean; removes the
/// record (durably), so that a crash from now on is not taken for one.
pub fn take_clean_stop(data_dir: &Path) -> Result<bool, compaction::fsutil::FileError> {
    let path = data_dir.join(CLEAN_STOP_FILE);
    if !path.exists() {
        return Ok(false);
    }
    compaction::fsutil::remove_if_exists(&path)?;
    compaction::fsutil::fsync_dir(data_dir)?;
    Ok(true)
}

/// Pause between two read barriers of [`catch_up`] that failed at once.
const RETRY: Duration = Duration::from_millis(200);

/// Whether this node has caught up since it started (see the module).
#[derive(Debug)]
pub struct CaughtUp {
    /// The last index of the raft log at start (of an entry, or purged).
    log_end: u64,
    /// The applied index at start.
    applied_at_start: u64,
    /// Set once caught up; never cleared.
    done: AtomicBool,
}

impl CaughtUp {
    /// The state of a node whose raft log reaches `log_end` and whose view
    /// has applied up to `applied` at start, after a clean stop or not.
    pub fn at_start(log_end: u64, applied: u64, clean_stop: bool) -> Arc<CaughtUp> {
        let caught_up = clean_stop || applied >= log_end;
        if !caught_up {
            info!(
                applied,
                log_end,
                "the raft log holds entries this node has not applied: it serves reads from its \
                 view once it has caught up with a leader"
            );
        }
        Arc::new(CaughtUp {
            log_end,
            applied_at_start: applied,
            done: AtomicBool::new(caught_up),
        })
    }

    /// Whether this node has caught up, checking its applied index.
    pub fn is_done(&self, raft: &Raft) -> bool {
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        let applied = raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |id| id.index);
        if applied >= self.log_end {
            self.mark("it applied the log it started with");
            return true;
        }
        false
    }

    /// Records that this node has caught up (`how` says why, for the log).
    pub fn mark(&self, how: &str) {
        if !self.done.load(Ordering::Acquire) && !self.done.swap(true, Ordering::AcqRel) {
            info!(
                how,
                "caught up since the start: reads are served from the view"
            );
        }
    }

    /// Why a read here must wait, for a refusal.
    fn refusal(&self, why: &ApiError) -> ApiError {
        ApiError::new(
            ErrorCode::NotReady,
            format!(
                "this node restarted with raft log entries up to index {} of which it had \
                 applied only up to {}, so its view may be older than what it served before; it \
                 serves reads once it has caught up with a leader ({}); ask another node",
                self.log_end,
                self.applied_at_start,
                why.message()
            ),
        )
    }
}

/// Whether a GET of `path` answers from the view (or the topic): the keys,
/// the metadata, the name server's views, the change feed and the replay,
/// the ACL. Status routes (`/v1/cluster`, `/readyz`, `/metrics`) answer
/// as ever.
pub fn reads_the_view(path: &str) -> bool {
    const VIEW_ROUTES: [&str; 8] = [
        "/v1/kv",
        "/v1/topics",
        "/v1/subscriptions",
        "/v1/routes/",
        "/v1/brokers",
        "/v1/changes",
        "/v1/topic/records",
        "/v1/acl/",
    ];
    VIEW_ROUTES.iter().any(|route| path.starts_with(route))
}

/// Waits, up to the request timeout, until this node may serve a read
/// from its view; a 503 `not_ready` saying why if it may not.
pub async fn before_read(state: &AppState) -> Result<(), ApiError> {
    if state.caught_up.is_done(&state.raft) {
        return Ok(());
    }
    // The barrier marks the node caught up when it passes.
    crate::api::read::linearizable_barrier(state)
        .await
        .map_err(|error| state.caught_up.refusal(&error))
}

/// Runs read barriers until this node has caught up, so that it does
/// without a client's read too (the name server's answers wait for it).
pub async fn catch_up(state: AppState) {
    while !state.caught_up.is_done(&state.raft) && !state.removal.is_removed() {
        if crate::api::read::linearizable_barrier(&state)
            .await
            .is_err()
        {
            tokio::time::sleep(RETRY).await;
        }
    }
}
