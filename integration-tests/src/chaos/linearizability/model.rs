//! The sequential model the checker linearizes a group against: a map from
//! each key of the group to its value or absence. A group's operations are
//! compiled once into a compact form (keys and values interned as small
//! integers), so a step and the memo's key are a few machine words.

use std::collections::HashMap;

use crate::chaos::history::{Input, Nanos, Operation, Output, Value};

/// A key's position among the keys of its group.
pub(super) type KeyId = usize;

/// An interned value; [`ABSENT`] stands for a key that has none.
pub(super) type ValueId = u32;

/// The interned absence of a value.
pub(super) const ABSENT: ValueId = 0;

/// The state of a group: each key's value, indexed by [`KeyId`].
pub(super) type State = Vec<ValueId>;

/// What an operation does to the state and what it must have observed.
#[derive(Debug)]
pub(super) enum Effect {
    /// A `Get` or `ReadAll`: each key must hold the value seen.
    Read { seen: Vec<(KeyId, ValueId)> },
    /// A `Put`, `Delete` or `WriteAll`: each key takes the value.
    Write { pairs: Vec<(KeyId, ValueId)> },
    /// A `Cas`; `swapped` is `None` when the answer is unknown, and then
    /// the step is whatever the comparison decides.
    Cas {
        key: KeyId,
        expect: ValueId,
        value: ValueId,
        swapped: Option<bool>,
    },
    /// The output cannot answer the input (a `Get` answered `Written`, a
    /// `ReadAll` with a different number of values): no step fits it.
    Mismatch,
}

impl Effect {
    /// The keys it reads or writes.
    pub fn keys(&self) -> Vec<KeyId> {
        match self {
            Effect::Read { seen: pairs } | Effect::Write { pairs } => {
                pairs.iter().map(|&(key, _)| key).collect()
            }
            Effect::Cas { key, .. } => vec![*key],
            Effect::Mismatch => Vec::new(),
        }
    }

    /// Whether it and `other` touch a key in common.
    pub fn shares_a_key(&self, other: &Effect) -> bool {
        let keys = other.keys();
        self.keys().iter().any(|key| keys.contains(key))
    }

    /// Whether a step that fits always leaves the state as it was (a read,
    /// a compare-and-set answered as not swapped). Such an operation is
    /// best placed as early as it fits: moving it earlier in any valid order
    /// keeps the order valid, so the search need not try it later.
    pub fn never_changes_state(&self) -> bool {
        matches!(
            self,
            Effect::Read { .. }
                | Effect::Cas {
                    swapped: Some(false),
                    ..
                }
        )
    }
}

/// One operation of a group, in compiled form.
#[derive(Debug)]
pub(super) struct ModelOp {
    /// Its position in the whole history, to name it in an explanation.
    pub history_index: usize,
    /// When it was called.
    pub call: Nanos,
    /// When it returned, never before its call; `None` for an operation
    /// without an answer, which may take effect at any later time or never.
    pub ret: Option<Nanos>,
    /// What it does and observes.
    pub effect: Effect,
    /// Whether the search places it only while an answered candidate on
    /// its key is refused: an unanswered write that [`super::unanswered`]
    /// found may wait until one needs it.
    pub lazy: bool,
}

/// A group's operations and the names behind their interned keys and values.
#[derive(Debug, Default)]
pub(super) struct GroupModel {
    /// The group's keys, by [`KeyId`].
    pub keys: Vec<String>,
    /// How each value reads in an explanation, by [`ValueId`].
    pub value_names: Vec<String>,
    /// The operations that constrain the search. Reads without an answer
    /// are left out (they neither change nor observe anything), and so are
    /// the writes without one that [`super::unanswered`] finds unobserved.
    pub ops: Vec<ModelOp>,
    /// Each value as the memo records it: the values no operation reads
    /// or expects are one value there, so states that differ only in them
    /// are one configuration.
    pub memo_ids: Vec<ValueId>,
    key_ids: HashMap<String, KeyId>,
    value_ids: HashMap<Value, ValueId>,
}

impl GroupModel {
    /// Compiles the operations at `indexes` of `history`, which all touch
    /// keys of one group.
    pub fn compile(history: &[Operation], indexes: &[usize]) -> GroupModel {
        let mut model = GroupModel {
            value_names: vec!["absent".to_owned()],
            ..GroupModel::default()
        };
        for &index in indexes {
            let op = &history[index];
            let answered = op.ret.is_some() && op.output != Output::Unknown;
            let reads_only = matches!(op.input, Input::Get { .. } | Input::ReadAll { .. });
            if !answered && reads_only {
                continue;
            }
            let effect = model.effect(&op.input, answered.then_some(&op.output));
            model.ops.push(ModelOp {
                history_index: index,
                call: op.call,
                ret: op.ret.filter(|_| answered).map(|ret| ret.max(op.call)),
                effect,
                lazy: false,
            });
        }
        super::unanswered::simplify(&mut model.ops);
        model.merge_unread_values();
        model
    }

