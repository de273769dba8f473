//! What the store does at open when its parts disagree, and the rebuild of
//! the view from the topic that most of those decisions lead to.
//!
//! The raft log is the durable record; the topic and the view are written
//! behind it and either may lose its tail in a crash. At open the store
//! checks, in this order:
//!
//! 1. an install marker: a snapshot install was interrupted, do it again;
//! 2. the view's rebuilding marker: a rebuild was interrupted, start over;
//! 3. a view that applied nothing while the topic holds records: the view
//!    was lost (or damaged and removed), rebuild it;
//! 4. a view whose applied index passes the topic's end over a write entry:
//!    the topic lost writes the view kept, rebuild the view to match.
//!
//! A rebuild replays the topic and gives the view the log id of the topic's
//! last record, so the state machine re-applies the log from there.

use openraft::EntryPayload;
use tracing::{info, warn};

use super::apply::replay_record;
use super::log_store::LogStore;
use super::record::WriteRecord;
use super::snapshot::{installing_marker, SnapshotFile};
use super::Store;
use crate::error::StoreError;
use crate::types::{LogId, Revision, StoredMembership};

/// Records replayed into the view's in-memory layer per commit.
const REPLAY_BATCH_RECORDS: usize = 10_000;
/// Distinct keys the in-memory layer may hold during a rebuild before it is
/// written to sled: the layer keeps the latest change per key, so a topic
/// with fewer keys than this is written once, at the end.
const REPLAY_WRITE_OUT_KEYS: usize = 100_000;

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

impl Store {
    /// What the store must do to make its parts agree; see the module doc.
    pub(super) fn recovery_needed(&self, log: &LogStore) -> Result<Recovery, StoreError> {
        Ok(if installing_marker(&self.snapshot_dir).exists() {
            Recovery::FinishInstall
        } else if self.view.is_rebuilding()? {
            Recovery::ResumeRebuild
        } else if self.view_lags_topic()? {
            Recovery::ViewMissing
        } else if self.view_ahead_of_topic(log)? {
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
                let snapshot = SnapshotFile::load(&self.snapshot_dir)?.ok_or_else(|| {
                    StoreError::InstallWithoutSnapshot {
                        marker: installing_marker(&self.snapshot_dir),
                    }
                })?;
                info!("finishing an interrupted snapshot install");
                self.install(&snapshot)
            }
            Recovery::ResumeRebuild | Recovery::ViewMissing | Recovery::ViewAheadOfTopic => {
                self.rebuild_view_at_topic_end(log)
            }
        }
    }

