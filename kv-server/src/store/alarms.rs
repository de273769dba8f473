//! The NOSPACE alarm in the replicated state (see `crate::space`).
//!
//! The alarm is one internal key, `\0alarm/NOSPACE`, whose value lists the
//! members that raised it; it is absent while none has. Being a record of
//! the topic, it survives restarts, snapshots and rebuilds like any key,
//! and every node applies the same alarms before the same writes: a write
//! that adds data ([`crate::types::Op::adds_data`]) is refused at apply
//! while the key exists, on every node alike.

use schemas::api::{Alarm, AlarmKind};

use crate::error::StoreError;
use crate::store::apply::{written, Applied, UnitStart, UnitWriter};
use crate::store::record::UnitKind;
use crate::store::view::{KeyEntry, ViewBatch};
use crate::types::{Command, CommandResult, NodeId};

/// The key of the NOSPACE alarm.
pub const NOSPACE_KEY: &str = "\u{0}alarm/NOSPACE";

/// The alarms a value of [`NOSPACE_KEY`] lists.
pub fn decode(entry: &KeyEntry) -> Result<Vec<Alarm>, StoreError> {
    serde_json::from_slice(&entry.value).map_err(|error| StoreError::CorruptViewEntry {
        key: format!("k{NOSPACE_KEY:?}"),
        reason: format!("an alarm list that does not decode: {error}"),
    })
}

/// The members whose NOSPACE alarm is raised as of `view`, if any is.
/// Read once per batch: the batch remembers it, and [`change`] keeps that
/// up to date.
pub fn nospace_members(view: &mut ViewBatch<'_>) -> Result<Option<Vec<NodeId>>, StoreError> {
    if let Some(members) = &view.nospace {
        return Ok(members.clone());
    }
    let members = match view.get(NOSPACE_KEY)? {
        Some(entry) => Some(members_of(&decode(&entry)?)),
        None => None,
    };
    view.nospace = Some(members.clone());
    Ok(members)
}

/// The members of `alarms`.
fn members_of(alarms: &[Alarm]) -> Vec<NodeId> {
    alarms.iter().map(|alarm| alarm.member).collect()
}

