//! A three-node cluster under the pressure one careless or hostile client
//! population can put on it: 1,000 replays that never read and 20,000
//! long-polls that wait, spread over the nodes. Writes still commit, a
//! killed leader is replaced within 3 s, and each node's memory grows by
//! less than [`RSS_GROWTH_AT_MOST`].

use std::time::{Duration, Instant};

use futures::future::join_all;
use integration_tests::{call, http2_client, stingy_http2_client, TestCluster, TestServer};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// Replays opened in all, none of them ever read.
const STALLED_REPLAYS: usize = 1_000;
/// Long-polls waiting in all.
const IDLE_LONG_POLLS: usize = 20_000;
/// HTTP/2 connections each node is sent long-polls on: enough that none
/// passes the server's `--max-long-polls-per-connection` (900).
const CONNECTIONS_PER_NODE: usize = 8;
/// Values written before the replays, each of [`VALUE_CHARS`]: far more
/// than HTTP/2's smallest flow-control window lets through unread.
const VALUES: usize = 64;
/// Characters of each value.
const VALUE_CHARS: usize = 16 * 1024;
/// Writes made at once while the cluster is under pressure.
const WRITES: usize = 64;
/// A write takes milliseconds on loopback; this is ample on a loaded machine.
const WRITE_WITHIN: Duration = Duration::from_secs(3);
/// From the leader's death to a write acknowledged by its successor.
const FAILOVER_WITHIN: Duration = Duration::from_secs(3);
/// How long the long-polls may take to register.
const REGISTERED_WITHIN: Duration = Duration::from_secs(60);
/// Growth of each node's memory the whole load may cause. Measured: 90–100
/// MB per node for a third of the load (334 replays, 6,667 long-polls):
/// about 20 MB of unread replay buffers, and about 11 KB per long-poll.
const RSS_GROWTH_AT_MOST: u64 = 256 << 20;
/// Pause between two looks at the cluster while it elects a leader.
const POLL: Duration = Duration::from_millis(20);

/// Sends one request, so the connection knows the server's settings
/// before many streams are opened on it.
async fn warm(client: &reqwest::Client, node: &TestServer) {
    let answer = client
        .get(node.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap_or_else(|error| panic!("node {} serves HTTP/2: {error}", node.node_id()));
    assert_eq!(answer.status(), 200);
}

/// Opens `count` replays of the whole topic on `node` and never reads them.
async fn stall_replays(node: &TestServer, count: usize) -> Vec<reqwest::Response> {
    let client = stingy_http2_client();
    warm(&client, node).await;
    let opened =
        join_all((0..count).map(|_| client.get(node.url("/v1/topic/records?from=0")).send())).await;
    opened
        .into_iter()
        .map(|answer| {
            let answer = answer.expect("a replay is answered");
            assert_eq!(answer.status(), 200, "node {}", node.node_id());
            answer
        })
        .collect()
}

/// Sends `count` long-polls to `node`, each watching a key nobody writes,
/// spread over [`CONNECTIONS_PER_NODE`] connections.
async fn idle_long_polls(node: &TestServer, count: usize, index: u64) -> Vec<JoinHandle<()>> {
    let mut polls = Vec::with_capacity(count);
    for connection in 0..CONNECTIONS_PER_NODE {
        let client = http2_client();
        warm(&client, node).await;
        for i in (connection..count).step_by(CONNECTIONS_PER_NODE) {
            let request = client
                .get(node.url(&format!("/v1/kv/idle/{i}?index={index}&wait=100s")))
                .send();
            // Answered only when the test ends and the connection drops, or
            // when its node is killed.
            polls.push(tokio::spawn(async move {
                let _ = request.await;
            }));
        }
    }
    polls
}

/// Waits until the nodes still running name one leader that is not `dead`
/// and it acknowledges a write; returns its id.
async fn write_to_a_new_leader(cluster: &TestCluster, dead: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for id in cluster.ids() {
            if id == dead {
                continue;
            }
            let Some(status) = cluster.status(id).await else {
                continue;
            };
            if status["state"] != "Leader" {
                continue;
            }
            let (code, _) = call(cluster.node(id), "PUT", "/v1/kv/after", Some(json!(1))).await;
            if code == 201 {
                return id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no node took over from node {dead}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_replays_and_idle_long_polls_stop_neither_writes_nor_failover() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    for i in 0..VALUES {
        let value = Value::String("r".repeat(VALUE_CHARS));
        let node = cluster.node(leader);
        let (status, answer) =
            call(node, "PUT", &format!("/v1/kv/replayed/{i}"), Some(value)).await;
        assert_eq!(status, 201, "PUT replayed/{i}: {answer}");
    }
    cluster.wait_converged().await;
    let (_, written) = call(cluster.node(leader), "GET", "/v1/kv/replayed/0", None).await;
    let index = written["mod_revision"]
        .as_u64()
        .expect("a key has a revision")
        + 1_000_000;

    let ids = cluster.ids();
    let before: Vec<u64> = ids
        .iter()
        .map(|id| cluster.node(*id).resident_bytes())
        .collect();
    let mut stalled = Vec::new();
    let mut polls = Vec::new();
    for id in &ids {
        let node = cluster.node(*id);
        stalled.extend(stall_replays(node, STALLED_REPLAYS / ids.len() + 1).await);
        polls.extend(idle_long_polls(node, IDLE_LONG_POLLS / ids.len() + 1, index).await);
    }
    assert!(stalled.len() >= STALLED_REPLAYS && polls.len() >= IDLE_LONG_POLLS);
    for id in &ids {
        let node = cluster.node(*id);
        node.wait_for_waiters((IDLE_LONG_POLLS / ids.len() + 1) as u64, REGISTERED_WITHIN)
            .await;
    }
    for (id, before) in ids.iter().zip(&before) {
        let grown = cluster.node(*id).resident_bytes().saturating_sub(*before);
        eprintln!(
            "node {id}: {} stalled replays and {} long-polls grew it by {} MB",
            STALLED_REPLAYS / ids.len() + 1,
            IDLE_LONG_POLLS / ids.len() + 1,
            grown >> 20
        );
        assert!(
            grown <= RSS_GROWTH_AT_MOST,
            "node {id} grew by {} MB under the load",
            grown >> 20
        );
    }

    // Writes commit, on every node's side of the load.
    let started = Instant::now();
    let writes = join_all((0..WRITES).map(|i| {
        let node = cluster.node(ids[i % ids.len()]);
        async move { call(node, "PUT", &format!("/v1/kv/during/{i}"), Some(json!(i))).await }
    }))
    .await;
    let took = started.elapsed();
    for (i, (status, answer)) in writes.iter().enumerate() {
        assert_eq!(*status, 201, "write {i} under load: {answer}");
    }
    assert!(took < WRITE_WITHIN, "{WRITES} writes took {took:?}");

    // The leader dies (the load may have moved the leadership: the one
    // leading now); another takes over and acknowledges a write in time.
    let leader = cluster.leader().await;
    cluster.node_mut(leader).kill9().await;
    let killed = Instant::now();
    let successor = write_to_a_new_leader(&cluster, leader).await;
    let failover = killed.elapsed();
    eprintln!("node {successor} took over from node {leader} in {failover:?}");
    assert!(
        failover < FAILOVER_WITHIN,
        "failover took {failover:?} under load"
    );
    drop(stalled);
    for poll in polls {
        poll.abort();
    }
}
