//! Applying commands to the view: the deterministic heart of the state
//! machine. Every node applies the same entries in the same order to the
//! same state and so computes the same results; nothing here may read a
//! clock, a random number or anything but the command and the view.

use bytes::Bytes;

use crate::error::StoreError;
use crate::store::record::{UnitKind, WriteRecord};
use crate::store::view::{IdempotentWrite, KeyEntry, ViewBatch};
use crate::types::{Command, CommandResult, Condition, Op, Revision};

/// How long a write's idempotency key is remembered, by command timestamps.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 10 * 60 * 1000;

/// Remembered writes are forgotten on every entry whose index is a multiple
/// of this (a range scan is too dear for every entry); until then a lookup
/// ignores those older than the window.
const EXPIRY_EVERY_ENTRIES: u64 = 1024;
/// How far behind the window an entry must be to be forgotten, so that a
/// later command stamped by a leader whose clock is a little behind finds
/// the same entries on every node.
const EXPIRY_SLACK_MS: u64 = 60 * 1000;

/// What applying one command produced.
pub struct Applied {
    /// The command's result.
    pub result: CommandResult,
    /// The topic record it wrote, if it changed a key.
    pub record: Option<WriteRecord>,
}

/// Applies `command`, carried by the log entry at `revision`, to `view`.
///
/// A write whose idempotency key was already applied returns the first
/// result and changes nothing. Writes that did not apply (failed condition,
/// delete of a missing key) are not remembered: a retry is evaluated again,
/// which is what every node does, because the dedupe table must be
/// rebuildable from the topic alone.
pub fn apply_command(
    view: &mut ViewBatch<'_>,
    revision: Revision,
    command: &Command,
) -> Result<Applied, StoreError> {
    let window_start = command.timestamp_ms.saturating_sub(IDEMPOTENCY_WINDOW_MS);
    if revision % EXPIRY_EVERY_ENTRIES == 0 {
        view.expire_idempotent_writes(window_start.saturating_sub(EXPIRY_SLACK_MS))?;
    }
    if let Some(id) = &command.idempotency_key {
        let first = view
            .idempotent_write(id)?
            .filter(|first| first.timestamp_ms >= window_start);
        if let Some(first) = first {
            return Ok(Applied {
                result: first.result,
                record: None,
            });
        }
    }
    let key = command.op.key();
    let current = view.get(key)?;
    if !condition_holds(command.op.condition(), current.as_ref()) {
        return Ok(Applied {
            result: CommandResult::PreconditionFailed {
                current_mod_revision: current.map(|entry| entry.mod_revision),
            },
            record: None,
        });
    }
    let record = match &command.op {
        Op::Put { value, .. } => {
            let entry = KeyEntry {
                value: value.as_bytes().to_vec(),
                create_revision: current
                    .as_ref()
                    .map_or(revision, |entry| entry.create_revision),
                mod_revision: revision,
                version: current.as_ref().map_or(1, |entry| entry.version + 1),
            };
            view.put(key, &entry);
            WriteRecord {
                revision,
                log_index: revision,
                kind: UnitKind::Write,
                timestamp_ms: command.timestamp_ms,
                key: key.to_string(),
                value: Some(Bytes::copy_from_slice(value.as_bytes())),
                create_revision: entry.create_revision,
                version: entry.version,
                idempotency_key: command.idempotency_key,
            }
        }
        Op::Delete { .. } => {
            let Some(entry) = current else {
                return Ok(Applied {
                    result: CommandResult::NotFound,
                    record: None,
                });
            };
            view.remove(key);
            WriteRecord {
                revision,
                log_index: revision,
                kind: UnitKind::Write,
                timestamp_ms: command.timestamp_ms,
                key: key.to_string(),
                value: None,
                create_revision: entry.create_revision,
                version: 0,
                idempotency_key: command.idempotency_key,
            }
        }
    };
    let result = written(&record);
    if let Some(id) = &command.idempotency_key {
        let first = IdempotentWrite {
            timestamp_ms: command.timestamp_ms,
            result: result.clone(),
        };
        view.remember(id, &first);
    }
    Ok(Applied {
        result,
        record: Some(record),
    })
}

/// Applies a record read back from the topic (view rebuild, snapshot
/// install): the same effect its command had.
pub fn replay_record(view: &mut ViewBatch<'_>, record: &WriteRecord) {
    match &record.value {
        Some(value) => view.put(
            &record.key,
            &KeyEntry {
                value: value.to_vec(),
                create_revision: record.create_revision,
                mod_revision: record.revision,
                version: record.version,
            },
        ),
        None => view.remove(&record.key),
    }
    if let Some(id) = &record.idempotency_key {
        let first = IdempotentWrite {
            timestamp_ms: record.timestamp_ms,
            result: written(record),
        };
        view.remember(id, &first);
    }
}

