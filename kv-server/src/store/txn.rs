//! Applying a transaction: its compares are evaluated against the view,
//! then the operations of one branch run in order, and every key they
//! write is one unit of the topic with one revision.
//!
//! The unit's revision is the offset of its last record, so it must be
//! known before the first key is written (every key written gets it as its
//! `mod_revision`, and a read later in the branch shows it). So the branch
//! is planned first, which says which keys each operation writes, then
//! run. Both steps read the same view batch, so they agree.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::StoreError;
use crate::store::apply::{remembered_txn, Applied, UnitStart, UnitWriter};
use crate::store::json_compare;
use crate::store::leases;
use crate::store::record::UnitKind;
use crate::store::view::{IdempotentWrite, KeyEntry, ViewBatch};
use crate::types::{
    Command, CommandResult, Compare, CompareOp, CompareTarget, Txn, TxnKeyValue, TxnOp,
    TxnOpResult, TxnOutcome,
};

/// Applies `txn`, the operation of `command`, whose records (if it writes)
/// start at `start`.
pub(super) fn apply_txn(
    view: &mut ViewBatch<'_>,
    start: UnitStart,
    command: &Command,
    txn: &Txn,
) -> Result<Applied, StoreError> {
    let mut succeeded = true;
    for compare in &txn.compare {
        if !holds(compare, view.get(&compare.key)?.as_ref()) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    // A put with a lease that does not exist fails the whole branch.
    for op in ops {
        if let TxnOp::Put {
            lease: Some(id), ..
        } = op
        {
            if !leases::exists(view, *id)? {
                return Ok(Applied::nothing(CommandResult::LeaseNotFound { id: *id }));
            }
        }
    }
    let planned = plan(view, ops)?;
    let writes: usize = planned.iter().map(Vec::len).sum();
    if writes == 0 {
        // Reads only, or nothing: no record, no revision of its own.
        let revision = start.next_offset - 1;
        let mut budget = ReadBudget::new();
        let results = ops
            .iter()
            .map(|op| read(view, op, revision, &mut budget))
            .collect::<Result<_, _>>()?;
        return Ok(Applied::nothing(CommandResult::Txn(TxnOutcome {
            succeeded,
            revision,
            results,
            deduplicated: false,
        })));
    }
    let kind = if succeeded {
        UnitKind::TxnSuccess
    } else {
        UnitKind::TxnFailure
    };
    let mut unit = UnitWriter::new(start, writes, kind, command);
    let revision = unit.revision();
    let mut results = Vec::with_capacity(ops.len());
    let mut budget = ReadBudget::new();
    for (op, keys) in ops.iter().zip(planned) {
        let result = match op {
            TxnOp::Put { key, value, lease } => {
                let current = view.get(key)?;
                unit.put(view, key, value, current, lease.unwrap_or(0));
                TxnOpResult::Put { revision }
            }
            TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. } => {
                let deleted = keys.len() as u64;
                for key in keys {
                    let current = view
                        .get(&key)?
                        .ok_or_else(|| StoreError::TxnPlan { key: key.clone() })?;
                    unit.delete(view, &key, current);
                }
                TxnOpResult::Delete { deleted }
            }
            TxnOp::Get { .. } | TxnOp::GetPrefix { .. } => read(view, op, revision, &mut budget)?,
        };
        results.push(result);
    }
    let records = unit.finish();
    if let Some(id) = &command.idempotency_key {
        let first = IdempotentWrite {
            timestamp_ms: command.timestamp_ms,
            result: remembered_txn(succeeded, revision),
            request_hash: command.request_hash,
        };
        view.remember(id, &first);
    }
    Ok(Applied {
        result: CommandResult::Txn(TxnOutcome {
            succeeded,
            revision,
            results,
            deduplicated: false,
        }),
        records,
    })
}

