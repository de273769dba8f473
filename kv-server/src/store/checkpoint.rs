//! The checkpoint: what apply left in memory made durable, the topic's
//! fsync first and the view's flush second, at least every second from a
//! thread of its own, and sooner when the view's changes pile up.

use std::sync::mpsc::{RecvTimeoutError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, warn};

use super::{blocking, Store, EXIT_CHECKPOINT_FAILED, EXIT_NO_SPACE};
use crate::error::StoreError;

/// Longest time between two checkpoints (topic fsync, then view flush)
/// while entries are applied.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Free bytes a periodic checkpoint wants beyond the changes it writes:
/// sled's segment overhead and the topic's index files.
const CHECKPOINT_ROOM_BYTES: u64 = 4 << 20;
/// The checkpointer's name as a writer waiting for room.
const CHECKPOINT_WRITER: &str = "view checkpoint";
/// Unsealed view changes at which the checkpointer is woken early.
const CHECKPOINT_CHANGES: usize = 8_192;
/// Unsealed view bytes (keys and values) at which the checkpointer is woken
/// early.
const CHECKPOINT_BYTES: usize = 16 << 20;
/// Unsealed view changes past which apply waits for a checkpoint to seal
/// them: with [`UNSEALED_BYTES_LIMIT`], the bound on the view's memory.
pub(super) const UNSEALED_CHANGES_LIMIT: usize = 8 * CHECKPOINT_CHANGES;
/// Unsealed view bytes past which apply waits for a checkpoint. The layers
/// hold at most about twice this: one sealed and being written, one filling.
pub(super) const UNSEALED_BYTES_LIMIT: usize = 4 * CHECKPOINT_BYTES;

impl Store {
    /// Wakes the checkpointer early when the view's unsealed changes
    /// reached [`CHECKPOINT_CHANGES`] or [`CHECKPOINT_BYTES`].
    pub(super) fn wake_checkpointer_when_due(&self) {
        let unsealed = self.view.unsealed();
        if unsealed.changes >= CHECKPOINT_CHANGES || unsealed.bytes >= CHECKPOINT_BYTES {
            self.wake_checkpointer();
        }
    }

    /// Wakes the checkpointer; `false` if there is none running.
    fn wake_checkpointer(&self) -> bool {
        let Some(checkpointer) = self.checkpointer.get() else {
            return false;
        };
        // A full channel already holds a wake-up.
        match checkpointer.try_send(()) {
            Err(TrySendError::Disconnected(())) => {
                warn!("the view checkpointer has stopped; apply checkpoints in the blocking pool");
                false
            }
            Ok(()) | Err(TrySendError::Full(())) => true,
        }
    }

    /// Whether the view's unsealed changes reached the bound on its memory:
    /// then apply must wait for a checkpoint ([`Store::wait_for_checkpoint`]).
    pub fn over_memory_bound(&self) -> bool {
        let unsealed = self.view.unsealed();
        unsealed.changes >= UNSEALED_CHANGES_LIMIT || unsealed.bytes >= UNSEALED_BYTES_LIMIT
    }

    /// Waits until a checkpoint has sealed the view's changes below the
    /// bound on its memory, holding no async worker: the checkpointer does
    /// the work (fsyncs that may take long, under `writing_out`), and only
    /// without one is it done here, in the blocking pool.
    pub async fn wait_for_checkpoint(self: &Arc<Self>) -> Result<(), StoreError> {
        let mut seals = self.seals.subscribe();
        while self.over_memory_bound() {
            if self.wake_checkpointer() {
                // Bounded, so a seal missed between the check and the
                // subscription costs one interval, not the apply.
                let _ = tokio::time::timeout(CHECKPOINT_INTERVAL, seals.changed()).await;
            } else {
                let store = Arc::clone(self);
                blocking(move || store.checkpoint()).await?;
            }
        }
        Ok(())
    }