/// The result a successful write returned.
fn written(record: &WriteRecord) -> CommandResult {
    CommandResult::Written {
        revision: record.revision,
        version: record.version,
        created: record.version == 1,
    }
}

fn condition_holds(condition: Condition, current: Option<&KeyEntry>) -> bool {
    match condition {
        Condition::Always => true,
        Condition::Absent => current.is_none(),
        Condition::ModRevision(revision) => {
            current.is_some_and(|entry| entry.mod_revision == revision)
        }
    }
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;
    use uuid::Uuid;

    use super::*;
    use crate::store::view::View;

    /// The revision at which the key exists before each case, when it does.
    const EXISTING: Revision = 5;
    /// The revision of the command each case applies.
    const REVISION: Revision = 7;
    /// A command timestamp far from zero, so windows do not saturate.
    const NOW_MS: u64 = 100 * IDEMPOTENCY_WINDOW_MS;

    fn open_view() -> (TempDir, View) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let view = View::open(dir.path()).expect("a fresh view opens");
        (dir, view)
    }

    fn put(condition: Condition) -> Op {
        Op::Put {
            key: "k".into(),
            value: "\"v\"".into(),
            condition,
        }
    }

    fn delete(condition: Condition) -> Op {
        Op::Delete {
            key: "k".into(),
            condition,
        }
    }

    fn command(timestamp_ms: u64, idempotency_key: Option<Uuid>, op: Op) -> Command {
        Command {
            timestamp_ms,
            idempotency_key,
            op,
        }
    }

    /// Applies `command` at `revision` in a batch of its own, committed.
    fn apply(view: &View, revision: Revision, command: &Command) -> Applied {
        let mut batch = view.batch();
        let applied = apply_command(&mut batch, revision, command).expect("applies");
        view.commit(batch);
        applied
    }

    fn written(revision: Revision, version: u64, created: bool) -> CommandResult {
        CommandResult::Written {
            revision,
            version,
            created,
        }
    }

    fn failed(current_mod_revision: Option<Revision>) -> CommandResult {
        CommandResult::PreconditionFailed {
            current_mod_revision,
        }
    }

    /// Each case: whether the key exists (written at `EXISTING`), the
    /// operation applied at `REVISION`, its result, and the key's
    /// `mod_revision` afterwards (`None`: absent). A record is written
    /// exactly when the result is `Written`.
    #[test]
    fn conditions_decide_whether_a_put_or_delete_applies() {
        use Condition::{Absent, Always, ModRevision};
        let cases = [
            (
                false,
                put(Always),
                written(REVISION, 1, true),
                Some(REVISION),
            ),
            (
                true,
                put(Always),
                written(REVISION, 2, false),
                Some(REVISION),
            ),
            (
                false,
                put(Absent),
                written(REVISION, 1, true),
                Some(REVISION),
            ),
            (true, put(Absent), failed(Some(EXISTING)), Some(EXISTING)),
            (
                true,
                put(ModRevision(EXISTING)),
                written(REVISION, 2, false),
                Some(REVISION),
            ),
            (
                true,
                put(ModRevision(EXISTING - 1)),
                failed(Some(EXISTING)),
                Some(EXISTING),
            ),
            (false, put(ModRevision(EXISTING)), failed(None), None),
            (true, delete(Always), written(REVISION, 0, false), None),
            (false, delete(Always), CommandResult::NotFound, None),
            (true, delete(Absent), failed(Some(EXISTING)), Some(EXISTING)),
            (false, delete(Absent), CommandResult::NotFound, None),
            (
                true,
                delete(ModRevision(EXISTING)),
                written(REVISION, 0, false),
                None,
            ),
            (
                true,
                delete(ModRevision(EXISTING + 1)),
                failed(Some(EXISTING)),
                Some(EXISTING),
            ),
            (false, delete(ModRevision(EXISTING)), failed(None), None),
        ];
        for (exists, op, result, mod_revision_after) in cases {
            let case = format!("key exists: {exists}, {op:?}");
            let (_dir, view) = open_view();
            if exists {
                apply(&view, EXISTING, &command(NOW_MS, None, put(Always)));
            }
            let applied = apply(&view, REVISION, &command(NOW_MS, None, op));
            assert_eq!(applied.result, result, "{case}");
            let wrote = matches!(result, CommandResult::Written { .. });
            assert_eq!(applied.record.is_some(), wrote, "{case}");
            let after = view.get("k").expect("reads");
            assert_eq!(
                after.as_ref().map(|entry| entry.mod_revision),
                mod_revision_after,
                "{case}"
            );
            if let Some(entry) = after.filter(|_| exists) {
                // A key that existed keeps the revision that created it.
                assert_eq!(entry.create_revision, EXISTING, "{case}");
            }
        }
    }

    /// Each case: how long after a write with an idempotency key its retry
    /// comes, and whether the retry gets the first result without applying
    /// (else it applies as a new write).
    #[test]
    fn a_retry_within_the_window_returns_the_first_result_and_applies_once() {
        let cases = [
            (0, true),
            (IDEMPOTENCY_WINDOW_MS - 1, true),
            (IDEMPOTENCY_WINDOW_MS, true),
            (IDEMPOTENCY_WINDOW_MS + 1, false),
            (2 * IDEMPOTENCY_WINDOW_MS, false),
        ];
        for (retry_after_ms, deduplicated) in cases {
            let case = format!("retry {retry_after_ms} ms later");
            let (_dir, view) = open_view();
            let id = Some(Uuid::new_v4());
            let first = apply(
                &view,
                EXISTING,
                &command(NOW_MS, id, put(Condition::Always)),
            );
            assert_eq!(first.result, written(EXISTING, 1, true), "{case}");
            let retry_ms = NOW_MS + retry_after_ms;
            let retry = apply(
                &view,
                REVISION,
                &command(retry_ms, id, put(Condition::Always)),
            );
            let entry = view.get("k").expect("reads").expect("the key exists");
            if deduplicated {
                assert_eq!(retry.result, first.result, "{case}");
                assert!(retry.record.is_none(), "{case}: a retry writes no record");
                assert_eq!((entry.version, entry.mod_revision), (1, EXISTING), "{case}");
            } else {
                assert_eq!(retry.result, written(REVISION, 2, false), "{case}");
                assert!(retry.record.is_some(), "{case}");
                assert_eq!((entry.version, entry.mod_revision), (2, REVISION), "{case}");
            }
        }
    }

    /// A write whose condition failed is not remembered: its retry is
    /// evaluated again, as every node (and a replay of the topic) does.
    #[test]
    fn a_write_that_did_not_apply_is_evaluated_again_on_retry() {
        let (_dir, view) = open_view();
        let id = Some(Uuid::new_v4());
        apply(
            &view,
            EXISTING,
            &command(NOW_MS, None, put(Condition::Always)),
        );
        let first = apply(&view, 6, &command(NOW_MS, id, put(Condition::Absent)));
        assert_eq!(first.result, failed(Some(EXISTING)));
        apply(&view, 7, &command(NOW_MS, None, delete(Condition::Always)));
        let retry = apply(&view, 8, &command(NOW_MS, id, put(Condition::Absent)));
        assert_eq!(retry.result, written(8, 1, true));
    }

    /// Remembered writes are forgotten only at entries whose index is a
    /// multiple of `EXPIRY_EVERY_ENTRIES`, and only once older than the
    /// window and its slack. Each case: the index and timestamp of a later,
    /// unrelated command, and whether the first write is still remembered.
    #[test]
    fn remembered_writes_expire_at_expiry_entries_after_window_and_slack() {
        let expiry_entry = 10 * EXPIRY_EVERY_ENTRIES;
        let forgettable_ms = NOW_MS + IDEMPOTENCY_WINDOW_MS + EXPIRY_SLACK_MS + 1;
        let cases = [
            (expiry_entry - 1, forgettable_ms, true),
            (expiry_entry, forgettable_ms - 1, true),
            (expiry_entry, forgettable_ms, false),
            (expiry_entry, forgettable_ms + IDEMPOTENCY_WINDOW_MS, false),
        ];
        for (revision, timestamp_ms, remembered) in cases {
            let case = format!("command at index {revision}, {timestamp_ms} ms");
            let (_dir, view) = open_view();
            let id = Uuid::new_v4();
            apply(&view, 1, &command(NOW_MS, Some(id), put(Condition::Always)));
            let other = Op::Put {
                key: "other".into(),
                value: "1".into(),
                condition: Condition::Always,
            };
            apply(&view, revision, &command(timestamp_ms, None, other));
            let batch = view.batch();
            let found = batch.idempotent_write(&id).expect("reads");
            assert_eq!(found.is_some(), remembered, "{case}");
        }
    }

    #[test]
    fn replaying_a_record_restores_the_entry_and_the_remembered_result() {
        let (_dir, view) = open_view();
        let id = Uuid::new_v4();
        let applied = apply(
            &view,
            EXISTING,
            &command(NOW_MS, Some(id), put(Condition::Always)),
        );
        let record = applied.record.expect("a put writes a record");

        let (_dir, replayed) = open_view();
        let mut batch = replayed.batch();
        replay_record(&mut batch, &record);
        replayed.commit(batch);
        assert_eq!(replayed.get("k").unwrap(), view.get("k").unwrap());
        let remembered = |view: &View| view.batch().idempotent_write(&id).unwrap();
        assert_eq!(remembered(&replayed), remembered(&view));
    }
}