/// The keys each operation of `ops` writes, run in order against `view`:
/// a put its key, a delete its key if it exists then, a prefix delete the
/// keys under the prefix then; reads none.
fn plan(view: &ViewBatch<'_>, ops: &[TxnOp]) -> Result<Vec<Vec<String>>, StoreError> {
    // Whether each key written so far exists after those writes.
    let mut exists_after: BTreeMap<String, bool> = BTreeMap::new();
    let mut planned = Vec::with_capacity(ops.len());
    for op in ops {
        let keys = match op {
            TxnOp::Put { key, .. } => vec![key.clone()],
            TxnOp::Delete { key } => {
                let exists = match exists_after.get(key) {
                    Some(exists) => *exists,
                    None => view.get(key)?.is_some(),
                };
                if exists {
                    vec![key.clone()]
                } else {
                    Vec::new()
                }
            }
            TxnOp::DeletePrefix { prefix } => {
                let mut keys: BTreeSet<String> = view
                    .keys_under(prefix)?
                    .into_iter()
                    .filter(|key| exists_after.get(key) != Some(&false))
                    .collect();
                let written = exists_after
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(prefix.as_str()));
                for (key, exists) in written {
                    if *exists {
                        keys.insert(key.clone());
                    }
                }
                keys.into_iter().collect()
            }
            TxnOp::Get { .. } | TxnOp::GetPrefix { .. } => Vec::new(),
        };
        let exists = matches!(op, TxnOp::Put { .. });
        for key in &keys {
            exists_after.insert(key.clone(), exists);
        }
        planned.push(keys);
    }
    Ok(planned)
}

/// Bytes of values the gets of one transaction answer together at most
/// (one page at the default `--max-page-bytes`); the first value read is
/// always taken, so any one value can be read. A constant, not a setting,
/// so that every node reads the same: the reads run where the transaction
/// is applied, on every node.
pub const TXN_READ_BYTES: usize = 4 << 20;

/// What is left of a transaction's [`TXN_READ_BYTES`]. Once a value does
/// not fit, no later one does either, so the reads answered are a prefix of
/// what was asked, each cut one saying `more`.
struct ReadBudget {
    left: usize,
    taken_any: bool,
    spent: bool,
}

impl ReadBudget {
    fn new() -> ReadBudget {
        ReadBudget {
            left: TXN_READ_BYTES,
            taken_any: false,
            spent: false,
        }
    }

    /// Whether a value of `bytes` is answered; if so, it is counted.
    fn take(&mut self, bytes: usize) -> bool {
        if self.spent || (self.taken_any && bytes > self.left) {
            self.spent = true;
            return false;
        }
        self.left = self.left.saturating_sub(bytes);
        self.taken_any = true;
        true
    }
}

/// The result of a read operation, as of the operations before it.
fn read(
    view: &ViewBatch<'_>,
    op: &TxnOp,
    revision: u64,
    budget: &mut ReadBudget,
) -> Result<TxnOpResult, StoreError> {
    let (kvs, more) = match op {
        TxnOp::Get { key } => match view.get(key)? {
            Some(entry) if budget.take(entry.value.len()) => {
                (vec![key_value(key.clone(), entry)], false)
            }
            Some(_) => (Vec::new(), true),
            None => (Vec::new(), false),
        },
        TxnOp::GetPrefix { prefix, limit } => {
            let (found, more) = view.scan_prefix(prefix, *limit, |bytes| budget.take(bytes))?;
            let kvs = found
                .into_iter()
                .map(|(key, entry)| key_value(key, entry))
                .collect();
            (kvs, more)
        }
        TxnOp::Put { .. } => return Ok(TxnOpResult::Put { revision }),
        TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. } => {
            return Ok(TxnOpResult::Delete { deleted: 0 })
        }
    };
    Ok(TxnOpResult::Get { kvs, more })
}

fn key_value(key: String, entry: KeyEntry) -> TxnKeyValue {
    TxnKeyValue {
        key,
        value: String::from_utf8_lossy(&entry.value).into_owned(),
        create_revision: entry.create_revision,
        mod_revision: entry.mod_revision,
        version: entry.version,
        lease: entry.lease,
    }
}

/// Whether `compare` holds for the key whose entry is `entry` (`None`: it
/// does not exist). A missing key has version, revisions and lease 0 and no
/// value: every compare of its value fails.
fn holds(compare: &Compare, entry: Option<&KeyEntry>) -> bool {
    let number = |field: fn(&KeyEntry) -> u64| entry.map_or(0, field);
    match &compare.target {
        CompareTarget::Exists(wanted) => match compare.op {
            CompareOp::Equal => entry.is_some() == *wanted,
            CompareOp::NotEqual => entry.is_some() != *wanted,
            CompareOp::Less | CompareOp::Greater => false,
        },
        CompareTarget::Version(operand) => ordered(number(|e| e.version), *operand, compare.op),
        CompareTarget::CreateRevision(operand) => {
            ordered(number(|e| e.create_revision), *operand, compare.op)
        }
        CompareTarget::ModRevision(operand) => {
            ordered(number(|e| e.mod_revision), *operand, compare.op)
        }
        CompareTarget::Lease(operand) => ordered(number(|e| e.lease), *operand, compare.op),
        CompareTarget::Value(operand) => entry.is_some_and(|entry| {
            let value = String::from_utf8_lossy(&entry.value);
            json_compare::holds(&value, operand, compare.op)
        }),
    }
}

