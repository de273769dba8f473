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

use integration_tests::{call, TestCluster};
use serde_json::json;
use tokio::sync::Mutex;

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The variable that slows a node's fsyncs.
const FSYNC_DELAY: &str = "KV_FSYNC_DELAY_MS";

/// Elections a test may go through to put the slow node in the lead.
const ELECTIONS: usize = 12;

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
