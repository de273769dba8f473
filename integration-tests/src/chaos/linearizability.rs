//! The linearizability checker: does some sequential order of a history's
//! operations, each placed between its call and its return, explain every
//! answer the clients got?
//!
//! Linearizability is compositional, so each group of keys is checked on
//! its own ([`check`] splits the history, then checks the groups on a few
//! threads). Within a group, `search` runs the Wing–Gong–Lowe search with
//! Lowe's memo, against the key-value `model`. An operation without an
//! answer may take effect at any time after its call, or never, and its
//! output constrains nothing.
//!
//! Beyond the textbook search, exact shortcuts keep a run's history to
//! seconds: reads are placed as soon as they fit and never retried later;
//! unanswered writes that nothing could have seen are dropped, those whose
//! value was seen get a return, and those of one key wait until an
//! operation on it needs them (`unanswered`); and the memo counts values
//! that nothing reads as one.
//!
//! ```
//! use integration_tests::chaos::history::{Input, Operation, Output};
//! use integration_tests::chaos::linearizability::{check, Verdict};
//! use std::time::Duration;
//!
//! let put = Operation {
//!     client: 0,
//!     call: 0,
//!     ret: Some(10),
//!     input: Input::Put { key: "a".into(), value: "v1".into() },
//!     output: Output::Written,
//! };
//! let get = Operation {
//!     client: 1,
//!     call: 20,
//!     ret: Some(30),
//!     input: Input::Get { key: "a".into() },
//!     output: Output::Got(None),
//! };
//! let verdict = check(&[put, get], |key| key.to_owned(), Duration::from_secs(1));
//! assert!(matches!(verdict, Verdict::NotLinearizable { .. }));
//! ```

mod model;
mod search;
mod unanswered;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::chaos::history::Operation;
use model::GroupModel;
use search::{Budget, Deadlock, Outcome};

/// The verdict on one history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every group has a linearization.
    Linearizable,
    /// A group has none: which group, and a readable explanation (the
    /// operations involved, the longest prefix that could be linearized,
    /// and the operation that could not be placed).
    NotLinearizable { group: String, explanation: String },
    /// The search for a group ran past `limit` without an answer.
    Unknown { group: String },
}

/// How many operations of a long prefix an explanation lists.
const PREFIX_SHOWN: usize = 20;

