//! The node's storage: the raft log, the compacted topic, the sled view and
//! the current snapshot, under one data directory.
//!
//! ```text
//! data/format     the data format, `2` (see `data_format`)
//! data/raft/      raft log segments, vote and purged id (files of its own)
//! data/topic/     the compacted topic (crate `compaction`)
//! data/view/      the materialized view and the applied state (sled)
//! data/snapshot/  the current raft snapshot, in the topic's segment format
//! ```
//!
//! [`Store`] is shared by the state machine (the only writer of the topic
//! and the view) and the HTTP handlers (readers).

pub mod apply;
pub mod data_format;
pub mod internal;
pub mod leases;
pub(crate) mod log_durability;
pub mod log_files;
pub(crate) mod log_flusher;
pub(crate) mod log_frame;
pub(crate) mod log_recovery;
pub mod log_store;
pub mod queries;
pub mod record;
mod recovery;
pub mod snapshot;
pub mod snapshot_frames;
pub mod snapshot_receive;
pub mod state_machine;
mod txn;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use compaction::{fsutil, Topic, TopicConfig};
use openraft::EntryPayload;
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::error::StoreError;
use crate::store::apply::apply_command;
use crate::store::log_store::LogStore;
use crate::store::record::WriteRecord;
use crate::store::recovery::Recovery;
use crate::store::snapshot::{installing_marker, SnapshotFile};
use crate::store::view::View;
use crate::types::{CommandResult, Entry, Op, Revision, StoredMembership};
use crate::watch::WatchRegistry;

