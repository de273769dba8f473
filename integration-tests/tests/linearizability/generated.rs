//! Histories linearizable by construction: a sequential key-value model
//! runs the operations one at a time, at increasing linearization points,
//! and each operation gets a random window around its point, with every
//! client making one operation at a time. Some operations get no answer;
//! half of those take effect at their point, half never.
//!
//! [`impossible_read`] then turns one read into an anomaly that no
//! linearization can explain.

use std::collections::HashMap;

use integration_tests::chaos::history::{Input, Nanos, Operation, Output, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The size and concurrency of a generated history.
#[derive(Debug, Clone)]
pub struct Shape {
    /// How many operations.
    pub ops: usize,
    /// How many groups of keys (`g0/`, `g1/`, ...).
    pub groups: usize,
    /// How many keys each group has.
    pub keys_per_group: usize,
    /// How many clients.
    pub clients: usize,
    /// The most a window reaches before or after its linearization point.
    pub max_window: Nanos,
    /// The percentage of operations that get no answer.
    pub unanswered_percent: u32,
}

/// The group of a generated key: the part before the `/`.
pub fn group_of(key: &str) -> String {
    key.split('/').next().unwrap_or(key).to_owned()
}

/// Generates a linearizable history of `shape` from `seed`, in call order.
pub fn history(shape: &Shape, seed: u64) -> Vec<Operation> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut state: HashMap<String, Value> = HashMap::new();
    let mut busy_until: Vec<Nanos> = vec![0; shape.clients];
    let mut history = Vec::with_capacity(shape.ops);
    let mut point: Nanos = 1;
    for index in 0..shape.ops {
        if busy_until.iter().all(|&busy| busy >= point) {
            point = busy_until.iter().min().expect("at least one client") + 1;
        }
        let free: Vec<usize> = (0..shape.clients)
            .filter(|&c| busy_until[c] < point)
            .collect();
        let client = free[rng.random_range(0..free.len())];
        let earliest = (busy_until[client] + 1).max(point.saturating_sub(shape.max_window));
        let call = rng.random_range(earliest..=point);
        let ret = point + rng.random_range(0..=shape.max_window);
        busy_until[client] = ret;

        let group = rng.random_range(0..shape.groups);
        let keys: Vec<String> = (0..shape.keys_per_group)
            .map(|k| format!("g{group}/k{k}"))
            .collect();
        let key = keys[rng.random_range(0..keys.len())].clone();
        let input = random_input(&mut rng, &state, keys, key, format!("v{index}"));
        let answered = rng.random_range(0..100) >= shape.unanswered_percent;
        let takes_effect = answered || rng.random_bool(0.5);
        let output = if takes_effect {
            apply(&mut state, &input)
        } else {
            Output::Unknown
        };
        let (ret, output) = if answered {
            (Some(ret), output)
        } else {
            (None, Output::Unknown)
        };
        history.push(Operation {
            client,
            call,
            ret,
            input,
            output,
        });
        point += rng.random_range(1..=10);
    }
    history.sort_by_key(|op| op.call);
    history
}

/// A random operation on `key` (or all `keys`) writing `value`.
fn random_input(
    rng: &mut StdRng,
    state: &HashMap<String, Value>,
    keys: Vec<String>,
    key: String,
    value: Value,
) -> Input {
    match rng.random_range(0..100) {
        0..35 => Input::Get { key },
        35..55 => Input::Put { key, value },
        55..60 => Input::Delete { key },
        60..75 => {
            let expect = if rng.random_bool(0.6) {
                state.get(&key).cloned()
            } else {
                let other = &keys[rng.random_range(0..keys.len())];
                state.get(other).cloned()
            };
            Input::Cas { key, expect, value }
        }
        75..90 => Input::ReadAll { keys },
        _ => Input::WriteAll {
            pairs: keys
                .into_iter()
                .enumerate()
                .map(|(i, key)| (key, format!("{value}.{i}")))
                .collect(),
        },
    }
}

/// Runs `input` on the sequential model and returns its answer.
fn apply(state: &mut HashMap<String, Value>, input: &Input) -> Output {
    match input {
        Input::Get { key } => Output::Got(state.get(key).cloned()),
        Input::Put { key, value } => {
            state.insert(key.clone(), value.clone());
            Output::Written
        }
        Input::Delete { key } => {
            state.remove(key);
            Output::Written
        }
        Input::Cas { key, expect, value } => {
            let swapped = state.get(key) == expect.as_ref();
            if swapped {
                state.insert(key.clone(), value.clone());
            }
            Output::Swapped(swapped)
        }
        Input::ReadAll { keys } => {
            Output::GotAll(keys.iter().map(|key| state.get(key).cloned()).collect())
        }
        Input::WriteAll { pairs } => {
            for (key, value) in pairs {
                state.insert(key.clone(), value.clone());
            }
            Output::Written
        }
    }
}

/// Changes one answered read of `history` to a value it cannot have seen
/// under any linearization: one never written; one first written by an
/// operation called after the read returned; or one whose only writer
/// returned before a later definite write of the key, itself returned
/// before the read's call. Returns the read's position, or `None` when
/// the history has no answered read.
pub fn impossible_read(history: &mut [Operation], seed: u64) -> Option<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let reads: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].output, Output::Got(_) | Output::GotAll(_)))
        .collect();
    if reads.is_empty() {
        return None;
    }
    let read = reads[rng.random_range(0..reads.len())];
    let keys: Vec<String> = history[read]
        .input
        .keys()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let slot = rng.random_range(0..keys.len());
    let key = &keys[slot];
    let (call, ret) = (
        history[read].call,
        history[read].ret.expect("an answered read returned"),
    );

    let mut candidates = vec![format!("never-written-{read}")];
    // Values first written after the read returned.
    for op in history.iter().filter(|op| op.call > ret) {
        candidates.extend(written_value(op, key));
    }
    // Values definitely overwritten before the read was called.
    for first in history.iter().filter(|op| definitely_writes(op, key)) {
        let (Some(value), Some(first_ret)) = (written_value(first, key), first.ret) else {
            continue;
        };
        let overwritten = history.iter().any(|later| {
            definitely_writes(later, key)
                && later.call > first_ret
                && later.ret.is_some_and(|r| r < call)
        });
        if overwritten {
            candidates.push(value);
        }
    }
    let value = candidates.swap_remove(rng.random_range(0..candidates.len()));
    match &mut history[read].output {
        Output::Got(seen) => *seen = Some(value),
        Output::GotAll(seen) => seen[slot] = Some(value),
        _ => unreachable!("only reads were picked"),
    }
    Some(read)
}

/// The value `op` writes (or may write) to `key`, if any.
fn written_value(op: &Operation, key: &str) -> Option<Value> {
    match &op.input {
        Input::Put { key: k, value } | Input::Cas { key: k, value, .. } if k == key => {
            Some(value.clone())
        }
        Input::WriteAll { pairs } => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        _ => None,
    }
}

/// Whether `op` was answered and certainly wrote `key`.
fn definitely_writes(op: &Operation, key: &str) -> bool {
    op.ret.is_some()
        && match (&op.input, &op.output) {
            (Input::Put { key: k, .. } | Input::Delete { key: k }, Output::Written) => k == key,
            (Input::Cas { key: k, .. }, Output::Swapped(true)) => k == key,
            (Input::WriteAll { pairs }, Output::Written) => pairs.iter().any(|(k, _)| k == key),
            _ => false,
        }
}