    /// The initial state: every key absent.
    pub fn initial_state(&self) -> State {
        vec![ABSENT; self.keys.len()]
    }

    /// Applies `effect` to `state` if it fits it; returns whether it did.
    /// On `false`, `state` is unchanged.
    pub fn step(&self, state: &mut State, effect: &Effect) -> bool {
        match effect {
            Effect::Read { seen } => seen.iter().all(|&(key, value)| state[key] == value),
            Effect::Write { pairs } => {
                for &(key, value) in pairs {
                    state[key] = value;
                }
                true
            }
            Effect::Cas {
                key,
                expect,
                value,
                swapped,
            } => {
                let matches = state[*key] == *expect;
                if swapped.is_some_and(|swapped| swapped != matches) {
                    return false;
                }
                if matches {
                    state[*key] = *value;
                }
                true
            }
            Effect::Mismatch => false,
        }
    }

    /// Interns a new value under `name`.
    fn name_value(&mut self, name: String) -> ValueId {
        let id = ValueId::try_from(self.value_names.len())
            .expect("a group has fewer than 2^32 distinct values: each is a written or read value");
        self.value_names.push(name);
        id
    }

    /// Fills [`GroupModel::memo_ids`]: a value that no operation reads or
    /// expects, on any key, cannot be told apart from another such value.
    fn merge_unread_values(&mut self) {
        let mut read = vec![false; self.value_names.len()];
        read[ABSENT as usize] = true;
        for op in &self.ops {
            match &op.effect {
                Effect::Read { seen } => {
                    for &(_, value) in seen {
                        read[value as usize] = true;
                    }
                }
                Effect::Cas { expect, .. } => read[*expect as usize] = true,
                Effect::Write { .. } | Effect::Mismatch => {}
            }
        }
        let unread = self.name_value("(a value no one read)".to_owned());
        self.memo_ids = (0..unread)
            .map(|value| if read[value as usize] { value } else { unread })
            .collect();
    }

    /// A readable rendering of `state`, keys in order, e.g.
    /// `{a: "v1", b: absent}`.
    pub fn describe_state(&self, state: &[ValueId]) -> String {
        let mut pairs: Vec<String> = self
            .keys
            .iter()
            .zip(state)
            .map(|(key, &value)| format!("{key}: {}", self.value_names[value as usize]))
            .collect();
        pairs.sort_unstable();
        format!("{{{}}}", pairs.join(", "))
    }

    /// Compiles one operation; `output` is `None` when it has no answer
    /// (never for a read: those are left out).
    fn effect(&mut self, input: &Input, output: Option<&Output>) -> Effect {
        match (input, output) {
            (Input::Get { key }, Some(Output::Got(value))) => Effect::Read {
                seen: vec![(self.key(key), self.value(value.as_ref()))],
            },
            (Input::ReadAll { keys }, Some(Output::GotAll(values)))
                if values.len() == keys.len() =>
            {
                let seen = keys
                    .iter()
                    .zip(values)
                    .map(|(key, value)| (self.key(key), self.value(value.as_ref())))
                    .collect();
                Effect::Read { seen }
            }
            (Input::Put { key, value }, None | Some(Output::Written)) => Effect::Write {
                pairs: vec![(self.key(key), self.value(Some(value)))],
            },
            (Input::Delete { key }, None | Some(Output::Written)) => Effect::Write {
                pairs: vec![(self.key(key), ABSENT)],
            },
            (Input::WriteAll { pairs }, None | Some(Output::Written)) => Effect::Write {
                pairs: pairs
                    .iter()
                    .map(|(key, value)| (self.key(key), self.value(Some(value))))
                    .collect(),
            },
            (Input::Cas { key, expect, value }, None | Some(Output::Swapped(_))) => Effect::Cas {
                key: self.key(key),
                expect: self.value(expect.as_ref()),
                value: self.value(Some(value)),
                swapped: match output {
                    Some(Output::Swapped(swapped)) => Some(*swapped),
                    _ => None,
                },
            },
            _ => Effect::Mismatch,
        }
    }

    /// The id of `key`, interning it (absent at the start) if new.
    fn key(&mut self, key: &str) -> KeyId {
        if let Some(&id) = self.key_ids.get(key) {
            return id;
        }
        let id = self.keys.len();
        self.keys.push(key.to_owned());
        self.key_ids.insert(key.to_owned(), id);
        id
    }

    /// The id of `value`, interning it if new; absence is [`ABSENT`].
    fn value(&mut self, value: Option<&Value>) -> ValueId {
        let Some(value) = value else {
            return ABSENT;
        };
        if let Some(&id) = self.value_ids.get(value) {
            return id;
        }
        let id = self.name_value(format!("{value:?}"));
        self.value_ids.insert(value.clone(), id);
        id
    }
}
