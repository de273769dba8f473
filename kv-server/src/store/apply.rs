//! Applying commands to the view: the deterministic heart of the state
//! machine. Every node applies the same entries in the same order to the
//! same state and so computes the same results; nothing here may read a
//! clock, a random number or anything but the command and the view.

use bytes::Bytes;
use compaction::BatchPos;

use crate::error::StoreError;
use crate::store::leases;
use crate::store::record::{UnitKind, WriteRecord};
use crate::store::txn::apply_txn;
use crate::store::view::{IdempotentWrite, KeyEntry, ViewBatch};
use crate::types::{Command, CommandResult, Condition, LeaseId, Op, Revision, TxnOutcome};

/// How long a write's idempotency key is remembered, by command timestamps.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 10 * 60 * 1000;

/// Remembered writes are forgotten on every entry whose log index is a
/// multiple of this (a range scan is too dear for every entry), once per
/// entry whatever number of commands it carries; until then a lookup
/// ignores those older than the window. Log indices, not offsets: every
/// entry has one, so no multiple is jumped over.
const EXPIRY_EVERY_ENTRIES: u64 = 1024;
/// How far behind the window an entry must be to be forgotten, so that a
/// later command stamped by a leader whose clock is a little behind finds
/// the same entries on every node.
const EXPIRY_SLACK_MS: u64 = 60 * 1000;

/// What applying one command produced.
pub struct Applied {
    /// The command's result.
    pub result: CommandResult,
    /// The topic records it wrote, at consecutive offsets, one per key it
    /// changed; none if it changed nothing.
    pub records: Vec<WriteRecord>,
}

impl Applied {
    /// A command that wrote nothing.
    pub(super) fn nothing(result: CommandResult) -> Applied {
        Applied {
            result,
            records: Vec::new(),
        }
    }
}

/// Applies `command`, carried by the log entry at `log_index`, to `view`;
/// the records it writes take the offsets from `next_offset` on. A batch
/// applies its commands in order, each as below, each a unit of its own.
///
/// A write whose idempotency key was already applied returns the first
/// result and changes nothing. Writes that did not apply (failed condition,
/// delete of a missing key) are not remembered: a retry is evaluated again,
/// which is what every node does, because the dedupe table must be
/// rebuildable from the topic alone.
///
/// The command is dated by the apply clock, never by its leader's clock
/// alone: at `max(its timestamp, the clock)`, so a new leader whose clock
/// is behind the last one's neither dates records back in time nor brings
/// expired idempotency keys back. A write moves the clock to its date; a
/// command that writes nothing leaves it, since a node rebuilt from the
/// topic dates its clock by the records it replays.
pub fn apply_command(
    view: &mut ViewBatch<'_>,
    log_index: u64,
    next_offset: u64,
    command: &Command,
) -> Result<Applied, StoreError> {
    let applied = match &command.op {
        Op::Batch(commands) => super::batch::apply_batch(view, log_index, next_offset, commands)?,
        _ => apply_one(view, log_index, next_offset, command)?,
    };
    if log_index.is_multiple_of(EXPIRY_EVERY_ENTRIES) {
        // By the clock, not the command's date: a command that writes
        // nothing does not move the clock, and a node rebuilt from the
        // topic would not know how far it had expired.
        let window_start = view.clock_ms()?.saturating_sub(IDEMPOTENCY_WINDOW_MS);
        view.expire_idempotent_writes(window_start.saturating_sub(EXPIRY_SLACK_MS))?;
    }
    Ok(applied)
}

/// Applies one command that is not a batch; a batch inside a batch is
/// refused and changes nothing. A token's command ([`Op::ByToken`]) applies
/// as the command it carries if the token may still make it (see
/// `access`), and changes nothing otherwise.
pub(super) fn apply_one(
    view: &mut ViewBatch<'_>,
    log_index: u64,
    next_offset: u64,
    command: &Command,
) -> Result<Applied, StoreError> {
    match &command.op {
        Op::Batch(_) => return Ok(Applied::nothing(CommandResult::NestedBatch)),
        Op::ByToken { token, op } => {
            if let Some(refused) = super::access::refusal(view, token, op)? {
                return Ok(Applied::nothing(refused));
            }
            let asked = Command {
                timestamp_ms: command.timestamp_ms,
                idempotency_key: command.idempotency_key,
                request_hash: command.request_hash,
                op: Op::clone(op),
            };
            return apply_one(view, log_index, next_offset, &asked);
        }
        _ => {}
    }
    let clock_ms = view.clock_ms()?;
    let applied = if command.timestamp_ms < clock_ms {
        let dated = Command {
            timestamp_ms: clock_ms,
            ..command.clone()
        };
        apply_dated(view, log_index, next_offset, &dated)?
    } else {
        apply_dated(view, log_index, next_offset, command)?
    };
    if !applied.records.is_empty() {
        view.advance_clock(command.timestamp_ms)?;
    }
    Ok(applied)
}

