//! A slow or stalled disk, made with `KV_FSYNC_DELAY_MS` (every fsync of
//! the raft log and of the checkpoint sleeps that long first): reads keep
//! being served, memory stays bounded, writes are held back or refused
//! with 503, and everything works again once the disk recovers.
//!
//! The scenarios run one at a time: each starts real servers, and on a
//! small machine running them side by side would only test the scheduler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::{call, TestCluster, TestServer};
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The variable that slows a node's fsyncs.
const FSYNC_DELAY: &str = "KV_FSYNC_DELAY_MS";

/// Elections a test may go through to put the slow node in the lead. The
/// slow node wins one only by timing out first and saving its vote (one
/// slow fsync) before the other candidate asks: on a loaded 2-core
/// machine, 12 elections once went by without it.
const ELECTIONS: usize = 40;

/// Makes node `slow` the leader: pauses whichever other node leads, so the
/// others elect again, until `slow` wins.
async fn make_leader(cluster: &mut TestCluster, slow: u64) {
    for _ in 0..ELECTIONS {
        let leader = cluster.leader().await;
        if leader == slow {
            return;
        }
        cluster.node_mut(leader).pause();
        cluster.leader_among(&[leader]).await;
        cluster.node_mut(leader).resume();
    }
    panic!("node {slow} did not win any of {ELECTIONS} elections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linearizable_reads_keep_succeeding_while_the_leaders_fsync_is_slow() {
    let _serial = SERIAL.lock().await;
    const WRITERS: u64 = 4;
    const RUN: Duration = Duration::from_secs(8);
    let mut cluster = TestCluster::start(3, &["--request-timeout-ms", "3000"]).await;
    let slow = cluster.leader().await;
    cluster.node_mut(slow).set_env(FSYNC_DELAY, Some("300"));
    cluster.node_mut(slow).restart().await;
    make_leader(&mut cluster, slow).await;
    let follower = cluster.ids().into_iter().find(|id| *id != slow).unwrap();
    let cluster = Arc::new(cluster);

    // acked[w]: the last value writer w had acknowledged.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let deadline = Instant::now() + RUN;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (cluster, acked) = (Arc::clone(&cluster), Arc::clone(&acked));
        writers.push(tokio::spawn(async move {
            let path = format!("/v1/kv/slow/w{writer}");
            let mut value = 0;
            while Instant::now() < deadline {
                value += 1;
                let (status, body) =
                    call(cluster.node(slow), "PUT", &path, Some(json!(value))).await;
                assert!(
                    status == 200 || status == 201,
                    "write {value} of writer {writer}: {status} {body}"
                );
                acked[writer as usize].store(value, Ordering::SeqCst);
            }
        }));
    }
    // Each read must see at least what was acknowledged before it was sent.
    let mut readers = Vec::new();
    for node in [slow, follower] {
        let (cluster, acked) = (Arc::clone(&cluster), Arc::clone(&acked));
        readers.push(tokio::spawn(async move {
            let (mut served, mut failed) = (0u64, Vec::new());
            let mut round = 0u64;
            while Instant::now() < deadline {
                let writer = round % WRITERS;
                round += 1;
                let seen_before = acked[writer as usize].load(Ordering::SeqCst);
                if seen_before == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let path = format!("/v1/kv/slow/w{writer}");
                let started = Instant::now();
                let (status, body) = call(cluster.node(node), "GET", &path, None).await;
                if status != 200 {
                    failed.push(format!(
                        "node {node}: {status} after {:?}: {body}",
                        started.elapsed()
                    ));
                    continue;
                }
                let value = body["value"].as_u64().expect("a counter");
                assert!(
                    value >= seen_before,
                    "node {node} read {value} for writer {writer} after {seen_before} was acknowledged"
                );
                served += 1;
            }
            (served, failed)
        }));
    }
    for writer in writers {
        writer.await.expect("a writer does not panic");
    }
    for reader in readers {
        let (served, failed) = reader.await.expect("a reader does not panic");
        assert!(
            failed.is_empty(),
            "{} of {} linearizable reads failed, first: {:?}",
            failed.len(),
            served + failed.len() as u64,
            failed.first()
        );
        assert!(served >= 10, "only {served} reads were served");
    }
    let written: u64 = acked.iter().map(|value| value.load(Ordering::SeqCst)).sum();
    assert!(written >= 4, "only {written} writes were acknowledged");
}

