//! What a chaos run found: per history its seed, operations, faults,
//! verdict and anomalies; per kill-cycle run its cycles and lost writes;
//! and the files a failing history is saved to for replay and study.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::history::{Operation, Output};
use super::nodes::NotServing;
use super::schedule::Fault;

/// What one history did and found.
#[derive(Debug, Serialize)]
pub struct HistoryReport {
    /// The seed that replays its faults and client choices.
    pub seed: u64,
    /// Operations in the history (final reads included).
    pub operations: usize,
    /// Writes without an answer ([`Output::Unknown`]).
    pub unknown: usize,
    /// Reads without an answer, left out of the history.
    pub failed_reads: usize,
    /// Requests that surely took no effect (the connection was refused, or
    /// a node answered `not_leader` or `not_a_member`), left out.
    pub refused: usize,
    /// Faults injected, by kind.
    pub fault_counts: BTreeMap<&'static str, usize>,
    /// Every fault injected, in order.
    pub faults: Vec<String>,
    /// Nodes that aborted at their `KV_CRASH_AT` point.
    pub crash_points_reached: usize,
    /// The linearizability checker's verdict.
    pub verdict: String,
    /// Everything found wrong with safety (consistency, durability, a
    /// node that fails): each one a finding.
    pub anomalies: Vec<String>,
    /// Progress the cluster failed to make in time (a stall without
    /// answers, a node slow to start, no leader after the faults healed),
    /// with the machine's load: liveness findings, to be judged with it.
    pub liveness: Vec<String>,
    /// The operations, for the saved file.
    pub history: Vec<Operation>,
    /// Each node's log (its last lines), kept when the history found
    /// anomalies, saved beside it.
    #[serde(skip)]
    pub node_logs: Vec<(u64, String)>,
}

impl HistoryReport {
    /// An empty report of the history drawn from `seed`.
    pub fn new(seed: u64) -> HistoryReport {
        HistoryReport {
            seed,
            operations: 0,
            unknown: 0,
            failed_reads: 0,
            refused: 0,
            fault_counts: BTreeMap::new(),
            faults: Vec::new(),
            crash_points_reached: 0,
            verdict: "not checked".into(),
            anomalies: Vec::new(),
            liveness: Vec::new(),
            history: Vec::new(),
            node_logs: Vec::new(),
        }
    }

    /// Records an anomaly.
    pub fn anomaly(&mut self, what: String) {
        self.anomalies.push(what);
    }

    /// Whether the history found anything: an anomaly or a liveness
    /// failure.
    pub fn found_anything(&self) -> bool {
        !self.anomalies.is_empty() || !self.liveness.is_empty()
    }

    /// Records why a node is not serving: an anomaly if it exited, a
    /// liveness failure if it is only slow.
    pub fn not_serving(&mut self, trouble: NotServing) {
        match trouble {
            NotServing::Exited(why) => self.anomaly(why),
            NotServing::Slow(why) => self.liveness_failure(why),
        }
    }

    /// Records a liveness failure, with the machine's load average.
    pub fn liveness_failure(&mut self, what: String) {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        self.liveness.push(format!("{what} (load average {load})"));
    }

    /// Records a fault injected `at` into the history.
    pub fn fault(&mut self, fault: &Fault, at: Duration) {
        *self.fault_counts.entry(fault.kind()).or_default() += 1;
        self.faults
            .push(format!("at {:.1} s: {fault}", at.as_secs_f64()));
    }

    /// Keeps the history and counts its operations.
    pub fn set_history(&mut self, history: Vec<Operation>) {
        self.operations = history.len();
        self.unknown = history
            .iter()
            .filter(|operation| operation.output == Output::Unknown)
            .count();
        self.history = history;
    }