/// [`apply_command`] once `command` carries its date by the apply clock.
fn apply_dated(
    view: &mut ViewBatch<'_>,
    log_index: u64,
    next_offset: u64,
    command: &Command,
) -> Result<Applied, StoreError> {
    let window_start = command.timestamp_ms.saturating_sub(IDEMPOTENCY_WINDOW_MS);
    if let Some(id) = &command.idempotency_key {
        let first = view
            .idempotent_write(id)?
            .filter(|first| first.timestamp_ms >= window_start);
        if let Some(first) = first {
            // Another hash is another request. A write remembered without
            // one (from before hashes were kept; the window has long passed
            // for any such) matches only another without one.
            let reused = first.request_hash != command.request_hash;
            if reused {
                return Ok(Applied::nothing(CommandResult::IdempotencyKeyReused {
                    key: *id,
                }));
            }
            return Ok(Applied::nothing(first.result));
        }
    }
    if command.op.adds_data() {
        if let Some(members) = super::alarms::nospace_members(view)? {
            return Ok(Applied::nothing(CommandResult::NoSpace { members }));
        }
    }
    let start = UnitStart::new(log_index, next_offset);
    let (key, value, condition, lease) = match &command.op {
        Op::Put {
            key,
            value,
            condition,
            lease,
        } => (key, Some(value.as_str()), *condition, *lease),
        Op::Delete { key, condition } => (key, None, *condition, None),
        Op::Txn(txn) => return apply_txn(view, start, command, txn),
        Op::LeaseGrant { ttl_ms, max_leases } => {
            return leases::grant(view, start, command, *ttl_ms, *max_leases)
        }
        Op::LeaseRevoke { id } | Op::LeaseExpire { id } => {
            return leases::end(view, start, command, *id)
        }
        Op::AlarmRaise { member, reason } => {
            return super::alarms::change(view, start, command, *member, Some(reason))
        }
        Op::AlarmDisarm { member } => {
            return super::alarms::change(view, start, command, *member, None)
        }
        // Refused by `apply_one` before it gets here; answered alike.
        Op::Batch(_) => return Ok(Applied::nothing(CommandResult::NestedBatch)),
        // `apply_one` checks the token and applies the command it carries
        // before it gets here.
        Op::ByToken { .. } => return apply_one(view, log_index, next_offset, command),
    };
    if let Some(id) = lease {
        if !leases::exists(view, id)? {
            return Ok(Applied::nothing(CommandResult::LeaseNotFound { id }));
        }
    }
    let current = view.get(key)?;
    if !condition_holds(condition, current.as_ref()) {
        return Ok(Applied::nothing(CommandResult::PreconditionFailed {
            current_mod_revision: current.map(|entry| entry.mod_revision),
        }));
    }
    let mut unit = UnitWriter::new(start, 1, UnitKind::Write, command);
    match (value, current) {
        (Some(value), current) => unit.put(view, key, value, current, lease.unwrap_or(0)),
        (None, Some(current)) => unit.delete(view, key, current),
        (None, None) => return Ok(Applied::nothing(CommandResult::NotFound)),
    }
    let records = unit.finish();
    let result = written(&records[0]);
    if let Some(id) = &command.idempotency_key {
        let first = IdempotentWrite {
            timestamp_ms: command.timestamp_ms,
            result: result.clone(),
            request_hash: command.request_hash,
        };
        view.remember(id, &first);
    }
    Ok(Applied { result, records })
}

/// Where a unit's records go: the entry that carries it and the offset of
/// its first record.
#[derive(Clone, Copy, Debug)]
pub(super) struct UnitStart {
    /// The raft log index of the entry.
    pub log_index: u64,
    /// The offset the unit's first record takes.
    pub next_offset: u64,
}

impl UnitStart {
    /// The unit of the entry at `log_index`, from `next_offset` on.
    pub fn new(log_index: u64, next_offset: u64) -> UnitStart {
        UnitStart {
            log_index,
            next_offset,
        }
    }
}

