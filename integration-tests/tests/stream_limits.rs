//! Replays that make no progress: clients that open `/v1/topic/records`
//! and never read hold no thread, so Raft's own blocking work (apply, vote,
//! truncate, purge) is never starved and writes commit as usual; a replay
//! idle for `--stream-idle-timeout-ms` is cut with an error, never passed
//! off as complete.

use std::time::{Duration, Instant};

use futures::future::join_all;
use integration_tests::leases::grant;
use integration_tests::{call, stingy_http2_client, TestServer};
use serde_json::{json, Value};

/// Replay clients that never read: more than tokio's blocking pool has
/// threads (512), which one thread per replay would exhaust.
const STALLED_REPLAYS: usize = 600;
/// Values written before the replays, each of [`VALUE_CHARS`]: far more
/// than HTTP/2's smallest flow-control window lets through unread.
const VALUES: usize = 64;
/// Characters of each value.
const VALUE_CHARS: usize = 16 * 1024;
/// Writes made at once while the replays stall, all within [`WRITE_WITHIN`].
const WRITES: usize = 64;
/// A write takes milliseconds on loopback; this is ample on a loaded machine.
const WRITE_WITHIN: Duration = Duration::from_secs(3);
/// `--snapshot-every` of the stalled-replay test: several snapshots are
/// built while the replays stall. It counts writes, though the [`WRITES`]
/// made at once share a few raft entries.
const SNAPSHOT_EVERY: &str = "16";
/// How long a snapshot of the writes may take to be built.
const SNAPSHOT_WITHIN: Duration = Duration::from_secs(10);
/// Growth of the server's memory the stalled replays may cause.
const RSS_GROWTH_AT_MOST: u64 = 128 << 20;

async fn write_values(server: &TestServer) {
    for i in 0..VALUES {
        let value = Value::String("r".repeat(VALUE_CHARS));
        let (status, answer) =
            call(server, "PUT", &format!("/v1/kv/replayed/{i}"), Some(value)).await;
        assert_eq!(status, 201, "PUT replayed/{i}: {answer}");
    }
}

/// A number of the node's `/v1/cluster` status.
async fn cluster_field(server: &TestServer, field: &str) -> u64 {
    let (status, cluster) = call(server, "GET", "/v1/cluster", None).await;
    assert_eq!(status, 200, "{cluster}");
    cluster[field]
        .as_u64()
        .unwrap_or_else(|| panic!("/v1/cluster has no {field}: {cluster}"))
}