/// Opens (or creates) the view's sled database in `dir`. sled makes
/// nothing durable on its own schedule: only explicit flushes do.
///
/// sled's IO thread outlives a dropped handle by a moment and holds the
/// database's file lock until it ends, so an open in the same process
/// right after a drop (a store reopened after a rebuild, or in a test)
/// waits a bounded time for the lock rather than failing. Another process
/// holding the directory is still refused, once the wait is over.
pub fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + SLED_LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open();
        match opened {
            Err(source) if is_lock_held(&source) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => {
                return opened.map_err(|source| StoreError::Sled {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// How long an open waits for sled's file lock to be let go.
const SLED_LOCK_WAIT: Duration = Duration::from_secs(3);

/// Whether sled refused to open because its file lock is held. sled says
/// so only in the text of an I/O error.
fn is_lock_held(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Runs blocking storage work off the async workers, which serve requests
/// and run openraft's core.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await?
}

/// Longest time between two checkpoints (topic fsync, then view flush)
/// while entries are applied.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Unsealed view changes at which the checkpointer is woken early.
const CHECKPOINT_CHANGES: usize = 8_192;
/// Unsealed view changes at which apply checkpoints by itself, in case no
/// checkpointer runs or it falls behind: a bound on the view's memory.
const CHECKPOINT_CHANGES_INLINE: usize = 8 * CHECKPOINT_CHANGES;

/// The directories of a data dir.
#[derive(Clone, Debug)]
pub struct DataDirs {
    /// The raft log.
    pub raft: PathBuf,
    /// The compacted topic.
    pub topic: PathBuf,
    /// The view.
    pub view: PathBuf,
    /// The current snapshot.
    pub snapshot: PathBuf,
}

impl DataDirs {
    /// The layout under `root`.
    pub fn new(root: &Path) -> DataDirs {
        DataDirs {
            raft: root.join("raft"),
            topic: root.join("topic"),
            view: root.join("view"),
            snapshot: root.join("snapshot"),
        }
    }
}

/// The topic, the view and the watchers of one node.
pub struct Store {
    /// The compacted topic.
    pub topic: Arc<Topic>,
    /// The materialized view.
    pub view: View,
    /// Long-poll waiters, woken after each applied batch.
    pub watches: Arc<WatchRegistry>,
    /// Where the current snapshot lives.
    pub snapshot_dir: PathBuf,
    /// The store's revision: the offset of the last record applied, as the
    /// view keeps it next to the applied log id.
    revision: AtomicU64,
    /// Held while the view is written out (checkpoint, rebuild), so that
    /// they take turns.
    writing_out: Mutex<()>,
    /// Wakes the checkpointer, once started.
    checkpointer: OnceLock<SyncSender<()>>,
    /// Bumped after each applied batch that wrote a role or token, and
    /// after a snapshot install: the token cache's cue to start over.
    acl_generation: AtomicU64,
    /// The leases' deadlines, kept while this node leads; told of each
    /// grant and end as it is applied.
    pub leases: Arc<crate::leases::LeaseKeeper>,
}

impl Store {
    /// Opens the store of `dirs`, finishing an interrupted snapshot install
    /// and rebuilding a missing or damaged view from the topic.
    pub fn open(
        dirs: &DataDirs,
        topic_config: TopicConfig,
        log: &LogStore,
    ) -> Result<Store, StoreError> {
        Store::open_and_recover(dirs, topic_config, log).map(|(store, _)| store)
    }

    /// [`Store::open`], saying what it had to do to make the parts agree.
    fn open_and_recover(
        dirs: &DataDirs,
        topic_config: TopicConfig,
        log: &LogStore,
    ) -> Result<(Store, Recovery), StoreError> {
        let topic = Arc::new(Topic::open(&dirs.topic, topic_config)?);
        let view = match View::open(&dirs.view) {
            Ok(view) => view,
            Err(error) => {
                warn!(dir = %dirs.view.display(), %error, "the view is damaged; rebuilding it from the topic");
                std::fs::remove_dir_all(&dirs.view)
                    .map_err(StoreError::io("remove", &dirs.view))?;
                View::open(&dirs.view)?
            }
        };
        let store = Store {
            topic,
            view,
            watches: Arc::new(WatchRegistry::new()),
            snapshot_dir: dirs.snapshot.clone(),
            revision: AtomicU64::new(0),
            writing_out: Mutex::new(()),
            checkpointer: OnceLock::new(),
            acl_generation: AtomicU64::new(0),
            leases: Arc::default(),
        };
        let recovery = store.recovery_needed()?;
        store.recover(recovery, log)?;
        store
            .revision
            .store(store.view.revision()?, Ordering::Release);
        Ok((store, recovery))
    }

    /// The store's revision: the offset of the last record applied (0
    /// before the first). It is always the end of a unit.
    pub fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// How many times roles or tokens changed here since the node started;
    /// read before the ACL keys, it tells a cache whether what it read is
    /// still current (see `acl::cache`).
    pub fn acl_generation(&self) -> u64 {
        self.acl_generation.load(Ordering::Acquire)
    }

    /// Applies committed entries: records to the topic (skipping those it
    /// already holds), then keys and the applied id to the view in one
    /// batch, then wakes the watchers of the changed keys.
    ///
    /// Records take the offsets after the store's revision, in order; a
    /// command that writes nothing takes none. So the offsets depend on
    /// the log alone, and every node assigns the same ones.
    ///
    /// Neither is fsynced here: the raft log is the durable record, and a
    /// crash re-applies from it. A checkpoint at least every second (and
    /// before every snapshot), off this path, makes the topic durable first
    /// and the view second, so the durable view is never ahead of the
    /// durable topic.
    pub fn apply_entries(&self, entries: Vec<Entry>) -> Result<Vec<CommandResult>, StoreError> {
        let Some(last) = entries.last().map(|entry| entry.log_id) else {
            return Ok(Vec::new());
        };
        ::metrics::histogram!(crate::metrics::APPLY_ENTRIES).record(entries.len() as f64);
        let topic_last = self.topic.last_offset();
        let mut revision = self.revision();
        let mut batch = self.view.batch();
        let mut results = Vec::with_capacity(entries.len());
        let mut records = Vec::new();
        // Records a crash left in the topic while the view lost them:
        // applied again, they must come out the same.
        let mut present = Vec::new();
        let mut changes = Vec::new();
        let mut lease_changes = Vec::new();
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => results.push(CommandResult::None),
                EntryPayload::Membership(membership) => {
                    batch.set_membership(&StoredMembership::new(Some(entry.log_id), membership));
                    results.push(CommandResult::None);
                }
                EntryPayload::Normal(command) => {
                    let applied =
                        apply_command(&mut batch, entry.log_id.index, revision + 1, &command)?;
                    match (&command.op, &applied.result) {
                        (_, CommandResult::LeaseGranted { id, ttl_ms }) => {
                            lease_changes.push((*id, Some(Duration::from_millis(*ttl_ms))));
                        }
                        (
                            Op::LeaseRevoke { id } | Op::LeaseExpire { id },
                            CommandResult::LeaseEnded { .. },
                        ) => lease_changes.push((*id, None)),
                        _ => {}
                    }
                    for record in applied.records {
                        revision = record.offset;
                        changes.push((record.key.clone(), record.revision()));
                        if topic_last.is_some_and(|last| record.offset <= last) {
                            present.push(record);
                        } else {
                            records.push(record.to_record());
                        }
                    }
                    results.push(applied.result);
                }
            }
        }
        if !present.is_empty() {
            self.check_present(&present)?;
        }
        batch.set_applied(&last, revision);
        if !records.is_empty() {
            self.topic.append(&records)?;
        }
        let unsealed = self.view.commit(batch);
        self.revision.store(revision, Ordering::Release);
        let now = Instant::now();
        for (id, granted) in lease_changes {
            match granted {
                Some(ttl) => self.leases.granted(id, ttl, now),
                None => self.leases.ended(id),
            }
        }
        // After the view holds the change: see `acl::cache`.
        if changes.iter().any(|(key, _)| crate::acl::is_acl_key(key)) {
            self.acl_generation.fetch_add(1, Ordering::AcqRel);
        }
        // Internal keys are no client's to watch.
        self.watches.notify(
            changes
                .iter()
                .filter(|(key, _)| !internal::is_internal_key(key))
                .map(|(key, revision)| (key.as_str(), *revision)),
        );
        if unsealed >= CHECKPOINT_CHANGES_INLINE {
            self.checkpoint()?;
        } else if unsealed >= CHECKPOINT_CHANGES {
            if let Some(checkpointer) = self.checkpointer.get() {
                // A full channel already holds a wake-up. A closed one means
                // the thread has stopped; the inline checkpoint above still
                // bounds the view's memory.
                if let Err(TrySendError::Disconnected(())) = checkpointer.try_send(()) {
                    warn!("the view checkpointer has stopped; checkpointing inline only");
                }
            }
        }
        Ok(results)
    }

    /// Checks that the records the topic already holds at the offsets
    /// applying gave `present` are those records: the same key from the
    /// same log entry. A topic that holds something else there was written
    /// by a different history, and serving it would be serving a lie. A
    /// record the cleaner has since dropped is not there to compare.
    fn check_present(&self, present: &[WriteRecord]) -> Result<(), StoreError> {
        let mut expected = present.iter().peekable();
        for stored in self.topic.read_from(present[0].offset) {
            let stored = WriteRecord::from_record(stored?)?;
            while expected
                .next_if(|want| want.offset < stored.offset)
                .is_some()
            {}
            let Some(want) = expected.next_if(|want| want.offset == stored.offset) else {
                if expected.peek().is_none() {
                    break;
                }
                continue;
            };
            if (&want.key, want.log_index) != (&stored.key, stored.log_index) {
                return Err(StoreError::TopicDisagrees {
                    offset: want.offset,
                    expected: format!("key {:?} of log index {}", want.key, want.log_index),
                    found: format!("key {:?} of log index {}", stored.key, stored.log_index),
                });
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
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let _turn = self.writing_out.lock();
        self.view.seal();
        self.topic.sync()?;
        self.view.flush()?;
        Ok(())
    }

    /// Starts a thread that checkpoints at least every second, and sooner
    /// when many view changes are unwritten; it stops when the store is
    /// dropped.
    pub fn start_checkpointer(self: &Arc<Self>) -> Result<(), StoreError> {
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        if self.checkpointer.set(wake).is_err() {
            return Ok(());
        }
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
                if let Err(error) = store.checkpoint() {
                    warn!(%error, "checkpoint failed; retrying");
                }
            })
            .map_err(StoreError::io(
                "spawn the checkpoint thread",
                &self.snapshot_dir,
            ))?;
        Ok(())
    }

    /// Installs a snapshot: stores it, lays its records down as the topic,
    /// rebuilds the view by replay. A crash part-way is finished at open.
    pub fn install(&self, snapshot: &SnapshotFile) -> Result<(), StoreError> {
        let marker = installing_marker(&self.snapshot_dir);
        snapshot.store(&self.snapshot_dir)?;
        fsutil::write_synced(&marker, b"")?;
        fsutil::fsync_dir(&self.snapshot_dir)?;
        let meta = &snapshot.header.meta;
        // The topic ends at the snapshot's revision: its last record's offset.
        let end = snapshot.header.revision;
        self.topic
            .replace_with(snapshot.records(), end, snapshot.header.tombstone_floor)?;
        crate::crash::point(crate::crash::SNAPSHOT_TOPIC_REPLACED);
        self.rebuild_view(meta.last_log_id, end, meta.last_membership.clone())?;
        std::fs::remove_file(&marker).map_err(StoreError::io("remove", &marker))?;
        self.revision.store(end, Ordering::Release);
        self.acl_generation.fetch_add(1, Ordering::AcqRel);
        info!(snapshot = %meta.snapshot_id, end, "installed snapshot");
        Ok(())
    }
}
