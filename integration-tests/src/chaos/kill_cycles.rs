//! The kill -9 durability cycles: writers put unique keys into a single
//! node, the node is killed with SIGKILL while writes are in flight, it
//! starts again, and every write it acknowledged must be there with its
//! value. A single node is the hardest case: no replica can hand back
//! what its own disk lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::nodes::ChaosCluster;
use super::report::KillReport;

/// Concurrent writers per cycle.
const WRITERS: usize = 4;
/// Most writes one writer sends in a cycle.
const MAX_WRITES: usize = 10_000;
/// Time limit of one write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a cycle waits for its first acknowledged write.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait (ms) after the first acknowledgement before the kill.
const MAX_KILL_DELAY_MS: u64 = 100;
/// A full check of every acknowledged write runs every this many cycles.
const FULL_CHECK_EVERY: usize = 100;
/// Most list pages read under one prefix.
const MAX_PAGES: usize = 1_000;
/// Most anomalies or lost writes kept in the report.
const KEPT: usize = 50;

/// Writes acknowledged so far: key → value.
type Acked = BTreeMap<String, String>;

/// Runs `cycles` kill -9 cycles against a single node; `seed` draws the
/// kill delays.
pub async fn run_kill_cycles(seed: u64, cycles: usize) -> KillReport {
    let mut report = KillReport {
        seed,
        ..KillReport::default()
    };
    let mut node = match ChaosCluster::start(1).await {
        Ok(node) => node,
        Err(error) => {
            report
                .anomalies
                .push(format!("the node did not start: {error}"));
            return report;
        }
    };
    let url = node.url(1);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(WRITE_TIMEOUT)
        .build()
        .expect("a plain HTTP client builds");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Acked::new();
    let mut sent = Acked::new();
    for cycle in 0..cycles {
        let prefix = format!("dur/{cycle:06}/");
        let stop = Arc::new(AtomicBool::new(false));
        let ack_count = Arc::new(AtomicUsize::new(0));
        let cycle_acked = Arc::new(Mutex::new(Acked::new()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let write = Writer {
                    http: http.clone(),
                    url: url.clone(),
                    prefix: format!("{prefix}w{writer}-"),
                    stop: Arc::clone(&stop),
                    ack_count: Arc::clone(&ack_count),
                    acked: Arc::clone(&cycle_acked),
                };
                tokio::spawn(write.run())
            })
            .collect();
        let deadline = Instant::now() + FIRST_ACK_TIMEOUT;
        while ack_count.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(
            rng.random_range(0..=MAX_KILL_DELAY_MS),
        ))
        .await;
        node.kill9(1).await;
        stop.store(true, Ordering::Release);
        let mut in_flight = BTreeMap::new();
        for writer in writers {
            if let Ok(Some((key, value))) = writer.await {
                in_flight.insert(key, value);
            }
        }
        let cycle_acked = std::mem::take(&mut *cycle_acked.lock().expect("not poisoned"));
        report.acknowledged += cycle_acked.len();
        report.in_flight += in_flight.len();
        if let Err(trouble) = node.restart(1, None).await {
            report.anomalies.push(format!("cycle {cycle}: {trouble}"));
            return report;
        }
        let found = match list(&http, &url, &prefix).await {
            Ok(found) => found,
            Err(error) => {
                report.anomalies.push(format!("cycle {cycle}: {error}"));
                return report;
            }
        };
        let mut cycle_sent = in_flight;
        cycle_sent.extend(cycle_acked.clone());
        check(&mut report, cycle, &cycle_acked, &cycle_sent, &found);
        acked.extend(cycle_acked);
        sent.extend(cycle_sent);
        report.cycles += 1;
        if (cycle + 1) % FULL_CHECK_EVERY == 0 || cycle + 1 == cycles {
            match list(&http, &url, "dur/").await {
                Ok(found) => check(&mut report, cycle, &acked, &sent, &found),
                Err(error) => report.anomalies.push(format!("cycle {cycle}: {error}")),
            }
        }
    }
    report.lost.truncate(KEPT);
    report.anomalies.truncate(KEPT);
    report
}

/// Checks that every acknowledged write is in `found` with its value, and
/// that `found` holds nothing but what was sent (`sent`: acknowledged or
/// in flight at a kill).
fn check(report: &mut KillReport, cycle: usize, acked: &Acked, sent: &Acked, found: &Acked) {
    for (key, value) in acked {
        match found.get(key) {
            Some(read) if read == value => {}
            other => report.lost.push(format!(
                "cycle {cycle}: {key} was acknowledged with {value:?}, after the restart: {other:?}"
            )),
        }
    }
    for (key, value) in found {
        if sent.get(key) != Some(value) {
            report.anomalies.push(format!(
                "cycle {cycle}: {key} holds {value:?}, which no write of it sent"
            ));
        }
    }
}

/// One writer of a cycle.
struct Writer {
    http: reqwest::Client,
    url: String,
    prefix: String,
    stop: Arc<AtomicBool>,
    ack_count: Arc<AtomicUsize>,
    acked: Arc<Mutex<Acked>>,
}

impl Writer {
    /// Puts keys one after another until a write fails; returns the write
    /// in flight when it failed.
    async fn run(self) -> Option<(String, String)> {
        for n in 0..MAX_WRITES {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            let key = format!("{}{n:05}", self.prefix);
            let value = format!("{key}@{n}");
            let response = self
                .http
                .put(format!("{}/v1/kv/{key}", self.url))
                .json(&value)
                .send()
                .await;
            match response {
                Ok(response) if matches!(response.status().as_u16(), 200 | 201) => {
                    self.acked.lock().expect("not poisoned").insert(key, value);
                    self.ack_count.fetch_add(1, Ordering::Release);
                }
                _ => return Some((key, value)),
            }
        }
        None
    }
}

/// Every key under `prefix` of the node at `url`, read linearizably.
async fn list(http: &reqwest::Client, url: &str, prefix: &str) -> Result<Acked, String> {
    let mut found = Acked::new();
    let mut start_after: Option<String> = None;
    for _page in 0..MAX_PAGES {
        let mut list = format!("{url}/v1/kv?prefix={prefix}&limit=10000");
        if let Some(after) = &start_after {
            list.push_str(&format!("&start_after={after}"));
        }
        let page: Value = http
            .get(&list)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("list {prefix}: {error}"))?
            .json()
            .await
            .map_err(|error| format!("list {prefix}: {error}"))?;
        let entries = page["entries"]
            .as_array()
            .ok_or_else(|| format!("list {prefix}: no entries in {page}"))?;
        for entry in entries {
            let key = entry["key"].as_str().unwrap_or_default().to_string();
            let value = entry["value"].as_str().unwrap_or_default().to_string();
            found.insert(key, value);
        }
        start_after = entries
            .last()
            .and_then(|entry| entry["key"].as_str())
            .map(str::to_string);
        if page["more"] != json!(true) {
            return Ok(found);
        }
    }
    Err(format!("list {prefix}: more than {MAX_PAGES} pages"))
}