    /// Replaces the view with the replay of the whole topic, and records
    /// `applied`, `revision` and `membership` as its applied state.
    pub fn rebuild_view(
        &self,
        applied: Option<LogId>,
        revision: Revision,
        membership: StoredMembership,
    ) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let _turn = self.writing_out.lock();
        self.view.clear()?;
        self.view.set_rebuilding(true)?;
        let mut replayed = 0u64;
        let mut batch = self.view.batch();
        for record in self.topic.read_from(0) {
            let record = WriteRecord::from_record(record?)?;
            replay_record(&mut batch, &record);
            replayed += 1;
            if replayed % REPLAY_BATCH_RECORDS as u64 == 0 {
                let keys = self
                    .view
                    .commit(std::mem::replace(&mut batch, self.view.batch()));
                if keys >= REPLAY_WRITE_OUT_KEYS {
                    self.view.write_out()?;
                    info!(replayed, "rebuilding the view");
                }
            }
        }
        if let Some(applied) = &applied {
            batch.set_applied(applied, revision);
        }
        batch.set_membership(&membership);
        self.view.commit(batch);
        self.view.set_rebuilding(false)?;
        info!(
            replayed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rebuilt the view from the topic"
        );
        Ok(replayed)
    }

    /// Whether the view was lost while the topic was kept: the view has
    /// applied nothing, yet the topic holds records.
    fn view_lags_topic(&self) -> Result<bool, StoreError> {
        let (applied, _) = self.view.applied_state()?;
        Ok(applied.is_none() && self.topic.last_offset().is_some())
    }

    /// Whether the view says more is applied than the topic holds: after a
    /// power loss the view may keep writes the topic lost (neither was
    /// fsynced). Then a write entry lies between the topic's end and the
    /// view's applied index. (A write whose condition failed left no record
    /// and looks the same; the rebuild it causes is harmless.)
    fn view_ahead_of_topic(&self, log: &LogStore) -> Result<bool, StoreError> {
        let (applied, _) = self.view.applied_state()?;
        let Some(applied) = applied else {
            return Ok(false);
        };
        let topic_end = self.topic.last_offset().unwrap_or(0);
        if applied.index <= topic_end {
            return Ok(false);
        }
        let (first, last) = (topic_end + 1, applied.index);
        let entries = log
            .entries(first..=last)
            .map_err(StoreError::raft_log_read(first, last))?;
        Ok(entries
            .iter()
            .any(|entry| matches!(entry.payload, EntryPayload::Normal(_))))
    }

    /// Rebuilds the view from the topic when the view alone was lost: the
    /// state after the topic's last record is the state after the log entry
    /// with that index, whose id (and the membership then) the raft log or
    /// the current snapshot knows.
    fn rebuild_view_at_topic_end(&self, log: &LogStore) -> Result<(), StoreError> {
        let snapshot = SnapshotFile::load(&self.snapshot_dir)?;
        let snapshot_revision = snapshot.as_ref().map(|snapshot| snapshot.header.revision());
        let snapshot_meta = snapshot.map(|snapshot| snapshot.header.meta);
        let snapshot_index = snapshot_meta
            .as_ref()
            .and_then(|meta| meta.last_log_id)
            .map_or(0, |id| id.index);
        let topic_end = self.topic.last_offset().unwrap_or(0);
        let (applied, mut membership) = match &snapshot_meta {
            Some(meta) if topic_end <= snapshot_index => {
                (meta.last_log_id, meta.last_membership.clone())
            }
            _ => {
                let applied = match topic_end {
                    0 => None,
                    index => Some(
                        log.log_id_at(index)
                            .map_err(StoreError::raft_log_read(index, index))?
                            .ok_or(StoreError::TopicEndNotInLog { index })?,
                    ),
                };
                let membership = snapshot_meta
                    .as_ref()
                    .map(|meta| meta.last_membership.clone())
                    .unwrap_or_default();
                (applied, membership)
            }
        };
        if let Some(applied) = applied {
            // The log starts at index 0 (openraft puts the initial
            // membership there) or just after the snapshot.
            let first = if snapshot_meta.is_some() {
                snapshot_index + 1
            } else {
                0
            };
            let entries = log
                .entries(first..=applied.index)
                .map_err(StoreError::raft_log_read(first, applied.index))?;
            for entry in entries {
                if let EntryPayload::Membership(config) = entry.payload {
                    membership = StoredMembership::new(Some(entry.log_id), config);
                }
            }
        }
        warn!(
            topic_end,
            ?applied,
            "the view is missing or incomplete; rebuilding it from the topic"
        );
        // The snapshot's revision when the topic ends inside it; else the
        // topic's last record is at the applied index, and so is the
        // revision.
        let revision = match snapshot_revision {
            Some(revision) if topic_end <= snapshot_index => revision,
            _ => applied.map_or(0, |id| id.index),
        };
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
    /// The last entry every case starts from: a membership at 0, then one
    /// put per index.
    const APPLIED: u64 = 3;
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

    fn put(index: u64) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Command {
                timestamp_ms: 1_000,
                idempotency_key: None,
                op: Op::Put {
                    key: key(index),
                    value: index.to_string(),
                    condition: Condition::Always,
                },
            }),
        }
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
            let entries: Vec<Entry> = std::iter::once(membership(0))
                .chain((1..=APPLIED).map(put))
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
                    Frame::Entry(entry.log_id, json)
                })
                .collect();
            files.append(&frames, true).expect("log appends");
        }

        /// Logs and applies `entries`, then checkpoints.
        fn apply(&self, entries: &[Entry]) {
            self.log(entries);
            self.with_store(|store| {
                store.apply_entries(entries.to_vec()).expect("applies");
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
            };
            batch.put(PLANTED, &planted);
            view.commit(batch);
            change(&view);
            view.write_out().expect("the view writes out");
        }

        /// Stores a snapshot of the state at `APPLIED` as the current one.
        fn store_snapshot(&self) {
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
                let snapshot =
                    SnapshotFile::build(header, store.topic.read_from(0), None).expect("builds");
                snapshot.store(&store.snapshot_dir).expect("stores");
            });
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
            batch.set_applied(&log_id(APPLIED + 1), APPLIED + 1);
            view.commit(batch);
        });
    }

    fn view_ahead_over_a_blank(node: &NodeFiles) {
        node.log(&[blank(APPLIED + 1)]);
        node.plant(|view| {
            let mut batch = view.batch();
            batch.set_applied(&log_id(APPLIED + 1), APPLIED + 1);
            view.commit(batch);
        });
    }

    fn install_interrupted(node: &NodeFiles) {
        node.store_snapshot();
        // Applied after the snapshot: an install of it takes the key away.
        node.apply(&[put(APPLIED + 1)]);
        node.plant(|_| {});
        let marker = installing_marker(&node.dirs.snapshot);
        std::fs::write(&marker, b"").expect("writes the marker");
    }

    fn install_marker_without_snapshot(node: &NodeFiles) {
        std::fs::create_dir_all(&node.dirs.snapshot).expect("creates the dir");
        let marker = installing_marker(&node.dirs.snapshot);
        std::fs::write(&marker, b"").expect("writes the marker");
    }

    /// What opening the store decided and left behind.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        recovery: Recovery,
        /// The store's revision after open.
        revision: u64,
        /// Whether the key only the view held survived (no rebuild).
        planted_kept: bool,
        /// Which of the keys of entries `1..=APPLIED + 1` the view holds.
        keys: Vec<u64>,
    }

    fn outcome(recovery: Recovery, revision: u64, planted_kept: bool, keys: u64) -> Outcome {
        Outcome {
            recovery,
            revision,
            planted_kept,
            keys: (1..=keys).collect(),
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
            (
                "parts agree",
                |_| {},
                outcome(Nothing, APPLIED, true, APPLIED),
            ),
            (
                "view missing",
                view_missing,
                outcome(ViewMissing, APPLIED, false, APPLIED),
            ),
            (
                "rebuild interrupted",
                rebuild_interrupted,
                outcome(ResumeRebuild, APPLIED, false, APPLIED),
            ),
            (
                "view ahead of the topic over a write",
                view_ahead_over_a_write,
                outcome(ViewAheadOfTopic, APPLIED, false, APPLIED),
            ),
            (
                "view ahead of the topic over a blank entry only",
                view_ahead_over_a_blank,
                outcome(Nothing, APPLIED + 1, true, APPLIED),
            ),
            (
                "install interrupted",
                install_interrupted,
                outcome(FinishInstall, APPLIED, false, APPLIED),
            ),
        ];
        for (case, setup, expected) in cases {
            let node = NodeFiles::new();
            setup(&node);
            let (store, recovery) = node.open().unwrap_or_else(|e| panic!("{case}: {e}"));
            let holds = |key: &str| store.view.get(key).expect("reads").is_some();
            let actual = Outcome {
                recovery,
                revision: store.revision(),
                planted_kept: holds(PLANTED),
                keys: (1..=APPLIED + 1)
                    .filter(|index| holds(&key(*index)))
                    .collect(),
            };
            assert_eq!(actual, expected, "{case}");
            let (applied, membership) = store.view.applied_state().expect("reads");
            assert_eq!(applied, Some(log_id(expected.revision)), "{case}");
            let voters: Vec<NodeId> = membership.voter_ids().collect();
            assert_eq!(voters, vec![NODE], "{case}: membership");
            assert!(!store.view.is_rebuilding().expect("reads"), "{case}");
            let marker = installing_marker(&node.dirs.snapshot);
            assert!(!marker.exists(), "{case}: install marker left");
        }
    }

    #[test]
    fn an_install_marker_without_a_snapshot_stops_the_open() {
        let node = NodeFiles::new();
        install_marker_without_snapshot(&node);
        let error = node.open().err().expect("the open fails");
        assert!(
            matches!(&error, StoreError::InstallWithoutSnapshot { marker } if marker.exists()),
            "{error}"
        );
    }
}
