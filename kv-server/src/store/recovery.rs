//! What the store does at open when its parts disagree, and the rebuild of
//! the view from the topic that most of those decisions lead to.
//!
//! The raft log is the durable record; the topic and the view are written
//! behind it and either may lose its tail in a crash. At open the store
//! checks, in this order:
//!
//! 1. `installing.snap`: a snapshot install was interrupted, do it again
//!    from that snapshot;
//! 2. the view's rebuilding marker: a rebuild was interrupted, start over;
//! 3. a view that applied nothing while the topic holds records (or a
//!    snapshot or the raft log's purge says entries were applied), or that
//!    applied less than the raft log purged: the view was lost (or damaged
//!    and removed, or cut back), rebuild it;
//! 4. a view whose revision passes the topic's end: the topic lost writes
//!    the view kept, rebuild the view to match.
//!
//! A topic that ends before the current snapshot's revision lost records
//! the snapshot holds (it was built from the topic once durable): the
//! snapshot is laid down again, as an install does. A rebuild with no
//! snapshot while the raft log was purged is refused: what was purged is
//! nowhere else.
//!
//! A rebuild replays the topic and gives the view the log id of the entry
//! that wrote the topic's last record (its header keeps the log index), so
//! the state machine re-applies the log from there. A unit a crash cut
//! short at the topic's end (a transaction whose last records never
//! reached the file) is left out of the view, and the view gets the log id
//! just before the unit's entry: applied again, the entry gives the same
//! offsets, finds its first records in place and appends the rest. So it
//! is for an entry carrying a batch of commands, whose records know their
//! place among all of the entry's: unless its last record is there, the
//! view stops before it, even when the tail ends one command's whole unit.

use std::path::Path;

use openraft::EntryPayload;
use tracing::{info, warn};

use super::apply::replay_record;
use super::log_store::LogStore;
use super::record::WriteRecord;
use super::snapshot::{installing_marker, SnapshotFile, CURRENT_FILE};
use super::view::View;
use super::Store;
use crate::error::StoreError;
use crate::types::{LogId, Revision, StoredMembership};

/// How a replay of the topic fills the view's in-memory layers.
#[derive(Clone, Copy, Debug)]
pub(super) struct ReplayLayers {
    /// Records replayed into the active layer per commit.
    pub records_per_commit: u64,
    /// Distinct keys the active layer may hold before it is sealed and
    /// written to sled: the layer keeps the latest change per key, so a
    /// topic with fewer keys than this is written once, at the end.
    pub keys_per_write: usize,
}

impl ReplayLayers {
    /// A rebuild's: up to two layers of 100,000 keys in memory at once,
    /// one being written while the other fills.
    pub const DEFAULT: ReplayLayers = ReplayLayers {
        records_per_commit: 10_000,
        keys_per_write: 100_000,
    };
}

/// Waits for a layer's write to sled, if one runs, and gives its outcome.
fn finish_writing(
    writing: Option<std::thread::ScopedJoinHandle<'_, Result<(), StoreError>>>,
) -> Result<(), StoreError> {
    match writing {
        // The writer only calls sled, which reports failures as errors; a
        // panic there is a bug worth stopping the node for.
        Some(writer) => writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        None => Ok(()),
    }
}

/// What the store found at open, and so what it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The view and the topic agree: nothing to do.
    Nothing,
    /// A snapshot install was interrupted: it is done again.
    FinishInstall,
    /// A rebuild of the view was interrupted: it starts over.
    ResumeRebuild,
    /// The view is missing while the topic holds records: it is rebuilt.
    ViewMissing,
    /// The view passed the topic's end: it is rebuilt to the topic's end.
    ViewAheadOfTopic,
}

/// The last topic offset the view holds as applied, when the view can say:
/// the topic is durable up to it (a checkpoint syncs the topic before it
/// writes the view), and a restart re-applies every committed entry after
/// the view's applied index from the raft log. So the topic may lose, and
/// `Topic::open_with_durable_end` cuts, damage after it. `None` (nothing
/// applied, a rebuild or an install interrupted) trusts the whole topic.
pub(super) fn durable_topic_end(
    view: &View,
    snapshot_dir: &Path,
) -> Result<Option<Revision>, StoreError> {
    if installing_marker(snapshot_dir).exists() || view.is_rebuilding()? {
        return Ok(None);
    }
    let (applied, revision, _) = view.applied_state_and_revision()?;
    Ok(applied.map(|_| revision))
}