    /// Writes the report with its history as JSON to
    /// `dir/history-<seed>.json` (and the node logs kept to
    /// `dir/history-<seed>-node<id>.log`); returns the JSON's path.
    pub fn save(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("history-{}.json", self.seed));
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, json)?;
        for (node, log) in &self.node_logs {
            std::fs::write(
                dir.join(format!("history-{}-node{node}.log", self.seed)),
                log,
            )?;
        }
        Ok(path)
    }

    /// The longest time without an answered operation, in seconds, from
    /// the history's start to its end (`length_s`); final reads excluded.
    pub fn longest_stall_s(&self, length_s: f64) -> f64 {
        let mut answered: Vec<f64> = self
            .history
            .iter()
            .filter_map(|operation| operation.ret)
            .map(|ret| ret as f64 / 1e9)
            .filter(|ret| *ret <= length_s)
            .collect();
        answered.push(0.0);
        answered.push(length_s);
        answered.sort_by(f64::total_cmp);
        answered
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .fold(0.0, f64::max)
    }
}

impl fmt::Display for HistoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<String> = self
            .fault_counts
            .iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect();
        write!(
            f,
            "seed {}: {} operations ({} unknown), faults: {} ({} crash points reached); {}; {} anomalies, {} liveness failures",
            self.seed,
            self.operations,
            self.unknown,
            if faults.is_empty() { "none".into() } else { faults.join(", ") },
            self.crash_points_reached,
            self.verdict,
            self.anomalies.len(),
            self.liveness.len()
        )?;
        for anomaly in &self.anomalies {
            write!(f, "\n  ANOMALY: {anomaly}")?;
        }
        for failure in &self.liveness {
            write!(f, "\n  LIVENESS: {failure}")?;
        }
        Ok(())
    }
}

/// What a run of kill -9 cycles did and found.
#[derive(Debug, Default, Serialize)]
pub struct KillReport {
    /// The seed of the kill delays.
    pub seed: u64,
    /// Cycles completed.
    pub cycles: usize,
    /// Writes acknowledged before their node was killed.
    pub acknowledged: usize,
    /// Writes in flight at a kill (outcome unknown).
    pub in_flight: usize,
    /// Acknowledged writes missing after a restart: each one a finding.
    pub lost: Vec<String>,
    /// Other anomalies (a node that did not restart, a failed check).
    pub anomalies: Vec<String>,
}

impl fmt::Display for KillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kill -9 cycles (seed {}): {} cycles, {} acknowledged writes, {} in flight at a kill, {} lost, {} other anomalies",
            self.seed,
            self.cycles,
            self.acknowledged,
            self.in_flight,
            self.lost.len(),
            self.anomalies.len()
        )?;
        for lost in &self.lost {
            write!(f, "\n  LOST: {lost}")?;
        }
        for anomaly in &self.anomalies {
            write!(f, "\n  ANOMALY: {anomaly}")?;
        }
        Ok(())
    }
}

/// The totals of a run of several histories.
#[derive(Debug, Default)]
pub struct Totals {
    /// Histories run.
    pub histories: usize,
    /// Operations over all histories.
    pub operations: usize,
    /// Unknown writes over all histories.
    pub unknown: usize,
    /// Faults over all histories, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// Crash points reached over all histories.
    pub crash_points_reached: usize,
    /// Histories whose check ran out of time.
    pub unchecked: usize,
    /// Anomalies over all histories.
    pub anomalies: usize,
    /// Liveness failures over all histories.
    pub liveness: usize,
    /// The seeds of the histories with anomalies or liveness failures.
    pub failing_seeds: Vec<u64>,
}

impl Totals {
    /// Adds one history.
    pub fn add(&mut self, history: &HistoryReport) {
        self.histories += 1;
        self.operations += history.operations;
        self.unknown += history.unknown;
        for (kind, count) in &history.fault_counts {
            *self.faults.entry(kind).or_default() += count;
        }
        self.crash_points_reached += history.crash_points_reached;
        self.unchecked += usize::from(history.verdict.starts_with("unknown"));
        self.anomalies += history.anomalies.len();
        self.liveness += history.liveness.len();
        if history.found_anything() {
            self.failing_seeds.push(history.seed);
        }
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect();
        write!(
            f,
            "{} histories, {} operations ({} unknown), faults: {} ({} crash points reached), {} checks out of time, {} anomalies, {} liveness failures",
            self.histories,
            self.operations,
            self.unknown,
            faults.join(", "),
            self.crash_points_reached,
            self.unchecked,
            self.anomalies,
            self.liveness
        )?;
        if !self.failing_seeds.is_empty() {
            write!(f, "; failing seeds: {:?}", self.failing_seeds)?;
        }
        Ok(())
    }
}