/// Checks `history`, each group (keys mapped to their group by `group_of`;
/// every operation's keys are in one group) on its own, within `limit`
/// per group.
///
/// Should an operation touch keys of several groups, those groups are
/// checked as one (named by their names joined with `+`), which is still
/// exact. Once a group is found without a linearization, the checks still
/// running or not started stop: the verdict names the first by name of the
/// groups found so (a run with many anomalies needs one, not all).
/// Otherwise it names the first by name that ran out of time.
pub fn check(history: &[Operation], group_of: impl Fn(&str) -> String, limit: Duration) -> Verdict {
    let groups = partition(history, group_of);
    let next_group = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(groups.len());
    let mut verdicts: Vec<(String, Verdict)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut failed = Vec::new();
                    while let Some((name, indexes)) =
                        groups.get(next_group.fetch_add(1, Ordering::Relaxed))
                    {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let budget = Budget {
                            deadline: Instant::now() + limit,
                            stop: &stop,
                        };
                        let verdict = check_group(history, name, indexes, &budget);
                        if matches!(verdict, Verdict::NotLinearizable { .. }) {
                            stop.store(true, Ordering::Relaxed);
                        }
                        if verdict != Verdict::Linearizable {
                            failed.push((name.clone(), verdict));
                        }
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    verdicts.sort_by(|(a, a_verdict), (b, b_verdict)| {
        let unknown = |verdict: &Verdict| matches!(verdict, Verdict::Unknown { .. });
        (unknown(a_verdict), a).cmp(&(unknown(b_verdict), b))
    });
    verdicts
        .into_iter()
        .next()
        .map_or(Verdict::Linearizable, |(_, verdict)| verdict)
}

/// Splits the history into groups, each a name and its operations'
/// positions, sorted by name. Operations without keys are left out: they
/// touch nothing.
fn partition(
    history: &[Operation],
    group_of: impl Fn(&str) -> String,
) -> Vec<(String, Vec<usize>)> {
    let mut names: Vec<String> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut sets = DisjointSets::default();
    let mut first_group: Vec<Option<usize>> = Vec::with_capacity(history.len());
    for op in history {
        let mut first = None;
        for key in op.input.keys() {
            let name = group_of(key);
            let id = *ids.entry(name.clone()).or_insert_with(|| {
                names.push(name);
                sets.add()
            });
            match first {
                None => first = Some(id),
                Some(first) => sets.union(first, id),
            }
        }
        first_group.push(first);
    }
    let mut members: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (id, name) in names.iter().enumerate() {
        members.entry(sets.find(id)).or_default().push(name);
    }
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut name_of_root: HashMap<usize, String> = HashMap::new();
    for (root, mut member_names) in members {
        member_names.sort_unstable();
        name_of_root.insert(root, member_names.join("+"));
    }
    for (index, group) in first_group.into_iter().enumerate() {
        if let Some(group) = group {
            let name = &name_of_root[&sets.find(group)];
            groups.entry(name.clone()).or_default().push(index);
        }
    }
    groups.into_iter().collect()
}

/// Checks one group's operations, at `indexes` of `history`.
fn check_group(history: &[Operation], name: &str, indexes: &[usize], budget: &Budget) -> Verdict {
    let model = GroupModel::compile(history, indexes);
    match search::search(&model, budget) {
        Outcome::Linearizable => Verdict::Linearizable,
        Outcome::TimedOut => Verdict::Unknown {
            group: name.to_owned(),
        },
        Outcome::NotLinearizable(deadlock) => Verdict::NotLinearizable {
            group: name.to_owned(),
            explanation: explain(history, name, indexes.len(), &model, &deadlock),
        },
    }
}

/// Says where the deepest attempt to linearize a group got stuck: the
/// prefix it placed, the state after it, the operation that returned
/// unplaced, and the operations that were candidates then.
fn explain(
    history: &[Operation],
    name: &str,
    operations: usize,
    model: &GroupModel,
    deadlock: &Deadlock,
) -> String {
    let describe = |position: usize| describe_op(history, model.ops[position].history_index);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "group {name:?}: no order of its {operations} operations explains every answer."
    );
    let prefix = &deadlock.prefix;
    let _ = writeln!(
        text,
        "The longest prefix that could be linearized has {} operations:",
        prefix.len()
    );
    if prefix.len() > PREFIX_SHOWN {
        let _ = writeln!(text, "  ... {} earlier", prefix.len() - PREFIX_SHOWN);
    }
    for &position in &prefix[prefix.len().saturating_sub(PREFIX_SHOWN)..] {
        let _ = writeln!(text, "  {}", describe(position));
    }
    let _ = writeln!(
        text,
        "leaving the state {}.",
        model.describe_state(&deadlock.state)
    );
    let blocked = &model.ops[deadlock.blocked];
    let _ = writeln!(
        text,
        "This operation returned before it could be placed after that prefix:"
    );
    let _ = writeln!(text, "  {}", describe(deadlock.blocked));
    let blocked_ret = blocked.ret.unwrap_or(u64::MAX);
    let mut placed = vec![false; model.ops.len()];
    for &position in prefix {
        placed[position] = true;
    }
    let pending: Vec<usize> = (0..model.ops.len())
        .filter(|&position| !placed[position] && position != deadlock.blocked)
        .filter(|&position| model.ops[position].call <= blocked_ret)
        .collect();
    if !pending.is_empty() {
        let _ = writeln!(text, "Called by then but not in the prefix:");
        for position in pending {
            let _ = writeln!(text, "  {}", describe(position));
        }
    }
    text
}

/// One operation on one line: its position, client, window, input and
/// output.
fn describe_op(history: &[Operation], index: usize) -> String {
    let op = &history[index];
    let ret = op.ret.map_or("none".to_owned(), |ret| ret.to_string());
    format!(
        "#{index} client {} call {} ret {ret}: {:?} -> {:?}",
        op.client, op.call, op.input, op.output
    )
}

/// Union-find over group ids, to merge groups that one operation spans.
#[derive(Debug, Default)]
struct DisjointSets {
    parent: Vec<usize>,
}

impl DisjointSets {
    /// Adds a set of its own and returns its id.
    fn add(&mut self) -> usize {
        self.parent.push(self.parent.len());
        self.parent.len() - 1
    }

    /// The representative of `id`'s set.
    fn find(&mut self, mut id: usize) -> usize {
        while self.parent[id] != id {
            self.parent[id] = self.parent[self.parent[id]];
            id = self.parent[id];
        }
        id
    }

    /// Merges the sets of `a` and `b`.
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        self.parent[a] = b;
    }
}