/// Writes the keys of one unit, whose number of records is known before
/// the first is written: each record gets the next offset and its place in
/// the unit, and every key the unit's revision (its last offset).
pub(super) struct UnitWriter<'c> {
    start: UnitStart,
    len: usize,
    kind: UnitKind,
    command: &'c Command,
    records: Vec<WriteRecord>,
}

impl<'c> UnitWriter<'c> {
    /// A unit of `len` records (at least 1) of `kind`, written by `command`.
    pub fn new(start: UnitStart, len: usize, kind: UnitKind, command: &'c Command) -> Self {
        UnitWriter {
            start,
            len,
            kind,
            command,
            records: Vec::with_capacity(len),
        }
    }

    /// The unit's revision: the offset of its last record.
    pub fn revision(&self) -> Revision {
        self.start.next_offset + self.len as u64 - 1
    }

    /// Sets `key` to `value` with `lease` (0: none); `current` is its
    /// entry before.
    pub fn put(
        &mut self,
        view: &mut ViewBatch<'_>,
        key: &str,
        value: &str,
        current: Option<KeyEntry>,
        lease: LeaseId,
    ) {
        let revision = self.revision();
        let entry = KeyEntry {
            value: value.as_bytes().to_vec(),
            create_revision: current
                .as_ref()
                .map_or(revision, |entry| entry.create_revision),
            mod_revision: revision,
            version: current.as_ref().map_or(1, |entry| entry.version + 1),
            lease,
        };
        view.put(key, &entry);
        // The lease the key leaves no longer lists it: a lease kept alive
        // for a long time (a broker's) would otherwise gather a row for
        // every key it ever held, each read when it is listed or ends.
        match current.as_ref().map_or(0, |entry| entry.lease) {
            0 => {}
            before if before == lease => {}
            before => view.detach(before, key),
        }
        if lease != 0 {
            view.attach(lease, key);
        }
        self.record(key, Some(value), &entry);
    }

    /// Deletes `key`, whose entry is `current`.
    pub fn delete(&mut self, view: &mut ViewBatch<'_>, key: &str, current: KeyEntry) {
        view.remove(key);
        if current.lease != 0 {
            view.detach(current.lease, key);
        }
        let gone = KeyEntry {
            version: 0,
            lease: 0,
            ..current
        };
        self.record(key, None, &gone);
    }

    fn record(&mut self, key: &str, value: Option<&str>, entry: &KeyEntry) {
        let sub = self.records.len();
        let rest = self.len.checked_sub(sub + 1).expect(
            "a unit writes exactly the records it was counted with (UnitWriter::new's len)",
        );
        self.records.push(WriteRecord {
            offset: self.start.next_offset + sub as u64,
            batch: BatchPos::new(sub as u32, rest as u32),
            log_index: self.start.log_index,
            kind: self.kind,
            timestamp_ms: self.command.timestamp_ms,
            key: key.to_string(),
            value: value.map(|value| Bytes::copy_from_slice(value.as_bytes())),
            create_revision: entry.create_revision,
            version: entry.version,
            lease: entry.lease,
            idempotency_key: self.command.idempotency_key,
            request_hash: self.command.request_hash,
            entry: None,
        });
    }

    /// The unit's records, every one written.
    pub fn finish(self) -> Vec<WriteRecord> {
        assert_eq!(
            self.records.len(),
            self.len,
            "a unit writes exactly the records it was counted with"
        );
        self.records
    }
}

/// Applies a record read back from the topic (view rebuild, snapshot
/// install): the same effect its command had. (The count of leases is made
/// again once the whole topic is replayed: `leases::recount`.)
pub fn replay_record(view: &mut ViewBatch<'_>, record: &WriteRecord) -> Result<(), StoreError> {
    view.advance_clock(record.timestamp_ms)?;
    match &record.value {
        Some(value) => {
            view.put(
                &record.key,
                &KeyEntry {
                    value: value.to_vec(),
                    create_revision: record.create_revision,
                    mod_revision: record.revision(),
                    version: record.version,
                    lease: record.lease,
                },
            );
            if record.lease != 0 {
                view.attach(record.lease, &record.key);
            }
        }
        None => {
            view.remove(&record.key);
            if let Some(id) = leases::lease_id_of(&record.key) {
                let attached = view.attachments(id)?;
                view.forget_attachments(id, &attached);
            }
        }
    }
    if let Some(id) = &record.idempotency_key {
        let result = match record.kind {
            UnitKind::Write => written(record),
            UnitKind::TxnSuccess | UnitKind::TxnFailure => {
                remembered_txn(record.kind == UnitKind::TxnSuccess, record.revision())
            }
            // Lease commands carry no idempotency key.
            UnitKind::LeaseGrant | UnitKind::LeaseEnd => return Ok(()),
        };
        let first = IdempotentWrite {
            timestamp_ms: record.timestamp_ms,
            result,
            request_hash: record.request_hash,
        };
        view.remember(id, &first);
    }
    Ok(())
}

