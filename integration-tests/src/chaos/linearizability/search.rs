//! The Wing–Gong–Lowe search for one group: walk the call and return
//! entries in time order; at a call, try to linearize that operation next
//! (the model must accept it) and start again from the first entry; at a
//! return whose operation is not linearized yet, undo the last choice and
//! try the next candidate. Lowe's memo of (set of linearized operations,
//! state) prunes a choice that leads to a configuration already explored:
//! everything from there was already tried.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::model::{GroupModel, State};

/// What the search found for one group.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Every operation has a place in one sequential order.
    Linearizable,
    /// No order fits.
    NotLinearizable(Deadlock),
    /// The budget ran out first.
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

/// How long a search may run.
pub(super) struct Budget<'a> {
    /// When to give up.
    pub deadline: Instant,
    /// Set when another group's verdict makes this one moot.
    pub stop: &'a AtomicBool,
}

impl Budget<'_> {
    /// Whether the search must end now.
    fn spent(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

/// The sentinel before the first entry.
const HEAD: usize = 0;
/// The link past the last entry.
const END: usize = usize::MAX;
/// How many steps pass between two looks at the budget.
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

/// Searches for a linearization of `model`'s operations within `budget`.
///
/// Each configuration is scanned twice: first for operations that never
/// change the state (placing one that fits is at least as good as any
/// other choice), then for the others, each a choice to undo on failure.
pub(super) fn search(model: &GroupModel, budget: &Budget) -> Outcome {
    let mut search = Search::new(model);
    let mut cursor = search.entries.next[HEAD];
    let mut scanning_readers = true;
    let mut steps = 0u32;
    loop {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(STEPS_PER_CLOCK_CHECK) && budget.spent() {
            return Outcome::TimedOut;
        }
        if cursor == END {
            return Outcome::Linearizable;
        }
        let op = op_of(cursor);
        if is_call(cursor) {
            if model.ops[op].effect.never_changes_state() != scanning_readers {
                cursor = search.entries.next[cursor];
                continue;
            }
            match search.place(cursor) {
                Placement::Placed => {
                    cursor = search.entries.next[HEAD];
                    scanning_readers = true;
                }
                Placement::Refused => cursor = search.entries.next[cursor],
                Placement::Explored if scanning_readers => {
                    // Placing this reader here was tried before and failed,
                    // and no other choice does better.
                    match search.backtrack() {
                        Some(next) => (cursor, scanning_readers) = (next, false),
                        None => return search.fail(op),
                    }
                }
                Placement::Explored => cursor = search.entries.next[cursor],
            }
            continue;
        }
        // A return: its operation had to be placed by now. The returns of
        // operations without an answer come after every other entry, so
        // reaching one means every answered operation is placed; the rest
        // may take effect at the end, or never, unobserved.
        if model.ops[op].ret.is_none() {
            return Outcome::Linearizable;
        }
        if scanning_readers {
            (cursor, scanning_readers) = (search.entries.next[HEAD], false);
            continue;
        }
        search.note_deadlock(op);
        match search.backtrack() {
            Some(next) => cursor = next,
            None => return search.fail(op),
        }
    }
}

/// What came of trying to place an operation next.
enum Placement {
    /// It fit and led somewhere new: it is now the last choice.
    Placed,
    /// The model refused it in this state.
    Refused,
    /// It fit, but into a configuration explored before.
    Explored,
}

/// The search's working state.
struct Search<'a> {
    model: &'a GroupModel,
    entries: Entries,
    /// The operations placed so far, one bit each.
    linearized: Vec<u64>,
    /// Every configuration reached: the linearized set's words, then the
    /// state's values.
    memo: HashSet<Box<[u64]>>,
    /// A buffer to build a memo key in without allocating.
    memo_key: Vec<u64>,
    /// The choices made, each a call node and the state before it.
    choices: Vec<(usize, State)>,
    /// The deepest point where a return came before its operation was placed.
    deepest: Option<Deadlock>,
    /// The state after the choices made.
    state: State,
}

impl<'a> Search<'a> {
    fn new(model: &'a GroupModel) -> Search<'a> {
        let words = model.ops.len().div_ceil(64);
        Search {
            model,
            entries: Entries::new(model),
            linearized: vec![0; words],
            memo: HashSet::new(),
            memo_key: Vec::with_capacity(words + model.keys.len()),
            choices: Vec::new(),
            deepest: None,
            state: model.initial_state(),
        }
    }

    /// Tries to place the operation of `call` next.
    fn place(&mut self, call: usize) -> Placement {
        let op = op_of(call);
        let mut next_state = self.state.clone();
        if !self.model.step(&mut next_state, &self.model.ops[op].effect) {
            return Placement::Refused;
        }
        if self.model.ops[op].lazy && !self.may_let_another_fit(call) {
            return Placement::Refused;
        }
        self.flip(op);
        self.memo_key.clear();
        self.memo_key.extend_from_slice(&self.linearized);
        let memo_ids = &self.model.memo_ids;
        self.memo_key.extend(
            next_state
                .iter()
                .map(|&value| u64::from(memo_ids[value as usize])),
        );
        if self.memo.contains(self.memo_key.as_slice()) {
            self.flip(op);
            return Placement::Explored;
        }
        self.memo.insert(self.memo_key.as_slice().into());
        self.choices
            .push((call, std::mem::replace(&mut self.state, next_state)));
        self.entries.lift(call);
        Placement::Placed
    }

    /// Whether some other answered candidate on the key that the operation
    /// of `call` writes is refused by the current state (so that it, with
    /// perhaps other writes, may let it fit).
    fn may_let_another_fit(&self, call: usize) -> bool {
        let effect = &self.model.ops[op_of(call)].effect;
        let mut node = self.entries.next[HEAD];
        while node != END && is_call(node) {
            let other = &self.model.ops[op_of(node)];
            if node != call
                && other.ret.is_some()
                && other.effect.shares_a_key(effect)
                && !self.model.step(&mut self.state.clone(), &other.effect)
            {
                return true;
            }
            node = self.entries.next[node];
        }
        false
    }

    /// Undoes choices up to the last one that changed the state, and
    /// returns the entry after it, where the scan for other state-changing
    /// choices goes on; `None` when no choice is left.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let (call, previous) = self.choices.pop()?;
            let op = op_of(call);
            self.flip(op);
            self.state = previous;
            self.entries.unlift(call);
            // An operation that never changes the state was placed as early
            // as it fit, which no other order beats: its alternatives would
            // fail too.
            if !self.model.ops[op].effect.never_changes_state() {
                return Some(self.entries.next[call]);
            }
        }
    }

    /// Remembers the current prefix if it is the longest that got stuck,
    /// with the operation `blocked` whose return came first.
    fn note_deadlock(&mut self, blocked: usize) {
        let deeper = self
            .deepest
            .as_ref()
            .is_none_or(|deadlock| self.choices.len() > deadlock.prefix.len());
        if deeper {
            self.deepest = Some(Deadlock {
                prefix: self.choices.iter().map(|&(call, _)| op_of(call)).collect(),
                state: self.state.clone(),
                blocked,
            });
        }
    }

    /// The verdict when no choice is left; `op` is the operation at hand,
    /// blamed if no deadlock was noted yet.
    fn fail(mut self, op: usize) -> Outcome {
        if self.deepest.is_none() {
            self.note_deadlock(op);
        }
        Outcome::NotLinearizable(self.deepest.expect("noted just above"))
    }

    /// Marks `op` placed, or no longer placed.
    fn flip(&mut self, op: usize) {
        self.linearized[op / 64] ^= 1 << (op % 64);
    }
}