/// The whole replay from offset 0, read by a client that reads.
async fn replay_lines(server: &TestServer) -> usize {
    let response = server
        .client()
        .get(server.url("/v1/topic/records?from=0"))
        .send()
        .await
        .expect("a replay is answered");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("a replay is read whole");
    text.lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_that_never_read_do_not_stop_writes_from_committing() {
    // Frequent snapshots: building one, and purging the log behind it, is
    // Raft's blocking work that client streams must not starve.
    let server = TestServer::start_with(&["--snapshot-every", SNAPSHOT_EVERY]).await;
    write_values(&server).await;
    let before = server.resident_bytes();

    let client = stingy_http2_client();
    let warm = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("HTTP/2 serves");
    assert_eq!(warm.status(), 200);
    // Each answer's head is awaited and its body never read.
    let opened = join_all(
        (0..STALLED_REPLAYS).map(|_| client.get(server.url("/v1/topic/records?from=0")).send()),
    )
    .await;
    let stalled: Vec<reqwest::Response> = opened
        .into_iter()
        .map(|response| response.expect("a replay is answered"))
        .collect();
    assert!(stalled.iter().all(|response| response.status() == 200));

    let applied_before_writes = cluster_field(&server, "applied_index").await;
    // Concurrent writes, so that entries are applied in batches, which
    // the state machine applies on the blocking pool.
    let started = Instant::now();
    let writes = join_all((0..WRITES).map(|i| {
        let server = &server;
        async move { call(server, "PUT", &format!("/v1/kv/during/{i}"), Some(json!(i))).await }
    }))
    .await;
    let took = started.elapsed();
    for (i, (status, answer)) in writes.iter().enumerate() {
        assert_eq!(
            *status, 201,
            "write {i} while {STALLED_REPLAYS} replays stall: {answer}"
        );
    }
    assert!(
        took < WRITE_WITHIN,
        "{WRITES} concurrent writes took {took:?}"
    );
    // A snapshot covering them is built (on the blocking pool) meanwhile.
    let deadline = Instant::now() + SNAPSHOT_WITHIN;
    while cluster_field(&server, "snapshot_index").await <= applied_before_writes {
        assert!(
            Instant::now() < deadline,
            "no snapshot was built within {SNAPSHOT_WITHIN:?} while {STALLED_REPLAYS} replays stall"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client that reads is still served the whole topic.
    assert_eq!(replay_lines(&server).await, VALUES + WRITES);
    let grown = server.resident_bytes().saturating_sub(before);
    eprintln!(
        "{STALLED_REPLAYS} stalled replays: the server grew by {} MB",
        grown >> 20
    );
    assert!(
        grown <= RSS_GROWTH_AT_MOST,
        "{STALLED_REPLAYS} stalled replays grew the server by {} MB",
        grown >> 20
    );
    drop(stalled);
}

#[tokio::test]
async fn a_replay_idle_past_the_timeout_is_cut_with_an_error() {
    let server = TestServer::start_with(&["--stream-idle-timeout-ms", "300"]).await;
    write_values(&server).await;
    let client = stingy_http2_client();
    let response = client
        .get(server.url("/v1/topic/records?from=0"))
        .send()
        .await
        .expect("a replay is answered");
    assert_eq!(response.status(), 200);
    // Not a sleep hoping for an event: idling past the limit is the scenario.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let read = response.bytes().await;
    assert!(
        read.is_err(),
        "an idle replay must end with an error, not {} bytes as if whole",
        read.map_or(0, |bytes| bytes.len())
    );
    // One that reads at once gets everything.
    assert_eq!(replay_lines(&server).await, VALUES);
}

/// The server's threads, from `/proc/<pid>/status`.
fn threads(server: &TestServer) -> usize {
    let pid = server.pid().expect("the server runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("a thread count")
}

/// Client requests whose work blocks (`/v1/leases` reads every lease and
/// shares the few turns of the topic's readers; `/v1/space` walks the data
/// directory, two at a time) take a few threads of the blocking pool in a
/// flood, given up at once or not, not one each. tokio keeps an idle
/// blocking thread for 10 s, so the count after the flood shows its peak.
/// A turn is handed on as its work ends, before that work's thread is back
/// among the pool's idle ones, so the pool may start a thread for the next
/// work meanwhile: each turn may have taken two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_blocking_requests_holds_a_few_threads() {
    /// Requests of each kind in the flood.
    const FLOOD: usize = 300;
    /// `CONCURRENT_TOPIC_READS` and `SPACE_TURNS`, the turns of clients'
    /// blocking work.
    const TURNS: usize = 16 + 2;
    /// Threads the node's own blocking work (apply, checkpoints, its own
    /// measures of the disk) may start meanwhile.
    const OWN_WORK: usize = 4;
    /// Leases, so that each list takes a while and the lists overlap.
    const LEASES: usize = 2_000;
    let server = TestServer::start().await;
    let base = server.base_url();
    // The grants also start the threads writes start (sled's among
    // them), which are then counted in `before`.
    join_all((0..LEASES).map(|_| grant(server.client(), &base, 600))).await;
    let (status, _) = call(&server, "GET", "/v1/space", None).await;
    assert_eq!(status, 200);
    let before = threads(&server);
    let client = stingy_http2_client();
    let answers =
        join_all((0..FLOOD).flat_map(|_| {
            ["/v1/space", "/v1/leases"].map(|path| client.get(server.url(path)).send())
        }))
        .await;
    for answer in answers {
        assert_eq!(answer.expect("an answer").status(), 200);
    }
    let after = threads(&server);
    assert!(
        after <= before + 2 * TURNS + OWN_WORK,
        "{} blocking requests took the server from {before} to {after} threads",
        2 * FLOOD
    );
}
