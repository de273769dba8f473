//! One history: start a cluster behind its proxies, run the clients while
//! the seed's fault schedule plays, heal everything, read every key one
//! last time, and check the history and the replicas.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::clients::{final_read, group_of, run_client, ClientLog, KeySpace, Shared};
use super::history::{Operation, Output};
use super::linearizability::{check, Verdict};
use super::nodes::ChaosCluster;
use super::report::HistoryReport;
use super::schedule::{schedule, Fault, Step};
use super::{acked, replicas};

/// How long the clients may take to finish their last request.
const CLIENTS_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of one final read.
const FINAL_READ_ATTEMPTS: usize = 20;
/// The longest time without any answered operation that is not a stall:
/// a fault holds at most 6 s, then an election and a catch-up follow.
const STALL_LIMIT: Duration = Duration::from_secs(20);
/// Log lines kept of each node of a history with anomalies.
const KEPT_LOG_LINES: usize = 5_000;
/// Pause between two attempts of a final read.
const FINAL_READ_PAUSE: Duration = Duration::from_millis(250);

/// What one history is.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Draws the fault schedule and every client's operations.
    pub seed: u64,
    /// How long the clients run.
    pub length: Duration,
    /// Nodes in the cluster (3 or 5).
    pub nodes: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// The keys the clients touch.
    pub keys: KeySpace,
    /// How long the linearizability check may search one history.
    pub check_limit: Duration,
}

