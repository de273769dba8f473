//! The Wing–Gong–Lowe search for one group: walk the call and return
//! entries in time order; at a call, try to linearize that operation next
//! (the model must accept it) and start again from the first entry; at a
//! return whose operation is not linearized yet, undo the last choice and
//! try the next candidate. Lowe's memo of (set of linearized operations,
//! state) prunes a choice that leads to a configuration already explored:
//! everything from there was already tried.

use std::collections::HashSet;
use std::time::Instant;

use super::model::{GroupModel, State};

/// What the search found for one group.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Every operation has a place in one sequential order.
    Linearizable,
    /// No order fits.
    NotLinearizable(Deadlock),
    /// The deadline passed first.
    TimedOut,
}

/// Where the deepest attempt got stuck.
#[derive(Debug)]
pub(super) struct Deadlock {
    /// The longest prefix linearized, as positions in the group's operations.
    pub prefix: Vec<usize>,
    /// The state after that prefix.
    pub state: State,
    /// The operation that returned before it, or any other, could be
    /// placed after the prefix.
    pub blocked: usize,
}

/// The sentinel before the first entry.
const HEAD: usize = 0;
/// The link past the last entry.
const END: usize = usize::MAX;
/// How many steps pass between two looks at the clock.
const STEPS_PER_CLOCK_CHECK: u32 = 1024;

/// The entries as a doubly linked list in time order. Node `1 + 2i` is
/// operation i's call, node `2 + 2i` its return. Linearizing an operation
/// unlinks both of its nodes; each keeps its own links while out, so
/// undoing the choices in reverse order puts it back exactly where it was.
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Entries {
    /// Links the entries of `model`'s operations in time order. At equal
    /// times calls come first, so touching operations count as concurrent
    /// (the lenient reading of a clock tie), and the returns of operations
    /// without an answer come last of all.
    fn new(model: &GroupModel) -> Entries {
        let count = 1 + 2 * model.ops.len();
        let mut nodes: Vec<usize> = (1..count).collect();
        nodes.sort_by_key(|&node| {
            let op = &model.ops[op_of(node)];
            match (is_call(node), op.ret) {
                (true, _) => (op.call, 0),
                (false, Some(ret)) => (ret, 1),
                (false, None) => (u64::MAX, 2),
            }
        });
        let mut entries = Entries {
            next: vec![END; count],
            prev: vec![HEAD; count],
        };
        let mut last = HEAD;
        for node in nodes {
            entries.next[last] = node;
            entries.prev[node] = last;
            last = node;
        }
        entries
    }

    /// Unlinks an operation's call and return.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(call + 1);
    }

    /// Links back the operation lifted last.
    fn unlift(&mut self, call: usize) {
        self.relink(call + 1);
        self.relink(call);
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != END {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != END {
            self.prev[next] = node;
        }
    }
}

/// The operation of an entry node.
fn op_of(node: usize) -> usize {
    (node - 1) / 2
}

/// Whether an entry node is a call (else a return).
fn is_call(node: usize) -> bool {
    node % 2 == 1
}

/// Searches for a linearization of `model`'s operations until `deadline`.
pub(super) fn search(model: &GroupModel, deadline: Instant) -> Outcome {
    let mut entries = Entries::new(model);
    let words = model.ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    // The memo's key: the linearized set's words, then the state's values.
    let mut memo: HashSet<Box<[u64]>> = HashSet::new();
    let mut memo_key: Vec<u64> = Vec::with_capacity(words + model.keys.len());
    // The choices made, each with the state before it, to undo them.
    let mut choices: Vec<(usize, State)> = Vec::new();
    let mut deepest: Option<Deadlock> = None;
    let mut state = model.initial_state();
    let mut cursor = entries.next[HEAD];
    let mut steps = 0u32;
    loop {
        steps = steps.wrapping_add(1);
        if steps % STEPS_PER_CLOCK_CHECK == 0 && Instant::now() >= deadline {
            return Outcome::TimedOut;
        }
        if cursor == END {
            return Outcome::Linearizable;
        }
        let op = op_of(cursor);
        if is_call(cursor) {
            let mut next_state = state.clone();
            if model.step(&mut next_state, &model.ops[op].effect) {
                linearized[op / 64] |= 1 << (op % 64);
                memo_key.clear();
                memo_key.extend_from_slice(&linearized);
                memo_key.extend(next_state.iter().map(|&value| u64::from(value)));
                if !memo.contains(memo_key.as_slice()) {
                    memo.insert(memo_key.as_slice().into());
                    choices.push((cursor, std::mem::replace(&mut state, next_state)));
                    entries.lift(cursor);
                    cursor = entries.next[HEAD];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            cursor = entries.next[cursor];
            continue;
        }
        // A return: its operation had to be placed by now. The returns of
        // operations without an answer come after every other entry, so
        // reaching one means every answered operation is placed; the rest
        // may take effect at the end, or never, unobserved.
        if model.ops[op].ret.is_none() {
            return Outcome::Linearizable;
        }
        if deepest
            .as_ref()
            .is_none_or(|deadlock| choices.len() > deadlock.prefix.len())
        {
            deepest = Some(Deadlock {
                prefix: choices.iter().map(|&(call, _)| op_of(call)).collect(),
                state: state.clone(),
                blocked: op,
            });
        }
        let Some((call, previous)) = choices.pop() else {
            let deadlock = deepest.expect("set just above when a return is reached");
            return Outcome::NotLinearizable(deadlock);
        };
        let undone = op_of(call);
        linearized[undone / 64] &= !(1 << (undone % 64));
        state = previous;
        entries.unlift(call);
        cursor = entries.next[call];
    }
}
