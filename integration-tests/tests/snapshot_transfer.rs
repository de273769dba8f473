//! A snapshot sent to a follower in chunks: a transfer cut in the middle
//! resumes where the follower stopped; a follower catching up on a
//! snapshot larger than its memory budget, and the leader that built it,
//! stay within it.
//!
//! Real `kv-server` processes on loopback; the leader reaches the follower
//! through a proxy on its peer port that can cut a connection mid-request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::{CuttingProxy, TestCluster};
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// One scenario at a time: each starts three servers.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The node whose peer port sits behind the proxy.
const PROXIED: u64 = 3;
/// Bytes of snapshot per chunk, as the sender cuts them.
const CHUNK_BYTES: u64 = 1 << 20;
/// `--snapshot-every` of the interrupted transfer's cluster.
const SNAPSHOT_EVERY: u64 = 200;
/// How long a leader may take to snapshot and purge its log.
const PURGE_TIMEOUT: Duration = Duration::from_secs(120);
/// The same for the 5 million keys of the memory test: a build reads the
/// topic once per million keys (see `snapshot_build`), and once more to
/// write.
const BIG_PURGE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Three nodes snapshotting every `snapshot_every` entries and keeping 10
/// behind, node [`PROXIED`] reached by its peers through a cutting proxy.
/// `more` are further flags of every node.
async fn cluster_behind_proxy(snapshot_every: &str, more: &[&str]) -> (TestCluster, CuttingProxy) {
    let mut proxy = None;
    let mut args = vec![
        "--snapshot-every",
        snapshot_every,
        "--snapshot-catchup-entries",
        "10",
    ];
    args.extend_from_slice(more);
    let cluster = TestCluster::start_routed(3, &args, &mut |id, peer_port| {
        (id == PROXIED).then(|| {
            let started = CuttingProxy::start(([127, 0, 0, 1], peer_port).into());
            let url = started.url();
            proxy = Some(started);
            url
        })
    })
    .await;
    (cluster, proxy.expect("the proxied node was routed"))
}

/// The leader, once it is not the proxied node (which is then stopped and
/// restarted: it must be a follower to be sent a snapshot).
async fn leader_other_than_proxied(cluster: &mut TestCluster) -> u64 {
    let leader = cluster.leader().await;
    if leader != PROXIED {
        return leader;
    }
    cluster.node_mut(PROXIED).stop().await;
    let leader = cluster.leader_among(&[PROXIED]).await;
    cluster.node_mut(PROXIED).restart().await;
    cluster.wait_converged().await;
    leader
}

/// `GET /v1/cluster` field `field` of node `id`.
async fn status_field(cluster: &TestCluster, id: u64, field: &str) -> u64 {
    let status = cluster
        .status(id)
        .await
        .unwrap_or_else(|| panic!("node {id} answers GET /v1/cluster"));
    status[field]
        .as_u64()
        .unwrap_or_else(|| panic!("node {id} reports {field}: {status}"))
}

/// Waits until `leader` has purged its log past `index`, for `timeout` at
/// most; the purged index.
async fn wait_for_purge_past(
    cluster: &TestCluster,
    leader: u64,
    index: u64,
    timeout: Duration,
) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        // `null` until the first purge.
        let status = cluster.status(leader).await;
        let purged = status.and_then(|status| status["purged_index"].as_u64());
        if let Some(purged) = purged.filter(|purged| *purged > index) {
            return purged;
        }
        assert!(
            Instant::now() < deadline,
            "node {leader} did not purge its log past {index} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes keys `prefix/000000`… `count` of them, `per_txn` to a transaction,
/// each value `value_bytes` long, from a few concurrent clients. Entries
/// stay small (a few KiB): a batch of large ones cannot reach a follower
/// within openraft's append timeout of one heartbeat.
async fn load(url: &str, prefix: &str, count: usize, per_txn: usize, value_bytes: usize) {
    let writers = 4;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain HTTP client builds");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let filler = "x".repeat(value_bytes);
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (client, next, filler) = (client.clone(), Arc::clone(&next), filler.clone());
            let (url, prefix) = (url.to_string(), prefix.to_string());
            tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(per_txn, std::sync::atomic::Ordering::AcqRel);
                    if first >= count {
                        return;
                    }
                    let ops: Vec<Value> = (first..(first + per_txn).min(count))
                        .map(|n| json!({"put": {"key": format!("{prefix}/{n:08}"), "value": filler}}))
                        .collect();
                    let body = json!({"compare": [], "success": ops});
                    txn_with_retries(&client, &url, &body, first).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer finishes");
    }
}

/// Attempts at one write while the cluster has no leader (an election
/// on a loaded machine) before the test gives up.
const WRITE_ATTEMPTS: u32 = 100;

