//! Multi-node clusters under failure: real `kv-server` processes on
//! loopback, killed with SIGKILL, paused with SIGSTOP, added and removed
//! while writes flow. Every scenario ends by checking that no acknowledged
//! write was lost and that the nodes hold the same state.
//!
//! The scenarios run one at a time (each starts three to five servers; on
//! a 2-core machine running them side by side would only test the
//! scheduler), and wait for conditions with deadlines, never fixed sleeps.

use std::time::{Duration, Instant};

use integration_tests::{assert_all_acked_present, bulk_load, TestCluster, WriteLoad};
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Asserts that every running node folds its replay into the same state.
async fn assert_same_state(cluster: &TestCluster) {
    let ids: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| cluster.node(*id).is_running())
        .collect();
    let reference = cluster.replayed_state(ids[0]).await;
    for id in &ids[1..] {
        let state = cluster.replayed_state(*id).await;
        assert_eq!(
            state.len(),
            reference.len(),
            "node {id} holds {} keys, node {} holds {}",
            state.len(),
            ids[0],
            reference.len()
        );
        assert!(
            state == reference,
            "node {id} replays to a different state than node {}",
            ids[0]
        );
    }
}

/// How long a leader may take to snapshot and purge its log.
const PURGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until `leader` has purged its log past `index` (it took a snapshot
/// and dropped the entries behind it), and returns the purged index.
async fn wait_for_purge_past(cluster: &TestCluster, leader: u64, index: u64) -> u64 {
    let deadline = Instant::now() + PURGE_TIMEOUT;
    loop {
        let status = cluster.status(leader).await;
        let purged = status
            .as_ref()
            .and_then(|status| status["purged_index"].as_u64());
        if let Some(purged) = purged.filter(|purged| *purged > index) {
            return purged;
        }
        assert!(
            Instant::now() < deadline,
            "node {leader} did not purge its log past index {index} within {PURGE_TIMEOUT:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The index of the last entry node `id`'s snapshot covers (0 for none).
async fn snapshot_index(cluster: &TestCluster, id: u64) -> u64 {
    let status = cluster
        .status(id)
        .await
        .unwrap_or_else(|| panic!("node {id} answers GET /v1/cluster"));
    status["snapshot_index"]
        .as_u64()
        .unwrap_or_else(|| panic!("node {id} reports its snapshot index: {status}"))
}

/// Asserts that node `id` holds a snapshot covering every entry the leader
/// had purged (up to `purged`) when it was sent the node's missing entries:
/// with those entries gone, a snapshot is the only way it caught up.
async fn assert_caught_up_through_a_snapshot(cluster: &TestCluster, id: u64, purged: u64) {
    let snapshot = snapshot_index(cluster, id).await;
    assert!(
        snapshot >= purged,
        "node {id} holds a snapshot up to {snapshot}, short of the leader's purged log ({purged}): \
         it did not catch up through the leader's snapshot"
    );
}

/// Three nodes that snapshot every 200 entries and keep only 10 behind a
/// snapshot, so a follower down for a few hundred writes needs a snapshot;
/// with the leader's id and a follower's.
async fn cluster_with_frequent_snapshots() -> (TestCluster, u64, u64) {
    let cluster = TestCluster::start(
        3,
        &[
            "--snapshot-every",
            "200",
            "--snapshot-catchup-entries",
            "10",
        ],
    )
    .await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    (cluster, leader, follower)
}

async fn get(url: &str, timeout: Duration) -> Result<(u16, Value), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("a plain HTTP client builds");
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

async fn put(url: &str, value: &Value) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("a plain HTTP client builds");
    let response = client
        .put(url)
        .json(value)
        .send()
        .await
        .expect("the node answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Pauses (SIGSTOP) every node but `leader`; returns their ids.
fn pause_followers(cluster: &mut TestCluster, leader: u64) -> Vec<u64> {
    let followers = cluster.ids_but(leader);
    for id in &followers {
        cluster.node_mut(*id).pause();
    }
    followers
}

/// Starts node `id` again and gives its status: a node without a leader
/// is live but not ready, so it is waited for as live only.
async fn spawn_without_a_leader(cluster: &mut TestCluster, id: u64) -> Value {
    cluster.node_mut(id).restart_live().await;
    cluster
        .status(id)
        .await
        .expect("a live node answers /v1/cluster")
}

/// Scenario 1: the leader is killed under a steady write load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_load_loses_no_acknowledged_write() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let load = WriteLoad::start(cluster.urls(), "s1", 50_000, Duration::from_secs(60));
    load.wait_acked(100, Duration::from_secs(30)).await;

    let old_leader = cluster.leader().await;
    let killed_at = Instant::now();
    cluster.node_mut(old_leader).kill9().await;
    let acked_at_kill = load.acked();
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader, "a killed node cannot lead");
    load.wait_acked(acked_at_kill + 100, Duration::from_secs(30))
        .await;

    // The old leader comes back as a follower and catches up.
    cluster.node_mut(old_leader).restart().await;
    load.wait_acked(load.acked() + 100, Duration::from_secs(30))
        .await;
    let report = load.finish().await;
    assert!(
        report.failed.is_empty(),
        "writes failed: {:?}",
        report.failed
    );
    let first_after_kill = report
        .acked
        .values()
        .map(|(_, at)| *at)
        .filter(|at| *at > killed_at)
        .min()
        .expect("writes were acknowledged after the kill");
    let outage = first_after_kill - killed_at;
    assert!(
        outage <= Duration::from_secs(3),
        "writes resumed {outage:?} after the leader was killed (limit 3 s)"
    );

    cluster.wait_converged().await;
    assert_all_acked_present(&cluster, "s1/", &report).await;
    assert_same_state(&cluster).await;
}

/// A node restarted with raft log entries it had not applied serves no
/// reads from its view until it has caught up. Before a crash a node may
/// have applied, and answered reads from, entries whose commit its raft
/// log did not hold yet; restarted, its view would be older than what it
/// served. A node stopped cleanly still serves stale reads at once after
/// its restart, without a majority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_unapplied_entries_serves_reads_once_caught_up() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &["--request-timeout-ms", "1500"]).await;
    bulk_load(&cluster.urls(), "c1", 20, 2).await;
    cluster.wait_converged().await;
    let stale_read = "/v1/kv/c1/000007?consistency=stale";

    // Stopped cleanly, a follower's view holds all it applied (though its
    // log may end in entries whose commit it had not heard of): restarted
    // while the others are paused, it serves stale reads at once.
    let leader = cluster.leader().await;
    let follower = cluster.follower_of(leader);
    cluster.node_mut(follower).stop().await;
    let others = pause_followers(&mut cluster, follower);
    spawn_without_a_leader(&mut cluster, follower).await;
    let (status, body) =
        integration_tests::call(cluster.node(follower), "GET", stale_read, None).await;
    assert_eq!(status, 200, "a caught-up node refused a stale read: {body}");
    assert_eq!(body["value"], json!({ "n": 7 }), "{body}");
    for id in &others {
        cluster.node_mut(*id).resume();
    }
    cluster.wait_converged().await;

    // The leader takes an entry no follower gets, so it never applies it,
    // and is killed: it restarts with that entry past what it applied.
    let leader = cluster.leader().await;
    let followers = pause_followers(&mut cluster, leader);
    let (status, body) = put(&cluster.node(leader).url("/v1/kv/c1/late"), &json!(1)).await;
    assert_eq!(status, 503, "a write without a majority: {body}");
    let status = cluster.status(leader).await.expect("the leader answers");
    let index = |name: &str| {
        status[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {status}"))
    };
    assert!(index("last_log_index") > index("applied_index"), "{status}");
    cluster.node_mut(leader).kill9().await;
    spawn_without_a_leader(&mut cluster, leader).await;
    let (status, body) =
        integration_tests::call(cluster.node(leader), "GET", stale_read, None).await;
    assert_eq!(
        status, 503,
        "a node behind its own log served a read: {body}"
    );
    let (code, _) = integration_tests::error_of(&body);
    assert_eq!(code, "not_ready", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("caught up")),
        "{body}"
    );
    // kvctl says why, even when its deadline cuts off the attempt after
    // the last such answer.
    let run = integration_tests::kvctl(
        &cluster.node(leader).url(""),
        &["--timeout", "4s", "get", "c1/000007"],
    )
    .await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("not_ready"), "{}", run.stderr);

    for id in &followers {
        cluster.node_mut(*id).resume();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) =
            integration_tests::call(cluster.node(leader), "GET", stale_read, None).await;
        if status == 200 {
            assert_eq!(body["value"], json!({ "n": 7 }), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node never served reads again: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_converged().await;
    assert_same_state(&cluster).await;
}

/// A follower stopped for a while (a rolling restart) is logged by the
/// leader once when its appends start to fail and once when it answers
/// again, never at each of the retries or linearizable reads in between,
/// and never as an ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_is_logged_once_by_the_leader_not_at_every_retry() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower_of(leader);
    let errors_before = cluster.node(leader).log_count(" ERROR ");
    let (failing, again) = ("appends to a peer fail", "a peer answers appends again");
    let counts = |cluster: &TestCluster| {
        let node = cluster.node(leader);
        (node.log_count(failing), node.log_count(again))
    };
    cluster.node_mut(follower).stop().await;
    // A stopping node may answer one more append: the last line logged
    // about it must say it fails.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (failed, answered) = loop {
        let (failed, answered) = counts(&cluster);
        if failed == answered + 1 {
            break (failed, answered);
        }
        assert!(
            Instant::now() < deadline,
            "the leader never said its stopped follower fails\n{}",
            cluster.node(leader).log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Writes go on with two of three; the leader retries the third meanwhile.
    bulk_load(&cluster.urls(), "down", 1000, 4).await;
    // Each linearizable read's leadership check reaches for it too.
    for n in 0..50 {
        let path = format!("/v1/kv/down/{n:06}?consistency=linearizable");
        let (status, body) =
            integration_tests::call(cluster.node(leader), "GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        counts(&cluster),
        (failed, answered),
        "the leader logged its follower's retries\n{}",
        cluster.node(leader).log_tail(30)
    );
    cluster.node_mut(follower).restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while counts(&cluster).1 == answered {
        assert!(
            Instant::now() < deadline,
            "the leader never said its follower answers again\n{}",
            cluster.node(leader).log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader_node = cluster.node(leader);
    assert_eq!(
        counts(&cluster),
        (failed, answered + 1),
        "{}",
        leader_node.log_tail(30)
    );
    assert_eq!(
        leader_node.log_count(" ERROR "),
        errors_before,
        "a stopped follower made the leader log ERROR lines\n{}",
        leader_node.log_tail(30)
    );
    cluster.wait_converged().await;
}

/// A node left without a majority stands for election again and again;
/// it logs once that its vote requests to each stopped peer fail, not at
/// every round, and never as an ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_logs_each_unreachable_peer_once_not_at_every_round() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let survivor = cluster.follower_of(leader);
    let others: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != survivor)
        .collect();
    let errors_before = cluster.node(survivor).log_count(" ERROR ");
    let term_before = cluster.status(survivor).await.expect("the node answers")["term"]
        .as_u64()
        .expect("a term");
    for id in &others {
        cluster.node_mut(*id).stop().await;
    }
    let failing = "vote requests to a peer fail";
    // Several rounds: each raises the term.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let term = cluster.status(survivor).await.expect("the node answers")["term"]
            .as_u64()
            .expect("a term");
        if term >= term_before + 4 && cluster.node(survivor).log_count(failing) == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rounds of elections logged (term {term})\n{}",
            cluster.node(survivor).log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let node = cluster.node(survivor);
    assert_eq!(node.log_count(failing), 2, "{}", node.log_tail(30));
    assert_eq!(
        node.log_count(" ERROR "),
        errors_before,
        "a candidate logged ERROR lines about its stopped peers\n{}",
        node.log_tail(30)
    );
    for id in &others {
        cluster.node_mut(*id).restart().await;
    }
    cluster.wait_converged().await;
}

/// A node started with `--join --learner` joins as a learner and stays
/// one, across a restart too, serving what the cluster holds; the API
/// promotes it. (A node started on an empty data directory without
/// `--join` forms a cluster of its own, so this is the way to run one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joined_as_a_learner_stays_one_until_promoted() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    bulk_load(&cluster.urls(), "l1", 20, 2).await;
    cluster.join_as(4, 1, false).await;
    cluster.wait_converged().await;
    let (status, body) = integration_tests::call(
        cluster.node(4),
        "GET",
        "/v1/kv/l1/000019?consistency=stale",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], json!({ "n": 19 }), "{body}");

    cluster.node_mut(4).restart().await;
    let leader = cluster.leader().await;
    let learner = |members: &[schemas::api::Member]| {
        members
            .iter()
            .find(|member| member.id == 4)
            .map(|member| member.voter)
    };
    assert_eq!(learner(&cluster.members(leader).await), Some(false));
    assert_eq!(
        cluster.node(4).log_count("asking again to be promoted"),
        0,
        "{}",
        cluster.node(4).log_tail(20)
    );

    let promote = json!({
        "id": 4,
        "addr": cluster.node(4).base_url(),
        "peer_addr": cluster.node(4).peer_url(),
        "voter": true,
    });
    let (status, body) = integration_tests::call(
        cluster.node(leader),
        "POST",
        "/v1/cluster/members",
        Some(promote),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(learner(&cluster.members(leader).await), Some(true));
    cluster.wait_converged().await;
    assert_same_state(&cluster).await;
}

/// A leader killed and restarted never leads its old term again, even
/// when nobody else was elected meanwhile: it reported its own proposals
/// written before they were durable, so the crash may have taken some that
/// followers hold, and new proposals of the old term would reuse their log
/// ids. The followers are paused, so nothing but its own stored vote could
/// make it leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_comes_back_a_follower_and_leads_only_in_a_new_term() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    bulk_load(&cluster.urls(), "r1", 50, 4).await;
    let leader = cluster.leader().await;
    let term = cluster.status(leader).await.expect("the leader answers")["term"]
        .as_u64()
        .expect("a term");
    let followers = pause_followers(&mut cluster, leader);
    cluster.node_mut(leader).kill9().await;
    let status = spawn_without_a_leader(&mut cluster, leader).await;
    assert_ne!(
        status["state"], "Leader",
        "a restarted node resumed leading term {term} on its own: {status}"
    );
    for id in &followers {
        cluster.node_mut(*id).resume();
    }

    let url = cluster.node(leader).url("/v1/kv/r1/after");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = put(&url, &json!(1)).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write was taken after the restart: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_leader = cluster.leader().await;
    let new_term = cluster
        .status(new_leader)
        .await
        .expect("the leader answers")["term"]
        .as_u64()
        .expect("a term");
    assert!(
        new_term > term,
        "led again in term {new_term}, not above {term}"
    );
    cluster.wait_converged().await;
    assert_same_state(&cluster).await;
}

/// Scenario 2a: a follower killed and restarted catches up from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_catches_up_from_the_log() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.node_mut(follower).kill9().await;

    let load = WriteLoad::start(cluster.urls(), "s2a", 300, Duration::from_secs(60));
    load.wait_acked(300, Duration::from_secs(60)).await;
    let report = load.finish().await;

    cluster.node_mut(follower).restart().await;
    cluster.wait_converged().await;
    assert_eq!(
        snapshot_index(&cluster, follower).await,
        0,
        "the follower needed no snapshot: the log still had its entries"
    );
    assert_all_acked_present(&cluster, "s2a/", &report).await;
    assert_same_state(&cluster).await;
}

/// Scenario 2b: while a follower is down the leader's log is purged behind
/// a snapshot; the follower catches up through the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_catches_up_through_a_snapshot_when_the_log_was_purged() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, leader, follower) = cluster_with_frequent_snapshots().await;
    let follower_last = cluster.status(follower).await.unwrap()["last_log_index"]
        .as_u64()
        .unwrap();
    cluster.node_mut(follower).kill9().await;

    let load = WriteLoad::start(cluster.urls(), "s2b", 800, Duration::from_secs(90));
    load.wait_acked(800, Duration::from_secs(90)).await;
    let report = load.finish().await;
    // Deletes too: the snapshot must carry them as absences.
    for n in 0..50 {
        let url = format!("{}/v1/kv/s2b/{n:06}", cluster.node(leader).base_url());
        let response = reqwest::Client::new().delete(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let purged = wait_for_purge_past(&cluster, leader, follower_last).await;

    cluster.node_mut(follower).restart().await;
    cluster.wait_converged().await;
    assert_caught_up_through_a_snapshot(&cluster, follower, purged).await;
    let keys = cluster.keys(follower, "s2b/").await;
    assert_eq!(keys.len(), 800 - 50, "deleted keys stay deleted");
    for (key, (value, _)) in &report.acked {
        let n = value["n"].as_u64().unwrap();
        if n >= 50 {
            assert_eq!(keys.get(key), Some(value), "{key} on node {follower}");
        }
    }
    assert_same_state(&cluster).await;
}

/// A snapshot holds only the latest record of a key, yet a follower that
/// installed one still recognises a retry of an earlier write to that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_snapshot_install_is_applied_once_on_every_node() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, leader, follower) = cluster_with_frequent_snapshots().await;
    let http = reqwest::Client::new();
    let leader_url = cluster.node(leader).base_url();
    let token = uuid::Uuid::new_v4().to_string();
    let retried = |url: String| {
        http.put(format!("{url}/v1/kv/retry/k"))
            .header("Idempotency-Key", &token)
            .json(&json!("first"))
            .send()
    };
    let first = retried(leader_url.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    let follower_last = cluster.status(follower).await.unwrap()["last_log_index"]
        .as_u64()
        .unwrap();
    cluster.node_mut(follower).kill9().await;
    // The key is overwritten until a snapshot is taken and the log purged
    // past the follower: the snapshot's record of the key is the last one.
    let mut last = 0;
    for n in 0..400 {
        let (status, _) = put(&format!("{leader_url}/v1/kv/retry/k"), &json!(n)).await;
        assert_eq!(status, 200, "overwrite {n}");
        last = n;
    }
    let purged = wait_for_purge_past(&cluster, leader, follower_last).await;
    cluster.node_mut(follower).restart().await;
    cluster.wait_converged().await;
    assert_caught_up_through_a_snapshot(&cluster, follower, purged).await;

    // The retry, sent to the follower that installed the snapshot, answers
    // the first result and changes nothing anywhere.
    let retry = retried(cluster.node(follower).base_url()).await.unwrap();
    assert_eq!(
        retry.status(),
        201,
        "a retry answers as the first write did"
    );
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first);
    cluster.wait_converged().await;
    for id in cluster.ids() {
        let keys = cluster.keys(id, "retry/").await;
        assert_eq!(keys.get("retry/k"), Some(&json!(last)), "node {id}");
    }
    assert_same_state(&cluster).await;
}

/// Keys the cluster holds when a node joins: `KV_TEST_JOIN_KEYS`, by
/// default 20,000. `make test-full` runs it with 100,000; the README says
/// why the default is smaller.
fn join_keys() -> usize {
    std::env::var("KV_TEST_JOIN_KEYS")
        .ok()
        .and_then(|keys| keys.parse().ok())
        .unwrap_or(20_000)
}

/// Scenario 3: a new node joins a cluster holding many keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_joins_through_a_snapshot_and_ends_identical() {
    let _serial = SERIAL.lock().await;
    let keys = join_keys();
    let snapshot_every = (keys / 5).max(100).to_string();
    let mut cluster = TestCluster::start(
        3,
        &[
            "--snapshot-every",
            &snapshot_every,
            "--snapshot-catchup-entries",
            "100",
        ],
    )
    .await;
    bulk_load(&cluster.urls(), "s3", keys, 64).await;
    let leader = cluster.leader().await;
    // The log was purged, so a joiner needs a snapshot.
    let purged = wait_for_purge_past(&cluster, leader, 0).await;

    let via = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.join(4, via).await;
    cluster.wait_converged().await;
    assert_caught_up_through_a_snapshot(&cluster, 4, purged).await;
    let joined = cluster.replayed_state(4).await;
    let reference = cluster.replayed_state(leader).await;
    assert_eq!(joined.len(), keys);
    assert!(
        joined == reference,
        "the new node replays to the leader's state"
    );
    let members = cluster.members(leader).await;
    assert_eq!(members.iter().filter(|member| member.voter).count(), 4);
}

