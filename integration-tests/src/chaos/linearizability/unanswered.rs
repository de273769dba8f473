//! Operations without an answer cost the search most: each may take effect
//! at any point after its call, or never, so it stays a candidate to the
//! end. Two rewrites, each keeping the verdict exactly, make most of them
//! cheap:
//!
//! * An unanswered write whose effect no answered operation could have
//!   seen is dropped. In any linearization, while its value is current no
//!   read sees it, no compare-and-set expects it and none is refused, so
//!   leaving it (and any unanswered compare-and-set that then did nothing)
//!   out keeps the linearization valid.
//! * An unanswered write of a value that an answered operation saw, and
//!   that nothing else writes, took effect before that operation returned:
//!   it gets that return as its own, and a compare-and-set must have
//!   swapped.

use std::collections::{HashMap, HashSet};

use crate::chaos::history::Nanos;

use super::model::{Effect, KeyId, ModelOp, ValueId, ABSENT};

/// Drops or bounds the unanswered writes of `ops`, as the module explains.
pub(super) fn simplify(ops: &mut Vec<ModelOp>) {
    let seen = Observations::of(ops);
    ops.retain(|op| op.ret.is_some() || seen.may_depend_on(op));

    for op in ops.iter_mut().filter(|op| op.ret.is_none()) {
        let first_seen = written(&op.effect)
            .into_iter()
            .filter(|&(key, value)| value != ABSENT && seen.writers[&(key, value)] == 1)
            .filter_map(|pair| seen.first_seen.get(&pair))
            .min();
        if let Some(&first_seen) = first_seen {
            op.ret = Some(first_seen.max(op.call));
            if let Effect::Cas { swapped, .. } = &mut op.effect {
                *swapped = Some(true);
            }
        }
    }
}

/// What the operations of a group observed, and who wrote what.
struct Observations {
    /// Every (key, value) a read saw or a compare-and-set expected.
    observed: HashSet<(KeyId, ValueId)>,
    /// For a (key, value): the earliest return of an answered operation
    /// that saw it (a read, or a compare-and-set that swapped from it).
    first_seen: HashMap<(KeyId, ValueId), Nanos>,
    /// For a key: the latest return of a compare-and-set on it answered
    /// as not swapped (when the key may hold the value it expected: else
    /// nothing needs explaining).
    last_refusal: HashMap<KeyId, Nanos>,
    /// For a (key, value): how many operations may write it.
    writers: HashMap<(KeyId, ValueId), usize>,
}

impl Observations {
    fn of(ops: &[ModelOp]) -> Observations {
        let mut seen = Observations {
            observed: HashSet::new(),
            first_seen: HashMap::new(),
            last_refusal: HashMap::new(),
            writers: HashMap::new(),
        };
        for pair in ops.iter().flat_map(|op| written(&op.effect)) {
            *seen.writers.entry(pair).or_default() += 1;
        }
        for op in ops {
            match &op.effect {
                Effect::Read { seen: pairs } => {
                    for &pair in pairs {
                        seen.observed.insert(pair);
                        seen.saw(pair, op.ret);
                    }
                }
                &Effect::Cas {
                    key,
                    expect,
                    swapped,
                    ..
                } => {
                    seen.observed.insert((key, expect));
                    match (swapped, op.ret) {
                        (Some(true), ret) => seen.saw((key, expect), ret),
                        // A refusal needs a value other than the expected
                        // one: any will do when the key never holds it.
                        (Some(false), Some(ret)) if seen.may_hold(key, expect) => {
                            let last = seen.last_refusal.entry(key).or_insert(ret);
                            *last = ret.max(*last);
                        }
                        _ => {}
                    }
                }
                Effect::Write { .. } | Effect::Mismatch => {}
            }
        }
        seen
    }

    /// Whether `key` may ever hold `value`: absence, or a value written.
    fn may_hold(&self, key: KeyId, value: ValueId) -> bool {
        value == ABSENT || self.writers.contains_key(&(key, value))
    }

    /// Notes that an operation returning at `ret` saw `pair`.
    fn saw(&mut self, pair: (KeyId, ValueId), ret: Option<Nanos>) {
        if let Some(ret) = ret {
            let first = self.first_seen.entry(pair).or_insert(ret);
            *first = ret.min(*first);
        }
    }

    /// Whether some operation's answer may depend on the unanswered `op`
    /// having taken effect.
    fn may_depend_on(&self, op: &ModelOp) -> bool {
        written(&op.effect).into_iter().any(|(key, value)| {
            self.observed.contains(&(key, value))
                || self
                    .last_refusal
                    .get(&key)
                    .is_some_and(|&ret| ret >= op.call)
        })
    }
}

/// The (key, value) pairs an operation writes, or may write.
fn written(effect: &Effect) -> Vec<(KeyId, ValueId)> {
    match effect {
        Effect::Write { pairs } => pairs.clone(),
        &Effect::Cas { key, value, .. } => vec![(key, value)],
        Effect::Read { .. } | Effect::Mismatch => Vec::new(),
    }
}