impl Store {
    /// What the store must do to make its parts agree; see the module doc.
    pub(super) fn recovery_needed(&self, log: &LogStore) -> Result<Recovery, StoreError> {
        Ok(if installing_marker(&self.snapshot_dir).exists() {
            Recovery::FinishInstall
        } else if self.view.is_rebuilding()? {
            Recovery::ResumeRebuild
        } else if self.view_lags_topic(log)? {
            Recovery::ViewMissing
        } else if self.view_ahead_of_topic()? {
            Recovery::ViewAheadOfTopic
        } else {
            Recovery::Nothing
        })
    }

    /// Does what `recovery` says.
    pub(super) fn recover(&self, recovery: Recovery, log: &LogStore) -> Result<(), StoreError> {
        match recovery {
            Recovery::Nothing => Ok(()),
            Recovery::FinishInstall => {
                let marker = installing_marker(&self.snapshot_dir);
                // It was renamed into place whole: if it is not there, it
                // was just made current, and the install is done.
                let Some(snapshot) = SnapshotFile::load_installing(&self.snapshot_dir)? else {
                    return Ok(());
                };
                info!(marker = %marker.display(), "finishing an interrupted snapshot install");
                self.install(&snapshot)
            }
            Recovery::ResumeRebuild | Recovery::ViewMissing | Recovery::ViewAheadOfTopic => {
                self.rebuild_view_at_topic_end(log)
            }
        }
    }

    /// Replaces the view with the replay of the topic up to `revision`, and
    /// records `applied`, `revision` and `membership` as its applied state.
    /// In place: for the store's open, before anyone reads.
    pub fn rebuild_view(
        &self,
        applied: Option<LogId>,
        revision: Revision,
        membership: StoredMembership,
    ) -> Result<u64, StoreError> {
        let _turn = self.writing_out.lock();
        self.view.clear()?;
        self.replay_into(
            &self.view,
            applied,
            revision,
            membership,
            ReplayLayers::DEFAULT,
        )
    }