/// Scenario 4: a paused leader loses leadership; no linearizable read
/// anywhere misses a write the new leader acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_steps_down_and_never_serves_a_stale_linearizable_read() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let old_leader = cluster.leader().await;
    let key_url =
        |cluster: &TestCluster, id: u64| format!("{}/v1/kv/s4/flag", cluster.node(id).base_url());
    let (status, _) = put(&key_url(&cluster, old_leader), &json!("before")).await;
    assert_eq!(status, 201);

    cluster.node_mut(old_leader).pause();
    let new_leader = cluster.leader_among(&[old_leader]).await;
    assert_ne!(new_leader, old_leader);
    let (status, written) = put(&key_url(&cluster, new_leader), &json!("after")).await;
    assert_eq!(status, 200, "{written}");
    let revision = written["revision"].as_u64().unwrap();

    // A read sent to the paused node waits in its socket until it resumes.
    let paused_url = key_url(&cluster, old_leader);
    let paused_read = tokio::spawn(async move { get(&paused_url, Duration::from_secs(30)).await });
    // So does a readiness probe: once ready, it names the new leader.
    let ready_url = cluster.node(old_leader).url("/readyz");
    let paused_ready = tokio::spawn(async move { get(&ready_url, Duration::from_secs(30)).await });
    for id in cluster.ids() {
        if id == old_leader {
            continue;
        }
        let (status, body) = get(&key_url(&cluster, id), Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(status, 200, "node {id}: {body}");
        assert_eq!(
            body["value"],
            json!("after"),
            "node {id} read a stale value"
        );
        assert!(body["mod_revision"].as_u64().unwrap() >= revision);
    }

    cluster.node_mut(old_leader).resume();
    match paused_read.await.unwrap() {
        Ok((200, body)) => assert_eq!(
            body["value"],
            json!("after"),
            "the old leader served a stale linearizable read"
        ),
        Ok((503, _)) | Err(_) => {}
        Ok((status, body)) => panic!("the old leader answered {status}: {body}"),
    }
    match paused_ready.await.unwrap() {
        Ok((200, body)) => assert_ne!(
            body["leader"],
            json!(old_leader),
            "the deposed leader's /readyz named itself: {body}"
        ),
        Ok((503, _)) | Err(_) => {}
        Ok((status, body)) => panic!("the old leader's /readyz answered {status}: {body}"),
    }

    // The old leader steps down, follows the new one and converges.
    let leader = cluster.leader().await;
    assert_ne!(leader, old_leader, "the old leader stepped down");
    cluster.wait_converged().await;
    let (status, body) = get(&key_url(&cluster, old_leader), Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!((status, &body["value"]), (200, &json!("after")));
    assert_same_state(&cluster).await;
}

/// Followers apply the last write of a burst on their own. After each
/// commit the leader holds the append that tells a follower only the new
/// commit id, for the next append to carry; when no write follows, it
/// sends it alone a moment later. Heartbeats here are 2.5 s apart, so a
/// follower that waited for one would show the last write within the
/// 200 ms allowed only by chance (about one run in twelve).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_apply_the_last_write_of_a_burst_without_a_heartbeat() {
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::start(
        3,
        &["--heartbeat-ms", "2500", "--election-timeout-ms", "6000"],
    )
    .await;
    let leader = cluster.leader().await;
    // Every node publishes its client address once it knows the leader:
    // entries that would tell the followers a commit on their own, so the
    // burst waits until they are in and applied everywhere.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster
        .members(leader)
        .await
        .iter()
        .any(|member| member.addr.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "the nodes never published their addresses"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.wait_converged().await;
    let key_url =
        |id: u64, query: &str| format!("{}/v1/kv/burst/last{query}", cluster.node(id).base_url());
    let mut written = Value::Null;
    for n in 0..20 {
        let (status, body) = put(&key_url(leader, ""), &json!(n)).await;
        assert!(status == 200 || status == 201, "write {n}: {status} {body}");
        written = body;
    }
    let revision = written["revision"].as_u64().expect("a revision");
    let answered = Instant::now();
    for id in cluster.ids().into_iter().filter(|id| *id != leader) {
        loop {
            let (status, body) = get(&key_url(id, "?consistency=stale"), Duration::from_secs(5))
                .await
                .expect("the follower answers");
            if status == 200 && body["mod_revision"].as_u64() == Some(revision) {
                assert_eq!(body["value"], json!(19), "node {id}");
                break;
            }
            assert!(
                answered.elapsed() < Duration::from_millis(200),
                "node {id} still shows {status} {body} {:?} after the last write",
                answered.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A membership change asked for while another is being committed waits
/// for it and is then made, rather than refused: with both followers
/// paused the first removal cannot commit, so the second one finds it in
/// progress until the followers come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_waits_for_the_one_being_committed() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let followers = pause_followers(&mut cluster, leader);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client builds");
    let remove = |id: u64| {
        let request = client
            .delete(
                cluster
                    .node(leader)
                    .url(&format!("/v1/cluster/members/{id}")),
            )
            .send();
        tokio::spawn(async move {
            let response = request.await.expect("the leader answers");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    };
    let first = remove(followers[0]);
    // The first is proposed and cannot commit; the second finds it so.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = remove(followers[1]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in &followers {
        cluster.node_mut(*id).resume();
    }
    let (status, body) = first.await.expect("the first removal ends");
    assert_eq!(status, 200, "the first removal: {body}");
    let (status, body) = second.await.expect("the second removal ends");
    assert_eq!(
        status, 200,
        "the second removal, made after the first: {body}"
    );
    let voters: Vec<u64> = cluster
        .members(leader)
        .await
        .into_iter()
        .filter(|member| member.voter)
        .map(|member| member.id)
        .collect();
    assert_eq!(voters, vec![leader], "only the leader is left");
}

/// Scenario 5: grow 3 → 5 and shrink 5 → 3 (the leader among the removed)
/// while writes flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_and_shrinks_under_writes() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let load = WriteLoad::start(cluster.urls(), "s5", 100_000, Duration::from_secs(120));
    load.wait_acked(50, Duration::from_secs(30)).await;

    cluster.join(4, 1).await;
    load.set_urls(cluster.urls());
    cluster.join(5, 2).await;
    load.set_urls(cluster.urls());
    let leader = cluster.leader().await;
    let voters = cluster.members(leader).await;
    assert_eq!(voters.iter().filter(|member| member.voter).count(), 5);
    load.wait_acked(load.acked() + 50, Duration::from_secs(30))
        .await;

    // Shrink: first the leader itself, then another original node.
    let via = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let remaining: Vec<String> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .map(|id| cluster.node(id).base_url())
        .collect();
    load.set_urls(remaining);
    cluster.remove(leader, via).await;
    let second = cluster
        .ids()
        .into_iter()
        .find(|id| *id <= 3 && *id != via)
        .unwrap();
    load.set_urls(
        cluster
            .ids()
            .into_iter()
            .filter(|id| *id != second)
            .map(|id| cluster.node(id).base_url())
            .collect(),
    );
    cluster.remove(second, via).await;
    load.wait_acked(load.acked() + 50, Duration::from_secs(30))
        .await;
    let report = load.finish().await;
    assert!(
        report.failed.is_empty(),
        "writes failed: {:?}",
        report.failed
    );

    let leader = cluster.leader().await;
    let members = cluster.members(leader).await;
    let mut ids: Vec<u64> = members.iter().map(|member| member.id).collect();
    ids.sort_unstable();
    let mut expected = cluster.ids();
    expected.sort_unstable();
    assert_eq!(ids, expected, "three members remain");
    assert!(members.iter().all(|member| member.voter));
    cluster.wait_converged().await;
    assert_all_acked_present(&cluster, "s5/", &report).await;
    assert_same_state(&cluster).await;
}

/// Scenario 6: a node crashes in the middle of installing a snapshot; it
/// restarts, finishes the install and converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_snapshot_install_is_recovered_at_restart() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, _leader, follower) = cluster_with_frequent_snapshots().await;
    let load = WriteLoad::start(cluster.urls(), "s6a", 100, Duration::from_secs(60));
    load.wait_acked(100, Duration::from_secs(60)).await;
    let before = load.finish().await;
    cluster.wait_converged().await;
    cluster.node_mut(follower).kill9().await;

    let load = WriteLoad::start(cluster.urls(), "s6b", 600, Duration::from_secs(90));
    load.wait_acked(600, Duration::from_secs(90)).await;
    let during = load.finish().await;

    // The follower crashes once the snapshot replaced its topic, before
    // its view was rebuilt.
    let node = cluster.node_mut(follower);
    node.set_env("KV_CRASH_AT", Some("snapshot-topic-replaced"));
    node.spawn();
    let status = node
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the node crashed while installing the snapshot");
    // The crash point and the recovery path show only in the node's own
    // output: its exit status and messages are what there is to check.
    assert!(!status.success(), "the crash point aborted the process");
    assert!(
        node.log_contains("KV_CRASH_AT reached"),
        "{}",
        node.log_tail(20)
    );

    node.set_env("KV_CRASH_AT", None);
    node.restart().await;
    assert!(
        node.log_contains("finishing an interrupted snapshot install"),
        "{}",
        node.log_tail(20)
    );
    cluster.wait_converged().await;
    assert_all_acked_present(&cluster, "s6a/", &before).await;
    assert_all_acked_present(&cluster, "s6b/", &during).await;
    assert_same_state(&cluster).await;
}

/// The client library through a leader's death: every write of a stream
/// succeeds, and none is applied twice although some are retried on
/// another node after the leader died with their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_fails_over_when_the_leader_dies_and_applies_each_write_once() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let client = kv_client::Client::new(cluster.urls()).expect("loopback endpoints are valid");
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = tokio::spawn({
        let client = client.clone();
        let acked = std::sync::Arc::clone(&acked);
        async move {
            for n in 0..400 {
                let written = client
                    .put(&format!("client/{n:04}"), &json!({ "n": n }))
                    .await
                    .unwrap_or_else(|error| panic!("write {n} failed: {error}"));
                assert_eq!(written.version, 1, "write {n} was applied twice");
                acked.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(std::sync::atomic::Ordering::Acquire) < 100 {
        assert!(
            Instant::now() < deadline,
            "the first 100 writes took over 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = cluster.leader().await;
    cluster.node_mut(leader).kill9().await;
    tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .expect("the writes finish within 120 s")
        .expect("every write succeeds exactly once");

    cluster.wait_converged().await;
    let survivor = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let keys = cluster.keys(survivor, "client/").await;
    assert_eq!(keys.len(), 400);
    let state = cluster.replayed_state(survivor).await;
    for n in 0..400 {
        let key = format!("client/{n:04}");
        let (value, _) = &state[&key];
        assert_eq!(value, &json!({ "n": n }));
    }
    // One record per key in the topic: no write was applied twice.
    let records = reqwest::get(cluster.node(survivor).url("/v1/topic/records?from=0"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let client_records = records
        .lines()
        .filter(|line| line.contains("\"client/"))
        .count();
    assert_eq!(client_records, 400, "each write left exactly one record");
}

/// Concurrent linearizable reads share read-index rounds; a read must never
/// be answered by a round that started before it. While background readers
/// keep rounds in flight on every node, each acknowledged write is read
/// back at once from every node, and every read sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_read_index_rounds_never_serve_a_read_from_before_it() {
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::start(3, &[]).await;
    let urls = cluster.urls();
    let http = reqwest::Client::new();
    let stop_at = Instant::now() + Duration::from_secs(20);

    // Background load: linearizable reads on every node until told to stop
    // (or the deadline), so that a round is running whenever a check reads.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut background = Vec::new();
    for worker in 0..6 {
        let (http, url, stop) = (
            http.clone(),
            urls[worker % urls.len()].clone(),
            stop.clone(),
        );
        background.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < stop_at {
                let _ = http
                    .get(format!("{url}/v1/kv/rounds/noise?consistency=linearizable"))
                    .send()
                    .await;
                reads += 1;
            }
            reads
        }));
    }

    for round in 0..40u64 {
        let writer = &urls[round as usize % urls.len()];
        let response = http
            .put(format!("{writer}/v1/kv/rounds/checked"))
            .json(&json!(round))
            .send()
            .await
            .expect("the write is answered");
        assert!(
            response.status().is_success(),
            "write {round}: {}",
            response.status()
        );
        let reads = urls.iter().cycle().take(12).map(|url| {
            let http = http.clone();
            let url = format!("{url}/v1/kv/rounds/checked?consistency=linearizable");
            async move {
                let body: Value = http.get(&url).send().await?.json().await?;
                Ok::<_, reqwest::Error>((url, body))
            }
        });
        for read in futures::future::join_all(reads).await {
            let (url, body) = read.expect("the read is answered");
            assert_eq!(
                body["value"],
                json!(round),
                "{url} answered a value from before the acknowledged write {round}: {body}"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut background_reads = 0;
    for task in background {
        background_reads += task.await.unwrap();
    }
    assert!(background_reads > 0, "the background readers ran");
}

/// Members of the cluster as node `server` lists them: (id, voter).
async fn members_of(server: &integration_tests::TestServer) -> Vec<(u64, bool)> {
    let (status, body) = get(&server.url("/v1/cluster"), Duration::from_secs(10))
        .await
        .expect("the node answers /v1/cluster");
    assert_eq!(status, 200, "{body}");
    body["members"]
        .as_array()
        .expect("a member list")
        .iter()
        .map(|member| {
            (
                member["id"].as_u64().expect("an id"),
                member["voter"].as_bool().expect("a voter flag"),
            )
        })
        .collect()
}

/// A joining node killed after the leader added it as a learner and before
/// it promoted it (the leader's handler is held there by `KV_DELAY_AT`, and
/// dropped when the node's request goes) finds itself a learner when it
/// starts again with `--join`, and asks again: it becomes a voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_killed_before_its_promotion_is_promoted_once_it_starts_again() {
    use integration_tests::{free_ports, TestServer};
    let _serial = SERIAL.lock().await;
    let [port, peer_port, joiner_port, joiner_peer_port] = free_ports(4)[..] else {
        unreachable!("four ports were asked for")
    };
    let mut leader = TestServer::unstarted(1, port, peer_port, &[]);
    leader.set_env("KV_DELAY_AT", Some("member-learner-added:3000"));
    leader.spawn();
    leader.wait_ready().await;
    let via = leader.peer_url();
    let mut joiner = TestServer::unstarted(2, joiner_port, joiner_peer_port, &["--join", &via]);
    joiner.spawn();

    // Added as a learner, the add held, and the learner has the log (a
    // node killed before any entry reached it starts again as a new
    // joiner, not as the learner this test is about).
    let has_log = |node: &TestServer| {
        let url = node.url("/v1/cluster");
        async move {
            get(&url, Duration::from_secs(10))
                .await
                .ok()
                .is_some_and(|(_, body)| body["last_log_index"].as_u64().unwrap_or(0) > 0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(members_of(&leader).await.contains(&(2, false))
        && leader.log_contains("KV_DELAY_AT reached")
        && has_log(&joiner).await)
    {
        assert!(
            Instant::now() < deadline,
            "node 2 was not added as a learner with the log, the add held: {:?}",
            members_of(&leader).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The leader's add is held, and dropped with the request: nothing else
    // would promote node 2.
    joiner.kill9().await;

    joiner.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !members_of(&leader).await.contains(&(2, true)) {
        assert!(
            Instant::now() < deadline,
            "node 2 was not promoted after it started again: {:?}\n{}",
            members_of(&leader).await,
            joiner.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        joiner.log_contains("asking again to be promoted"),
        "node 2 asked again: {}",
        joiner.log_tail(20)
    );
}

/// A member added before its node first runs (etcd's "member add, then
/// start it"), as a learner, joins once started with `--join`: its empty
/// log has lost nothing, since the leader never reached it (it was refused
/// as a member whose data was lost). Another member asking for the same
/// peer endpoint, however spelled, or the same client endpoint, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_added_before_its_node_runs_joins_once_started() {
    use integration_tests::{call, free_ports, TestServer};
    let _serial = SERIAL.lock().await;
    let [port, peer_port, joiner_port, joiner_peer_port] = free_ports(4)[..] else {
        unreachable!("four ports were asked for")
    };
    let mut leader = TestServer::unstarted(1, port, peer_port, &[]);
    leader.spawn();
    leader.wait_ready().await;
    let joiner_peer_url = format!("http://127.0.0.1:{joiner_peer_port}");
    let add = |id: u64| {
        json!({
            "id": id,
            "addr": format!("http://127.0.0.1:{joiner_port}"),
            "peer_addr": joiner_peer_url,
            "voter": false,
        })
    };
    let (status, body) = call(&leader, "POST", "/v1/cluster/members", Some(add(2))).await;
    assert_eq!(status, 200, "{body}");
    // The same endpoint, spelled other ways.
    for host in ["localhost", "[::ffff:127.0.0.1]", "0.0.0.0"] {
        let mut other_spelling = add(3);
        other_spelling["peer_addr"] = json!(format!("http://{host}:{joiner_peer_port}"));
        let (status, body) =
            call(&leader, "POST", "/v1/cluster/members", Some(other_spelling)).await;
        assert_eq!(status, 409, "{host}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("node 2")),
            "{host}: {body}"
        );
    }
    // Another peer endpoint, but the same client endpoint: clients sent to
    // one would reach the other.
    let mut same_client = add(3);
    same_client["peer_addr"] = json!(format!("http://127.0.0.1:{}", free_ports(1)[0]));
    let (status, body) = call(&leader, "POST", "/v1/cluster/members", Some(same_client)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("node 2") && message.contains("client URL")),
        "{body}"
    );

    let via = leader.peer_url();
    let mut joiner = TestServer::unstarted(2, joiner_port, joiner_peer_port, &["--join", &via]);
    joiner.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !members_of(&leader).await.contains(&(2, true)) {
        assert!(
            joiner.is_running() && Instant::now() < deadline,
            "node 2 was not promoted: {:?}\n{}",
            members_of(&leader).await,
            joiner.log_tail(20)
        );
        if joiner.wait_exit(Duration::from_millis(100)).await.is_some() {
            panic!("node 2 stopped: {}", joiner.log_tail(20));
        }
    }
}

/// Waits (a minute at most) for `node` to exit with a failure whose log
/// says `says`.
async fn assert_stops_saying(node: &mut integration_tests::TestServer, says: &str) {
    let exited = node.wait_exit(Duration::from_secs(60)).await;
    assert!(
        exited.is_some_and(|status| !status.success()),
        "node {} kept running: {}",
        node.node_id(),
        node.log_tail(20)
    );
    assert!(node.log_contains(says), "{}", node.log_tail(20));
}

/// A member started again at another peer address, which the membership
/// does not list, stops and says how to move it: the others reach it at
/// its old address only, so as a leader it took no write through them
/// (they knew it led, and could not pass it one). The others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_started_at_another_peer_address_stops_and_says_how_to_move_it() {
    use integration_tests::{call, free_ports};
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let moved = cluster.follower_of(leader);
    let node = cluster.node_mut(moved);
    node.stop().await;
    node.move_peer_port(free_ports(1)[0]);
    node.spawn();
    assert_stops_saying(node, "which does not reach it").await;
    assert!(
        node.log_contains("kvctl cluster remove"),
        "{}",
        node.log_tail(20)
    );
    let (status, body) = call(
        cluster.node(leader),
        "PUT",
        "/v1/kv/after-the-move",
        Some(json!(1)),
    )
    .await;
    assert!(status < 300, "{status} {body}");
}

/// A node whose data directory holds another cluster, started with
/// `--join` naming a member of this one, stops and says so: `--join` is
/// read only with an empty data directory, and the node used to serve the
/// old cluster's data, ready, without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_naming_another_cluster_than_the_data_directory_holds_stops() {
    use integration_tests::{call, TestServer};
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::start(3, &[]).await;
    let mut other = TestServer::start().await;
    let (status, body) = call(&other, "PUT", "/v1/kv/stale", Some(json!(1))).await;
    assert!(status < 300, "{status} {body}");
    other.stop().await;
    let member = cluster.node(cluster.leader().await).peer_url();
    other.set_env("KV_JOIN", Some(&member));
    other.spawn();
    assert_stops_saying(
        &mut other,
        "--join is read only by a node whose data directory is empty",
    )
    .await;
}

/// Nodes given different `--peers` do not form a cluster: the one that
/// forms it would count a member the others do not know (a stray entry
/// made a cluster of four voters that one failure stopped). It stops,
/// naming both lists, as etcd refuses an initial cluster that differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_given_different_peers_do_not_form_a_cluster() {
    use integration_tests::{free_ports, TestServer};
    let _serial = SERIAL.lock().await;
    let ports = free_ports(7);
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let peers = format!(
        "1={},2={},3={}",
        url(ports[1]),
        url(ports[3]),
        url(ports[5])
    );
    let with_a_stray = format!("{peers},4={}", url(ports[6]));
    let mut nodes: Vec<TestServer> = (1..=3u64)
        .map(|id| {
            let list = if id == 1 { &with_a_stray } else { &peers };
            let index = 2 * (id as usize - 1);
            TestServer::unstarted(id, ports[index], ports[index + 1], &["--peers", list])
        })
        .collect();
    for node in &mut nodes {
        node.spawn();
    }
    // Whichever asks first finds the difference and stops; the others
    // are then left waiting for answers, forming nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stopped = 'found: loop {
        for node in &mut nodes {
            if node.wait_exit(Duration::from_millis(100)).await.is_some() {
                break 'found node.node_id();
            }
        }
        assert!(Instant::now() < deadline, "no node stopped");
    };
    let node = &nodes[stopped as usize - 1];
    assert!(
        node.log_contains("must be given the same --peers"),
        "{}",
        node.log_tail(20)
    );
    let first = &mut nodes[0];
    if first.is_running() && first.wait_exit(Duration::from_millis(100)).await.is_none() {
        let (_, status) = integration_tests::call(first, "GET", "/v1/cluster", None).await;
        assert_eq!(
            status["members"],
            json!([]),
            "node 1 formed a cluster: {status}"
        );
    }
}

/// A leader cut off from every follower still calls itself leader (openraft
/// 0.9 does not step down), but says how long ago a majority acknowledged
/// it: in `/v1/cluster`, `kvctl cluster status` and `/metrics`. Nothing
/// told it apart from a healthy leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_followers_says_so() {
    use integration_tests::{call, kvctl};
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let (_, status) = call(cluster.node(leader), "GET", "/v1/cluster", None).await;
    assert!(
        status["quorum_ack_ms"]
            .as_u64()
            .is_some_and(|ms| ms < 5_000),
        "{status}"
    );
    let followers: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    for id in &followers {
        cluster.node_mut(*id).pause();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, status) = call(cluster.node(leader), "GET", "/v1/cluster", None).await;
        if status["quorum_ack_ms"]
            .as_u64()
            .is_some_and(|ms| ms >= 5_000)
        {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shown = kvctl(&cluster.node(leader).url(""), &["cluster", "status"]).await;
    let metrics = cluster
        .node(leader)
        .client()
        .get(cluster.node(leader).url("/metrics"))
        .send()
        .await
        .expect("the leader answers")
        .text()
        .await
        .expect("a body");
    for id in &followers {
        cluster.node_mut(*id).resume();
    }
    let shown = shown.success();
    assert!(
        shown.stdout.contains("NOT acknowledged by a majority"),
        "{}",
        shown.stdout
    );
    let age = metrics
        .lines()
        .find_map(|line| line.strip_prefix("kv_raft_quorum_ack_age_seconds "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(age.is_some_and(|age| age >= 5.0), "{age:?}");
}

/// Adding a node that runs as a member of another cluster is refused at
/// once, naming that cluster: it used to be added as a learner that
/// refused every call, and the add waited its whole catch-up time to say
/// the node had not caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_node_of_another_cluster_is_refused_at_once() {
    use integration_tests::{call, TestServer};
    let _serial = SERIAL.lock().await;
    let leader = TestServer::start().await;
    let other = TestServer::start().await;
    let add = json!({
        "id": 2,
        "addr": other.url("").trim_end_matches('/'),
        "peer_addr": other.peer_url(),
    });
    let (status, body) = call(&leader, "POST", "/v1/cluster/members", Some(add)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("foreign_cluster")),
        "{body}"
    );
    let (_, cluster) = call(&leader, "GET", "/v1/cluster", None).await;
    assert_eq!(
        cluster["members"].as_array().map(Vec::len),
        Some(1),
        "{cluster}"
    );
}

/// Without a majority a node still answers watches from its own view when
/// asked for stale answers, and its change feed; a key's long-poll is a
/// linearizable read unless it asks for `consistency=stale` (as a Consul
/// blocking query goes through the leader unless `stale`), and answers 503
/// once its wait ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_stale_long_polls_and_the_change_feed_still_answer() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &["--request-timeout-ms", "1500"]).await;
    let leader = cluster.leader().await;
    let (status, written) = put(&cluster.node(leader).url("/v1/kv/w/k"), &json!(1)).await;
    assert!(status == 200 || status == 201, "{status} {written}");
    let revision = written["revision"].as_u64().expect("a revision");
    cluster.wait_converged().await;
    let followers = pause_followers(&mut cluster, leader);
    let node = cluster.node(leader);
    let stale = format!("/v1/kv/w/k?index={revision}&wait=1s&consistency=stale");
    let (status, body) = integration_tests::call(node, "GET", &stale, None).await;
    assert_eq!(status, 200, "a stale long-poll without a majority: {body}");
    assert_eq!(body["value"], json!(1), "{body}");
    let feed = format!("/v1/changes?from={}&wait=1s", revision + 1);
    let (status, body) = integration_tests::call(node, "GET", &feed, None).await;
    assert_eq!(status, 200, "the change feed without a majority: {body}");
    assert_eq!(body["records"], json!([]), "{body}");
    let linearizable = format!("/v1/kv/w/k?index={revision}&wait=1s");
    let (status, body) = integration_tests::call(node, "GET", &linearizable, None).await;
    assert_eq!(
        status, 503,
        "a linearizable long-poll without a majority: {body}"
    );
    for id in &followers {
        cluster.node_mut(*id).resume();
    }
    cluster.wait_converged().await;
}