/// Raises `member`'s alarm (`reason` given) or disarms it (`None`): one
/// record of the alarm key, or nothing if the alarm already is so.
pub(super) fn change(
    view: &mut ViewBatch<'_>,
    start: UnitStart,
    command: &Command,
    member: NodeId,
    reason: Option<&str>,
) -> Result<Applied, StoreError> {
    let current = view.get(NOSPACE_KEY)?;
    let mut alarms = match &current {
        Some(entry) => decode(entry)?,
        None => Vec::new(),
    };
    let raised = alarms.iter().any(|alarm| alarm.member == member);
    match reason {
        Some(_) if raised => return Ok(Applied::nothing(CommandResult::None)),
        None if !raised => return Ok(Applied::nothing(CommandResult::None)),
        Some(reason) => {
            alarms.push(Alarm {
                member,
                alarm: AlarmKind::NoSpace,
                reason: reason.to_string(),
                raised_ms: command.timestamp_ms,
            });
            alarms.sort_by_key(|alarm| alarm.member);
        }
        None => alarms.retain(|alarm| alarm.member != member),
    }
    view.nospace = Some((!alarms.is_empty()).then(|| members_of(&alarms)));
    let mut unit = UnitWriter::new(start, 1, UnitKind::Write, command);
    match current {
        Some(current) if alarms.is_empty() => unit.delete(view, NOSPACE_KEY, current),
        current => {
            let value = serde_json::to_string(&alarms).expect("an alarm list serializes");
            unit.put(view, NOSPACE_KEY, &value, current, 0);
        }
    }
    let records = unit.finish();
    Ok(Applied {
        result: written(&records[0]),
        records,
    })
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;
    use crate::store::internal::tests::store_holding_an_internal_key;
    use crate::types::{Condition, Entry, Op, Txn, TxnOp};

    fn entry(index: u64, op: Op) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command {
                timestamp_ms: 1_000 + index,
                idempotency_key: None,
                request_hash: None,
                op,
            }),
        }
    }

    fn put(key: &str) -> Op {
        Op::Put {
            key: key.to_string(),
            value: "1".to_string(),
            condition: Condition::Always,
            lease: None,
        }
    }

    /// While the alarm is raised, every node refuses at apply what adds
    /// data and takes the rest; a disarm lets writes through again, and
    /// the alarm is a record like any key.
    #[test]
    fn a_raised_alarm_refuses_what_adds_data_at_apply_and_a_disarm_ends_that() {
        let (_root, store) = store_holding_an_internal_key();
        let txn_with_put = Op::Txn(Txn {
            compare: Vec::new(),
            success: Vec::new(),
            failure: vec![TxnOp::Put {
                key: "t".to_string(),
                value: "1".to_string(),
                lease: None,
            }],
        });
        let results = store
            .apply_entries(vec![
                entry(2, put("a")),
                entry(
                    3,
                    Op::AlarmRaise {
                        member: 2,
                        reason: "full".to_string(),
                    },
                ),
                entry(
                    4,
                    Op::AlarmRaise {
                        member: 2,
                        reason: "again".to_string(),
                    },
                ),
                entry(5, put("b")),
                entry(6, txn_with_put),
                entry(
                    7,
                    Op::LeaseGrant {
                        ttl_ms: 10_000,
                        max_leases: 10,
                    },
                ),
                entry(8, put(crate::store::internal::tests::INTERNAL_KEY)),
                entry(
                    9,
                    Op::Delete {
                        key: "a".to_string(),
                        condition: Condition::Always,
                    },
                ),
            ])
            .expect("applies");
        let refused = CommandResult::NoSpace { members: vec![2] };
        assert!(matches!(results[0], CommandResult::Written { .. }));
        assert!(matches!(results[1], CommandResult::Written { .. }));
        assert_eq!(results[2], CommandResult::None, "a raised alarm stays");
        assert_eq!(results[3..6], [refused.clone(), refused.clone(), refused]);
        assert!(
            matches!(results[6], CommandResult::Written { .. }),
            "internal keys pass"
        );
        assert!(
            matches!(results[7], CommandResult::Written { .. }),
            "deletes pass"
        );
        let alarms = store.alarms().expect("reads");
        assert_eq!(
            (alarms.len(), alarms[0].member, alarms[0].reason.as_str()),
            (1, 2, "full")
        );

        let results = store
            .apply_entries(vec![
                entry(10, Op::AlarmDisarm { member: 2 }),
                entry(11, Op::AlarmDisarm { member: 2 }),
                entry(12, put("b")),
            ])
            .expect("applies");
        assert!(matches!(results[0], CommandResult::Written { .. }));
        assert_eq!(results[1], CommandResult::None, "nothing left to disarm");
        assert!(matches!(results[2], CommandResult::Written { .. }));
        assert_eq!(store.alarms().expect("reads"), Vec::new());
    }

    /// A batch reads the alarm once and remembers it; the next batch, and
    /// a store opened again, find it raised without that memory.
    #[test]
    fn a_raised_alarm_is_found_by_later_batches_and_after_a_reopen() {
        let (root, store) = store_holding_an_internal_key();
        let raise = Op::AlarmRaise {
            member: 3,
            reason: "full".to_string(),
        };
        let results = store
            .apply_entries(vec![entry(2, put("a")), entry(3, raise)])
            .expect("applies");
        assert!(matches!(results[1], CommandResult::Written { .. }));
        let refused = CommandResult::NoSpace { members: vec![3] };
        let results = store
            .apply_entries(vec![entry(4, put("b"))])
            .expect("applies");
        assert_eq!(results, std::slice::from_ref(&refused));
        store.checkpoint().expect("checkpoints");
        drop(store);

        let dirs = crate::store::DataDirs::new(root.path());
        let log = crate::store::LogStore::open(&dirs.raft, Some(1)).expect("the raft log opens");
        let store = crate::store::Store::open(&dirs, Default::default(), &log)
            .expect("the store opens again");
        let alarms = store.alarms().expect("reads");
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        let results = store
            .apply_entries(vec![entry(5, put("c"))])
            .expect("applies");
        assert_eq!(results, [refused]);
    }
}
