//! Several `kv-server` processes forming one cluster on loopback, and the
//! tools the failure scenarios use: find the leader, wait for convergence,
//! a bounded write load that records what was acknowledged, and the state
//! of a node folded from its replay.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::TestServer;

/// How long a cluster may take to agree on a leader, or to converge.
const AGREE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to catch up after a restart or a join (a
/// snapshot of many keys is built, sent and installed in a debug build).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(50);
/// Time limit of one request of the harness.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A cluster of `kv-server` processes, node ids 1…n, each with its own port
/// and data directory. Dropping it kills every process.
pub struct TestCluster {
    nodes: BTreeMap<u64, TestServer>,
    /// Flags every node gets, kept for nodes added later.
    extra_args: Vec<String>,
    client: reqwest::Client,
}

/// One member as `GET /v1/cluster` shows it.
#[derive(Clone, Debug)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// `leader`, `follower` or `learner`.
    pub role: String,
    /// Whether it votes.
    pub voter: bool,
}

impl TestCluster {
    /// Starts `size` nodes with `--peers` naming all of them (plus
    /// `extra_args` on each) and waits until every node knows the leader.
    pub async fn start(size: u64, extra_args: &[&str]) -> TestCluster {
        let ports = free_ports(size as usize);
        let peers = (1..=size)
            .zip(&ports)
            .map(|(id, port)| format!("{id}=http://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = BTreeMap::new();
        for (id, port) in (1..=size).zip(&ports) {
            let mut args: Vec<&str> = extra_args.to_vec();
            args.extend(["--peers", &peers]);
            let mut node = TestServer::unstarted(id, *port, &args);
            node.spawn();
            nodes.insert(id, node);
        }
        for node in nodes.values_mut() {
            node.wait_ready().await;
        }
        let cluster = TestCluster {
            nodes,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("a plain HTTP client builds"),
        };
        cluster.leader().await;
        cluster
    }

    /// Node `id`.
    pub fn node(&self, id: u64) -> &TestServer {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Node `id`, to kill, pause or restart it.
    pub fn node_mut(&mut self, id: u64) -> &mut TestServer {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The ids of every node the harness started (running or not).
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The base URLs of the running nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|node| node.is_running())
            .map(TestServer::base_url)
            .collect()
    }

    /// `GET /v1/cluster` of node `id`, if it answers.
    pub async fn status(&self, id: u64) -> Option<Value> {
        let response = self
            .client
            .get(self.node(id).url("/v1/cluster"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The members as node `id` reports them.
    pub async fn members(&self, id: u64) -> Vec<Member> {
        let status = self.status(id).await.expect("the node answers /v1/cluster");
        status["members"]
            .as_array()
            .expect("members is a list")
            .iter()
            .map(|member| Member {
                id: member["id"].as_u64().expect("a member has an id"),
                role: member["role"].as_str().unwrap_or("").to_string(),
                voter: member["voter"].as_bool().unwrap_or(false),
            })
            .collect()
    }

    /// Waits until one running node says it leads and every running node
    /// names it, skipping `except` (a paused node); returns its id.
    pub async fn leader_among(&self, except: &[u64]) -> u64 {
        let deadline = Instant::now() + AGREE_TIMEOUT;
        loop {
            if let Some(leader) = self.agreed_leader(except).await {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "the running nodes did not agree on a leader within {AGREE_TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the running nodes agree on a leader; returns its id.
    pub async fn leader(&self) -> u64 {
        self.leader_among(&[]).await
    }

    async fn agreed_leader(&self, except: &[u64]) -> Option<u64> {
        let mut agreed = None;
        for (id, node) in &self.nodes {
            if !node.is_running() || except.contains(id) {
                continue;
            }
            let status = self.status(*id).await?;
            let leader = status["leader"].as_u64()?;
            if agreed.is_some_and(|agreed| agreed != leader) {
                return None;
            }
            agreed = Some(leader);
        }
        let leader = agreed?;
        let status = self.status(leader).await?;
        (status["state"] == "Leader").then_some(leader)
    }

    /// Waits until every running node (but `except`) has applied all the
    /// leader has: the same applied index as the leader's last log index.
    pub async fn wait_converged_except(&self, except: &[u64]) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let mut last_seen = BTreeMap::new();
        loop {
            let leader = self.leader_among(except).await;
            let target = self
                .status(leader)
                .await
                .and_then(|status| status["last_log_index"].as_u64());
            let mut all = target.is_some();
            for (id, node) in &self.nodes {
                if !node.is_running() || except.contains(id) {
                    continue;
                }
                let applied = self
                    .status(*id)
                    .await
                    .and_then(|status| status["applied_index"].as_u64());
                last_seen.insert(*id, applied);
                all &= applied.is_some() && applied == target;
            }
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes did not converge within {CONVERGE_TIMEOUT:?}: leader {leader} at {target:?}, applied {last_seen:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every running node has applied all the leader has.
    pub async fn wait_converged(&self) {
        self.wait_converged_except(&[]).await
    }

    /// Starts node `id` with `--join` through node `via`, waits until it is
    /// ready and the leader lists it as a voter.
    pub async fn join(&mut self, id: u64, via: u64) {
        let via_url = self.node(via).base_url();
        let port = free_ports(1)[0];
        let mut args: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        args.extend(["--join", &via_url]);
        let mut node = TestServer::unstarted(id, port, &args);
        node.spawn();
        node.wait_ready().await;
        self.nodes.insert(id, node);
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let leader = self.leader().await;
            let joined = self
                .members(leader)
                .await
                .iter()
                .any(|member| member.id == id && member.voter);
            if joined {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not become a voter within {CONVERGE_TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes node `id` from the cluster through node `via` (any member),
    /// retrying while the cluster is busy, then stops its process.
    pub async fn remove(&mut self, id: u64, via: u64) {
        let deadline = Instant::now() + AGREE_TIMEOUT;
        loop {
            let response = self
                .client
                .delete(self.node(via).url(&format!("/v1/cluster/members/{id}")))
                .send()
                .await;
            match response {
                Ok(response) if response.status().is_success() => break,
                Ok(response) if response.status() == 404 => break,
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    assert!(
                        status == 503 || status == 409,
                        "removing node {id} failed: {status} {body}"
                    );
                }
                Err(error) => panic!("removing node {id}: {error}"),
            }
            assert!(
                Instant::now() < deadline,
                "node {id} was not removed within {AGREE_TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        let node = self.node_mut(id);
        if node.is_running() {
            node.kill9().await;
        }
        self.nodes.remove(&id);
    }

    /// The state of node `id` folded from its replay: key → (value,
    /// mod_revision), deletes applied.
    pub async fn replayed_state(&self, id: u64) -> BTreeMap<String, (Value, u64)> {
        let body = self
            .client
            .get(self.node(id).url("/v1/topic/records?from=0"))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("replay answers")
            .text()
            .await
            .expect("replay body reads");
        let mut state = BTreeMap::new();
        for line in body.lines() {
            let record: Value = serde_json::from_str(line).expect("one JSON record per line");
            let key = record["key"]
                .as_str()
                .expect("a record has a key")
                .to_string();
            let offset = record["offset"].as_u64().expect("a record has an offset");
            match &record["value"] {
                Value::Null => {
                    state.remove(&key);
                }
                value => {
                    state.insert(key, (value.clone(), offset));
                }
            }
        }
        state
    }

    /// Every key under `prefix` on node `id` with its value, read from the
    /// node's own view (`consistency=stale`), page by page.
    pub async fn keys(&self, id: u64, prefix: &str) -> BTreeMap<String, Value> {
        let mut keys = BTreeMap::new();
        let mut start_after: Option<String> = None;
        for _page in 0..1_000 {
            let mut url = format!("/v1/kv?prefix={prefix}&limit=10000&consistency=stale");
            if let Some(after) = &start_after {
                url.push_str(&format!("&start_after={after}"));
            }
            let page: Value = self
                .client
                .get(self.node(id).url(&url))
                .send()
                .await
                .expect("list answers")
                .json()
                .await
                .expect("a list page is JSON");
            let entries = page["entries"].as_array().expect("entries");
            for entry in entries {
                let key = entry["key"].as_str().expect("key").to_string();
                keys.insert(key, entry["value"].clone());
            }
            start_after = entries
                .last()
                .and_then(|entry| entry["key"].as_str())
                .map(str::to_string);
            if page["more"] != json!(true) {
                return keys;
            }
        }
        panic!("more than 1,000 pages under {prefix}");
    }
}

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
                            let urls = urls.lock().expect("not poisoned");
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
        *self.urls.lock().expect("not poisoned") = urls;
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

/// `count` distinct loopback ports nothing listens on right now.
fn free_ports(count: usize) -> Vec<u16> {
    // Hold every listener until all are picked, so no port repeats.
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a loopback port can be bound"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("bound").port())
        .collect()
}