/// One PUT: its status, its `Retry-After` and its body.
async fn put(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Option<String>, Value) {
    let response = client
        .put(url)
        .json(body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("ASCII").to_string());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_flood_on_a_slow_disk_is_held_back_in_bounded_memory_and_writes_succeed_after() {
    let _serial = SERIAL.lock().await;
    /// Writers, each with one 1 MB write out at a time: twice the budget.
    const WRITERS: usize = 16;
    const FLOOD: Duration = Duration::from_secs(12);
    /// The node's resident memory must stay under this (it starts near
    /// 30 MiB; the budget below is 8 MiB).
    const RSS_BOUND: u64 = 384 << 20;
    let mut server = TestServer::start_with(&["--max-pending-write-bytes", "8388608"]).await;
    server.set_env(FSYNC_DELAY, Some("1500"));
    server.restart().await;
    let server = Arc::new(server);
    let value = json!("x".repeat(1_000_000));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = Instant::now() + FLOOD;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (server, value, stop) = (Arc::clone(&server), value.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client builds");
            // Each writer overwrites its own key: the view stays small, and
            // what grows is what waits for the disk.
            let url = server.url(&format!("/v1/kv/flood/{writer}"));
            let (mut acked, mut refused) = (0u64, Vec::new());
            while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                match put(&client, &url, &value).await {
                    (200 | 201, _, _) => acked += 1,
                    (503, retry_after, body) => refused.push((retry_after, body)),
                    (status, _, body) => panic!("writer {writer}: {status} {body}"),
                }
            }
            (acked, refused)
        }));
    }
    let mut most_resident = 0;
    while Instant::now() < deadline {
        let resident = server.resident_bytes();
        most_resident = most_resident.max(resident);
        if resident > RSS_BOUND {
            // Failed already; stop before the machine runs short.
            stop.store(true, Ordering::SeqCst);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut acked, mut refused) = (0, Vec::new());
    for writer in writers {
        let (writer_acked, writer_refused) = writer.await.expect("a writer does not panic");
        acked += writer_acked;
        refused.extend(writer_refused);
    }
    assert!(
        most_resident <= RSS_BOUND,
        "the node's memory reached {} MiB under the flood, past {} MiB",
        most_resident >> 20,
        RSS_BOUND >> 20
    );
    assert!(
        acked > 0,
        "no write of the flood was acknowledged (at most {} MiB resident)",
        most_resident >> 20
    );
    let (retry_after, body) = refused
        .first()
        .unwrap_or_else(|| panic!("no write was held back with 503 ({acked} acknowledged)"));
    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("--max-pending-write-bytes 8388608"),
        "the 503 names the limit: {body}"
    );

    // The flood is over: the backlog drains and a write goes through again.
    let client = server.client();
    let url = server.url("/v1/kv/after/flood");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = put(client, &url, &json!("ok")).await;
        if status == 200 || status == 201 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "writes still refused: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, entry) = call(&server, "GET", "/v1/kv/after/flood", None).await;
    assert_eq!((status, entry["value"].clone()), (200, json!("ok")));
    // Each of the log's syncs took 1.5 s: the log says so, naming the file.
    assert!(
        server.log_contains("a raft log write and sync took")
            && server.log_contains("the disk is slow"),
        "no slow-sync warning in the node's log"
    );
    eprintln!(
        "flood: {acked} writes acknowledged, {} refused with 503, at most {} MiB resident",
        refused.len(),
        most_resident >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_reads_and_healthz_answer_at_once_while_checkpoints_sit_in_slow_fsyncs() {
    let _serial = SERIAL.lock().await;
    /// Every fsync, the checkpoint's included, takes this long.
    const FSYNC_MS: &str = "2000";
    /// Longest a stale read or `/healthz` may take.
    const QUICK: Duration = Duration::from_millis(750);
    let mut server = TestServer::start().await;
    server.set_env(FSYNC_DELAY, Some(FSYNC_MS));
    server.restart().await;
    let server = Arc::new(server);
    let (status, _) = call(&server, "PUT", "/v1/kv/slow/read", Some(json!("v"))).await;
    assert!(status == 200 || status == 201, "{status}");

    // Writes keep the checkpoints busy with work while the reads run.
    let deadline = Instant::now() + Duration::from_secs(8);
    let writer = tokio::spawn({
        let server = Arc::clone(&server);
        async move {
            let mut written = 0u64;
            while Instant::now() < deadline {
                let path = format!("/v1/kv/slow/w{}", written % 64);
                let (status, body) = call(&server, "PUT", &path, Some(json!(written))).await;
                assert!(status == 200 || status == 201, "{status} {body}");
                written += 1;
            }
            written
        }
    });
    let mut slowest = Duration::ZERO;
    let mut asked = 0;
    while Instant::now() < deadline {
        for path in ["/healthz", "/v1/kv/slow/read?consistency=stale"] {
            let started = Instant::now();
            let (status, body) = call(&server, "GET", path, None).await;
            assert_eq!(status, 200, "{path}: {body}");
            slowest = slowest.max(started.elapsed());
            asked += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = writer.await.expect("the writer does not panic");
    assert!(written > 0, "no write went through");
    assert!(
        slowest < QUICK,
        "of {asked} stale reads and health checks the slowest took {slowest:?}"
    );
}