/// Runs one history and checks it.
pub async fn run_history(config: &HistoryConfig) -> HistoryReport {
    let mut report = HistoryReport::new(config.seed);
    let mut cluster = match ChaosCluster::start(config.nodes).await {
        Ok(cluster) => cluster,
        Err(error) => {
            report.anomaly(format!("the cluster did not start: {error}"));
            return report;
        }
    };
    let shared = Arc::new(Shared::new(
        cluster.urls(),
        cluster.up_flags(),
        config.keys,
        config.clients,
    ));
    let clients: Vec<_> = (0..config.clients)
        .map(|worker| {
            let seed = client_seed(config.seed, worker);
            tokio::spawn(run_client(Arc::clone(&shared), worker, seed))
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(config.seed);
    for step in schedule(&mut rng, config.nodes, config.length) {
        sleep_until(shared.epoch + step.start).await;
        reap(&mut cluster, &mut report).await;
        play(&mut cluster, &step, shared.epoch, &mut report).await;
    }
    sleep_until(shared.epoch + config.length).await;

    shared.stop.store(true, Ordering::Release);
    let mut history = Vec::new();
    let logs = tokio::time::timeout(CLIENTS_STOP_TIMEOUT, futures::future::join_all(clients)).await;
    match logs {
        Ok(logs) => {
            for log in logs.into_iter().flatten() {
                collect(&mut report, &mut history, log);
            }
        }
        Err(_) => report.liveness_failure(format!(
            "the clients did not stop within {CLIENTS_STOP_TIMEOUT:?}"
        )),
    }

    reap(&mut cluster, &mut report).await;
    // Without a quiet cluster there are no final reads and no replicas to
    // compare, but the history is still checked.
    match cluster.quiesce().await {
        Ok(()) => {
            let final_reads = read_every_key(&cluster, &shared, &mut history, &mut report).await;
            let lost = acked::lost_writes(&history, &final_reads);
            report.anomalies.extend(lost);
            let nodes: Vec<(u64, String)> = cluster
                .ids()
                .into_iter()
                .map(|id| (id, cluster.url(id)))
                .collect();
            for difference in replicas::compare(&shared.http, &nodes).await {
                report.anomaly(difference);
            }
        }
        Err(trouble) => report.not_serving(trouble),
    }

    let limit = config.check_limit;
    let checked = history.clone();
    let verdict = tokio::task::spawn_blocking(move || check(&checked, group_of, limit)).await;
    match verdict {
        Ok(Verdict::Linearizable) => report.verdict = "linearizable".into(),
        Ok(Verdict::NotLinearizable { group, explanation }) => {
            report.verdict = format!("NOT linearizable (group {group})");
            report.anomaly(format!("group {group} is not linearizable: {explanation}"));
        }
        Ok(Verdict::Unknown { group }) => {
            report.verdict = format!("unknown: the search of group {group} ran out of {limit:?}");
        }
        Err(error) => report.anomaly(format!("the checker panicked: {error}")),
    }
    report.set_history(history);
    let stall_s = report.longest_stall_s(config.length.as_secs_f64());
    if stall_s > STALL_LIMIT.as_secs_f64() {
        report.liveness_failure(format!(
            "no operation was answered for {stall_s:.1} s (a fault holds at most 6 s)"
        ));
    }
    if report.found_anything() {
        report.node_logs = cluster.logs(KEPT_LOG_LINES);
    }
    report
}

/// The seed of client `worker`'s choices, spread from the history's.
fn client_seed(seed: u64, worker: usize) -> u64 {
    // SplitMix64's constants: neighbouring workers get unrelated streams.
    let mut z = seed.wrapping_add((worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

fn collect(report: &mut HistoryReport, history: &mut Vec<Operation>, log: ClientLog) {
    report.failed_reads += log.failed_reads;
    report.refused += log.refused;
    for unexpected in log.unexpected {
        report.anomaly(unexpected);
    }
    history.extend(log.operations);
}

/// Plays one fault: applies it, holds it, heals it.
async fn play(cluster: &mut ChaosCluster, step: &Step, epoch: Instant, report: &mut HistoryReport) {
    report.fault(&step.fault, epoch.elapsed());
    let started = Instant::now();
    match &step.fault {
        Fault::Kill { node } => cluster.kill9(*node).await,
        Fault::Pause { node } => cluster.pause(*node),
        Fault::CrashPoint { node, point } => {
            if let Err(trouble) = cluster.restart(*node, Some(point)).await {
                report.not_serving(trouble);
            }
            cluster.network().cut(&isolation(cluster, *node));
        }
        Fault::Isolate { node } => cluster.network().cut(&isolation(cluster, *node)),
        Fault::OneWay { from, to } => cluster.network().cut(&[(*from, *to)]),
    }
    tokio::time::sleep(step.length.saturating_sub(started.elapsed())).await;
    match &step.fault {
        Fault::Kill { node } => {
            if let Err(trouble) = cluster.restart(*node, None).await {
                report.not_serving(trouble);
            }
        }
        Fault::Pause { node } => cluster.resume(*node),
        Fault::CrashPoint { node, .. } => replace_leader(cluster, *node, epoch, report).await,
        Fault::Isolate { .. } | Fault::OneWay { .. } => cluster.network().heal(),
    }
}

/// Heals a crash-point fault: replaces the leader so that `behind`
/// catches up by a snapshot install ([`ChaosCluster::replace_leader`]).
async fn replace_leader(
    cluster: &mut ChaosCluster,
    behind: u64,
    epoch: Instant,
    report: &mut HistoryReport,
) {
    let at = epoch.elapsed();
    match cluster.replace_leader(behind).await {
        Ok(Some(killed)) => report.fault(&Fault::Kill { node: killed }, at),
        Ok(None) => {}
        Err(trouble) => report.not_serving(trouble),
    }
}

/// Every link to and from `node`.
fn isolation(cluster: &ChaosCluster, node: u64) -> Vec<(u64, u64)> {
    cluster
        .ids()
        .into_iter()
        .filter(|other| *other != node)
        .flat_map(|other| [(node, other), (other, node)])
        .collect()
}

/// Restarts the nodes that exited by themselves: expected of a node armed
/// with a crash point that its log says it reached, an anomaly otherwise.
async fn reap(cluster: &mut ChaosCluster, report: &mut HistoryReport) {
    for id in cluster.ids() {
        // An armed node that stopped at its point while starting is
        // already reaped.
        let stopped_armed = cluster.is_armed(id) && !cluster.is_running(id);
        if !cluster.exited(id).await && !stopped_armed {
            continue;
        }
        if cluster.is_armed(id) && cluster.take_crash_hit(id) {
            report.crash_points_reached += 1;
        } else {
            report.anomaly(format!(
                "node {id} exited by itself\n{}",
                cluster.log_tail(id)
            ));
        }
        if let Err(trouble) = cluster.restart(id, None).await {
            report.not_serving(trouble);
        }
    }
}

/// Reads every key linearizably through the leader, adds the reads to the
/// history, and returns key → value read.
async fn read_every_key(
    cluster: &ChaosCluster,
    shared: &Shared,
    history: &mut Vec<Operation>,
    report: &mut HistoryReport,
) -> BTreeMap<String, Option<String>> {
    let mut values = BTreeMap::new();
    let client = shared.next_id.fetch_add(1, Ordering::Relaxed);
    for key in shared.keys.all_keys() {
        let mut read = None;
        for _attempt in 0..FINAL_READ_ATTEMPTS {
            let leader = cluster.leader(Duration::from_secs(30)).await;
            let url = cluster.url(leader.unwrap_or(1));
            read = final_read(shared, &url, client, &key).await;
            if read.is_some() {
                break;
            }
            tokio::time::sleep(FINAL_READ_PAUSE).await;
        }
        match read {
            Some(operation) => {
                if let Output::Got(value) = &operation.output {
                    values.insert(key, value.clone());
                }
                history.push(operation);
            }
            None => report.liveness_failure(format!(
                "the final read of {key} got no answer in {FINAL_READ_ATTEMPTS} attempts"
            )),
        }
    }
    values
}
