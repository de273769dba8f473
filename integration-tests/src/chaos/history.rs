//! A history: the operations concurrent clients made against the cluster,
//! each with when it was called, when (and whether) it returned, and what
//! it answered. The chaos runner records it; the linearizability checker
//! reads it.
//!
//! Keys are grouped: every operation touches the keys of one group only
//! (a single key, or several keys of a group at once in a transaction), so
//! the checker can check each group on its own.

use serde::{Deserialize, Serialize};

/// Nanoseconds since the start of the history, on one monotonic clock.
pub type Nanos = u64;

/// A value a client wrote: unique within a history, so a read names the
/// write it saw.
pub type Value = String;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A linearizable read of one key.
    Get { key: String },
    /// An unconditional put of one key.
    Put { key: String, value: Value },
    /// A delete of one key.
    Delete { key: String },
    /// A compare-and-set on the value (a transaction comparing the value,
    /// or absence when `expect` is `None`, then putting `value`).
    Cas {
        key: String,
        expect: Option<Value>,
        value: Value,
    },
    /// One transaction that reads every key of a group.
    ReadAll { keys: Vec<String> },
    /// One transaction that puts every key of a group.
    WriteAll { pairs: Vec<(String, Value)> },
}

/// What the cluster answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// The value a `Get` read, `None` for an absent key.
    Got(Option<Value>),
    /// A `Put`, `Delete` or `WriteAll` was acknowledged.
    Written,
    /// Whether a `Cas` took effect.
    Swapped(bool),
    /// The values a `ReadAll` read, in the order of its keys.
    GotAll(Vec<Option<Value>>),
    /// No answer (timeout, cut connection, 5xx): the operation may or may
    /// not have taken effect, at any time after its call.
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The client that made it; a client has one operation at a time.
    pub client: usize,
    /// When it was called.
    pub call: Nanos,
    /// When it returned; `None` when the answer is [`Output::Unknown`]
    /// (it may take effect at any later time).
    pub ret: Option<Nanos>,
    /// What was asked.
    pub input: Input,
    /// What was answered.
    pub output: Output,
}

impl Input {
    /// The keys this operation touches.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Input::Get { key }
            | Input::Put { key, .. }
            | Input::Delete { key }
            | Input::Cas { key, .. } => vec![key.as_str()],
            Input::ReadAll { keys } => keys.iter().map(String::as_str).collect(),
            Input::WriteAll { pairs } => pairs.iter().map(|(key, _)| key.as_str()).collect(),
        }
    }
}
