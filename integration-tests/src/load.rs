//! Writes in bulk or in the background for the failure scenarios: a
//! bounded write load that records what was acknowledged, and the check
//! that every acknowledged write survived.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{POLL, REQUEST_TIMEOUT};
use crate::TestCluster;

/// What a write load saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Acknowledged writes: key → the value written, with when it was acknowledged.
    pub acked: BTreeMap<String, (Value, Instant)>,
    /// Writes that failed (after their retries), by error text.
    pub failed: Vec<String>,
}

/// A bounded write load in the background: unique keys `prefix/000000…`,
/// each sent with an `Idempotency-Key` and retried (same key) on the next
/// node until acknowledged or out of attempts, so every acknowledged write
/// is recorded exactly once.
pub struct WriteLoad {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<LoadReport>,
    urls: Arc<Mutex<Vec<String>>>,
}

/// Attempts of one write before it counts as failed.
const WRITE_ATTEMPTS: usize = 40;

impl WriteLoad {
    /// Starts writing to `urls` (round robin, falling over to the next on
    /// errors), at most `max_writes` writes and at most `max_time`.
    pub fn start(
        urls: Vec<String>,
        prefix: &str,
        max_writes: usize,
        max_time: Duration,
    ) -> WriteLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let acked_count = Arc::new(AtomicUsize::new(0));
        let urls = Arc::new(Mutex::new(urls));
        let prefix = prefix.to_string();
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            let urls = Arc::clone(&urls);
            let acked_count = Arc::clone(&acked_count);
            async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(12))
                    .build()
                    .expect("a plain HTTP client builds");
                let started = Instant::now();
                let mut report = LoadReport::default();
                let mut turn = 0usize;
                for n in 0..max_writes {
                    if stop.load(Ordering::Acquire) || started.elapsed() > max_time {
                        break;
                    }
                    let key = format!("{prefix}/{n:06}");
                    let value = json!({ "n": n });
                    let idempotency_key = uuid::Uuid::new_v4().to_string();
                    let mut last_error = String::new();
                    let mut acked = false;
                    for _attempt in 0..WRITE_ATTEMPTS {
                        let url = {
                            let urls = urls.lock().expect("the write load's lock is not poisoned");
                            turn += 1;
                            format!("{}/v1/kv/{key}", urls[turn % urls.len()])
                        };
                        let response = client
                            .put(&url)
                            .header("Idempotency-Key", &idempotency_key)
                            .json(&value)
                            .send()
                            .await;
                        match response {
                            Ok(response) if response.status().is_success() => {
                                acked = true;
                                break;
                            }
                            Ok(response) => {
                                last_error = format!("{url}: {}", response.status());
                            }
                            Err(error) => last_error = format!("{url}: {error}"),
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if acked {
                        report.acked.insert(key, (value, Instant::now()));
                        acked_count.fetch_add(1, Ordering::AcqRel);
                    } else {
                        report.failed.push(format!("{key}: {last_error}"));
                    }
                }
                report
            }
        });
        WriteLoad {
            stop,
            acked: acked_count,
            task,
            urls,
        }
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Acquire)
    }

    /// Waits (at most `limit`) until at least `count` writes are acknowledged.
    pub async fn wait_acked(&self, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.acked() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} writes were acknowledged within {limit:?}",
                self.acked()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Changes the nodes the load writes to (after a node is added or removed).
    pub fn set_urls(&self, urls: Vec<String>) {
        *self
            .urls
            .lock()
            .expect("the write load's lock is not poisoned") = urls;
    }

    /// Stops the load and returns what it saw.
    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("the write load does not panic")
    }
}

/// Asserts that every acknowledged write of `report` is on every running
/// node of `cluster` with the value written.
pub async fn assert_all_acked_present(cluster: &TestCluster, prefix: &str, report: &LoadReport) {
    for id in cluster.ids() {
        if !cluster.node(id).is_running() {
            continue;
        }
        let keys = cluster.keys(id, prefix).await;
        let missing: Vec<&String> = report
            .acked
            .iter()
            .filter(|(key, (value, _))| keys.get(*key) != Some(value))
            .map(|(key, _)| key)
            .collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks {} acknowledged writes, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

/// Writes `count` keys `prefix/000000…` (value `{"n": n}`) through `urls`
/// with `concurrency` writers at once, and fails the test if any write is
/// not acknowledged.
pub async fn bulk_load(urls: &[String], prefix: &str, count: usize, concurrency: usize) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("a plain HTTP client builds");
    let next = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..concurrency)
        .map(|writer| {
            let client = client.clone();
            let next = Arc::clone(&next);
            let url = urls[writer % urls.len()].clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::AcqRel);
                    if n >= count {
                        return;
                    }
                    let response = client
                        .put(format!("{url}/v1/kv/{prefix}/{n:06}"))
                        .json(&json!({ "n": n }))
                        .send()
                        .await
                        .unwrap_or_else(|error| panic!("bulk write {n}: {error}"));
                    assert!(
                        response.status().is_success(),
                        "bulk write {n}: {}",
                        response.status()
                    );
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a bulk writer does not panic");
    }
}