fn ordered(value: u64, operand: u64, op: CompareOp) -> bool {
    match op {
        CompareOp::Equal => value == operand,
        CompareOp::NotEqual => value != operand,
        CompareOp::Less => value < operand,
        CompareOp::Greater => value > operand,
    }
}

#[cfg(test)]
mod tests {
    use compaction::BatchPos;
    use tempfile::TempDir;
    use uuid::Uuid;

    use super::*;
    use crate::store::apply::{apply_command, replay_record};
    use crate::store::view::View;
    use crate::types::Op;

    /// Where the first record of the transaction under test goes.
    const NEXT: u64 = 10;
    /// Its entry's log index.
    const LOG_INDEX: u64 = 14;

    fn open_view() -> (TempDir, View) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let view = View::open(dir.path()).expect("a fresh view opens");
        (dir, view)
    }

    fn entry(value: &str, revision: u64) -> KeyEntry {
        KeyEntry {
            value: value.as_bytes().to_vec(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: 0,
        }
    }

    /// A view holding `keys`, each with the value `1` at revision 5.
    fn view_with(keys: &[&str]) -> (TempDir, View) {
        let (dir, view) = open_view();
        let mut batch = view.batch();
        for key in keys {
            batch.put(key, &entry("1", 5));
        }
        view.commit(batch);
        (dir, view)
    }

    fn put(key: &str, value: &str) -> TxnOp {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    fn compare(key: &str, target: CompareTarget, op: CompareOp) -> Compare {
        Compare {
            key: key.into(),
            target,
            op,
        }
    }

    fn command(txn: Txn, idempotency_key: Option<Uuid>) -> Command {
        Command {
            timestamp_ms: 1_000,
            idempotency_key,
            request_hash: None,
            op: Op::Txn(txn),
        }
    }

    fn run(view: &View, txn: Txn) -> Applied {
        let mut batch = view.batch();
        let applied =
            apply_command(&mut batch, LOG_INDEX, NEXT, &command(txn, None)).expect("applies");
        view.commit(batch);
        applied
    }

    fn outcome(applied: &Applied) -> &TxnOutcome {
        match &applied.result {
            CommandResult::Txn(outcome) => outcome,
            other => panic!("expected a transaction's outcome, got {other:?}"),
        }
    }

    #[test]
    fn a_branchs_writes_are_one_unit_at_consecutive_offsets_with_one_revision() {
        let (_dir, view) = view_with(&["a", "gone"]);
        let txn = Txn {
            compare: vec![compare("a", CompareTarget::Exists(true), CompareOp::Equal)],
            success: vec![
                put("a", "2"),
                put("b", "3"),
                TxnOp::Delete { key: "gone".into() },
                TxnOp::Delete {
                    key: "never-was".into(),
                },
            ],
            failure: vec![put("failed", "1")],
        };
        let applied = run(&view, txn);
        let revision = NEXT + 2;
        assert_eq!(
            outcome(&applied),
            &TxnOutcome {
                succeeded: true,
                revision,
                results: vec![
                    TxnOpResult::Put { revision },
                    TxnOpResult::Put { revision },
                    TxnOpResult::Delete { deleted: 1 },
                    TxnOpResult::Delete { deleted: 0 },
                ],
                deduplicated: false,
            }
        );
        let placed: Vec<(u64, BatchPos, &str, u64)> = applied
            .records
            .iter()
            .map(|r| (r.offset, r.batch, r.key.as_str(), r.log_index))
            .collect();
        assert_eq!(
            placed,
            vec![
                (NEXT, BatchPos::new(0, 2), "a", LOG_INDEX),
                (NEXT + 1, BatchPos::new(1, 1), "b", LOG_INDEX),
                (NEXT + 2, BatchPos::new(2, 0), "gone", LOG_INDEX),
            ]
        );
        assert!(applied.records.iter().all(|r| r.revision() == revision));
        let a = view.get("a").unwrap().unwrap();
        assert_eq!(
            (a.mod_revision, a.create_revision, a.version),
            (revision, 5, 2)
        );
        let b = view.get("b").unwrap().unwrap();
        assert_eq!(
            (b.mod_revision, b.create_revision, b.version),
            (revision, revision, 1)
        );
        assert!(view.get("gone").unwrap().is_none());
        assert!(view.get("failed").unwrap().is_none());
    }

    #[test]
    fn a_failed_compare_runs_the_failure_branch() {
        let (_dir, view) = view_with(&["a"]);
        let txn = Txn {
            compare: vec![
                compare("a", CompareTarget::Version(1), CompareOp::Equal),
                compare("a", CompareTarget::ModRevision(4), CompareOp::Equal),
            ],
            success: vec![put("success", "1")],
            failure: vec![put("failure", "1")],
        };
        let applied = run(&view, txn);
        assert!(!outcome(&applied).succeeded);
        assert_eq!(applied.records.len(), 1);
        assert_eq!(applied.records[0].kind, UnitKind::TxnFailure);
        assert!(view.get("failure").unwrap().is_some());
        assert!(view.get("success").unwrap().is_none());
    }

    /// The gets of one transaction answer at most `TXN_READ_BYTES` of
    /// values together: a get that would pass it stops and says `more`, and
    /// so does every get after it, a single key's too; the first value is
    /// always answered. Writes are not cut.
    #[test]
    fn a_transactions_gets_stop_at_its_read_budget_and_say_more() {
        let (_dir, view) = open_view();
        let big = format!("\"{}\"", "v".repeat(TXN_READ_BYTES * 3 / 8));
        let huge = format!("\"{}\"", "h".repeat(TXN_READ_BYTES + 1));
        let mut batch = view.batch();
        for key in ["p/a", "p/b", "p/c"] {
            batch.put(key, &entry(&big, 5));
        }
        batch.put("huge", &entry(&huge, 5));
        view.commit(batch);
        let get = |key: &str| TxnOp::Get { key: key.into() };
        let prefix = TxnOp::GetPrefix {
            prefix: "p/".into(),
            limit: 10,
        };
        let read = |ops: Vec<TxnOp>| -> Vec<(Vec<String>, bool)> {
            let txn = Txn {
                compare: vec![],
                success: ops,
                failure: vec![],
            };
            outcome(&run(&view, txn))
                .results
                .iter()
                .filter_map(|result| match result {
                    TxnOpResult::Get { kvs, more } => {
                        Some((kvs.iter().map(|kv| kv.key.clone()).collect(), *more))
                    }
                    _ => None,
                })
                .collect()
        };
        let keys = |keys: &[&str]| keys.iter().map(|key| key.to_string()).collect::<Vec<_>>();
        // 3/8 + 3/8 fit, a third 3/8 does not; nothing after it is read.
        assert_eq!(
            read(vec![get("p/a"), prefix.clone(), get("p/c"), get("missing")]),
            [
                (keys(&["p/a"]), false),
                (keys(&["p/a"]), true),
                (keys(&[]), true),
                (keys(&[]), false),
            ]
        );
        // One value over the whole budget is still answered, alone.
        assert_eq!(
            read(vec![get("huge"), get("p/a")]),
            [(keys(&["huge"]), false), (keys(&[]), true)]
        );
        // A write among the cut reads still happens.
        let txn = Txn {
            compare: vec![],
            success: vec![get("huge"), get("p/a"), put("p/new", "1")],
            failure: vec![],
        };
        let applied = run(&view, txn);
        assert!(matches!(
            outcome(&applied).results[..],
            [
                _,
                TxnOpResult::Get { more: true, .. },
                TxnOpResult::Put { .. }
            ]
        ));
        assert!(view.get("p/new").expect("reads").is_some());
    }

    #[test]
    fn reads_see_the_operations_before_them_and_the_units_revision() {
        let (_dir, view) = view_with(&["p/a", "p/b"]);
        let txn = Txn {
            compare: vec![],
            success: vec![
                TxnOp::Get { key: "p/a".into() },
                put("p/a", "7"),
                TxnOp::DeletePrefix {
                    prefix: "p/b".into(),
                },
                TxnOp::GetPrefix {
                    prefix: "p/".into(),
                    limit: 10,
                },
            ],
            failure: vec![],
        };
        let applied = run(&view, txn);
        let revision = NEXT + 1;
        let results = &outcome(&applied).results;
        let TxnOpResult::Get { kvs, more: false } = &results[0] else {
            panic!("{results:?}");
        };
        assert_eq!((kvs[0].value.as_str(), kvs[0].mod_revision), ("1", 5));
        let TxnOpResult::Get { kvs, more: false } = &results[3] else {
            panic!("{results:?}");
        };
        let seen: Vec<(&str, &str, u64)> = kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str(), kv.mod_revision))
            .collect();
        assert_eq!(seen, vec![("p/a", "7", revision)]);
    }

    #[test]
    fn a_prefix_delete_takes_keys_written_earlier_in_the_same_batch() {
        let (_dir, view) = view_with(&["p/a"]);
        let mut batch = view.batch();
        let earlier = Command {
            timestamp_ms: 1_000,
            idempotency_key: None,
            request_hash: None,
            op: Op::Put {
                key: "p/b".into(),
                value: "1".into(),
                condition: crate::types::Condition::Always,
                lease: None,
            },
        };
        apply_command(&mut batch, LOG_INDEX - 1, NEXT - 1, &earlier).expect("applies");
        let txn = Txn {
            success: vec![TxnOp::DeletePrefix {
                prefix: "p/".into(),
            }],
            ..Txn::default()
        };
        let applied =
            apply_command(&mut batch, LOG_INDEX, NEXT, &command(txn, None)).expect("applies");
        view.commit(batch);
        let keys: Vec<&str> = applied.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec!["p/a", "p/b"]);
        assert_eq!(
            outcome(&applied).results,
            vec![TxnOpResult::Delete { deleted: 2 }]
        );
    }

    #[test]
    fn a_transaction_that_writes_nothing_takes_no_offset() {
        let (_dir, view) = view_with(&["a"]);
        let txn = Txn {
            compare: vec![compare("a", CompareTarget::Exists(false), CompareOp::Equal)],
            success: vec![put("a", "2")],
            failure: vec![TxnOp::Get { key: "a".into() }],
        };
        let applied = run(&view, txn);
        assert!(applied.records.is_empty());
        assert_eq!(outcome(&applied).revision, NEXT - 1);
        assert!(!outcome(&applied).succeeded);
    }

    #[test]
    fn a_retry_gets_the_remembered_outcome_and_a_replay_restores_it() {
        let (_dir, view) = open_view();
        let id = Uuid::new_v4();
        let txn = Txn {
            success: vec![put("x", "1"), put("y", "2")],
            ..Txn::default()
        };
        let mut batch = view.batch();
        let first = apply_command(&mut batch, LOG_INDEX, NEXT, &command(txn.clone(), Some(id)))
            .expect("applies");
        view.commit(batch);
        let remembered = remembered_txn(true, NEXT + 1);
        let mut batch = view.batch();
        let retry = apply_command(&mut batch, LOG_INDEX + 1, NEXT + 2, &command(txn, Some(id)))
            .expect("applies");
        assert_eq!(retry.result, remembered);
        assert!(retry.records.is_empty());

        let (_dir, replayed) = open_view();
        let mut batch = replayed.batch();
        // Either record alone restores the memory of the unit.
        replay_record(&mut batch, &first.records[1]).unwrap();
        let found = batch.idempotent_write(&id).unwrap().expect("remembered");
        assert_eq!(found.result, remembered);
    }

    /// Each case: the stored value (None: no key), the compare, whether it
    /// holds.
    #[test]
    fn compares_follow_json_and_treat_a_missing_key_as_zero() {
        use CompareOp::{Equal, Greater, Less, NotEqual};
        use CompareTarget::{CreateRevision, Exists, Lease, ModRevision, Value, Version};
        let value = |text: &str| Value(text.to_string());
        let cases: Vec<(Option<&str>, CompareTarget, CompareOp, bool)> = vec![
            (Some("1"), value("1.0"), Equal, true),
            (Some("1"), value("2"), Less, true),
            (Some("\"b\""), value("\"a\""), Greater, true),
            (Some("\"b\""), value("1"), Greater, false),
            (Some("{\"a\":1}"), value("{\"a\":1}"), Equal, true),
            (Some("{\"a\":1}"), value("{\"a\":2}"), NotEqual, true),
            (None, value("1"), NotEqual, false),
            (None, Exists(false), Equal, true),
            (Some("1"), Exists(true), Equal, true),
            (Some("1"), Exists(true), NotEqual, false),
            (None, Version(0), Equal, true),
            (Some("1"), Version(0), Greater, true),
            (Some("1"), ModRevision(5), Equal, true),
            (Some("1"), CreateRevision(6), Less, true),
            (Some("1"), Lease(0), Equal, true),
        ];
        for (stored, target, op, expected) in cases {
            let stored_entry = stored.map(|text| entry(text, 5));
            let compare = compare("k", target.clone(), op);
            assert_eq!(
                holds(&compare, stored_entry.as_ref()),
                expected,
                "{stored:?} {target:?} {op:?}"
            );
        }
    }
}
