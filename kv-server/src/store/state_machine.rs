//! openraft's state machine: applies committed entries through [`Store`],
//! builds and installs snapshots.
//!
//! openraft calls the state machine from one task, one call at a time, so
//! the store has exactly one writer. Small batches of entries are applied
//! on that task: they touch memory and the page cache only. Large batches
//! (a catch-up), building, installing and loading snapshots are blocking
//! file I/O and move to the blocking pool. Reads of the view's applied state
//! stay on the task: they hit the in-memory layers or sled's cache.

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use tracing::info;

use crate::error::StoreError;
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

fn sm_error(error: StoreError) -> StorageError {
    StorageIOError::write_state_machine(&error).into()
}

fn snapshot_error(error: StoreError) -> StorageError {
    StorageIOError::write_snapshot(None, &error).into()
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
            let snapshot =
                SnapshotFile::build_in(&store.snapshot_dir, header, reader, previous.as_ref())?;
            snapshot.store(&store.snapshot_dir)?;
            let data = snapshot.data()?;
            Ok((snapshot, data))
        })
        .await
        .map_err(snapshot_error)?;
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
        let store = Arc::clone(&self.store);
        let inline = entries.len() <= INLINE_APPLY_ENTRIES;
        let apply = move || {
            let started = std::time::Instant::now();
            let results = store.apply_entries(entries);
            ::metrics::histogram!(crate::metrics::APPLY_SECONDS)
                .record(started.elapsed().as_secs_f64());
            results
        };
        if inline {
            apply().map_err(sm_error)
        } else {
            blocking(apply).await.map_err(sm_error)
        }
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
        .map_err(snapshot_error)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.store.snapshot_dir.clone();
        blocking(move || {
            let Some(snapshot) = SnapshotFile::load(&dir)? else {
                return Ok(None);
            };
            Ok(Some(Snapshot {
                meta: snapshot.header.meta.clone(),
                snapshot: snapshot.data()?,
            }))
        })
        .await
        .map_err(snapshot_error)
    }
}
