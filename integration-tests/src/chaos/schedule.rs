//! The fault schedule of one history, drawn from its seed before the
//! history starts, so `--seed` replays the same faults at the same times.
//!
//! Faults come one at a time: each holds for a while, is healed, and a
//! quiet gap follows, so the cluster keeps a working majority between
//! faults and the clients' operations keep completing.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

/// The crash points (`KV_CRASH_AT`) a node may be started with; each is
/// reached during a snapshot install, which a node cut off behind the
/// leader's snapshot goes through when its links heal.
pub const CRASH_POINTS: &[&str] = &[
    "install-snapshot-saved",
    "snapshot-topic-replaced",
    "install-view-built",
    "install-view-switched",
    "install-snapshot-current",
];

/// Most faults one history may hold.
const MAX_STEPS: usize = 1_000;
/// Shortest and longest time a fault holds, in milliseconds.
const FAULT_MS: (u64, u64) = (1_000, 6_000);
/// Shortest and longest quiet gap between two faults, in milliseconds.
const GAP_MS: (u64, u64) = (500, 3_000);
/// Time without faults at the end of a history, so the last operations
/// complete before the clients stop.
const TAIL: Duration = Duration::from_secs(2);

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the node; start it again when the fault heals.
    Kill { node: u64 },
    /// SIGSTOP the node; SIGCONT when the fault heals.
    Pause { node: u64 },
    /// Restart the node with `KV_CRASH_AT=point` and cut it off, so it
    /// falls behind; to heal, kill -9 the leader, heal the links, and
    /// start the old leader once another is elected, so a leader that
    /// purged its log catches the node up by a snapshot install, where it
    /// aborts at the point (it is started again, unarmed, before the next
    /// fault).
    CrashPoint { node: u64, point: &'static str },
    /// Cut every link to and from the node.
    Isolate { node: u64 },
    /// Cut what `from` sends to `to` (one direction only).
    OneWay { from: u64, to: u64 },
}

impl Fault {
    /// The kind of fault, for the report's counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill -9",
            Fault::Pause { .. } => "SIGSTOP",
            Fault::CrashPoint { .. } => "crash point",
            Fault::Isolate { .. } => "isolation",
            Fault::OneWay { .. } => "one-way cut",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { node } => write!(f, "kill -9 node {node}"),
            Fault::Pause { node } => write!(f, "SIGSTOP node {node}"),
            Fault::CrashPoint { node, point } => {
                write!(f, "restart node {node} with KV_CRASH_AT={point}, cut off")
            }
            Fault::Isolate { node } => write!(f, "isolate node {node}"),
            Fault::OneWay { from, to } => write!(f, "cut {from} -> {to}"),
        }
    }
}

/// A fault with when it starts and how long it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Since the history's start.
    pub start: Duration,
    /// How long the fault holds before it is healed.
    pub length: Duration,
    /// What is done.
    pub fault: Fault,
}

/// The faults of a history of `length` on nodes `1..=nodes`.
pub fn schedule(rng: &mut StdRng, nodes: u64, length: Duration) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut at = Duration::from_millis(rng.random_range(GAP_MS.0..=GAP_MS.1));
    let end = length.saturating_sub(TAIL);
    while at < end && steps.len() < MAX_STEPS {
        let hold = Duration::from_millis(rng.random_range(FAULT_MS.0..=FAULT_MS.1));
        let fault = draw_fault(rng, nodes);
        steps.push(Step {
            start: at,
            length: hold.min(end - at),
            fault,
        });
        at += hold + Duration::from_millis(rng.random_range(GAP_MS.0..=GAP_MS.1));
    }
    steps
}

fn draw_fault(rng: &mut StdRng, nodes: u64) -> Fault {
    let node = rng.random_range(1..=nodes);
    match rng.random_range(0..100) {
        0..25 => Fault::Kill { node },
        25..45 => Fault::Pause { node },
        45..60 => Fault::CrashPoint {
            node,
            point: CRASH_POINTS[rng.random_range(0..CRASH_POINTS.len())],
        },
        60..85 => Fault::Isolate { node },
        _ => {
            let to = (node + rng.random_range(1..nodes) - 1) % nodes + 1;
            Fault::OneWay { from: node, to }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn one_seed_draws_one_schedule_within_the_history() {
        let length = Duration::from_secs(60);
        let draw = |seed| schedule(&mut StdRng::seed_from_u64(seed), 3, length);
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        for step in draw(7) {
            assert!(step.start + step.length <= length - TAIL, "{step:?}");
            if let Fault::OneWay { from, to } = step.fault {
                assert!(from != to && (1..=3).contains(&to), "{step:?}");
            }
        }
    }
}