/// What a retry of a transaction that wrote gets: which branch ran and
/// the revision, without the results of its reads.
pub(super) fn remembered_txn(succeeded: bool, revision: Revision) -> CommandResult {
    CommandResult::Txn(TxnOutcome {
        succeeded,
        revision,
        results: Vec::new(),
        deduplicated: true,
    })
}

/// The result a successful write returned.
pub(super) fn written(record: &WriteRecord) -> CommandResult {
    CommandResult::Written {
        revision: record.revision(),
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
            lease: None,
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
            request_hash: idempotency_key.map(|_| hash_of(&op)),
            op,
        }
    }

    /// A stand-in for the API's request hash: one per distinct operation.
    fn hash_of(op: &Op) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        format!("{op:?}").hash(&mut hasher);
        hasher.finish()
    }

    /// Applies `command`, whose records start at offset `revision`, in a
    /// batch of its own, committed; its entry's log index is a little past
    /// the offset, as blanks and membership entries make it.
    fn apply(view: &View, revision: Revision, command: &Command) -> Applied {
        apply_at(view, revision + 3, revision, command)
    }

    /// Applies `command` from the entry at `log_index`, its records from
    /// `next_offset` on.
    fn apply_at(view: &View, log_index: u64, next_offset: u64, command: &Command) -> Applied {
        let mut batch = view.batch();
        let applied = apply_command(&mut batch, log_index, next_offset, command).expect("applies");
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
            assert_eq!(applied.records.len(), usize::from(wrote), "{case}");
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
                assert!(retry.records.is_empty(), "{case}: a retry writes no record");
                assert_eq!((entry.version, entry.mod_revision), (1, EXISTING), "{case}");
            } else {
                assert_eq!(retry.result, written(REVISION, 2, false), "{case}");
                assert_eq!(retry.records.len(), 1, "{case}");
                assert_eq!((entry.version, entry.mod_revision), (2, REVISION), "{case}");
            }
        }
    }

    /// An idempotency key sent again with another request (another value,
    /// key, condition or operation) is refused while the first write is
    /// remembered, and changes nothing; the same request gets the first
    /// result. A write remembered without a hash (from before hashes were
    /// kept) is matched by its key alone, by another without one.
    #[test]
    fn a_reused_idempotency_key_with_another_request_is_refused_and_changes_nothing() {
        let other_value = Op::Put {
            key: "k".into(),
            value: "\"w\"".into(),
            condition: Condition::Always,
            lease: None,
        };
        // (the second request, whether it is refused as a reuse)
        let cases = [
            (put(Condition::Always), false),
            (other_value, true),
            (put(Condition::Absent), true),
            (delete(Condition::Always), true),
        ];
        for (second, refused) in cases {
            let case = format!("then {second:?}");
            let (_dir, view) = open_view();
            let id = Uuid::new_v4();
            let first = apply(&view, 1, &command(NOW_MS, Some(id), put(Condition::Always)));
            let again = apply(&view, 2, &command(NOW_MS + 1, Some(id), second));
            if refused {
                assert_eq!(
                    again.result,
                    CommandResult::IdempotencyKeyReused { key: id },
                    "{case}"
                );
            } else {
                assert_eq!(again.result, first.result, "{case}");
            }
            assert!(again.records.is_empty(), "{case}: nothing written");
            let entry = view.get("k").expect("reads").expect("the key exists");
            assert_eq!(
                (entry.version, &entry.value[..]),
                (1, &b"\"v\""[..]),
                "{case}"
            );
        }

        let (_dir, view) = open_view();
        let id = Uuid::new_v4();
        let unhashed = Command {
            request_hash: None,
            ..command(NOW_MS, Some(id), put(Condition::Always))
        };
        let first = apply(&view, 1, &unhashed);
        let other = Op::Put {
            key: "k".into(),
            value: "2".into(),
            condition: Condition::Always,
            lease: None,
        };
        let again = apply(&view, 2, &command(NOW_MS, Some(id), other));
        assert_eq!(
            again.result,
            CommandResult::IdempotencyKeyReused { key: id },
            "an unhashed write and a hashed one are two requests"
        );
        let unhashed_again = apply(&view, 3, &unhashed);
        assert_eq!(
            unhashed_again.result, first.result,
            "two unhashed writes: the key decides"
        );
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

    /// Remembered writes are forgotten only at entries whose log index is a
    /// multiple of `EXPIRY_EVERY_ENTRIES` (whatever offset their records
    /// take), and only once older than the window and its slack. Each case:
    /// the log index and timestamp of a later, unrelated command, and
    /// whether the first write is still remembered.
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
        for (log_index, timestamp_ms, remembered) in cases {
            let case = format!("command at index {log_index}, {timestamp_ms} ms");
            let (_dir, view) = open_view();
            let id = Uuid::new_v4();
            apply(&view, 1, &command(NOW_MS, Some(id), put(Condition::Always)));
            let other = Op::Put {
                key: "other".into(),
                value: "1".into(),
                condition: Condition::Always,
                lease: None,
            };
            apply_at(&view, log_index, 2, &command(timestamp_ms, None, other));
            let batch = view.batch();
            let found = batch.idempotent_write(&id).expect("reads");
            assert_eq!(found.is_some(), remembered, "{case}");
        }
    }

    /// Leaders' clocks disagree: each case is the timestamps of a run of
    /// writes, and the dates they are applied at, which never go back.
    #[test]
    fn writes_are_dated_by_a_clock_that_never_goes_back_across_leaders() {
        let cases: [(&[u64], &[u64]); 4] = [
            (&[10, 20, 30], &[10, 20, 30]),
            (&[30, 20, 10], &[30, 30, 30]),
            (&[10, 50, 40, 60], &[10, 50, 50, 60]),
            (&[50, 50, 49], &[50, 50, 50]),
        ];
        for (stamped, dated) in cases {
            let (_dir, view) = open_view();
            let mut found = Vec::new();
            for (n, timestamp_ms) in stamped.iter().enumerate() {
                let revision = n as Revision + 1;
                let applied = apply(
                    &view,
                    revision,
                    &command(NOW_MS + timestamp_ms, None, put(Condition::Always)),
                );
                found.push(applied.records[0].timestamp_ms - NOW_MS);
            }
            assert_eq!(found, dated, "leader timestamps {stamped:?}");
        }
    }

    /// A leader whose clock is a window behind the last one's still
    /// dedupes a retry of a write the last leader applied a moment ago.
    #[test]
    fn a_retry_under_a_leader_whose_clock_is_behind_is_still_deduplicated() {
        let (_dir, view) = open_view();
        let id = Some(Uuid::new_v4());
        let first = apply(&view, 1, &command(NOW_MS, id, put(Condition::Always)));
        let behind_ms = NOW_MS - 2 * IDEMPOTENCY_WINDOW_MS;
        let retry = apply(&view, 2, &command(behind_ms, id, put(Condition::Always)));
        assert_eq!(retry.result, first.result);
        assert!(retry.records.is_empty(), "the retry wrote nothing");
        let other = Op::Put {
            key: "other".into(),
            value: "1".into(),
            condition: Condition::Always,
            lease: None,
        };
        let later = apply(&view, 3, &command(behind_ms, None, other));
        assert_eq!(later.records[0].timestamp_ms, NOW_MS, "dated by the clock");
    }

    /// A command that writes nothing does not move the clock (a node
    /// rebuilt from the topic could not know it did), and a replayed record
    /// moves it as its write did.
    #[test]
    fn only_writes_move_the_clock_so_a_replay_dates_it_alike() {
        let (_dir, view) = open_view();
        let applied = apply(&view, 1, &command(NOW_MS, None, put(Condition::Always)));
        apply(
            &view,
            2,
            &command(NOW_MS + 5_000, None, put(Condition::Absent)),
        );
        assert_eq!(view.batch().clock_ms().unwrap(), NOW_MS);

        let (_dir, replayed) = open_view();
        let mut batch = replayed.batch();
        replay_record(&mut batch, &applied.records[0]).unwrap();
        replayed.commit(batch);
        assert_eq!(replayed.batch().clock_ms().unwrap(), NOW_MS);
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
        let [record] = &applied.records[..] else {
            panic!("a put writes one record");
        };

        let (_dir, replayed) = open_view();
        let mut batch = replayed.batch();
        replay_record(&mut batch, record).unwrap();
        replayed.commit(batch);
        assert_eq!(replayed.get("k").unwrap(), view.get("k").unwrap());
        let remembered = |view: &View| view.batch().idempotent_write(&id).unwrap();
        assert_eq!(remembered(&replayed), remembered(&view));
    }
}
