//! The node's storage: the raft log, the compacted topic, the sled view and
//! the current snapshot, under one data directory.
//!
//! ```text
//! data/format     the data format, `6` (see `data_format`)
//! data/raft/      raft log segments, vote and purged id (files of its own)
//! data/topic/     the compacted topic (crate `compaction`)
//! data/view/      the materialized view and the applied state (sled);
//!                 after a snapshot install `data/view-<n>/`, named by
//!                 `data/view.current` (see `view::ViewDirs`)
//! data/snapshot/  the current raft snapshot, in the topic's segment format
//! ```
//!
//! [`Store`] is shared by the state machine (the only writer of the topic
//! and the view) and the HTTP handlers (readers).

mod access;
pub mod alarms;
pub mod apply;
mod batch;
mod checkpoint;
pub mod data_format;
pub mod dir_lock;
pub mod internal;
mod json_compare;
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
mod snapshot_build;
pub mod snapshot_receive;
pub mod state_machine;
mod txn;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use compaction::{Topic, TopicConfig};
use openraft::EntryPayload;
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::error::StoreError;
use crate::metrics::HotHistogram;
use crate::store::apply::apply_command;
use crate::store::log_store::LogStore;
use crate::store::record::WriteRecord;
use crate::store::recovery::Recovery;
use crate::store::snapshot::{finish_installing, SnapshotFile};
use crate::store::view::{View, ViewDirs};
use crate::types::{CommandResult, Entry, Op, Revision, StoredMembership};
use crate::watch::WatchRegistry;

/// Bytes of page cache each view database opened from now on takes
/// (`--view-cache-bytes`); sled's own default until set.
static VIEW_CACHE_BYTES: AtomicU64 = AtomicU64::new(1 << 30);

/// Sets the page cache of the view databases opened from now on: one
/// setting of the process, made once at start-up before the store opens.
pub fn set_view_cache_bytes(bytes: u64) {
    VIEW_CACHE_BYTES.store(bytes, Ordering::Relaxed);
}

/// Opens (or creates) the view's sled database in `dir`, with the page
/// cache [`set_view_cache_bytes`] gave. sled makes nothing durable on its
/// own schedule: only explicit flushes do.
///
/// sled's IO thread outlives a dropped handle by a moment and holds the
/// database's file lock until it ends, so an open in the same process
/// right after a drop (a store reopened after a rebuild, or in a test)
/// waits a bounded time for the lock rather than failing. Another process
/// holding the directory is still refused, once the wait is over.
pub fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + SLED_LOCK_WAIT;
    loop {
        let config = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(VIEW_CACHE_BYTES.load(Ordering::Relaxed))
            .flush_every_ms(None);
        // sled 0.34 panics on some damage to its files (a flipped byte in
        // its page table) rather than answering an error: the caller
        // decides what a damaged database means (the view rebuilds).
        let opened = unless_panicked(dir, || config.open())?;
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

/// What `open` gives, or [`StoreError::SledPanicked`] naming `dir` if it
/// panics.
fn unless_panicked<T>(dir: &Path, open: impl FnOnce() -> T) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)).map_err(|panic| {
        StoreError::SledPanicked {
            path: dir.to_path_buf(),
            message: panic_message(panic.as_ref()),
        }
    })
}

/// The message a panic carried, if it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| message.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// The first damaged data this process met, if any, in its Raft storage or
/// in a read it served (a replay, a change feed): what a node that stops
/// names, since a restart meets it again, and what keeps it unready.
static DAMAGE: OnceLock<String> = OnceLock::new();

/// The first damage to the view's files this process met, if any: it keeps
/// the node unready until a restart rebuilds the view.
static VIEW_DAMAGE: OnceLock<String> = OnceLock::new();

/// Remembers `error` if it is damaged data ([`StoreError::is_damage`]) or
/// a damaged view ([`StoreError::is_view_damage`]).
pub(crate) fn note_damage(error: &StoreError) {
    if error.is_damage() {
        let _ = DAMAGE.set(error.to_string());
    } else if error.is_view_damage() {
        let _ = VIEW_DAMAGE.set(error.to_string());
    }
}

/// The damaged data this process met, if any.
pub fn damage_met() -> Option<&'static str> {
    DAMAGE.get().map(String::as_str)
}

/// The damage to the view this process met, if any.
pub fn view_damage_met() -> Option<&'static str> {
    VIEW_DAMAGE.get().map(String::as_str)
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