    /// Replays the topic up to `revision` into the empty `view`, records
    /// `applied`, `revision` and `membership` as its applied state, and
    /// makes it durable; gives how many records it replayed. Until it is
    /// done the view is marked as being rebuilt, so a crash starts over.
    pub(super) fn replay_into(
        &self,
        view: &View,
        applied: Option<LogId>,
        revision: Revision,
        membership: StoredMembership,
        layers: ReplayLayers,
    ) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        view.set_rebuilding(true)?;
        let mut replayed = 0u64;
        let mut batch = view.batch();
        // A full layer is written to sled on a thread of its own while the
        // topic's next records are read into the next one; one layer is
        // written at a time.
        std::thread::scope(|scope| {
            let mut writing = None;
            for record in self.topic.read_from(0) {
                let record = WriteRecord::from_record(record?)?;
                if record.offset > revision {
                    break;
                }
                replay_record(&mut batch, &record)?;
                replayed += 1;
                if replayed.is_multiple_of(layers.records_per_commit) {
                    let keys = view.commit(std::mem::replace(&mut batch, view.batch()));
                    crate::crash::delay(crate::crash::VIEW_REPLAY_BATCH);
                    if keys >= layers.keys_per_write {
                        finish_writing(writing.take())?;
                        view.seal();
                        writing = Some(scope.spawn(|| view.flush()));
                        info!(replayed, "rebuilding the view");
                    }
                }
            }
            finish_writing(writing)
        })?;
        if let Some(applied) = &applied {
            batch.set_applied(applied, revision);
        }
        batch.set_membership(&membership);
        view.commit(batch);
        super::leases::recount(view)?;
        view.set_rebuilding(false)?;
        info!(
            replayed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rebuilt the view from the topic"
        );
        Ok(replayed)
    }

    /// Whether the view was lost while the rest was kept: the view has
    /// applied nothing, yet the topic holds records, or a snapshot or the
    /// raft log's purge says entries were applied (the topic may have lost
    /// its records too: the rebuild then tells what holds them). Or the
    /// view went back to before what the raft log purged (its files cut
    /// short, sled reading them to an earlier state): the log can no longer
    /// apply the entries after it, and only the topic holds them.
    fn view_lags_topic(&self, log: &LogStore) -> Result<bool, StoreError> {
        let (applied, _) = self.view.applied_state()?;
        let purged = log.purged();
        Ok(match applied {
            None => {
                self.topic.last_offset().is_some()
                    || self.snapshot_dir.join(CURRENT_FILE).exists()
                    || purged.is_some()
            }
            Some(applied) => purged.is_some_and(|purged| applied.index < purged.index),
        })
    }

    /// Whether the view says more is applied than the topic holds: after a
    /// power loss the view may keep writes the topic lost (neither was
    /// fsynced).
    fn view_ahead_of_topic(&self) -> Result<bool, StoreError> {
        let (applied, _) = self.view.applied_state()?;
        Ok(applied.is_some() && self.view.revision()? > self.topic.last_offset().unwrap_or(0))
    }

    /// Rebuilds the view from the topic when the view alone was lost: the
    /// state after the topic's last whole unit is the state after the log
    /// entry that wrote it, whose id (and the membership then) the raft log
    /// or the current snapshot knows.
    fn rebuild_view_at_topic_end(&self, log: &LogStore) -> Result<(), StoreError> {
        let snapshot = SnapshotFile::load(&self.snapshot_dir)?;
        let topic_end = self.topic.last_offset().unwrap_or(0);
        if let Some(snapshot) = &snapshot {
            if topic_end < snapshot.header.revision {
                // A snapshot is built from the topic once a checkpoint made
                // it durable, or laid down as the topic: records it covers
                // are gone from the topic (its last segment removed or cut).
                // It holds them; the raft log re-applies what came after.
                warn!(
                    topic_end,
                    snapshot = %self.snapshot_dir.join(CURRENT_FILE).display(),
                    snapshot_revision = snapshot.header.revision,
                    "the topic ends before the current snapshot, built from it when it was \
                     durable: laying the snapshot down again"
                );
                return self.install(snapshot);
            }
        } else if let Some(purged) = log.purged() {
            // Purged entries are covered by a snapshot: without it, the
            // membership and the state before them are gone.
            return Err(StoreError::SnapshotMissing {
                path: self.snapshot_dir.join(CURRENT_FILE),
                purged: purged.index,
            });
        }
        let tail = match self.topic.tail()? {
            Some(record) => Some(WriteRecord::from_record(record)?),
            None => None,
        };
        let snapshot_id = snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.header.meta.last_log_id);
        let (applied, revision, mut membership) = match (&snapshot, tail) {
            // Nothing past the snapshot: the topic is the snapshot's (just
            // installed, or written up to it).
            (Some(snapshot), _) if topic_end <= snapshot.header.revision => (
                snapshot_id,
                snapshot.header.revision,
                snapshot.header.meta.last_membership.clone(),
            ),
            (_, None) => (None, 0, StoredMembership::default()),
            (snapshot, Some(tail)) => {
                // A whole entry ends the topic: the view is at it. A cut
                // one (a unit cut short, or a batch entry of which some
                // commands' units are missing): the view stops before it,
                // at the entry before, whatever part of it is there.
                let entry = tail.entry_pos();
                let (log_index, revision) = if entry.is_last() {
                    (tail.log_index, tail.revision())
                } else {
                    (tail.log_index - 1, tail.entry_start() - 1)
                };
                let applied = match snapshot_id {
                    Some(id) if id.index == log_index => id,
                    _ => log
                        .log_id_at(log_index)
                        .map_err(StoreError::raft_log_read(log_index, log_index))?
                        .ok_or(StoreError::TopicEndNotInLog {
                            offset: topic_end,
                            log_index,
                        })?,
                };
                let membership = snapshot
                    .as_ref()
                    .map(|snapshot| snapshot.header.meta.last_membership.clone())
                    .unwrap_or_default();
                (Some(applied), revision, membership)
            }
        };
        if let Some(applied) = applied {
            // The log starts at index 0 (openraft puts the initial
            // membership there) or just after the snapshot.
            let first = snapshot_id.map_or(0, |id| id.index + 1);
            if first <= applied.index {
                let entries = log
                    .entries(first..=applied.index)
                    .map_err(StoreError::raft_log_read(first, applied.index))?;
                for entry in entries {
                    if let EntryPayload::Membership(config) = entry.payload {
                        membership = StoredMembership::new(Some(entry.log_id), config);
                    }
                }
            }
        }
        warn!(
            topic_end,
            revision,
            ?applied,
            "the view is missing or incomplete; rebuilding it from the topic"
        );
        self.rebuild_view(applied, revision, membership)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use compaction::TopicConfig;
    use openraft::{CommittedLeaderId, Membership, SnapshotMeta};
    use tempfile::TempDir;

    use super::*;
    use crate::store::log_files::{LogFiles, SEGMENT_BYTES};
    use crate::store::log_frame::Frame;
    use crate::store::snapshot::SnapshotHeader;
    use crate::store::view::{KeyEntry, View};
    use crate::store::DataDirs;
    use crate::types::{Command, Condition, Entry, Node, NodeId, Op};

    const NODE: NodeId = 1;
    const TERM: u64 = 2;
    /// The last entry every case starts from: a membership at 0, a blank at
    /// 1 (as a new leader's), then one put per index.
    const APPLIED: u64 = 4;
    /// The store's revision then: the puts' records take offsets 1 to 3.
    const REVISION: u64 = 3;
    /// The log index of the first put.
    const FIRST_PUT: u64 = 2;
    /// A key only the view holds: gone after a rebuild, there otherwise.
    const PLANTED: &str = "planted";

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(TERM, NODE), index)
    }

    fn membership(index: u64) -> Entry {
        let voters = vec![BTreeSet::from([NODE])];
        let nodes = BTreeMap::from([(NODE, Node::default())]);
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Membership(Membership::new(voters, nodes)),
        }
    }

    /// A command of `op`, as the tests' entries carry it.
    fn command(op: Op) -> Command {
        Command {
            timestamp_ms: 1_000,
            idempotency_key: None,
            request_hash: None,
            op,
        }
    }

    /// The entry at `index` carrying a command of `op`.
    fn normal(index: u64, op: Op) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(command(op)),
        }
    }

    fn put(index: u64) -> Entry {
        normal(
            index,
            Op::Put {
                key: key(index),
                value: index.to_string(),
                condition: Condition::Always,
                lease: None,
            },
        )
    }

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Blank,
        }
    }

    fn key(index: u64) -> String {
        format!("key/{index}")
    }

    /// A node's data dir, its raft log and store written as a node that
    /// applied entries `0..=APPLIED` and checkpointed would leave them, plus
    /// a key planted in the view alone.
    struct NodeFiles {
        _root: TempDir,
        dirs: DataDirs,
    }

    impl NodeFiles {
        fn new() -> NodeFiles {
            let root = tempfile::tempdir().expect("a temporary directory");
            let node = NodeFiles {
                dirs: DataDirs::new(root.path()),
                _root: root,
            };
            let entries: Vec<Entry> = [membership(0), blank(1)]
                .into_iter()
                .chain((FIRST_PUT..=APPLIED).map(put))
                .collect();
            node.apply(&entries);
            node.plant(|_| {});
            node
        }

        /// Appends `entries` to the raft log, durably, as openraft had them
        /// written before applying them.
        fn log(&self, entries: &[Entry]) {
            let (files, _) = LogFiles::open(&self.dirs.raft, SEGMENT_BYTES).expect("log opens");
            let frames: Vec<Frame> = entries
                .iter()
                .map(|entry| {
                    let json = serde_json::to_vec(entry).expect("an entry serializes");
                    Frame::Entry(entry.log_id, json.into())
                })
                .collect();
            files.append(&frames, true).expect("log appends");
        }

        /// Logs and applies `entries`, then checkpoints.
        fn apply(&self, entries: &[Entry]) {
            self.log(entries);
            self.with_store(|store| {
                store.apply_entries(entries).expect("applies");
                store.checkpoint().expect("checkpoints");
            });
        }

        fn with_store<T>(&self, work: impl FnOnce(&Store) -> T) -> T {
            let (store, _) = self.open().expect("the store opens");
            work(&store)
        }

        fn open(&self) -> Result<(Store, Recovery), StoreError> {
            let log = LogStore::open(&self.dirs.raft, Some(NODE)).expect("the raft log opens");
            Store::open_and_recover(&self.dirs, TopicConfig::default(), &log)
        }

        /// Writes the planted key to the view alone, then whatever `change`
        /// adds, durably.
        fn plant(&self, change: impl FnOnce(&View)) {
            let view = View::open(&self.dirs.view).expect("the view opens");
            let mut batch = view.batch();
            let planted = KeyEntry {
                value: b"0".to_vec(),
                create_revision: 1,
                mod_revision: 1,
                version: 1,
                lease: 0,
            };
            batch.put(PLANTED, &planted);
            view.commit(batch);
            change(&view);
            view.write_out().expect("the view writes out");
        }

        /// A snapshot of the state the node is at.
        fn build_snapshot(&self) -> SnapshotFile {
            self.with_store(|store| {
                let (applied, last_membership) = store.view.applied_state().expect("reads");
                let revision = store.view.revision().expect("reads");
                let header = SnapshotHeader::new(
                    SnapshotMeta {
                        last_log_id: applied,
                        last_membership,
                        snapshot_id: "test".into(),
                    },
                    revision,
                    0,
                );
                SnapshotFile::build(header, store.topic.read_from(0), None).expect("builds")
            })
        }
    }

    fn view_missing(node: &NodeFiles) {
        std::fs::remove_dir_all(&node.dirs.view).expect("removes the view");
    }

    fn rebuild_interrupted(node: &NodeFiles) {
        node.plant(|view| view.set_rebuilding(true).expect("marks a rebuild"));
    }

    fn view_ahead_over_a_write(node: &NodeFiles) {
        node.log(&[put(APPLIED + 1)]);
        node.plant(|view| {
            let mut batch = view.batch();
            batch.set_applied(&log_id(APPLIED + 1), REVISION + 1);
            view.commit(batch);
        });
    }

    fn view_applied_a_blank_the_topic_needs_not_know(node: &NodeFiles) {
        node.log(&[blank(APPLIED + 1)]);
        node.plant(|view| {
            let mut batch = view.batch();
            batch.set_applied(&log_id(APPLIED + 1), REVISION);
            view.commit(batch);
        });
    }

    fn install_interrupted(node: &NodeFiles) {
        let snapshot = node.build_snapshot();
        // Applied after the snapshot: an install of it takes the key away.
        node.apply(&[put(APPLIED + 1)]);
        node.plant(|_| {});
        snapshot
            .store_installing(&node.dirs.snapshot)
            .expect("stores the snapshot being installed");
    }

    /// What opening the store decided and left behind.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        recovery: Recovery,
        /// The store's revision after open.
        revision: u64,
        /// The view's applied log index after open.
        applied: u64,
        /// Whether the key only the view held survived (no rebuild).
        planted_kept: bool,
        /// Which of the keys of entries `FIRST_PUT..=APPLIED + 1` the view
        /// holds.
        keys: Vec<u64>,
    }

    fn outcome(recovery: Recovery, applied: u64, planted_kept: bool) -> Outcome {
        Outcome {
            recovery,
            revision: REVISION,
            applied,
            planted_kept,
            keys: (FIRST_PUT..=APPLIED).collect(),
        }
    }

    /// Each case sets up the files as a crash would leave them, opens the
    /// store, and checks what it decided and the state it ended in: its
    /// revision, whether the view was rebuilt from the topic, which keys
    /// it holds, and the membership (from the view, or recovered from the
    /// raft log or the snapshot).
    #[test]
    fn opening_the_store_repairs_what_a_crash_left() {
        use Recovery::*;
        type Setup = fn(&NodeFiles);
        let cases: [(&str, Setup, Outcome); 6] = [
            ("parts agree", |_| {}, outcome(Nothing, APPLIED, true)),
            (
                "view missing",
                view_missing,
                outcome(ViewMissing, APPLIED, false),
            ),
            (
                "rebuild interrupted",
                rebuild_interrupted,
                outcome(ResumeRebuild, APPLIED, false),
            ),
            (
                "view ahead of the topic over a write",
                view_ahead_over_a_write,
                outcome(ViewAheadOfTopic, APPLIED, false),
            ),
            (
                "view applied a blank entry past the topic's last record",
                view_applied_a_blank_the_topic_needs_not_know,
                outcome(Nothing, APPLIED + 1, true),
            ),
            (
                "install interrupted",
                install_interrupted,
                outcome(FinishInstall, APPLIED, false),
            ),
        ];
        for (case, setup, expected) in cases {
            let node = NodeFiles::new();
            setup(&node);
            let (store, recovery) = node.open().unwrap_or_else(|e| panic!("{case}: {e}"));
            let holds = |key: &str| store.view.get(key).expect("reads").is_some();
            let (applied, membership) = store.view.applied_state().expect("reads");
            let actual = Outcome {
                recovery,
                revision: store.revision(),
                applied: applied.map_or(0, |id| id.index),
                planted_kept: holds(PLANTED),
                keys: (FIRST_PUT..=APPLIED + 1)
                    .filter(|index| holds(&key(*index)))
                    .collect(),
            };
            assert_eq!(actual, expected, "{case}");
            assert_eq!(applied, Some(log_id(expected.applied)), "{case}");
            assert_eq!(store.view.revision().expect("reads"), REVISION, "{case}");
            let voters: Vec<NodeId> = membership.voter_ids().collect();
            assert_eq!(voters, vec![NODE], "{case}: membership");
            assert!(!store.view.is_rebuilding().expect("reads"), "{case}");
            let marker = installing_marker(&node.dirs.snapshot);
            assert!(!marker.exists(), "{case}: install marker left");
        }
    }

    /// `installing.snap` is renamed into place whole, so one that does not
    /// read is damage: the open stops and names it.
    #[test]
    fn a_damaged_snapshot_being_installed_stops_the_open_naming_it() {
        let node = NodeFiles::new();
        std::fs::create_dir_all(&node.dirs.snapshot).expect("creates the dir");
        let marker = installing_marker(&node.dirs.snapshot);
        std::fs::write(&marker, b"not a snapshot").expect("writes the file");
        let error = node.open().err().expect("the open fails");
        assert!(
            matches!(&error, StoreError::CorruptSnapshot { name, .. } if name.contains("installing.snap")),
            "{error}"
        );
    }

    /// A crash can leave records in the topic that the view lost: the log
    /// applied again must write the same records there, and then they are
    /// not appended twice. A topic holding anything else at those offsets
    /// stops the apply, naming the offset.
    #[test]
    fn entries_applied_again_over_records_the_topic_kept_must_match_them() {
        let node = NodeFiles::new();
        // The view lost the last put; the topic kept its record.
        node.plant(|view| {
            let mut batch = view.batch();
            batch.set_applied(&log_id(APPLIED - 1), REVISION - 1);
            view.commit(batch);
        });
        node.with_store(|store| {
            assert_eq!(store.revision(), REVISION - 1);
            store
                .apply_entries(vec![put(APPLIED)])
                .expect("applies again");
            assert_eq!(store.revision(), REVISION);
            assert_eq!(store.topic.last_offset(), Some(REVISION));
            assert_eq!(store.topic.read_from(0).count() as u64, REVISION);
            assert!(store.view.get(&key(APPLIED)).unwrap().is_some());
        });

        let node = NodeFiles::new();
        node.plant(|view| {
            let mut batch = view.batch();
            batch.set_applied(&log_id(APPLIED - 1), REVISION - 1);
            view.commit(batch);
        });
        node.with_store(|store| {
            // Another history's entry at the same index.
            let mut other = put(APPLIED);
            if let EntryPayload::Normal(command) = &mut other.payload {
                command.op = Op::Put {
                    key: "elsewhere".into(),
                    value: "1".into(),
                    condition: Condition::Always,
                    lease: None,
                };
            }
            let error = store.apply_entries(vec![other]).expect_err("refused");
            assert!(
                matches!(
                    error,
                    StoreError::TopicDisagrees {
                        offset: REVISION,
                        ..
                    }
                ),
                "{error}"
            );
            assert!(store.view.get("elsewhere").unwrap().is_none());
        });
    }

    /// Every key's entry, in key order.
    fn every_entry(view: &View) -> Vec<(String, KeyEntry)> {
        let (entries, more) = view
            .list(
                "",
                None,
                crate::store::queries::PageBounds::entries(usize::MAX),
            )
            .expect("lists");
        assert!(!more, "one page holds every key");
        entries
    }

    #[test]
    fn a_replay_written_out_layer_by_layer_rebuilds_the_live_view() {
        let node = NodeFiles::new();
        // Puts and deletes over 60 keys, so that keys change between and
        // within layers; every seventh entry deletes a key.
        let entries: Vec<Entry> = (APPLIED + 1..=APPLIED + 600)
            .map(|index| {
                let key = format!("key/{}", index % 60);
                let op = if index % 7 == 0 {
                    Op::Delete {
                        key,
                        condition: Condition::Always,
                    }
                } else {
                    Op::Put {
                        key,
                        value: index.to_string(),
                        condition: Condition::Always,
                        lease: None,
                    }
                };
                normal(index, op)
            })
            .collect();
        node.apply(&entries);
        node.with_store(|store| {
            let mut live = every_entry(&store.view);
            // The key planted in the view alone is not in the topic.
            live.retain(|(key, _)| key != PLANTED);
            let (applied, membership) = store.view.applied_state().expect("reads");
            let revision = store.view.revision().expect("reads");
            assert!(live.len() > 40, "most keys are live: {}", live.len());

            store.view.clear().expect("clears");
            // Layers of 10 keys, committed every 7 records: dozens of
            // layers, each written while the next one fills.
            let layers = ReplayLayers {
                records_per_commit: 7,
                keys_per_write: 10,
            };
            let replayed = store
                .replay_into(&store.view, applied, revision, membership.clone(), layers)
                .expect("replays");
            assert_eq!(replayed, store.topic.read_from(0).count() as u64);
            assert_eq!(every_entry(&store.view), live);
            assert_eq!(store.view.revision().expect("reads"), revision);
            assert_eq!(
                store.view.applied_state().expect("reads"),
                (applied, membership)
            );
            assert!(!store.view.is_rebuilding().expect("reads"));
        });
    }

    /// Cuts `bytes` off the end of the topic's newest segment file.
    fn tear_the_active_segment(node: &NodeFiles, bytes: u64) {
        let newest = std::fs::read_dir(&node.dirs.topic)
            .expect("the topic dir")
            .map(|entry| entry.expect("an entry").path())
            .filter(|path| path.to_string_lossy().ends_with(".log"))
            .max()
            .expect("a segment file");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&newest)
            .expect("opens the segment");
        let len = file.metadata().expect("its size").len();
        file.set_len(len - bytes).expect("cuts it");
    }

    /// A transaction putting `keys`, carried by the entry at `index`.
    fn txn(index: u64, keys: &[&str]) -> Entry {
        normal(
            index,
            Op::Txn(crate::types::Txn {
                success: keys
                    .iter()
                    .map(|key| crate::types::TxnOp::Put {
                        key: key.to_string(),
                        value: "1".into(),
                        lease: None,
                    })
                    .collect(),
                ..Default::default()
            }),
        )
    }

    /// A batch entry of one put per key, carried by the entry at `index`.
    fn batch(index: u64, keys: &[&str]) -> Entry {
        let commands = keys
            .iter()
            .map(|key| {
                command(Op::Put {
                    key: key.to_string(),
                    value: "1".into(),
                    condition: Condition::Always,
                    lease: None,
                })
            })
            .collect();
        normal(index, Op::Batch(commands))
    }

    /// A crash can cut a transaction's unit short at the topic's end: only
    /// its first record reached the file. Whether the view was kept (and
    /// is behind) or lost (and rebuilt without the cut unit), applying the
    /// entry again finishes the unit in place: every record once, at the
    /// offsets the first run gave them.
    #[test]
    fn a_unit_a_crash_cut_short_is_finished_by_applying_its_entry_again() {
        let keys = ["t/a", "t/b", "t/c"];
        let revisions = [REVISION + 3; 3];
        cut_entry_is_finished_by_applying_it_again(txn(APPLIED + 1, &keys), &keys, &revisions);
    }

    /// A crash can leave the topic ending after the first command's whole
    /// unit of a batch entry, the others' records lost. The tail is a whole
    /// unit, yet not the whole entry: the view stops before the entry, and
    /// applying it again writes the rest, each command at its own revision.
    #[test]
    fn a_batch_entry_a_crash_cut_after_a_whole_unit_is_finished_by_applying_it_again() {
        let keys = ["b/a", "b/b", "b/c"];
        let revisions = [REVISION + 1, REVISION + 2, REVISION + 3];
        cut_entry_is_finished_by_applying_it_again(batch(APPLIED + 1, &keys), &keys, &revisions);
    }

    /// Applies `entry` (writing one record per key of `keys`, in order),
    /// tears all but its first record off the topic, loses the view or not,
    /// and checks that the store opens before the entry and that applying
    /// it again finishes it in place: every key at its revision in
    /// `revisions`, every record once, at the offsets the first run gave.
    fn cut_entry_is_finished_by_applying_it_again(entry: Entry, keys: &[&str], revisions: &[u64]) {
        for lose_the_view in [false, true] {
            let case = format!("view lost: {lose_the_view}");
            let node = NodeFiles::new();
            node.log(std::slice::from_ref(&entry));
            let torn = node.with_store(|store| {
                // What the first run wrote before the crash.
                let mut batch = store.view.batch();
                let EntryPayload::Normal(command) = &entry.payload else {
                    unreachable!("a command entry")
                };
                let applied = crate::store::apply::apply_command(
                    &mut batch,
                    APPLIED + 1,
                    REVISION + 1,
                    command,
                )
                .expect("applies");
                let records: Vec<_> = applied.records.iter().map(WriteRecord::to_record).collect();
                store.topic.append(&records).expect("appends");
                store.topic.sync().expect("syncs");
                // The crash tore off all frames but the first.
                let mut torn = Vec::new();
                for record in &records[1..] {
                    record.encode_into(&mut torn);
                }
                torn.len() as u64
            });
            tear_the_active_segment(&node, torn);
            if lose_the_view {
                view_missing(&node);
            }
            let (store, recovery) = node.open().expect("opens");
            let expected = if lose_the_view {
                Recovery::ViewMissing
            } else {
                Recovery::Nothing
            };
            assert_eq!(recovery, expected, "{case}");
            assert_eq!(
                store.revision(),
                REVISION,
                "{case}: the cut entry is not applied"
            );
            let (applied, _) = store.view.applied_state().unwrap();
            assert_eq!(applied, Some(log_id(APPLIED)), "{case}");
            assert!(store.view.get(keys[0]).unwrap().is_none(), "{case}");

            store
                .apply_entries(vec![entry.clone()])
                .expect("applies again");
            assert_eq!(store.revision(), REVISION + keys.len() as u64, "{case}");
            let records: Vec<(u64, String)> = store
                .topic
                .read_from(REVISION + 1)
                .map(|record| {
                    let record = WriteRecord::from_record(record.unwrap()).unwrap();
                    (record.offset, record.key)
                })
                .collect();
            let expected: Vec<(u64, String)> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| (REVISION + 1 + i as u64, key.to_string()))
                .collect();
            assert_eq!(records, expected, "{case}");
            for (key, revision) in keys.iter().zip(revisions) {
                let entry = store.view.get(key).unwrap().expect("written");
                assert_eq!(entry.mod_revision, *revision, "{case}: {key}");
            }
        }
    }
}