/// Sends the transaction `body` until it is applied; a 503 (no leader yet)
/// or a lost connection is tried again after a pause.
async fn txn_with_retries(client: &reqwest::Client, url: &str, body: &Value, first: usize) {
    for _ in 0..WRITE_ATTEMPTS {
        match client.post(format!("{url}/v1/txn")).json(body).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) if response.status() != 503 => {
                panic!("txn from key {first}: {}", response.status())
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("txn from key {first}: no leader after {WRITE_ATTEMPTS} attempts");
}

/// Writes single keys to `leader` until a snapshot covers its whole log
/// (one is built once `--snapshot-every` entries follow the last).
async fn snapshot_up_to_the_log_end(cluster: &TestCluster, leader: u64) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("a plain HTTP client builds");
    let url = cluster.node(leader).base_url();
    let mut written = 0usize;
    for _round in 0..5 {
        let mut behind = 0;
        // A build runs in the background: give it a moment to land.
        for _ in 0..50 {
            let snapshot = status_field(cluster, leader, "snapshot_index").await;
            let last = status_field(cluster, leader, "last_log_index").await;
            if snapshot == last {
                return;
            }
            behind = last - snapshot;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for _ in behind % SNAPSHOT_EVERY..SNAPSHOT_EVERY {
            let key = format!("pad/{written}");
            let body = json!({"compare": [], "success": [{"put": {"key": key, "value": 0}}]});
            txn_with_retries(&client, &url, &body, written).await;
            written += 1;
        }
    }
    panic!("node {leader} took no snapshot at its log's end");
}

/// Counts the keys under `prefix` on node `id` by stale reads, a page at a
/// time.
async fn count_keys(cluster: &TestCluster, id: u64, prefix: &str) -> usize {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain HTTP client builds");
    let base = cluster.node(id).base_url();
    let mut count = 0;
    let mut after = String::new();
    loop {
        let mut url = format!("{base}/v1/kv?prefix={prefix}/&limit=1000&consistency=stale");
        if !after.is_empty() {
            url.push_str(&format!("&start_after={after}"));
        }
        let page: Value = client
            .get(&url)
            .send()
            .await
            .expect("node answers a list")
            .json()
            .await
            .expect("a list is JSON");
        let keys = page["entries"].as_array().expect("a list has entries");
        count += keys.len();
        match keys.last() {
            Some(last) if page["more"].as_bool() == Some(true) => {
                after = last["key"].as_str().expect("a key").to_string();
            }
            _ => return count,
        }
    }
}

/// The lines of node `id`'s log about snapshots, for a failure's message.
fn snapshot_log(cluster: &TestCluster, id: u64) -> String {
    let data_dir = cluster.node(id).data_dir();
    let path = data_dir
        .parent()
        .expect("a data dir has a parent")
        .join("server.log");
    let log = std::fs::read_to_string(&path).unwrap_or_default();
    log.lines()
        .filter(|line| line.contains("snapshot"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The snapshots node `id` logged as received whole: id → bytes.
fn snapshots_received(cluster: &TestCluster, id: u64) -> BTreeMap<String, u64> {
    let field = |line: &str, name: &str| {
        let start = line.find(name)? + name.len();
        let rest = &line[start..];
        let end = rest.find([' ', '"']).unwrap_or(rest.len());
        Some(rest[..end].to_string())
    };
    snapshot_log(cluster, id)
        .lines()
        .filter(|line| line.contains("received a snapshot whole"))
        .filter_map(|line| {
            let snapshot = field(line, "snapshot=\"")?;
            let bytes = field(line, "bytes=")?.parse().ok()?;
            Some((snapshot, bytes))
        })
        .collect()
}

/// Length of node `id`'s current snapshot file.
fn snapshot_len(cluster: &TestCluster, id: u64) -> u64 {
    let path = cluster
        .node(id)
        .data_dir()
        .join("snapshot")
        .join("current.snap");
    std::fs::metadata(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .len()
}

/// A cluster behind a proxy whose follower [`PROXIED`] is down while
/// `keys` keys under `prefix` (about 5 MiB of snapshot: five chunks and
/// more) are written and the leader purges its log past the follower and
/// snapshots up to its end: restarted, the follower catches up by the
/// snapshot alone, so what crosses the proxy is the snapshot, not a log
/// tail after it. Gives the cluster, the proxy, the leader and its purged
/// index.
async fn follower_behind_a_snapshot(
    prefix: &str,
    keys: usize,
) -> (TestCluster, CuttingProxy, u64, u64) {
    let (mut cluster, proxy) = cluster_behind_proxy(&SNAPSHOT_EVERY.to_string(), &[]).await;
    let leader = leader_other_than_proxied(&mut cluster).await;
    let follower_last = status_field(&cluster, PROXIED, "last_log_index").await;
    cluster.node_mut(PROXIED).kill9().await;
    load(&cluster.node(leader).base_url(), prefix, keys, 10, 500).await;
    let purged = wait_for_purge_past(&cluster, leader, follower_last, PURGE_TIMEOUT).await;
    snapshot_up_to_the_log_end(&cluster, leader).await;
    (cluster, proxy, leader, purged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_transfer_cut_mid_way_resumes_and_the_follower_gets_every_key() {
    let _serial = SERIAL.lock().await;
    let keys = 10_000;
    let (mut cluster, proxy, leader, purged) = follower_behind_a_snapshot("cut", keys).await;

    // Cut the connection in the middle of the fourth chunk.
    let cut_after = 3 * CHUNK_BYTES + CHUNK_BYTES / 2;
    let sent_before = proxy.bytes_sent();
    proxy.cut_after(cut_after);
    cluster.node_mut(PROXIED).restart().await;
    cluster.wait_converged().await;

    assert_eq!(proxy.cuts(), 1, "the proxy cut the transfer once");
    assert!(
        status_field(&cluster, PROXIED, "snapshot_index").await >= purged,
        "the follower caught up through the snapshot"
    );
    assert_eq!(count_keys(&cluster, PROXIED, "cut").await, keys);
    // The snapshot the follower was sent (the leader may have built a
    // newer one while the follower restarted).
    let snapshot_bytes = snapshot_len(&cluster, PROXIED);
    assert!(
        snapshot_bytes > 4 * CHUNK_BYTES,
        "snapshot of {snapshot_bytes} bytes"
    );
    // Resumed, not started over: past the cut, at most the chunk it cut
    // went again (plus heartbeats); a restart would send the 3.5 MiB
    // before the cut twice. Every snapshot the follower took whole had to
    // cross once: on a slow machine the leader may have been sending an
    // older one when the newest was built, and sends both.
    let received = snapshots_received(&cluster, PROXIED);
    assert!(
        !received.is_empty(),
        "the follower logged no snapshot received"
    );
    let crossed: u64 = received.values().sum();
    let sent = proxy.bytes_sent() - sent_before;
    assert!(
        sent < crossed + CHUNK_BYTES + CHUNK_BYTES / 2,
        "{sent} bytes went to the follower for snapshots of {crossed} in all ({received:?}): \
         the transfer started over instead of resuming\nleader:\n{}\nfollower:\n{}",
        snapshot_log(&cluster, leader),
        snapshot_log(&cluster, PROXIED)
    );
}

/// The rate of the slow link of the next test: its snapshot of about
/// 5 MiB takes some 5 s to cross, many election timeouts.
const SLOW_LINK_BYTES_PER_SEC: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_slower_to_arrive_than_an_election_timeout_installs_and_the_leader_stays() {
    let _serial = SERIAL.lock().await;
    let keys = 10_000;
    let (mut cluster, proxy, leader, purged) = follower_behind_a_snapshot("slow", keys).await;
    let term = status_field(&cluster, leader, "term").await;

    // While the snapshot crawls in, the leader's replication to the
    // follower sends nothing else: the follower must take the chunks as
    // word from its leader, or it would start an election (and its higher
    // term would depose the leader and make it send the snapshot again).
    proxy.slow_to(SLOW_LINK_BYTES_PER_SEC);
    cluster.node_mut(PROXIED).restart().await;
    cluster.wait_converged().await;

    let snapshot_bytes = snapshot_len(&cluster, PROXIED);
    assert!(
        snapshot_bytes > 4 * SLOW_LINK_BYTES_PER_SEC,
        "a snapshot of {snapshot_bytes} bytes crosses the slow link too fast to test anything"
    );
    assert!(
        status_field(&cluster, PROXIED, "snapshot_index").await >= purged,
        "the follower caught up through the snapshot"
    );
    assert_eq!(count_keys(&cluster, PROXIED, "slow").await, keys);
    assert_eq!(
        status_field(&cluster, leader, "term").await,
        term,
        "an election took place while the snapshot arrived\nleader:\n{}\nfollower:\n{}",
        snapshot_log(&cluster, leader),
        snapshot_log(&cluster, PROXIED)
    );
    assert_eq!(cluster.leader().await, leader);
}

/// Keys written by one transaction of the memory test (the most a
/// transaction takes).
const KEYS_PER_TXN: usize = 128;

/// How long the follower of the memory test may take to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Waits until node `id` has applied `index`, for `timeout` at most.
async fn wait_applied(cluster: &TestCluster, id: u64, index: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let applied = cluster
            .status(id)
            .await
            .and_then(|status| status["applied_index"].as_u64());
        if applied.is_some_and(|applied| applied >= index) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not apply {index} within {timeout:?}: at {applied:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Keys the memory test writes: `KV_TEST_SNAPSHOT_KEYS`, by default 5
/// million.
fn memory_test_keys() -> usize {
    std::env::var("KV_TEST_SNAPSHOT_KEYS")
        .ok()
        .and_then(|keys| keys.parse().ok())
        .unwrap_or(5_000_000)
}

/// The view's page cache of every node of the memory test
/// (`--view-cache-bytes`): the largest part of a node's memory once it
/// holds many keys, set small so that the snapshot outgrows the budget.
const VIEW_CACHE_BYTES: &str = "67108864";

/// Bytes of each value of the memory test: 5 million keys make a snapshot
/// of about 690 MiB, more than [`MEMORY_BUDGET_BYTES`].
const MEMORY_TEST_VALUE_BYTES: usize = 48;

/// The peak RSS allowed to each node of the memory test: the follower
/// while it catches up on the snapshot of 5 million keys (larger than the
/// budget), and the leader while it takes the keys and builds that
/// snapshot. Holding 5 million keys costs a node about 450 MiB with a
/// 64 MiB page cache (sled keeps more than its cache); the build adds its
/// key map (at most a million keys, about 40 MiB, and 8 bytes per key
/// kept: 40 MiB), the transfer a few 1 MiB chunks. The snapshot held
/// whole, or its records, would pass it.
const MEMORY_BUDGET_BYTES: u64 = 672 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: 5 million keys; `make test-full` runs it"]
async fn a_follower_catches_up_on_a_snapshot_larger_than_its_memory_budget() {
    let _serial = SERIAL.lock().await;
    let keys = memory_test_keys();
    // One snapshot, taken just before the last of the keys' entries: the
    // follower catches up by it and a short log tail.
    let entries = keys.div_ceil(KEYS_PER_TXN) as u64;
    let snapshot_every = entries.saturating_sub(10).max(100).to_string();
    let (mut cluster, _proxy) =
        cluster_behind_proxy(&snapshot_every, &["--view-cache-bytes", VIEW_CACHE_BYTES]).await;
    let leader = leader_other_than_proxied(&mut cluster).await;
    let follower_last = status_field(&cluster, PROXIED, "last_log_index").await;
    cluster.node_mut(PROXIED).kill9().await;

    let started = Instant::now();
    load(
        &cluster.node(leader).base_url(),
        "big",
        keys,
        KEYS_PER_TXN,
        MEMORY_TEST_VALUE_BYTES,
    )
    .await;
    eprintln!("loaded {keys} keys in {:?}", started.elapsed());
    wait_for_purge_past(&cluster, leader, follower_last, BIG_PURGE_TIMEOUT).await;
    let snapshot_bytes = snapshot_len(&cluster, leader);
    eprintln!(
        "leader took {keys} keys and built a snapshot of {} MiB: peak RSS {} MiB so far",
        snapshot_bytes >> 20,
        cluster.node(leader).peak_resident_bytes() >> 20
    );
    assert!(
        snapshot_bytes > MEMORY_BUDGET_BYTES,
        "a snapshot of {} MiB is not larger than the budget of {} MiB",
        snapshot_bytes >> 20,
        MEMORY_BUDGET_BYTES >> 20
    );

    let started = Instant::now();
    // Not ready until it has caught up, which is what is measured.
    cluster.node_mut(PROXIED).restart_live().await;
    let target = status_field(&cluster, leader, "last_log_index").await;
    wait_applied(&cluster, PROXIED, target, CATCH_UP_TIMEOUT).await;
    let peak = cluster.node(PROXIED).peak_resident_bytes();
    let now = cluster.node(PROXIED).resident_bytes();
    // Taking the keys, building the snapshot and sending it.
    let leader_peak = cluster.node(leader).peak_resident_bytes();
    eprintln!(
        "follower caught up on a snapshot of {snapshot_bytes} bytes in {:?}: \
         peak RSS {} MiB, RSS now {} MiB",
        started.elapsed(),
        peak >> 20,
        now >> 20
    );
    assert_eq!(count_keys(&cluster, PROXIED, "big").await, keys);
    assert!(
        peak < MEMORY_BUDGET_BYTES,
        "follower: peak RSS {} MiB over the budget of {} MiB (snapshot of {} MiB)",
        peak >> 20,
        MEMORY_BUDGET_BYTES >> 20,
        snapshot_bytes >> 20
    );
    assert!(
        leader_peak < MEMORY_BUDGET_BYTES,
        "leader: peak RSS {} MiB over the budget of {} MiB (snapshot of {} MiB)",
        leader_peak >> 20,
        MEMORY_BUDGET_BYTES >> 20,
        snapshot_bytes >> 20
    );
}