/// The exit status of a node stopped by a failed checkpoint: sysexits'
/// `EX_IOERR`.
pub const EXIT_CHECKPOINT_FAILED: i32 = 74;
/// The exit status of a node stopped because its disk is full where a
/// write cannot wait for room (sled, a snapshot): sysexits' `EX_TEMPFAIL`,
/// for a supervisor to restart it once there is room.
pub const EXIT_NO_SPACE: i32 = 75;
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
    /// Where the view in use lives, and the next one is built.
    view_dirs: ViewDirs,
    /// The store's revision: the offset of the last record applied, as the
    /// view keeps it next to the applied log id.
    revision: AtomicU64,
    /// The same revision, for those who wait for it ([`Store::applied`]).
    revision_changes: tokio::sync::watch::Sender<Revision>,
    /// Held while the view is written out (checkpoint, rebuild), so that
    /// they take turns.
    writing_out: Mutex<()>,
    /// Wakes the checkpointer, once started.
    checkpointer: OnceLock<SyncSender<()>>,
    /// Counts the seals of the view's changes: apply, waiting for the view
    /// to fall below its memory bound, watches it.
    seals: tokio::sync::watch::Sender<u64>,
    /// The first failed checkpoint's error: set once, never cleared, since
    /// after a failed fsync a later one proves nothing (see `checkpoint`).
    sync_failed: OnceLock<String>,
    /// Bumped after each applied batch that wrote a role or token, and
    /// after a snapshot install: the token cache's cue to start over.
    acl_generation: AtomicU64,
    /// The leases' deadlines, kept while this node leads; told of each
    /// grant and end as it is applied.
    pub leases: Arc<crate::leases::LeaseKeeper>,
    /// Commands applied since this process started (a batch entry counts
    /// each of its commands): what `--snapshot-every` counts.
    commands_applied: AtomicU64,
    /// This node's writers waiting for room on a full disk, the raft
    /// log's among them (see `space`).
    pub disk_full: Arc<crate::space::DiskFull>,
    /// How far a snapshot on disk covers the raft log, told to the log,
    /// whose purges wait for it.
    snapshot_cover: log_store::SnapshotCover,
    /// The views' directory, named when the disk is too full to write it.
    view_root: PathBuf,
    /// Whether the view holds the NOSPACE alarm's key, as of the last
    /// applied batch: [`Store::alarms`] reads the key only while it does,
    /// so the check every write makes before it is proposed reads nothing.
    nospace_raised: AtomicBool,
    /// The id of the current snapshot whose records were read whole and
    /// found sound (or were written by this process): what
    /// [`Store::current_snapshot_checked`] need not read again.
    checked_snapshot: Mutex<Option<String>>,
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
        let view_dirs = ViewDirs::new(&dirs.view);
        view_dirs.remove_stale()?;
        snapshot::remove_unfinished_builds(&dirs.snapshot)?;
        let view_dir = view_dirs.current()?;
        let view = match View::open(&view_dir) {
            Ok(view) => view,
            // Another process has it open: not damage, and not this
            // process's to rebuild under it.
            Err(StoreError::Sled { source, .. }) if is_lock_held(&source) => {
                return Err(StoreError::DataDirInUse {
                    dir: dirs.view.parent().unwrap_or(&dirs.view).to_path_buf(),
                    lock: view_dir.join("db"),
                })
            }
            // A full disk is not damage: the view stays, and the node
            // waits for room (main exits EXIT_NO_SPACE).
            Err(error) if error.lacks_space() => return Err(error),
            Err(error) => {
                let why = match error {
                    StoreError::ViewFormat { .. } => "the view is of another layout",
                    _ => "the view is damaged",
                };
                warn!(dir = %view_dir.display(), %error, "{why}; rebuilding it from the topic");
                std::fs::remove_dir_all(&view_dir).map_err(StoreError::io("remove", &view_dir))?;
                View::open(&view_dir)?
            }
        };
        let durable_end = recovery::durable_topic_end(&view, &dirs.snapshot)?;
        let topic = Topic::open_with_durable_end(&dirs.topic, topic_config, durable_end).map_err(
            |error| match error {
                compaction::Error::Corrupt { .. } | compaction::Error::ManifestMismatch { .. } => {
                    StoreError::TopicDamaged(error)
                }
                error => StoreError::Topic(error),
            },
        )?;
        let topic = Arc::new(topic);
        let store = Store {
            topic,
            view,
            watches: Arc::new(WatchRegistry::new()),
            snapshot_dir: dirs.snapshot.clone(),
            view_dirs,
            revision: AtomicU64::new(0),
            revision_changes: tokio::sync::watch::Sender::new(0),
            commands_applied: AtomicU64::new(0),
            writing_out: Mutex::new(()),
            checkpointer: OnceLock::new(),
            seals: tokio::sync::watch::Sender::new(0),
            sync_failed: OnceLock::new(),
            acl_generation: AtomicU64::new(0),
            leases: Arc::default(),
            disk_full: log.disk_full(),
            snapshot_cover: log.snapshot_cover(),
            view_root: dirs.view.clone(),
            nospace_raised: AtomicBool::new(true),
            checked_snapshot: Mutex::new(None),
        };
        let recovery = store.recovery_needed(log)?;
        store.recover(recovery, log)?;
        store.check_snapshot_covers_purge(log)?;
        store.set_revision(store.view.revision()?);
        let raised = store.view.get(alarms::NOSPACE_KEY)?.is_some();
        store.nospace_raised.store(raised, Ordering::Release);
        Ok((store, recovery))
    }

    /// Tells the raft log that `snapshot`, now on disk, covers it up to
    /// its last log id: purges up to there may go ahead.
    pub(crate) fn snapshot_covers(&self, snapshot: &SnapshotFile) {
        if let Some(id) = snapshot.header.meta.last_log_id {
            self.snapshot_cover.reached(id.index);
        }
    }

    /// Tells the raft log how far the current snapshot covers it (from
    /// then on its purges wait for a snapshot on disk to cover them), and
    /// refuses a current snapshot that ends before what the log purged: a
    /// log purges only what a snapshot on disk covers, and the current
    /// snapshot never goes back, so the file was replaced by an older one.
    fn check_snapshot_covers_purge(&self, log: &LogStore) -> Result<(), StoreError> {
        let snapshot = SnapshotFile::load(&self.snapshot_dir)?;
        let covers = snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.header.meta.last_log_id)
            .map_or(0, |id| id.index);
        self.snapshot_cover.reached(covers);
        match log.purged() {
            Some(purged) if snapshot.is_some() && covers < purged.index => {
                Err(StoreError::SnapshotBehindPurge {
                    path: self.snapshot_dir.join(snapshot::CURRENT_FILE),
                    covers,
                    purged: purged.index,
                })
            }
            _ => Ok(()),
        }
    }

    /// Refuses a raft log that ends before what the view applied (or the
    /// current snapshot covers): nothing is applied before the log holds
    /// it on disk, so entries it held are gone, whatever reading of the
    /// files (a tail taken for torn, a segment or `meta.json` removed) let
    /// it open.
    pub fn check_log_reaches_applied(&self, log: &LogStore, dir: &Path) -> Result<(), StoreError> {
        let (applied, _) = self.view.applied_state()?;
        let Some(applied) = applied else {
            return Ok(());
        };
        let snapshot_end = SnapshotFile::load(&self.snapshot_dir)?
            .and_then(|snapshot| snapshot.header.meta.last_log_id)
            .map_or(0, |id| id.index);
        let log_end = log.reach().max(snapshot_end);
        if applied.index > log_end {
            return Err(StoreError::LogBehindApplied {
                dir: dir.to_path_buf(),
                log_end,
                applied: applied.index,
            });
        }
        Ok(())
    }

    /// The store's revision: the offset of the last record applied (0
    /// before the first). It is always the end of a unit.
    pub fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// Sets the store's revision and wakes those waiting for it.
    fn set_revision(&self, revision: Revision) {
        self.revision.store(revision, Ordering::Release);
        self.revision_changes.send_if_modified(|current| {
            let moved = *current != revision;
            *current = revision;
            moved
        });
    }

    /// Waits until this node has applied `revision`, at most `timeout`;
    /// whether it has. A write answered by the leader is applied there
    /// first: a node that passed it on waits here so that its own reads
    /// see it.
    pub async fn applied(&self, revision: Revision, timeout: Duration) -> bool {
        let mut changes = self.revision_changes.subscribe();
        if self.revision() >= revision {
            return true;
        }
        let reached =
            tokio::time::timeout(timeout, changes.wait_for(|current| *current >= revision)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// The NOSPACE alarms raised in the cluster, as applied here.
    pub fn alarms(&self) -> Result<Vec<schemas::api::Alarm>, StoreError> {
        if !self.nospace_raised.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        match self.view.get(alarms::NOSPACE_KEY)? {
            Some(entry) => alarms::decode(&entry),
            None => Ok(Vec::new()),
        }
    }

    /// Where a write of this store that failed for want of space was
    /// going: the file the error names, else the views' directory (sled
    /// names none).
    pub fn no_space_path(&self, error: &StoreError) -> PathBuf {
        error.path().unwrap_or(&self.view_root).to_path_buf()
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
    ///
    /// A failed apply changes nothing a reader sees, and the same entries
    /// can be applied again: records it already appended to the topic are
    /// found there and checked, as after a crash.
    pub fn apply_entries(
        &self,
        entries: impl AsRef<[Entry]>,
    ) -> Result<Vec<CommandResult>, StoreError> {
        let entries = entries.as_ref();
        let Some(last) = entries.last().map(|entry| entry.log_id) else {
            return Ok(Vec::new());
        };
        static APPLY_ENTRIES: HotHistogram = HotHistogram::new(crate::metrics::APPLY_ENTRIES);
        APPLY_ENTRIES.record(entries.len() as f64);
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
        // Where in `records` the second command's unit of a batch entry
        // starts, for the crash point inside a batch entry's append.
        let mut batch_split = None;
        let mut commands = 0;
        for entry in entries {
            match &entry.payload {
                EntryPayload::Blank => results.push(CommandResult::None),
                EntryPayload::Membership(membership) => {
                    batch.set_membership(&StoredMembership::new(
                        Some(entry.log_id),
                        membership.clone(),
                    ));
                    results.push(CommandResult::None);
                }
                EntryPayload::Normal(command) => {
                    commands += match &command.op {
                        Op::Batch(inner) => inner.len() as u64,
                        _ => 1,
                    };
                    let applied =
                        apply_command(&mut batch, entry.log_id.index, revision + 1, command)?;
                    lease_changes_of(&command.op, &applied.result, &mut lease_changes);
                    for record in applied.records {
                        revision = record.offset;
                        changes.push((record.key.clone(), record.revision()));
                        if topic_last.is_some_and(|last| record.offset <= last) {
                            present.push(record);
                        } else {
                            let later_unit = record.entry.is_some_and(|entry| entry.sub > 0)
                                && record.batch.is_first();
                            if later_unit && batch_split.is_none() {
                                batch_split = Some(records.len());
                            }
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
            self.append_to_topic(&records, batch_split)?;
        }
        // Known if this batch looked the alarm up or changed it; else the
        // key is as it was.
        let nospace_raised = batch.nospace.as_ref().map(Option::is_some);
        self.view.commit(batch);
        self.set_revision(revision);
        if let Some(raised) = nospace_raised {
            self.nospace_raised.store(raised, Ordering::Release);
        }
        self.commands_applied.fetch_add(commands, Ordering::Relaxed);
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
        self.wake_checkpointer_when_due();
        Ok(results)
    }

    /// Appends `records` to the topic in one append; in two, around the
    /// crash point, when it is armed and `batch_split` says where a batch
    /// entry's second unit starts.
    fn append_to_topic(
        &self,
        records: &[compaction::Record],
        batch_split: Option<usize>,
    ) -> Result<(), StoreError> {
        use crate::crash::{self, BATCH_ENTRY_PART_APPENDED};
        match batch_split.filter(|_| crash::armed(BATCH_ENTRY_PART_APPENDED)) {
            Some(split) => {
                self.topic.append(&records[..split])?;
                crash::point(BATCH_ENTRY_PART_APPENDED);
                self.topic.append(&records[split..])?;
            }
            None => self.topic.append(records)?,
        }
        Ok(())
    }

    /// Commands applied since this process started, a batch entry's each.
    pub fn commands_applied(&self) -> u64 {
        self.commands_applied.load(Ordering::Relaxed)
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

    /// Installs a snapshot: lays its records down as the topic, builds a
    /// new view from them beside the one in use and switches to it in one
    /// step, so a reader sees the state before or the state after, each at
    /// its own revision. Each step is durable before the next starts, and
    /// a crash after any of them is finished at open (docs/architecture.md,
    /// "Installing a snapshot"):
    ///
    /// 1. the snapshot is written as `installing.snap`: the install is
    ///    now under way and a restart does it again from this file;
    /// 2. the topic is replaced with its records (old set or new set);
    /// 3. the new view is built and flushed in a directory of its own;
    /// 4. the view pointer names it, and readers are switched to it;
    /// 5. `installing.snap` becomes `current.snap`: the install is done;
    /// 6. the old view's directory is removed.
    pub fn install(&self, snapshot: &SnapshotFile) -> Result<(), StoreError> {
        use crate::crash::{self, point};
        let meta = &snapshot.header.meta;
        // The topic ends at the snapshot's revision: its last record's offset.
        let end = snapshot.header.revision;
        snapshot.store_installing(&self.snapshot_dir)?;
        self.snapshot_covers(snapshot);
        point(crash::INSTALL_SNAPSHOT_SAVED);
        self.topic
            .replace_with(snapshot.records(), end, snapshot.header.tombstone_floor)?;
        point(crash::SNAPSHOT_TOPIC_REPLACED);
        let next_dir = self.view_dirs.next()?;
        let next = View::open(&next_dir)?;
        self.replay_into(
            &next,
            meta.last_log_id,
            end,
            meta.last_membership.clone(),
            recovery::ReplayLayers::DEFAULT,
        )?;
        point(crash::INSTALL_VIEW_BUILT);
        let nospace_raised = next.get(alarms::NOSPACE_KEY)?.is_some();
        let retired = {
            // No checkpoint writes either view while they change places.
            let _turn = self.writing_out.lock();
            self.view_dirs.switch_to(&next_dir)?;
            point(crash::INSTALL_VIEW_SWITCHED);
            let retired = self.view.switch_to(&next);
            self.set_revision(end);
            self.nospace_raised.store(nospace_raised, Ordering::Release);
            retired
        };
        self.acl_generation.fetch_add(1, Ordering::AcqRel);
        // Any key may have changed: every waiter below the new revision
        // answers from the new view.
        self.watches.notify_all(end);
        finish_installing(&self.snapshot_dir)?;
        point(crash::INSTALL_SNAPSHOT_CURRENT);
        if retired.close(RETIRED_VIEW_WAIT) {
            self.view_dirs.remove_stale()?;
        } else {
            warn!("a read still holds the old view; its directory is removed at the next start");
        }
        info!(snapshot = %meta.snapshot_id, end, "installed snapshot");
        Ok(())
    }
}

/// Adds the leases `op` granted (with their TTL) or ended (`None`), as
/// `result` says, to `changes`; a batch's commands each in turn, a
/// token's command as the one it carries.
fn lease_changes_of(
    op: &Op,
    result: &CommandResult,
    changes: &mut Vec<(crate::types::LeaseId, Option<Duration>)>,
) {
    match (op, result) {
        (Op::Batch(commands), CommandResult::Batch(results)) => {
            for (command, result) in commands.iter().zip(results) {
                lease_changes_of(&command.op, result, changes);
            }
        }
        (Op::ByToken { op, .. }, result) => lease_changes_of(op, result, changes),
        (_, CommandResult::LeaseGranted { id, ttl_ms }) => {
            changes.push((*id, Some(Duration::from_millis(*ttl_ms))));
        }
        (Op::LeaseRevoke { id } | Op::LeaseExpire { id }, CommandResult::LeaseEnded { .. }) => {
            changes.push((*id, None))
        }
        _ => {}
    }
}

/// How long an install waits for the reads still running on the old view
/// before it leaves its directory to the next start.
const RETIRED_VIEW_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Command;

    /// sled 0.34 panics on some damage to its files: the panic is an error
    /// naming the database, which the view answers with a rebuild.
    #[test]
    fn a_panic_opening_sled_is_an_error_naming_the_database() {
        let dir = Path::new("/data/view/view-1");
        assert_eq!(unless_panicked(dir, || 7).expect("no panic"), 7);
        let error = unless_panicked(dir, || -> u32 {
            panic!("tried to serialize Uninitialized")
        })
        .expect_err("a panic");
        assert_eq!(
            error.to_string(),
            "cannot open sled database /data/view/view-1: its files are damaged \
             (sled panicked: tried to serialize Uninitialized)"
        );
    }

    fn command(op: Op) -> Command {
        Command {
            timestamp_ms: 1,
            idempotency_key: None,
            request_hash: None,
            op,
        }
    }

    /// The keeper hears of the leases a batch's commands grant and end as
    /// it does of a lone command's; refused ones change nothing.
    #[test]
    fn leases_granted_and_ended_inside_a_batch_reach_the_keeper() {
        let grant = Op::LeaseGrant {
            ttl_ms: 5_000,
            max_leases: 10,
        };
        let op = Op::Batch(vec![
            command(grant.clone()),
            command(Op::LeaseRevoke { id: 3 }),
            command(grant),
            command(Op::LeaseExpire { id: 4 }),
        ]);
        let result = CommandResult::Batch(vec![
            CommandResult::LeaseGranted {
                id: 7,
                ttl_ms: 5_000,
            },
            CommandResult::LeaseEnded {
                revision: 8,
                deleted: 2,
            },
            CommandResult::LeaseLimit { max_leases: 10 },
            CommandResult::LeaseNotFound { id: 4 },
        ]);
        let mut changes = Vec::new();
        lease_changes_of(&op, &result, &mut changes);
        assert_eq!(changes, vec![(7, Some(Duration::from_secs(5))), (3, None)]);
    }
}
