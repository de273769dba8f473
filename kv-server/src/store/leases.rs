//! Leases in the replicated state: what a grant, a revoke and an expiry do
//! to the view and the topic. (When a lease expires is decided by the
//! leader alone, in memory: see `crate::leases`.)
//!
//! A lease is an internal key, `\0lease/<id>`, whose value says its TTL and
//! when it was granted; its id is the revision of its grant. A key put with
//! a lease carries the lease's id in its entry and its record, and the view
//! keeps an attachment from the lease to it. A lease's end is one unit: a
//! tombstone for every key still attached to it, in key order, then one for
//! the lease itself, so watchers, the change feed and a replay see the keys
//! go together. Because leases are records of the topic, they survive
//! restarts, snapshots and rebuilds like any key.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::apply::{Applied, UnitStart, UnitWriter};
use crate::store::record::UnitKind;
use crate::store::view::{KeyEntry, View, ViewBatch};
use crate::types::{Command, CommandResult, LeaseId};

/// The prefix of every lease's key.
pub const LEASE_PREFIX: &str = "\u{0}lease/";

/// What a lease's key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Its time to live.
    pub ttl_ms: u64,
    /// When it was granted (the grant command's timestamp).
    pub granted_ms: u64,
}

/// The key of lease `id`: fixed width, so leases list in id order.
pub fn lease_key(id: LeaseId) -> String {
    format!("{LEASE_PREFIX}{id:020}")
}

/// The lease whose key `key` is, if it is one.
pub fn lease_id_of(key: &str) -> Option<LeaseId> {
    key.strip_prefix(LEASE_PREFIX)?.parse().ok()
}

/// Whether lease `id` exists as of `view`.
pub fn exists(view: &ViewBatch<'_>, id: LeaseId) -> Result<bool, StoreError> {
    Ok(view.get(&lease_key(id))?.is_some())
}

/// Grants a lease of `ttl_ms`, unless `max_leases` exist: one record, the
/// lease's key, whose offset is the lease's id.
pub(super) fn grant(
    view: &mut ViewBatch<'_>,
    start: UnitStart,
    command: &Command,
    ttl_ms: u64,
    max_leases: u64,
) -> Result<Applied, StoreError> {
    let count = view.lease_count()?;
    if count >= max_leases {
        return Ok(Applied::nothing(CommandResult::LeaseLimit { max_leases }));
    }
    let mut unit = UnitWriter::new(start, 1, UnitKind::LeaseGrant, command);
    let id = unit.revision();
    let record = LeaseRecord {
        ttl_ms,
        granted_ms: command.timestamp_ms,
    };
    let value = serde_json::to_string(&record).expect("a lease record serializes");
    unit.put(view, &lease_key(id), &value, None, 0);
    view.set_lease_count(count + 1);
    Ok(Applied {
        result: CommandResult::LeaseGranted { id, ttl_ms },
        records: unit.finish(),
    })
}

/// Ends lease `id` (revoked, or expired): deletes the keys still attached
/// to it, then the lease, as one unit.
pub(super) fn end(
    view: &mut ViewBatch<'_>,
    start: UnitStart,
    command: &Command,
    id: LeaseId,
) -> Result<Applied, StoreError> {
    let key = lease_key(id);
    let Some(lease) = view.get(&key)? else {
        return Ok(Applied::nothing(CommandResult::LeaseNotFound { id }));
    };
    let attachments = view.attachments(id)?;
    let doomed = attached_keys(view, id)?;
    let deleted = doomed.len() as u64;
    let mut unit = UnitWriter::new(start, doomed.len() + 1, UnitKind::LeaseEnd, command);
    for (attached_key, entry) in doomed {
        unit.delete(view, &attached_key, entry);
    }
    unit.delete(view, &key, lease);
    view.forget_attachments(id, &attachments);
    let count = view.lease_count()?;
    view.set_lease_count(count.saturating_sub(1));
    Ok(Applied {
        result: CommandResult::LeaseEnded {
            revision: unit.revision(),
            deleted,
        },
        records: unit.finish(),
    })
}

/// The keys that end with lease `id`, in key order, with their entries:
/// those put with it and not since put with another, or none, or deleted.
pub fn attached_keys(
    view: &ViewBatch<'_>,
    id: LeaseId,
) -> Result<Vec<(String, KeyEntry)>, StoreError> {
    let mut attached = Vec::new();
    for key in view.attachments(id)? {
        if let Some(entry) = view.get(&key)?.filter(|entry| entry.lease == id) {
            attached.push((key, entry));
        }
    }
    Ok(attached)
}

/// Every lease of `view`, in id order.
pub fn all(view: &View) -> Result<Vec<(LeaseId, LeaseRecord)>, StoreError> {
    let (entries, _) = view.list(
        LEASE_PREFIX,
        None,
        crate::store::queries::PageBounds::entries(usize::MAX),
    )?;
    entries
        .into_iter()
        .map(|(key, entry)| {
            let id = lease_id_of(&key).ok_or_else(|| StoreError::CorruptViewEntry {
                key: format!("k{key:?}"),
                reason: "a lease key without a numeric id".into(),
            })?;
            let record = serde_json::from_slice(&entry.value).map_err(|error| {
                StoreError::CorruptViewEntry {
                    key: format!("k{key:?}"),
                    reason: format!("a lease that does not decode: {error}"),
                }
            })?;
            Ok((id, record))
        })
        .collect()
}

