//! Operations without an answer cost the search most: each may take effect
//! at any point after its call, or never, so it stays a candidate to the
//! end. Rewrites that keep the verdict exactly make most of them cheap.
//!
//! An unanswered write's *dependents* are the answered operations whose
//! answer its value could explain: reads that saw a value it writes,
//! compare-and-sets that expected one, and compare-and-sets refused on its
//! keys (refused for a value the key may hold), all returning after its
//! call. Take any linearization in which the write comes after all of its
//! dependents: while its value is current no operation depends on it, so
//! leaving it out (with any unanswered compare-and-set that did nothing
//! then) keeps the linearization valid. Hence:
//!
//! * a write without dependents is dropped (unless an unanswered
//!   compare-and-set expects its value: that one's effect is unknown, so
//!   the argument does not hold);
//! * a write of a value that an answered operation saw, and that nothing
//!   else writes, took effect before that operation returned: it gets that
//!   return as its own, and a compare-and-set must have swapped;
//! * any other write of one key (unless an unanswered compare-and-set
//!   expects its value) can move later, past every operation on other keys,
//!   up to the next one on its key: a dependent that the state without it
//!   refuses (else the write is dead, or can move past that one too). So
//!   the search tries it only while an answered candidate on its key is
//!   refused by the current state.

use std::collections::{HashMap, HashSet};

use crate::chaos::history::Nanos;

use super::model::{Effect, KeyId, ModelOp, ValueId, ABSENT};

/// Drops or bounds the unanswered writes of `ops`, as the module explains.
pub(super) fn simplify(ops: &mut Vec<ModelOp>) {
    let seen = Observations::of(ops);
    ops.retain(|op| op.ret.is_some() || seen.may_matter(op));
    for op in ops.iter_mut().filter(|op| op.ret.is_none()) {
        if let Some(first_seen) = seen.first_seen_alone(op) {
            op.ret = Some(first_seen.max(op.call));
            if let Effect::Cas { swapped, .. } = &mut op.effect {
                *swapped = Some(true);
            }
        } else {
            op.lazy = seen.may_wait(op);
        }
    }
}

/// What the operations of a group observed, and who wrote what.
#[derive(Default)]
struct Observations {
    /// For a (key, value): the earliest return of an answered operation
    /// that saw it (a read, or a compare-and-set that swapped from it).
    first_seen: HashMap<(KeyId, ValueId), Nanos>,
    /// For a (key, value): the latest return of an answered operation that
    /// read or expected it.
    last_seen: HashMap<(KeyId, ValueId), Nanos>,
    /// For a key: the latest return of a compare-and-set on it answered as
    /// not swapped, when the key may hold the value it expected (else no
    /// write needs to explain the refusal).
    last_refusal: HashMap<KeyId, Nanos>,
    /// The (key, value) pairs an unanswered compare-and-set expects.
    expected_unanswered: HashSet<(KeyId, ValueId)>,
    /// For a (key, value): how many operations may write it.
    writers: HashMap<(KeyId, ValueId), usize>,
}

impl Observations {
    fn of(ops: &[ModelOp]) -> Observations {
        let mut seen = Observations::default();
        for pair in ops.iter().flat_map(|op| written(&op.effect)) {
            *seen.writers.entry(pair).or_default() += 1;
        }
        for op in ops {
            match (&op.effect, op.ret) {
                (Effect::Read { seen: pairs }, Some(ret)) => {
                    for &pair in pairs {
                        keep_min(&mut seen.first_seen, pair, ret);
                        keep_max(&mut seen.last_seen, pair, ret);
                    }
                }
                (
                    &Effect::Cas {
                        key,
                        expect,
                        swapped,
                        ..
                    },
                    Some(ret),
                ) => {
                    keep_max(&mut seen.last_seen, (key, expect), ret);
                    if swapped == Some(true) {
                        keep_min(&mut seen.first_seen, (key, expect), ret);
                    } else if seen.may_hold(key, expect) {
                        keep_max(&mut seen.last_refusal, key, ret);
                    }
                }
                (&Effect::Cas { key, expect, .. }, None) => {
                    seen.expected_unanswered.insert((key, expect));
                }
                _ => {}
            }
        }
        seen
    }

    /// Whether `key` may ever hold `value`: absence, or a value written.
    fn may_hold(&self, key: KeyId, value: ValueId) -> bool {
        value == ABSENT || self.writers.contains_key(&(key, value))
    }

    /// Whether the unanswered `op` has dependents, or its value is
    /// expected by an unanswered compare-and-set.
    fn may_matter(&self, op: &ModelOp) -> bool {
        written(&op.effect).into_iter().any(|(key, value)| {
            let dependents = [
                self.last_seen.get(&(key, value)),
                self.last_refusal.get(&key),
            ];
            self.expected_unanswered.contains(&(key, value))
                || dependents.into_iter().flatten().any(|&ret| ret >= op.call)
        })
    }

    /// Whether the unanswered `op` may wait to be placed until an answered
    /// candidate on its key is refused: a write of one key whose value no
    /// unanswered compare-and-set expects.
    fn may_wait(&self, op: &ModelOp) -> bool {
        match written(&op.effect).as_slice() {
            [pair] => !self.expected_unanswered.contains(pair),
            _ => false,
        }
    }

    /// The earliest return of an answered operation that saw a value that
    /// only the unanswered `op` writes, if any.
    fn first_seen_alone(&self, op: &ModelOp) -> Option<Nanos> {
        written(&op.effect)
            .into_iter()
            .filter(|&(key, value)| value != ABSENT && self.writers[&(key, value)] == 1)
            .filter_map(|pair| self.first_seen.get(&pair).copied())
            .min()
    }
}

/// Keeps the smaller of `map[key]` and `value`.
fn keep_min<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Nanos>, key: K, value: Nanos) {
    let kept = map.entry(key).or_insert(value);
    *kept = value.min(*kept);
}

/// Keeps the larger of `map[key]` and `value`.
fn keep_max<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Nanos>, key: K, value: Nanos) {
    let kept = map.entry(key).or_insert(value);
    *kept = value.max(*kept);
}

/// The (key, value) pairs an operation writes, or may write.
fn written(effect: &Effect) -> Vec<(KeyId, ValueId)> {
    match effect {
        Effect::Write { pairs } => pairs.clone(),
        &Effect::Cas { key, value, .. } => vec![(key, value)],
        Effect::Read { .. } | Effect::Mismatch => Vec::new(),
    }
}