    /// Makes everything applied durable: the topic first, then the view, so
    /// the view's durable applied index never passes the durable topic.
    ///
    /// The view's changes are sealed first; every record of the entries
    /// sealed was appended to the topic before, so the topic's fsync covers
    /// them, and the view writes no more than was sealed.
    ///
    /// A failed checkpoint is final: after a failed fsync Linux may have
    /// dropped the unwritten pages and marked them clean, so a later fsync
    /// that succeeds proves nothing about them. Every later call fails at
    /// once, and the checkpoint thread stops the process (see
    /// [`Store::start_checkpointer`]); at restart the topic and the view
    /// are brought up to date again from the raft log.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let _turn = self.writing_out.lock();
        self.checkpoint_turn()
    }

    /// A checkpoint, unless the file system holding the view lacks room
    /// for it: then the changes stay in memory (apply waits once they reach
    /// the bound), the disk is marked full, and `false` says so. A write of
    /// sled that fails for want of space cannot be tried again (sled keeps
    /// the error), so the periodic checkpoint looks before it writes. The
    /// checkpoint before a snapshot does not: its log is purged after it.
    pub fn checkpoint_if_room(&self) -> Result<bool, StoreError> {
        let _turn = self.writing_out.lock();
        let needed = self.view.unsealed().bytes as u64 + CHECKPOINT_ROOM_BYTES;
        match crate::space::free_bytes(&self.view_root) {
            Ok(free) if free < needed => {
                self.disk_full.set(CHECKPOINT_WRITER, &self.view_root);
                return Ok(false);
            }
            // Cannot tell: write, and let a failure say what it is.
            Ok(_) | Err(_) => {}
        }
        self.checkpoint_turn()?;
        self.disk_full.clear(CHECKPOINT_WRITER);
        Ok(true)
    }

    /// [`Store::checkpoint`] while holding `writing_out`.
    fn checkpoint_turn(&self) -> Result<(), StoreError> {
        if let Some(first) = self.sync_failed.get() {
            return Err(StoreError::CheckpointFailedBefore {
                first: first.clone(),
            });
        }
        self.view.seal();
        self.seals.send_modify(|seals| *seals += 1);
        crate::crash::fsync_delay();
        let synced = self.sync_topic().and_then(|()| self.view.flush());
        if let Err(error) = &synced {
            if error.is_no_space() {
                self.disk_full
                    .set(CHECKPOINT_WRITER, &self.no_space_path(error));
            }
            let _ = self.sync_failed.set(error.to_string());
            if let Some(checkpointer) = self.checkpointer.get() {
                // The thread stops the process; a full channel already
                // holds a wake-up.
                let _ = checkpointer.try_send(());
            }
        }
        synced
    }

    /// The topic's fsync, or the failure `KV_FAIL_FSYNC=topic` injects.
    fn sync_topic(&self) -> Result<(), StoreError> {
        if crate::crash::fsync_fails(crate::crash::FSYNC_TOPIC)
            && self.topic.last_offset().is_some()
        {
            return Err(crate::crash::injected_fsync_error(self.topic.dir()));
        }
        Ok(self.topic.sync()?)
    }

    /// Starts a thread that checkpoints at least every second, and sooner
    /// when many view changes are unwritten; it stops when the store is
    /// dropped. A failed checkpoint (its own or an inline one) stops the
    /// process with [`EXIT_CHECKPOINT_FAILED`], as etcd does when it cannot
    /// sync its WAL: retrying could report as durable pages the kernel lost.
    pub fn start_checkpointer(self: &Arc<Self>) -> Result<(), StoreError> {
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        if self.checkpointer.set(wake).is_err() {
            return Ok(());
        }
        let mut checkpointed = self.revision();
        let store = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("view-checkpoint".into())
            .spawn(move || loop {
                if let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(CHECKPOINT_INTERVAL)
                {
                    return;
                }
                let Some(store) = store.upgrade() else {
                    return;
                };
                let revision = store.revision();
                if revision != checkpointed {
                    crate::crash::point(crate::crash::CHECKPOINT_OF_NEW_RECORDS);
                    checkpointed = revision;
                }
                if let Err(error) = store.checkpoint_if_room() {
                    let full = error
                        .is_no_space()
                        .then(|| store.disk_full.describe())
                        .flatten();
                    if let Some(full) = full {
                        error!(
                            %error,
                            "{full}: the view cannot be written; stopping the node, which \
                             catches up from the raft log when restarted with room"
                        );
                        std::process::exit(EXIT_NO_SPACE);
                    }
                    error!(
                        %error,
                        "checkpoint failed: stopping the node without retrying; \
                         at restart it catches up from the raft log"
                    );
                    std::process::exit(EXIT_CHECKPOINT_FAILED);
                }
            })
            .map_err(StoreError::io(
                "spawn the checkpoint thread",
                &self.snapshot_dir,
            ))?;
        Ok(())
    }
}
