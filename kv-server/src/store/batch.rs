//! Applying a raft entry that carries a batch of commands: writes that
//! reached the leader together and were proposed as one entry.
//!
//! Each command applies as it would alone ([`apply_one`]): its own date,
//! idempotency check, condition, unit of records and revision, all with
//! the entry's log index. The records of the batch follow one another,
//! command after command, and each learns its place among all of the
//! entry's records (`WriteRecord::entry`), so that recovery can tell an
//! entry whose last record reached the topic from one a crash cut.

use compaction::BatchPos;

use crate::error::StoreError;
use crate::store::apply::{apply_one, Applied};
use crate::store::view::ViewBatch;
use crate::types::{Command, CommandResult};

/// Applies the commands of a batch entry in order, the records of each
/// after those of the one before; the result holds each command's.
pub(super) fn apply_batch(
    view: &mut ViewBatch<'_>,
    log_index: u64,
    next_offset: u64,
    commands: &[Command],
) -> Result<Applied, StoreError> {
    let mut results = Vec::with_capacity(commands.len());
    let mut records = Vec::new();
    for command in commands {
        let offset = next_offset + records.len() as u64;
        let applied = apply_one(view, log_index, offset, command)?;
        results.push(applied.result);
        records.extend(applied.records);
    }
    let count = records.len();
    for (sub, record) in records.iter_mut().enumerate() {
        // An entry's records are bounded by the proposer's batch limits
        // and the write budget, far below u32::MAX.
        record.entry = Some(BatchPos::new(sub as u32, (count - sub - 1) as u32));
    }
    Ok(Applied {
        result: CommandResult::Batch(results),
        records,
    })
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;
    use uuid::Uuid;

    use super::*;
    use crate::store::apply::apply_command;
    use crate::store::leases;
    use crate::store::view::View;
    use crate::types::{Condition, Op, Revision};

    /// The log index of the batch entry each case applies.
    const LOG_INDEX: u64 = 40;
    /// A command timestamp far from zero.
    const NOW_MS: u64 = 1_000_000_000;

    fn open_view() -> (TempDir, View) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let view = View::open(dir.path()).expect("a fresh view opens");
        (dir, view)
    }

    fn command(idempotency_key: Option<Uuid>, op: Op) -> Command {
        Command {
            timestamp_ms: NOW_MS,
            idempotency_key,
            request_hash: idempotency_key.map(|_| 7),
            op,
        }
    }

    fn put(key: &str, condition: Condition) -> Op {
        Op::Put {
            key: key.into(),
            value: "1".into(),
            condition,
            lease: None,
        }
    }

    fn batch(commands: Vec<Command>) -> Command {
        command(None, Op::Batch(commands))
    }

    /// Applies `command` as the entry at `log_index`, its records from
    /// `next_offset` on, and commits.
    fn apply(view: &View, log_index: u64, next_offset: u64, command: &Command) -> Applied {
        let mut batch = view.batch();
        let applied = apply_command(&mut batch, log_index, next_offset, command).expect("applies");
        view.commit(batch);
        applied
    }

    fn written(revision: Revision, version: u64) -> CommandResult {
        CommandResult::Written {
            revision,
            version,
            created: version == 1,
        }
    }

    fn mod_revision(view: &View, key: &str) -> Option<Revision> {
        view.get(key)
            .expect("reads")
            .map(|entry| entry.mod_revision)
    }

    #[test]
    fn a_batch_gives_each_command_its_own_revision_and_result() {
        let (_dir, view) = open_view();
        let delete_a = Op::Delete {
            key: "a".into(),
            condition: Condition::Always,
        };
        let entry = batch(vec![
            command(None, put("a", Condition::Always)),
            command(None, put("b", Condition::Always)),
            command(None, put("b", Condition::Always)),
            command(None, delete_a),
        ]);
        let applied = apply(&view, LOG_INDEX, 10, &entry);
        assert_eq!(
            applied.result,
            CommandResult::Batch(vec![
                written(10, 1),
                written(11, 1),
                written(12, 2),
                written(13, 0),
            ])
        );
        let places: Vec<_> = applied
            .records
            .iter()
            .map(|record| (record.offset, record.log_index, record.batch, record.entry))
            .collect();
        let expected: Vec<_> = (0..4u32)
            .map(|sub| {
                let place = Some(BatchPos::new(sub, 3 - sub));
                (10 + u64::from(sub), LOG_INDEX, BatchPos::SINGLE, place)
            })
            .collect();
        assert_eq!(
            places, expected,
            "one unit per command, placed in the entry"
        );
        assert_eq!(mod_revision(&view, "a"), None);
        assert_eq!(mod_revision(&view, "b"), Some(12));
    }

    /// A failed compare and an idempotent repeat inside a batch write
    /// nothing and get their own answers; the writes around them apply at
    /// consecutive revisions as if they were not there.
    #[test]
    fn a_failed_compare_or_idempotent_repeat_in_a_batch_changes_nothing_else() {
        let (_dir, view) = open_view();
        let id = Uuid::new_v4();
        let first = apply(&view, 3, 1, &command(Some(id), put("k", Condition::Always)));
        assert_eq!(first.result, written(1, 1));
        let entry = batch(vec![
            command(None, put("x", Condition::Always)),
            command(None, put("k", Condition::Absent)),
            command(Some(id), put("k", Condition::Always)),
            command(None, put("y", Condition::Always)),
        ]);
        let applied = apply(&view, LOG_INDEX, 2, &entry);
        assert_eq!(
            applied.result,
            CommandResult::Batch(vec![
                written(2, 1),
                CommandResult::PreconditionFailed {
                    current_mod_revision: Some(1)
                },
                written(1, 1),
                written(3, 1),
            ])
        );
        assert_eq!(applied.records.len(), 2);
        let k = view.get("k").expect("reads").expect("k exists");
        assert_eq!((k.version, k.mod_revision), (1, 1), "k is untouched");
        assert_eq!(
            (mod_revision(&view, "x"), mod_revision(&view, "y")),
            (Some(2), Some(3))
        );
    }

    /// A lease granted by a batch exists at once: a later command of the
    /// same batch attaches a key to it.
    #[test]
    fn a_lease_granted_in_a_batch_takes_keys_later_in_it() {
        let (_dir, view) = open_view();
        let grant = Op::LeaseGrant {
            ttl_ms: 10_000,
            max_leases: 10,
        };
        let attached = Op::Put {
            key: "owned".into(),
            value: "1".into(),
            condition: Condition::Always,
            lease: Some(6),
        };
        let entry = batch(vec![
            command(None, put("before", Condition::Always)),
            command(None, grant),
            command(None, attached),
        ]);
        let applied = apply(&view, LOG_INDEX, 5, &entry);
        let CommandResult::Batch(results) = &applied.result else {
            panic!("a batch's result: {:?}", applied.result);
        };
        assert_eq!(
            results[1],
            CommandResult::LeaseGranted {
                id: 6,
                ttl_ms: 10_000
            }
        );
        assert_eq!(results[2], written(7, 1));
        let batch = view.batch();
        assert!(leases::exists(&batch, 6).expect("reads"));
        let keys: Vec<String> = leases::attached_keys(&batch, 6)
            .expect("reads")
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, vec!["owned".to_string()]);
    }

    /// A batch inside a batch is refused where it stands, the same on
    /// every node; the commands around it apply.
    #[test]
    fn a_batch_nested_in_a_batch_is_refused_and_changes_nothing() {
        let (_dir, view) = open_view();
        let entry = batch(vec![
            command(None, put("a", Condition::Always)),
            batch(vec![
                command(None, put("inner-1", Condition::Always)),
                command(None, put("inner-2", Condition::Always)),
            ]),
            command(None, put("c", Condition::Always)),
        ]);
        let applied = apply(&view, LOG_INDEX, 1, &entry);
        assert_eq!(
            applied.result,
            CommandResult::Batch(vec![
                written(1, 1),
                CommandResult::NestedBatch,
                written(2, 1),
            ])
        );
        assert_eq!(mod_revision(&view, "inner-1"), None);
        assert_eq!(mod_revision(&view, "inner-2"), None);
    }
}