/// Counts the leases again (after a replay, which cannot keep the count:
/// the topic may have lost a lease's grant and kept its end).
pub fn recount(view: &View) -> Result<(), StoreError> {
    let count = all(view)?.len() as u64;
    let mut batch = view.batch();
    batch.set_lease_count(count);
    view.commit(batch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use compaction::{BatchPos, TopicConfig};
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
    use tempfile::TempDir;

    use super::*;
    use crate::store::log_files::{LogFiles, SEGMENT_BYTES};
    use crate::store::log_frame::Frame;
    use crate::store::log_store::LogStore;
    use crate::store::queries::PageBounds;
    use crate::store::record::WriteRecord;
    use crate::store::{DataDirs, Store};
    use crate::types::{Condition, Entry, Node, Op, Txn, TxnOp};

    const TTL_MS: u64 = 10_000;

    /// Every key with its entry, and every lease with the keys that end
    /// with it.
    type ClientState = (
        Vec<(String, crate::store::view::KeyEntry)>,
        Vec<(LeaseId, Vec<String>)>,
    );

    /// A store, its files and the next log index to apply.
    struct Fixture {
        _root: TempDir,
        dirs: DataDirs,
        store: Store,
        next_index: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().expect("a temporary directory");
            let dirs = DataDirs::new(root.path());
            let log = LogStore::open(&dirs.raft, Some(1)).expect("the raft log opens");
            let store = Store::open(&dirs, TopicConfig::default(), &log).expect("opens");
            let mut fixture = Fixture {
                _root: root,
                dirs,
                store,
                next_index: 0,
            };
            let membership = Membership::new(
                vec![BTreeSet::from([1])],
                BTreeMap::from([(1, Node::default())]),
            );
            fixture.apply_payload(EntryPayload::Membership(membership));
            fixture
        }

        fn apply_payload(
            &mut self,
            payload: EntryPayload<crate::types::TypeConfig>,
        ) -> CommandResult {
            let entry = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), self.next_index),
                payload,
            };
            self.next_index += 1;
            // In the raft log first, as openraft has it: a rebuild reads it.
            let (files, _) = LogFiles::open(&self.dirs.raft, SEGMENT_BYTES).expect("log opens");
            let json = serde_json::to_vec(&entry).expect("an entry serializes");
            files
                .append(&[Frame::Entry(entry.log_id, json.into())], true)
                .expect("log appends");
            self.store
                .apply_entries(vec![entry])
                .expect("applies")
                .remove(0)
        }

        fn apply(&mut self, op: Op) -> CommandResult {
            self.apply_payload(EntryPayload::Normal(Command {
                timestamp_ms: 1_000,
                idempotency_key: None,
                request_hash: None,
                op,
            }))
        }

        fn grant(&mut self, max_leases: u64) -> CommandResult {
            self.apply(Op::LeaseGrant {
                ttl_ms: TTL_MS,
                max_leases,
            })
        }

        fn granted(&mut self) -> LeaseId {
            match self.grant(100) {
                CommandResult::LeaseGranted { id, ttl_ms: TTL_MS } => id,
                other => panic!("expected a grant, got {other:?}"),
            }
        }

        fn put(&mut self, key: &str, lease: Option<LeaseId>) -> CommandResult {
            self.apply(Op::Put {
                key: key.into(),
                value: "1".into(),
                condition: Condition::Always,
                lease,
            })
        }

        /// What a client can tell of the state: every key with its entry,
        /// and every lease with the keys that end with it.
        fn state(&self) -> ClientState {
            let keys = self
                .store
                .list("", None, PageBounds::entries(usize::MAX))
                .expect("lists")
                .entries;
            let leases = all(&self.store.view)
                .expect("reads the leases")
                .into_iter()
                .map(|(id, _)| {
                    let batch = self.store.view.batch();
                    let attached = batch
                        .attachments(id)
                        .expect("reads")
                        .into_iter()
                        .filter(|key| {
                            batch
                                .get(key)
                                .expect("reads")
                                .is_some_and(|e| e.lease == id)
                        })
                        .collect();
                    (id, attached)
                })
                .collect();
            (keys, leases)
        }
    }

    #[test]
    fn a_lease_is_granted_at_its_own_revision_and_keys_attach_to_it() {
        let mut node = Fixture::new();
        let id = node.granted();
        assert_eq!(id, node.store.revision(), "the id is the grant's revision");
        assert!(matches!(
            node.put("a", Some(id)),
            CommandResult::Written { .. }
        ));
        assert_eq!(node.store.get("a").unwrap().unwrap().lease, id);
        assert_eq!(
            node.put("b", Some(id + 100)),
            CommandResult::LeaseNotFound { id: id + 100 },
            "a put with a lease that does not exist writes nothing"
        );
        assert!(node.store.get("b").unwrap().is_none());
        assert_eq!(node.state().1, vec![(id, vec!["a".to_string()])]);
    }

    /// A key that moves to another lease, to none, or is deleted leaves
    /// its lease's attachments at once: a lease kept alive gathers no row
    /// for every key it ever held (each read when it is listed or ends).
    #[test]
    fn a_key_that_leaves_its_lease_leaves_its_attachments() {
        let mut node = Fixture::new();
        let id = node.granted();
        let other = node.granted();
        for key in ["kept", "moved", "detached", "deleted", "again"] {
            node.put(key, Some(id));
        }
        node.put("moved", Some(other));
        node.put("detached", None);
        node.apply(Op::Delete {
            key: "deleted".into(),
            condition: Condition::Always,
        });
        node.put("again", Some(id));
        let attached = |lease| node.store.view.batch().attachments(lease).expect("reads");
        assert_eq!(attached(id), vec!["again".to_string(), "kept".to_string()]);
        assert_eq!(attached(other), vec!["moved".to_string()]);
    }

    #[test]
    fn a_lease_ends_with_its_keys_in_one_unit_and_spares_keys_that_moved() {
        let mut node = Fixture::new();
        let id = node.granted();
        let other = node.granted();
        node.put("a", Some(id));
        node.put("b", Some(id));
        node.put("moved", Some(id));
        node.put("moved", Some(other));
        node.put("detached", Some(id));
        node.put("detached", None);
        let before = node.store.revision();
        let ended = node.apply(Op::LeaseRevoke { id });
        assert_eq!(
            ended,
            CommandResult::LeaseEnded {
                revision: before + 3,
                deleted: 2
            }
        );
        let unit: Vec<(String, BatchPos, bool)> = node
            .store
            .topic
            .read_from(before + 1)
            .map(|record| {
                let record = WriteRecord::from_record(record.unwrap()).unwrap();
                (record.key, record.batch, record.value.is_none())
            })
            .collect();
        assert_eq!(
            unit,
            vec![
                ("a".to_string(), BatchPos::new(0, 2), true),
                ("b".to_string(), BatchPos::new(1, 1), true),
                (lease_key(id), BatchPos::new(2, 0), true),
            ]
        );
        assert!(node.store.get("moved").unwrap().is_some());
        assert!(node.store.get("detached").unwrap().is_some());
        assert_eq!(
            node.apply(Op::LeaseExpire { id }),
            CommandResult::LeaseNotFound { id },
            "a lease ends once"
        );
        assert_eq!(node.state().1, vec![(other, vec!["moved".to_string()])]);
    }

    #[test]
    fn no_more_leases_than_the_grant_allows_and_an_end_makes_room() {
        let mut node = Fixture::new();
        let first = node.granted();
        node.granted();
        assert_eq!(node.grant(2), CommandResult::LeaseLimit { max_leases: 2 });
        node.apply(Op::LeaseRevoke { id: first });
        assert!(matches!(node.grant(2), CommandResult::LeaseGranted { .. }));
    }

    /// The view rebuilt from the topic answers as the live one after
    /// grants, attaches, transactions with leases, revokes and expiries;
    /// and so does its count of leases, which the next grant checks.
    #[test]
    fn a_view_rebuilt_from_the_topic_equals_the_live_one_after_leases_end() {
        let mut node = Fixture::new();
        let kept = node.granted();
        let revoked = node.granted();
        let expired = node.granted();
        node.put("kept/a", Some(kept));
        node.put("revoked/a", Some(revoked));
        node.put("expired/a", Some(expired));
        node.put("expired/b", Some(expired));
        node.apply(Op::Txn(Txn {
            success: vec![
                TxnOp::Put {
                    key: "kept/b".into(),
                    value: "2".into(),
                    lease: Some(kept),
                },
                TxnOp::Put {
                    key: "revoked/b".into(),
                    value: "2".into(),
                    lease: Some(revoked),
                },
            ],
            ..Txn::default()
        }));
        node.put("expired/b", None);
        node.apply(Op::LeaseRevoke { id: revoked });
        node.apply(Op::LeaseExpire { id: expired });
        let live = node.state();
        let live_revision = node.store.revision();
        assert_eq!(live.1, vec![(kept, vec!["kept/a".into(), "kept/b".into()])]);

        node.store.checkpoint().expect("checkpoints");
        let Fixture {
            _root, dirs, store, ..
        } = node;
        drop(store);
        std::fs::remove_dir_all(&dirs.view).expect("removes the view");
        let log = LogStore::open(&dirs.raft, Some(1)).expect("the raft log opens");
        let store = Store::open(&dirs, TopicConfig::default(), &log).expect("rebuilds");
        let mut rebuilt = Fixture {
            _root,
            dirs,
            store,
            next_index: 20,
        };
        assert_eq!(rebuilt.store.revision(), live_revision);
        assert_eq!(rebuilt.state(), live);
        assert_eq!(
            rebuilt.grant(1),
            CommandResult::LeaseLimit { max_leases: 1 },
            "one lease is left and counted"
        );
        assert!(matches!(
            rebuilt.grant(2),
            CommandResult::LeaseGranted { .. }
        ));
    }
}
