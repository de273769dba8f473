//! openraft's state machine: applies committed entries through [`Store`],
//! builds and installs snapshots.
//!
//! openraft calls the state machine from one task, one call at a time, so
//! the store has exactly one writer. Small batches of entries are applied
//! on that task: they touch memory and the page cache only (a checkpoint
//! never runs there: past the view's memory bound apply waits for the
//! checkpointer, see `Store::wait_for_checkpoint`). Large batches
//! (a catch-up), building, installing and loading snapshots are blocking
//! file I/O and move to the blocking pool. Reads of the view's applied state
//! stay on the task: they hit the in-memory layers or sled's cache.

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use tracing::{info, warn};

use crate::error::StoreError;
use crate::metrics::HotHistogram;
use crate::store::log_store::Durability;
use crate::store::snapshot::{SnapshotFile, SnapshotHeader};
use crate::store::snapshot_receive::received_path;
use crate::store::{blocking, Store};
use crate::types::{
    CommandResult, Entry, LogId, Node, NodeId, StorageError, StoredMembership, TypeConfig,
};

/// The state machine openraft drives.
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    durability: Durability,
}

impl StateMachine {
    /// A state machine over `store`, applying entries once the raft log
    /// `durability` tracks holds them durably.
    pub fn new(store: Arc<Store>, durability: Durability) -> Self {
        StateMachine { store, durability }
    }
}

/// Batches up to this many entries are applied on the state machine's own
/// task (tens of µs, in memory and the page cache); larger ones, as in a
/// catch-up, on the blocking pool. Handing every write to the pool cost a
/// thread wake-up each: 16 % of the server's CPU under a write load.
const INLINE_APPLY_ENTRIES: usize = 8;

/// The apply's name as a writer waiting for room (`space::DiskFull`).
const APPLY_WRITER: &str = "apply";

fn sm_error(error: StoreError) -> StorageError {
    crate::store::note_damage(&error);
    StorageIOError::write_state_machine(&error).into()
}

fn snapshot_error(error: StoreError) -> StorageError {
    crate::store::note_damage(&error);
    StorageIOError::write_snapshot(None, &error).into()
}

/// [`snapshot_error`] for a build or an install, after which openraft
/// stops: a write refused for space marks the disk full first, so that the
/// server exits saying so (see `server::exit_when_raft_stops`).
fn stopping_snapshot_error(store: &Store, error: StoreError) -> StorageError {
    if error.is_no_space() {
        store
            .disk_full
            .set("snapshot", &store.no_space_path(&error));
    }
    snapshot_error(error)
}

