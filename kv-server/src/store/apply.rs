//! Applying commands to the view: the deterministic heart of the state
//! machine. Every node applies the same entries in the same order to the
//! same state and so computes the same results; nothing here may read a
//! clock, a random number or anything but the command and the view.

use bytes::Bytes;

use crate::error::StoreError;
use crate::store::record::WriteRecord;
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
