//! The short chaos run of `make test`: the partitioning proxy cuts what it
//! says, two 20 s histories under faults are linearizable with every
//! acknowledged write kept and the replicas equal, and 20 kill -9 cycles
//! lose no acknowledged write. `make chaos` is the full run.
//!
//! `CHAOS_SEED` replays a failing run; the seed is printed either way.

use std::time::Duration;

use integration_tests::chaos::clients::KeySpace;
use integration_tests::chaos::kill_cycles::run_kill_cycles;
use integration_tests::chaos::nodes::ChaosCluster;
use integration_tests::chaos::run::{run_history, HistoryConfig};

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
        // A stall is printed, not failed: on a loaded machine (the tests
        // share it) elections can take longer than any bound we could set.
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