/// Builds a snapshot from a consistent view of the topic taken when the
/// builder was made.
pub struct SnapshotBuilder {
    store: Arc<Store>,
    /// What the snapshot will say and the topic as it was when the builder
    /// was made, or why the view's applied state could not be read then;
    /// taken by the one build.
    start: Option<Result<(SnapshotHeader, compaction::TopicReader), StoreError>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (header, reader) = self
            .start
            .take()
            .expect("openraft builds a snapshot once per builder")
            .map_err(snapshot_error)?;
        let store = Arc::clone(&self.store);
        let snapshot = blocking(move || {
            // The log is purged behind this snapshot: what was applied up
            // to it must be durable, or a crash could need purged entries.
            store.checkpoint()?;
            // The current snapshot stands for the records below it: a new
            // one reads only the topic after it.
            let previous = SnapshotFile::load(&store.snapshot_dir)?;
            let whole_topic = previous.as_ref().map(|_| reader.rewound());
            let built = SnapshotFile::build_in(
                &store.snapshot_dir,
                header.clone(),
                reader,
                previous.as_ref(),
            );
            let snapshot = match (built, whole_topic, &previous) {
                // The damage may be the current snapshot's own: the whole
                // topic holds what it stands for. Damage in the topic
                // fails this build again.
                (Err(error), Some(whole_topic), Some(previous)) if error.is_damage() => {
                    warn!(
                        snapshot = %previous.path().display(),
                        %error,
                        "the current snapshot is damaged: building the next from the whole topic"
                    );
                    SnapshotFile::build_in(&store.snapshot_dir, header, whole_topic, None)?
                }
                (built, _, _) => built?,
            };
            snapshot.store(&store.snapshot_dir)?;
            store.snapshot_checked(&snapshot);
            store.snapshot_covers(&snapshot);
            let data = snapshot.data()?;
            Ok((snapshot, data))
        })
        .await
        .map_err(|error| stopping_snapshot_error(&self.store, error))?;
        let (snapshot, data) = snapshot;
        info!(
            snapshot = %snapshot.header.meta.snapshot_id,
            bytes = snapshot.len,
            "built snapshot"
        );
        Ok(Snapshot {
            meta: snapshot.header.meta.clone(),
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.store.view.applied_state().map_err(sm_error)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // A leader's own entries may be committed before its log has them
        // on disk; nothing may see them until it has.
        if let Some(last) = entries.last() {
            self.durability
                .wait_covers(last.log_id.index)
                .await
                .map_err(sm_error)?;
        }
        let inline = entries.len() <= INLINE_APPLY_ENTRIES;
        let entries = Arc::new(entries);
        // A write refused for want of space changed nothing (see
        // `Store::apply_entries`): the same entries wait for room.
        let results = loop {
            let store = Arc::clone(&self.store);
            let batch = Arc::clone(&entries);
            let apply = move || {
                let started = std::time::Instant::now();
                let results = store.apply_entries(&batch[..]);
                static APPLY_SECONDS: HotHistogram =
                    HotHistogram::new(crate::metrics::APPLY_SECONDS);
                APPLY_SECONDS.record(started.elapsed().as_secs_f64());
                results
            };
            let attempt = if inline {
                apply()
            } else {
                blocking(apply).await
            };
            match attempt {
                Err(error) if error.is_no_space() => {
                    let path = self.store.no_space_path(&error);
                    self.store.disk_full.set(APPLY_WRITER, &path);
                    tokio::time::sleep(crate::space::RETRY_INTERVAL).await;
                }
                attempt => {
                    let results = attempt.map_err(sm_error)?;
                    self.store.disk_full.clear(APPLY_WRITER);
                    break results;
                }
            }
        };
        // The view's memory is bounded: past the bound the next apply waits
        // for the checkpointer, never running a checkpoint on this task.
        if self.store.over_memory_bound() {
            self.store.wait_for_checkpoint().await.map_err(sm_error)?;
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called between applies: the applied state and the topic agree
        // here, and the reader pins the segments as they are now. This call
        // cannot fail; a failed read of the view fails the build instead.
        let start = self
            .store
            .view
            .applied_state()
            .and_then(|(applied, membership)| {
                let revision = self.store.view.revision()?;
                let snapshot_id = match applied {
                    Some(id) => format!(
                        "{}-{}-{}",
                        id.leader_id.term,
                        id.index,
                        crate::clock::now_ms()
                    ),
                    None => format!("0-0-{}", crate::clock::now_ms()),
                };
                let header = SnapshotHeader::new(
                    SnapshotMeta {
                        last_log_id: applied,
                        last_membership: membership,
                        snapshot_id,
                    },
                    revision,
                    self.store.topic.tombstone_floor(),
                );
                Ok((header, self.store.topic.read_from(0)))
            });
        SnapshotBuilder {
            store: Arc::clone(&self.store),
            start: Some(start),
        }
    }

    /// Snapshots arrive through `/raft/snapshot` into files of their own
    /// ([`crate::store::snapshot_receive`]); openraft asks for this only
    /// for its chunk RPC, which this server's network never sends. An
    /// empty, unlinked file stands in.
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let dir = self.store.snapshot_dir.clone();
        let file = blocking(move || {
            let path = dir.join("unused-receive.tmp");
            let file = std::fs::File::create(&path).map_err(StoreError::io("create", &path))?;
            std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
            Ok(file)
        })
        .await
        .map_err(snapshot_error)?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let store = Arc::clone(&self.store);
        let meta = meta.clone();
        let file = snapshot.into_std().await;
        blocking(move || {
            // Named where the receiver put it: storing it links that file
            // in, after checking it is this one, instead of copying it.
            let path = received_path(&store.snapshot_dir, &meta.snapshot_id);
            let mut file = SnapshotFile::from_file(file, &path)?;
            // The sender's meta is the one that counts.
            file.header.meta = meta;
            store.install(&file)
        })
        .await
        .map_err(|error| stopping_snapshot_error(&self.store, error))
    }

    /// The current snapshot, to send to a follower (or read at start), its
    /// records checked first: a damaged one is replaced by a new one built
    /// from the whole topic, where a follower would refuse every copy sent
    /// to it.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let store = Arc::clone(&self.store);
        let checked = blocking(move || {
            let Some(snapshot) = store.current_snapshot_checked()? else {
                return Ok(None);
            };
            Ok(Some(Snapshot {
                meta: snapshot.header.meta.clone(),
                snapshot: snapshot.data()?,
            }))
        })
        .await;
        match checked {
            Err(error) if error.is_damage() => {
                warn!(%error, "the current snapshot is damaged: building a new one from the topic");
                let mut builder = self.get_snapshot_builder().await;
                builder.build_snapshot().await.map(Some)
            }
            checked => checked.map_err(snapshot_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use compaction::TopicConfig;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::store::log_store::LogStore;
    use crate::store::DataDirs;
    use crate::types::{Command, Op, Txn, TxnOp};

    /// How long the checkpoint thread is kept in a (pretend) slow fsync.
    const FSYNC_HOLD: Duration = Duration::from_secs(3);

    /// An entry at `index` whose transaction puts the keys `keys`.
    fn puts(index: u64, keys: Range<usize>) -> Entry {
        let success = keys
            .map(|key| TxnOp::Put {
                key: format!("k/{key}"),
                value: "1".to_string(),
                lease: None,
            })
            .collect();
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command {
                timestamp_ms: 1_000,
                idempotency_key: None,
                request_hash: None,
                op: Op::Txn(Txn {
                    compare: Vec::new(),
                    success,
                    failure: Vec::new(),
                }),
            }),
        }
    }

    /// A state machine over a fresh store in `root`, every entry durable.
    fn state_machine(root: &std::path::Path) -> (Arc<Store>, StateMachine) {
        let dirs = DataDirs::new(root);
        let log = LogStore::open(&dirs.raft, Some(1)).expect("the raft log opens");
        let store = Arc::new(Store::open(&dirs, TopicConfig::default(), &log).expect("opens"));
        let durable = Durability::new(Some(LogId::new(CommittedLeaderId::new(1, 1), 1_000)));
        (Arc::clone(&store), StateMachine::new(store, durable))
    }

    /// Large values fill the view's memory long before its count of
    /// changes does: the bytes are bounded too.
    #[tokio::test]
    async fn the_views_unwritten_changes_stay_under_their_byte_bound_with_large_values() {
        const VALUE_BYTES: usize = 1 << 20;
        let root = tempfile::tempdir().expect("a temp dir");
        let (store, mut state_machine) = state_machine(root.path());
        let value = format!("\"{}\"", "v".repeat(VALUE_BYTES - 2));
        let mut most = 0;
        for batch in 0..16u64 {
            let entries: Vec<Entry> = (0..8u64)
                .map(|at| {
                    let index = batch * 8 + at + 1;
                    let mut entry = puts(index, 0..0);
                    entry.payload = EntryPayload::Normal(Command {
                        timestamp_ms: 1_000,
                        idempotency_key: None,
                        request_hash: None,
                        op: Op::Put {
                            key: format!("big/{index}"),
                            value: value.clone(),
                            condition: crate::types::Condition::Always,
                            lease: None,
                        },
                    });
                    entry
                })
                .collect();
            state_machine.apply(entries).await.expect("applies");
            most = most.max(store.view.unsealed().bytes);
        }
        assert!(
            most <= crate::store::checkpoint::UNSEALED_BYTES_LIMIT + 8 * (VALUE_BYTES + 1_024),
            "the view held {most} unwritten bytes, past its bound of {}",
            crate::store::checkpoint::UNSEALED_BYTES_LIMIT
        );
    }

    /// Applying past the view's memory bound while the checkpoint thread is
    /// in a long fsync (it holds the write-out turn) leaves the runtime's
    /// only thread free: apply waits for the checkpointer instead of
    /// checkpointing (and waiting for the turn) on it.
    #[tokio::test(flavor = "current_thread")]
    async fn apply_past_the_views_memory_bound_never_blocks_the_runtime_on_a_checkpoint() {
        let root = tempfile::tempdir().expect("a temp dir");
        let (store, mut state_machine) = state_machine(root.path());
        store.start_checkpointer().expect("the checkpointer starts");

        // The checkpoint thread's turn, held as a slow fsync would hold it.
        let released = Arc::new(AtomicBool::new(false));
        let (taken, turn_taken) = std::sync::mpsc::channel();
        let holder = std::thread::spawn({
            let (store, released) = (Arc::clone(&store), Arc::clone(&released));
            move || {
                let turn = store.writing_out.lock();
                taken.send(()).expect("the test waits");
                std::thread::sleep(FSYNC_HOLD);
                drop(turn);
                released.store(true, Ordering::SeqCst);
            }
        });
        turn_taken.recv().expect("the holder takes the turn");

        // Up to just below the bound on the view's changes, then past it.
        let below = crate::store::checkpoint::UNSEALED_CHANGES_LIMIT - 2_000;
        let entries = (0..8)
            .map(|part| puts(part as u64 + 1, part * below / 8..(part + 1) * below / 8))
            .collect::<Vec<_>>();
        state_machine.apply(entries).await.expect("applies");
        let past = puts(9, below..below + 4_000);
        let apply = tokio::spawn(async move { state_machine.apply(vec![past]).await });

        let mut longest_gap = Duration::ZERO;
        let deadline = Instant::now() + 10 * FSYNC_HOLD;
        while !released.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the holder never let go");
            let before = Instant::now();
            tokio::time::sleep(Duration::from_millis(10)).await;
            longest_gap = longest_gap.max(before.elapsed());
        }
        holder.join().expect("the holder does not panic");
        assert!(
            longest_gap < FSYNC_HOLD / 3,
            "the runtime's thread was held {longest_gap:?} while the checkpoint was in its fsync"
        );
        tokio::time::timeout(10 * FSYNC_HOLD, apply)
            .await
            .expect("the apply ends once the checkpointer gets its turn")
            .expect("does not panic")
            .expect("applies");
    }
}
