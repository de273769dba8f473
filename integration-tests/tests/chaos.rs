//! The short chaos run of `make test`: the partitioning proxy cuts what it
//! says, a crash-point fault reaches its point, two 20 s histories under faults are linearizable with every
//! acknowledged write kept and the replicas equal, and 20 kill -9 cycles
//! lose no acknowledged write. `make chaos` is the full run.
//!
//! `CHAOS_SEED` replays a failing run; the seed is printed either way.

use std::time::{Duration, Instant};

use integration_tests::chaos::clients::KeySpace;
use integration_tests::chaos::kill_cycles::run_kill_cycles;
use integration_tests::chaos::nodes::ChaosCluster;
use integration_tests::chaos::run::{run_history, HistoryConfig};
use integration_tests::chaos::schedule::CRASH_POINTS;

/// How long a node caught up by snapshot may take to reach its crash point.
const CRASH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a cluster may take to elect a leader after a cut.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The chaos tests start many processes each: one at a time keeps the
/// machine's load (and so the faults' timing) as the run intends.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `CHAOS_SEED`, else a random seed; printed so a failure can be replayed.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed} (replay with CHAOS_SEED={seed})");
    seed
}

#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_leader_is_replaced_and_rejoins_once_the_proxies_heal() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut cluster = ChaosCluster::start(3).await.expect("the cluster starts");
    let old = cluster.leader(ELECTION_TIMEOUT).await.expect("a leader");
    let isolation: Vec<(u64, u64)> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != old)
        .flat_map(|id| [(old, id), (id, old)])
        .collect();
    cluster.network().cut(&isolation);

    let new = cluster
        .leader_except(&[old], ELECTION_TIMEOUT)
        .await
        .expect("the two connected nodes elect a leader");
    assert_ne!(
        new, old,
        "the isolated leader cannot stay leader of the others"
    );

    cluster.network().heal();
    cluster
        .quiesce()
        .await
        .expect("the healed node catches up with the new leader");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_cut_off_behind_a_snapshot_reaches_its_crash_point_once_the_leader_is_replaced() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut cluster = ChaosCluster::start(3).await.expect("the cluster starts");
    let leader = cluster.leader(ELECTION_TIMEOUT).await.expect("a leader");
    let behind = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster
        .restart(behind, Some(CRASH_POINTS[0]))
        .await
        .expect("the armed node starts");
    let isolation: Vec<(u64, u64)> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != behind)
        .flat_map(|id| [(behind, id), (id, behind)])
        .collect();
    cluster.network().cut(&isolation);

    let killed = cluster
        .replace_leader(behind)
        .await
        .expect("the old leader restarts");
    assert!(killed.is_some(), "the two connected nodes had a leader");

    let deadline = Instant::now() + CRASH_TIMEOUT;
    while !cluster.exited(behind).await {
        assert!(
            Instant::now() < deadline,
            "node {behind} did not reach {} within {CRASH_TIMEOUT:?}\n{}",
            CRASH_POINTS[0],
            cluster.log_tail(behind)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cluster.take_crash_hit(behind),
        "node {behind} exited, but not at its crash point\n{}",
        cluster.log_tail(behind)
    );
    cluster
        .quiesce()
        .await
        .expect("the node recovers from the crash");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_short_histories_under_faults_are_linearizable_and_lose_no_acknowledged_write() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let first = seed("histories");
    for seed in [first, first.wrapping_add(1)] {
        let config = HistoryConfig {
            seed,
            length: Duration::from_secs(20),
            nodes: 3,
            clients: 8,
            keys: KeySpace {
                groups: 16,
                keys_per_group: 3,
            },
            check_limit: Duration::from_secs(60),
        };
        let report = run_history(&config).await;
        eprintln!("{report}");
        assert!(
            report.anomalies.is_empty() && report.verdict == "linearizable",
            "history {seed} found anomalies; saved to {:?}\n{report}",
            report.save(&std::env::temp_dir())
        );
        // Liveness failures are printed, not failed: on a loaded machine
        // (the tests share it) an election can take longer than any bound.
        assert!(
            !report.faults.is_empty(),
            "history {seed} injected no fault: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_20_kill_9_cycles_of_a_single_node() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let report = run_kill_cycles(seed("kill cycles"), 20).await;
    eprintln!("{report}");
    assert!(
        report.lost.is_empty() && report.anomalies.is_empty(),
        "{report}"
    );
    assert_eq!(report.cycles, 20, "{report}");
    assert!(
        report.acknowledged >= 20,
        "too few writes to say anything: {report}"
    );
}
